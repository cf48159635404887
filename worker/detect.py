"""Face detectors behind one interface.

A detector takes a list of RGB ``uint8`` frames ``(H, W, 3)`` and returns, for
each frame, a list of :class:`Face` (empty when there is none, never None).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

from shared.models import resolve_device
from shared.settings import Settings


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    score: float  # detector confidence in [0, 1]
    landmarks: list[tuple[float, float]] | None = None  # eyes, nose, mouth corners (MTCNN only)

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
                "landmarks": None if self.landmarks is None
                else [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]}


class Detector(Protocol):
    name: str

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]: ...


def group_by_size(frames: list[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """Indices of frames grouped by (height, width), in input order."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, frame in enumerate(frames):
        groups[frame.shape[:2]].append(i)
    return groups


class MTCNNDetector:
    """facenet-pytorch's MTCNN (weights ship inside that package), run on
    batches of equal-sized frames."""

    name = "mtcnn"

    def __init__(self, settings: Settings, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709):
        from facenet_pytorch import MTCNN

        self.device = resolve_device(settings.device)
        self.min_score = settings.face_score_min
        self.min_face_px = settings.min_face_px
        self.mtcnn = MTCNN(keep_all=True, min_face_size=settings.min_face_px, thresholds=list(thresholds),
                           factor=factor, post_process=False, select_largest=False, device=self.device)
        self.mtcnn.eval()

    @torch.inference_mode()
    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        out: list[list[Face]] = [[] for _ in frames]
        for (h, w), idx in group_by_size(frames).items():
            if min(h, w) < max(12, self.min_face_px):
                continue  # no face fits; facenet-pytorch's detect_face fails on an empty image pyramid
            batch = np.stack([frames[i] for i in idx])  # (B, H, W, 3) uint8 RGB
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            for j, i in enumerate(idx):
                if boxes[j] is None:
                    continue
                for box, prob, pts in zip(boxes[j], probs[j], points[j]):
                    if prob >= self.min_score:
                        out[i].append(Face(tuple(float(v) for v in box), float(prob),
                                           [(float(x), float(y)) for x, y in pts]))
        return out


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade (the classical baseline)."""

    name = "haar"

    def __init__(self, settings: Settings, scale_factor: float = 1.1, min_neighbors: int = 5):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            from shared.errors import ModelError
            raise ModelError(f"OpenCV's Haar cascade is missing at {path}; reinstall opencv-python-headless<5")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = max(1, settings.min_face_px)

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        out = []
        for frame in frames:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            rects, _, weights = self.cascade.detectMultiScale3(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size), outputRejectLevels=True)
            faces = []
            for (x, y, w, h), weight in zip(rects, np.ravel(weights) if len(rects) else []):
                score = float(1.0 / (1.0 + np.exp(-float(weight))))  # level weight -> (0, 1)
                faces.append(Face((float(x), float(y), float(x + w), float(y + h)), score))
            out.append(faces)
        return out


def build_detector(settings: Settings) -> Detector:
    if settings.detector == "haar":
        return HaarDetector(settings)
    if settings.mtcnn_impl == "batched":
        from worker.mtcnn_batched import BatchedMTCNNDetector  # it imports this module

        return BatchedMTCNNDetector(settings)
    return MTCNNDetector(settings)
