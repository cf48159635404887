"""OpenCV's bundled frontal-face Haar cascade: the classical baseline (no torch)."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from moodstream.shared.errors import ModelError
from moodstream.shared.settings import Settings
from moodstream.worker.detectors.base import Face


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade (the classical baseline)."""

    name = "haar"

    def __init__(self, settings: Settings, scale_factor: float = 1.1, min_neighbors: int = 5):
        self.path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._local = threading.local()  # a cascade per thread (below)
        if self.cascade.empty():
            raise ModelError(f"OpenCV's Haar cascade is missing at {self.path}; reinstall opencv-python-headless<5")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = max(1, settings.min_face_px)

    @property
    def cascade(self) -> cv2.CascadeClassifier:
        """This thread's cascade: one shared by threads gave wrong boxes and OpenCV errors ('0 <= scaleIdx'),
        as detectMultiScale keeps its scales in the object (loading one: about 20 ms, once a thread)."""
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(self.path)
        return cascade

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        out = []
        cascade = self.cascade
        for frame in frames:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            rects, _, weights = cascade.detectMultiScale3(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size), outputRejectLevels=True)
            faces = []
            for (x, y, w, h), weight in zip(rects, np.ravel(weights) if len(rects) else []):
                score = float(1.0 / (1.0 + np.exp(-float(weight))))  # level weight -> (0, 1)
                faces.append(Face((float(x), float(y), float(x + w), float(y + h)), score))
            out.append(faces)
        return out
