"""Reading a written clip back (an annotated copy, a report's WebM) with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_clip(path: Path) -> tuple[float, tuple[int, int], list[np.ndarray]]:
    """A clip's rate, (W, H) and its BGR frames."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return fps, size, frames
