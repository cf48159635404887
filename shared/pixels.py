"""Pixel arrays as OpenCV's decoders and readers give them -> RGB uint8: one conversion for the
decoding of images (:mod:`shared.media`) and the shots of a video's frames (:mod:`shared.shots`);
and the one check of a frame a program passes in (:func:`check_rgb`)."""

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


def check_rgb(frame: np.ndarray, name: str = "a frame", said: str = "") -> None:
    """``frame`` is RGB uint8 ``(H, W, 3)`` with pixels, or :class:`BadInputError` ``unsupported`` (gray,
    RGBA, float, uint16...; with how to convert it) or ``empty``; ``name`` says which frame, ``said`` is
    added to the message. What :class:`worker.pipeline.Pipeline` takes and a producer encodes."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise BadInputError("unsupported", f"{name} must be RGB uint8 (H, W, 3), got {frame.dtype} {tuple(frame.shape)} "
                                           "(gray or RGBA: cv2.cvtColor to RGB; float in 0..1: "
                                           f"(frame * 255).round().astype(np.uint8)){said}")
    if frame.size == 0:
        raise BadInputError("empty", f"{name} is {frame.shape[1]} x {frame.shape[0]} pixels: no picture{said}")
