"""Settings reach what they set (issue 23 item 5): the torch MTCNN a user names is the one
built, and the device is resolved once and handed to the detector and the classifier."""

from __future__ import annotations

import pytest

from moodstream.shared import devices
from moodstream.shared.settings import Settings
from moodstream.worker import pipeline as pipeline_module
from moodstream.worker.detectors import resolve_mtcnn_impl
from moodstream.worker.pipeline import Pipeline

pytest.importorskip("facenet_pytorch", reason="the torch backend needs moodstream[worker]")


class Built(Exception):
    """Raised by the recording build_detector: the pipeline is stopped before it loads
    models onto a CUDA device this machine may not have."""


def test_an_explicit_mtcnn_impl_is_honoured_on_cuda(monkeypatch):
    # It was switched to batched whenever backend was auto on CUDA, over an explicit reference.
    monkeypatch.setattr(devices, "cuda_available", lambda: True)  # the choice is made before any CUDA call
    built = []

    def recording_build_detector(settings, backend, threads, device="cpu", **per_net):
        built.append((settings.mtcnn_impl, backend, device))
        raise Built

    monkeypatch.setattr(pipeline_module, "build_detector", recording_build_detector)
    for impl in ("reference", "batched", "auto"):
        with pytest.raises(Built):
            Pipeline(Settings.from_env(env={}, device="cuda", mtcnn_impl=impl))
    assert [impl for impl, _, _ in built] == ["reference", "batched", "auto"]
    assert {(backend, device) for _, backend, device in built} == {("torch", "cuda")}


@pytest.mark.parametrize("setting,device,impl", [
    ("auto", "cuda", "batched"), ("auto", "cuda:1", "batched"), ("auto", "cpu", "reference"),
    ("reference", "cuda", "reference"), ("batched", "cpu", "batched")])
def test_auto_is_batched_on_cuda_only_and_an_explicit_choice_stays(setting, device, impl):
    assert resolve_mtcnn_impl(setting, device) == impl


def test_mtcnn_impl_defaults_to_auto():
    assert Settings.from_env(env={}).mtcnn_impl == "auto"


def test_the_device_is_resolved_once_and_reaches_detector_and_classifier(monkeypatch):
    import torch

    calls = []
    resolve = devices.resolve_device

    def counting_resolve(name):
        calls.append(name)
        return resolve(name)

    monkeypatch.setattr(devices, "resolve_device", counting_resolve)
    threads = torch.get_num_threads()
    try:
        pipe = Pipeline(Settings.from_env(env={}, device="cpu", backend="torch", mtcnn_impl="reference", threads=1))
    finally:
        torch.set_num_threads(threads)
    assert calls == ["cpu"]  # the pipeline's one resolution; the detector resolved it again before
    assert pipe.device == "cpu"
    assert pipe.detector.device == torch.device("cpu") and pipe.detector.mtcnn.device == torch.device("cpu")
    assert pipe.classifier.device == torch.device("cpu")
