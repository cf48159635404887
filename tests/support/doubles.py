"""Test doubles for transport tests. NOT face detectors: a test that claims
inference works must use the real Pipeline (see test_end_to_end.py)."""

from __future__ import annotations

import os
import time

import numpy as np

from moodstream.worker.detectors import Face


class FixedFaceDetectorTestDouble:
    """TEST DOUBLE. Reports one fixed box (the middle half of every frame),
    after ``delay_s`` per batch to stand in for inference time. The real
    emotion classifier still runs on that crop."""

    name = "fixed-face-test-double"

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.batches: list[int] = []  # size of every batch seen

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        self.batches.append(len(frames))
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for f in frames:
            h, w = f.shape[:2]
            out.append([Face((w * 0.25, h * 0.25, w * 0.75, h * 0.75), 0.99,
                             [(w * 0.4, h * 0.4), (w * 0.6, h * 0.4), (w * 0.5, h * 0.5),
                              (w * 0.42, h * 0.62), (w * 0.58, h * 0.62)])])
        return out


class ExplodingDetectorTestDouble(FixedFaceDetectorTestDouble):
    """TEST DOUBLE. Like the fixed one, but raises on any batch that holds an
    all-black frame: drives the worker's batch-failure path."""

    name = "exploding-test-double"

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        if any(int(f.max()) == 0 for f in frames):
            raise RuntimeError("test double: refusing an all-black frame")
        return super().detect(frames)


class CrashingDetectorTestDouble(FixedFaceDetectorTestDouble):
    """TEST DOUBLE. Like the fixed one, but the whole process dies (os._exit, as a
    segfault or the OOM killer would end it) on a batch holding an all-black frame:
    drives poison detection across worker restarts."""

    name = "crashing-test-double"

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        if any(int(f.max()) == 0 for f in frames):
            os._exit(70)
        return super().detect(frames)
