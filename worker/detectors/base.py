"""What every detector shares, and all a detector module imports from this package:
the :class:`Detector` protocol, :class:`Face` (re-exported from the record) and
:func:`group_by_size`. It imports no detector, so the detectors and the registry
that lists them (:mod:`worker.detectors.registry`) never import each other.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

import numpy as np

from moodstream.shared.record import Face  # a detector fills box, score and landmarks

__all__ = ["Detector", "Face", "group_by_size"]


class Detector(Protocol):
    """Takes a list of RGB ``uint8`` frames ``(H, W, 3)`` and returns, for each
    frame, a list of :class:`Face` (empty when there is none, never None)."""

    name: str

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]: ...


def group_by_size(frames: list[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """Indices of frames grouped by (height, width), in input order."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, frame in enumerate(frames):
        groups[frame.shape[:2]].append(i)
    return groups
