"""PNet's first layers compiled (worker/detectors/_pnet.c, worker/detectors/pnet_head.py): the
convolution, PReLU and ceil-mode pool against numpy on every path of the kernel (blocks of 16 and
8 columns, the overlapping last block, narrow rows computed one column at a time, odd rows and
columns that pool alone), bad input refused with ValueError, and PNet cut in two on OpenVINO
against the whole net and the detector's faces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moodstream.shared import devices
from moodstream.shared.errors import ConfigError, ModelError
from moodstream.worker import runtime
from moodstream.worker.detectors import pnet_head
from moodstream.worker.detectors.pnet_head import head_reference, head_shape

OPENVINO = pytest.mark.skipif(not devices.installed("openvino"),
                              reason="needs openvino (pip install -e '.[dev]' or '.[openvino]')")
RUNS = pytest.mark.skipif(not pnet_head.available(),
                          reason="the compiled PNet layers need the built module and a CPU with AVX2 and FMA")


def test_a_developer_install_builds_the_compiled_pnet_layers():
    # setup.py builds them where a C compiler is (the README's setup, CI)
    assert pnet_head._pnet is not None, "worker/detectors/_pnet.c is not built: pip install -e . with a C compiler"


def weights(seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.3, (10, 3, 3, 3)).astype(np.float32), rng.normal(0, 0.1, 10).astype(np.float32),
            rng.uniform(0, 0.5, 10).astype(np.float32))


def head(x, w, b, s):
    out = np.full(head_shape(x.shape), np.nan, np.float32)
    pnet_head._pnet.head(x, w, b, s, out)
    return out


@RUNS
@pytest.mark.parametrize("shape", [(1, 3, 217, 385), (2, 3, 12, 12), (3, 3, 13, 17), (1, 3, 3, 3), (1, 3, 12, 25),
                                   (1, 3, 4, 10), (2, 3, 5, 9), (1, 3, 19, 18), (1, 3, 102, 1153), (4, 3, 24, 40)])
def test_the_compiled_layers_are_numpys(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    w, b, s = weights()
    got, want = head(x, w, b, s), head_reference(x, w, b, s)
    assert got.shape == want.shape == head_shape(shape)
    assert not np.isnan(got).any()  # every output written
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)  # fp32 sums of 27 products, another order
    assert (got < 0).any() and (got > 0).any()  # the PReLU's both sides reached


@RUNS
def test_each_image_of_a_batch_is_computed_alone():
    x = np.random.default_rng(3).uniform(-1, 1, (5, 3, 31, 47)).astype(np.float32)
    w, b, s = weights(1)
    together = head(x, w, b, s)
    for i in range(len(x)):
        np.testing.assert_array_equal(together[i:i + 1], head(x[i:i + 1].copy(), w, b, s))


@RUNS
def test_bad_input_is_refused():
    x = np.zeros((1, 3, 12, 12), np.float32)
    w, b, s = weights()
    out = np.empty(head_shape(x.shape), np.float32)
    bad = [((x.astype(np.float64), w, b, s, out), "float32"),
           ((x[:, :, :, ::2], w, b, s, np.empty(head_shape((1, 3, 12, 6)), np.float32)), "C-contiguous"),
           ((np.zeros((1, 4, 12, 12), np.float32), w, b, s, out), r"\(n, 3, h, w\)"),
           ((np.zeros((1, 3, 2, 12), np.float32), w, b, s, out), r"h, w >= 3"),
           ((x, w[:8].copy(), b, s, out), r"\(10, 3, 3, 3\)"),
           ((x, w, b[:9].copy(), s, out), "one value a channel"),
           ((x, w, b, s, np.empty((1, 10, 5, 6), np.float32)), r"out must be \(1, 10, 5, 5\)")]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            pnet_head._pnet.head(*args)
    frozen = out.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        pnet_head._pnet.head(x, w, b, s, frozen)


# --- PNet cut in two on OpenVINO ---------------------------------------------------------------


@OPENVINO
@RUNS
def test_pnet_cut_in_two_is_the_whole_net_within_fp32_rounding():
    from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, net_file, open_net

    path = net_file(ONNX_DIR, MTCNN_FILES["pnet"], "openvino")
    whole, split = open_net(path, runtime="openvino"), pnet_head.SplitPNet(path)
    assert split.metadata == whole.metadata
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 217, 385), (5, 3, 109, 194), (64, 3, 12, 12), (2, 3, 12, 40)]:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        (want,), (got,) = whole.run(x), split.run(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
        # a strided input (a view) gives what its copy gives
        np.testing.assert_array_equal(split.run(np.concatenate([x, x], axis=3)[..., :shape[3]])[0], got)


@OPENVINO
def test_a_net_of_another_form_is_not_cut():
    from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, net_file
    from moodstream.worker.openvino_net import core

    with pytest.raises(ModelError, match="not a PNet"):  # RNet: 28 channels and a 3x3 pool
        pnet_head.split(core().read_model(str(net_file(ONNX_DIR, MTCNN_FILES["rnet"], "openvino"))))


@OPENVINO
def test_the_compiled_layers_only_run_pnet_unscreened_in_fp32_on_openvino():
    from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector

    for kwargs in ({"runtime": "onnx"}, {"runtime": "openvino", "screened": ("pnet",)},
                   {"runtime": "openvino", "precision": {"pnet": "bf16"}}):
        with pytest.raises(ConfigError, match="pnet_head='compiled' runs PNet in fp32 on OpenVINO"):
            OnnxMTCNNDetector(pnet_head="compiled", **kwargs)
    with pytest.raises(ConfigError, match="pnet_head must be"):
        OnnxMTCNNDetector(runtime="openvino", pnet_head="onnx")
    assert OnnxMTCNNDetector(runtime="openvino").pnet_head == "openvino"  # the whole net, by default


# --- the choice, measured once per CPU kind ----------------------------------------------------


def test_pnet_head_here_asks_only_where_pnet_runs_unscreened_in_fp32_on_openvino(monkeypatch):
    asked = []
    monkeypatch.setattr(runtime, "choose_pnet_head", lambda cache, cpu: asked.append(1) or runtime.PnetChoice(
        "compiled", "measured"))
    fp32 = {"pnet": "fp32", "rnet": "fp32", "onet": "fp32", "emotion": "int8"}
    assert runtime.pnet_head_here("onnx", fp32, ()) == "onnx"
    assert runtime.pnet_head_here("openvino", fp32, ("pnet", "rnet")) == "openvino"  # screened in bf16
    assert runtime.pnet_head_here("openvino", {**fp32, "pnet": "bf16"}, ()) == "openvino"
    assert asked == []
    assert runtime.pnet_head_here("openvino", fp32, ("rnet",)) == "compiled"
    assert asked == [1]


def test_without_the_compiled_layers_the_whole_net_runs(monkeypatch):
    monkeypatch.setattr(pnet_head, "available", lambda: False)
    assert runtime.choose_pnet_head("off") == runtime.PnetChoice("openvino", "unavailable")


@OPENVINO
@RUNS
def test_the_choice_is_measured_once_per_cpu_kind_and_kept(tmp_path):
    cache = tmp_path / "runtime.json"
    cpu = runtime.cpu_info()
    runtime._pnet_choices.clear()
    first = runtime.choose_pnet_head(str(cache), cpu=cpu, budget_s=0.1)
    assert first.how == "measured" and set(first.ms) == {"openvino", "compiled"} and min(first.ms.values()) > 0
    assert first.head == ("compiled" if first.ms["compiled"] <= runtime.PNET_HEAD_GAIN * first.ms["openvino"]
                          else "openvino")
    kept = json.loads(cache.read_text())["choices"][runtime.pnet_head_cache_key(cpu)]
    assert (kept["head"], kept["ms"]) == (first.head, first.ms)
    assert runtime.choose_pnet_head(str(cache), cpu=cpu) is first  # once per process
    runtime._pnet_choices.clear()
    again = runtime.choose_pnet_head(str(cache), cpu=cpu)
    assert (again.how, again.head, again.ms) == ("cached", first.head, first.ms)


@OPENVINO
@RUNS
@pytest.mark.parametrize("kept", ["compiled", "openvino"])
def test_the_pipeline_runs_the_pnet_measured_here(tmp_path, kept):
    from moodstream.shared.settings import Settings
    from moodstream.worker.pipeline import Pipeline

    cache = tmp_path / "runtime.json"
    key = runtime.pnet_head_cache_key(runtime.cpu_info())
    cache.write_text(json.dumps({"format": runtime.CACHE_FORMAT,
                                 "choices": {key: {"head": kept, "ms": {"openvino": 1.0, "compiled": 1.0}}}}))
    runtime._pnet_choices.clear()
    p = Pipeline(Settings.from_env(env={}, device="cpu", backend="openvino", precision="fp32",
                                   runtime_cache=str(cache)))
    assert p.pnet_head == p.detector.pnet_head == kept
    assert isinstance(p.detector.pnet, pnet_head.SplitPNet) == (kept == "compiled")
    runtime._pnet_choices.clear()
