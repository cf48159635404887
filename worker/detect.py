"""Face detectors behind one interface: the one place that lists them.

A detector takes a list of RGB ``uint8`` frames ``(H, W, 3)`` and returns, for
each frame, a list of :class:`Face` (empty when there is none, never None).
Each detector lives in its own module, imported only when built, so this
module (and the ONNX backend) needs no torch:

======================  ==========================  =======
detector                module                      torch
======================  ==========================  =======
MTCNN, reference        worker/mtcnn_reference.py   yes (facenet-pytorch)
MTCNN, batched          worker/mtcnn_batched.py     yes (GPU-resident)
MTCNN, ONNX / OpenVINO  worker/onnx_mtcnn.py        no
Haar cascade            worker/haar.py              no
======================  ==========================  =======
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

import numpy as np

from moodstream.shared.record import Face  # a detector fills box, score and landmarks
from moodstream.shared.settings import Settings

__all__ = ["Detector", "Face", "build_detector", "group_by_size"]


class Detector(Protocol):
    name: str

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]: ...


def group_by_size(frames: list[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """Indices of frames grouped by (height, width), in input order."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, frame in enumerate(frames):
        groups[frame.shape[:2]].append(i)
    return groups


def build_detector(settings: Settings, backend: str = "torch", threads: int = 1) -> Detector:
    """The detector ``settings`` name, on ``backend`` ("torch", "onnx" or "openvino"; Haar is OpenCV on any)."""
    if settings.detector == "haar":
        from moodstream.worker.haar import HaarDetector

        return HaarDetector(settings)
    if backend in ("onnx", "openvino"):  # the shipped ONNX files on ONNX Runtime or OpenVINO
        from moodstream.worker.onnx_mtcnn import OnnxMTCNNDetector

        return OnnxMTCNNDetector(min_face_px=settings.min_face_px, face_score_min=settings.face_score_min,
                                 threads=threads, runtime=backend,
                                 precision="fp32" if settings.precision == "auto" else settings.precision)
    if settings.mtcnn_impl == "batched":
        from moodstream.worker.mtcnn_batched import BatchedMTCNNDetector

        return BatchedMTCNNDetector(settings)
    from moodstream.worker.mtcnn_reference import MTCNNDetector

    return MTCNNDetector(settings)
