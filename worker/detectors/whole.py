"""The ``none`` detector: each image is one face, the whole of it (a folder of face crops, such as
FER+'s 48x48 images, where MTCNN finds no face in about one of six: they are cut too tight)."""

from __future__ import annotations

import numpy as np

from moodstream.worker.detectors.base import Face


class WholeImageDetector:
    """One face per frame: its whole extent, score 1 (no landmarks). The crop framing for ``none``
    (:data:`worker.framing.FRAMING`) takes the image as it is: a square image is the crop."""

    name = "none"

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        return [[Face((0.0, 0.0, float(f.shape[1]), float(f.shape[0])), 1.0)] for f in frames]
