"""WebM video writing: VP8 in a WebM file, which browsers play (Chromium does not play the
``mp4v`` MPEG-4 Part 2 that :class:`worker.annotate.Annotator` writes for players).

OpenCV's FFmpeg backend here encodes VP8 (``VP80``) and VP9 (``VP90``) into WebM with
libvpx; VP8 is the default, about 4x faster to encode than VP9 at similar size on the
sample clip. OpenCV prints one line on opening, that the tag "is not supported with codec
id ... and format 'webm / WebM'": it is about the container's tag table only; the file plays.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from moodstream.shared.errors import ConfigError

CODECS = ("VP80", "VP90")


def open_webm(path: str | Path, fps: float, size: tuple[int, int], codec: str = "VP80") -> cv2.VideoWriter:
    """An opened ``cv2.VideoWriter`` writing ``path`` (``.webm``) at ``fps`` frames/s, ``size`` = (W, H),
    BGR frames; ConfigError when this OpenCV cannot encode ``codec``."""
    if codec not in CODECS:
        raise ConfigError(f"WebM codec must be one of {', '.join(CODECS)}, got {codec!r}")
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), float(fps),
                             (int(size[0]), int(size[1])))
    if not writer.isOpened():
        raise ConfigError(f"this OpenCV cannot write {codec} WebM to {path} (needs its FFmpeg backend with "
                          "libvpx; opencv-python-headless from PyPI has it)")
    return writer
