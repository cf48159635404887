"""The one place that lists the detectors and builds the one the settings name.

Each detector module is imported only when built (torch-free until a torch
detector is asked for); the detectors import :mod:`.base`, never this module.
"""

from __future__ import annotations

from moodstream.shared.settings import Settings
from moodstream.worker.detectors.base import Detector

__all__ = ["build_detector", "resolve_mtcnn_impl"]


def resolve_mtcnn_impl(mtcnn_impl: str, device: str) -> str:
    """The torch MTCNN to run: ``auto`` is the batched, GPU-resident one on CUDA and
    facenet-pytorch's (reference) on CPU; an explicit choice as given."""
    if mtcnn_impl == "auto":
        return "batched" if device.startswith("cuda") else "reference"
    return mtcnn_impl


def build_detector(settings: Settings, backend: str = "torch", threads: int = 1, device: str = "cpu",
                   precisions: dict[str, str] | None = None, screened: tuple[str, ...] = (),
                   compiled_first: tuple[str, ...] = ()) -> Detector:
    """The detector ``settings`` name, on ``backend`` ("torch", "onnx" or "openvino"; Haar is
    OpenCV on any) and, for torch, on ``device`` (already resolved: "cpu", "cuda" or "cuda:N").
    ``precisions``: per net, :func:`worker.runtime.net_precisions` (default: ``settings.precision``
    for all three MTCNN nets, fp32 for auto); ``screened``: :func:`worker.runtime.screened_nets`;
    ``compiled_first``: :func:`worker.runtime.first_layers_here` (default: none, the whole nets on ``backend``)."""
    if settings.detector == "none":  # the whole image is the face (face crops)
        from moodstream.worker.detectors.whole import WholeImageDetector

        return WholeImageDetector()
    if settings.detector == "haar":
        from moodstream.worker.detectors.haar import HaarDetector

        return HaarDetector(settings)
    if backend in ("onnx", "openvino"):  # the shipped ONNX files on ONNX Runtime or OpenVINO
        from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector

        return OnnxMTCNNDetector(min_face_px=settings.min_face_px, face_score_min=settings.face_score_min,
                                 threads=threads, runtime=backend,
                                 precision=precisions if precisions is not None else
                                 "fp32" if settings.precision == "auto" else settings.precision, screened=screened,
                                 compiled_first=compiled_first)
    if resolve_mtcnn_impl(settings.mtcnn_impl, device) == "batched":
        from moodstream.worker.detectors.mtcnn_batched import BatchedMTCNNDetector

        return BatchedMTCNNDetector(settings, device)
    from moodstream.worker.detectors.mtcnn_reference import MTCNNDetector

    return MTCNNDetector(settings, device)
