"""What names inputs, as the Python API takes them: ``analyze(paths)`` (in process) and
``Producer.produce(paths)`` (to the service) check their paths and sampling alike, at the call, with a
TypeError or ValueError that says what to pass."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np

from moodstream.shared.settings import is_number, is_whole
from moodstream.shared.table import printable


def input_specs(paths, who: str) -> list[str]:
    """``paths`` as the command line's arguments: one path (str or Path) or camera index, or an iterable of
    them; a TypeError for what names no input (image bytes were iterated, each byte a camera index; a
    frame's rows, an open file's lines were taken for paths; one path as a str was iterated, its first
    character "/" walked as a folder)."""
    if isinstance(paths, (bytes, bytearray, memoryview)):
        raise TypeError(f"{who} takes paths (a file, folder, video, camera index or URL, or a list of them), not "
                        f"the image's bytes ({len(paths)} bytes): decode them (cv2.imdecode, then BGR to RGB) and "
                        "pass the frame to Pipeline.process([frame]) or VideoAnalyzer, or write them to a file")
    if isinstance(paths, np.ndarray):
        raise TypeError(f"{who} takes paths, not a frame ({paths.dtype} {paths.shape}): frames in memory go to "
                        "Pipeline.process([frame]) or VideoAnalyzer")
    if hasattr(paths, "read"):
        raise TypeError(f"{who} takes paths, not an open file ({type(paths).__name__}): pass its path")
    if isinstance(paths, (str, os.PathLike)) or _camera_index(paths):
        paths = [paths]
    elif not isinstance(paths, Iterable):
        raise TypeError(f"{who} takes a path (str or Path), a camera index, or an iterable of them, got {paths!r}")
    specs = []
    for k, p in enumerate(paths):
        if not (isinstance(p, (str, os.PathLike)) or _camera_index(p)):
            raise TypeError(f"{who} takes paths (str or Path) or camera indexes: paths[{k}] is "
                            f"{type(p).__name__} ({printable(repr(p))[:60]})")
        specs.append(str(p) if is_whole(p) else os.fspath(p))
    return specs


def check_sampling(every: object, fps: object, max_frames: object, every_name: str = "every") -> None:
    """A ValueError for sampling that means nothing: ``every`` a whole number from 1, ``fps`` finite above 0
    or None, ``max_frames`` a whole number from 1 or None, not both ``every`` (other than 1) and ``fps``."""
    if not is_whole(every) or every < 1:
        raise ValueError(f"{every_name} must be a whole number from 1 (every N-th frame of a video), got {every!r}")
    if fps is not None and (not is_number(fps) or not math.isfinite(fps) or fps <= 0):
        raise ValueError(f"fps must be a finite number above 0 (frames per second of video) or None, got {fps!r}")
    if max_frames is not None and (not is_whole(max_frames) or max_frames < 1):
        raise ValueError(f"max_frames must be a whole number from 1 (frames of each video) or None, got "
                         f"{max_frames!r}")
    if every != 1 and fps is not None:
        raise ValueError(f"use either {every_name} or fps, not both")


def _camera_index(value) -> bool:
    return is_whole(value) and value >= 0
