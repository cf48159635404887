"""Pixel arrays as OpenCV's decoders and readers give them -> RGB uint8: one conversion for the
decoding of images (:mod:`shared.media`) and the shots of a video's frames (:mod:`shared.shots`)."""

from __future__ import annotations

import cv2
import numpy as np

from moodstream.shared.errors import BadInputError


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded array (BGR/BGRA/gray, 8/16-bit/float) -> contiguous RGB uint8."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img.astype(np.float32) * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise BadInputError("unsupported", f"{channels}-channel image")
