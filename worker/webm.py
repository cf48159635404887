"""WebM video writing: VP8 in a WebM file, which browsers play (Chromium does not play the
``mp4v`` MPEG-4 Part 2 that :class:`worker.annotate.Annotator` writes for players).

OpenCV's FFmpeg backend here encodes VP8 (``VP80``) and VP9 (``VP90``) into WebM with
libvpx; VP8 is the default, about 4x faster to encode than VP9 at similar size on the
sample clip. OpenCV prints one line on opening, that the tag "is not supported with codec
id ... and format 'webm / WebM'" (a plain fprintf, whatever the log level): it is about the
container's tag table only, the file plays, so :func:`open_webm` leaves that one line out (anything
else written to stderr meanwhile, by any thread, is passed on once the writer is open).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2

from moodstream.shared.errors import ConfigError

CODECS = ("VP80", "VP90")
TAG_NOTICE = re.compile(rb"OpenCV: FFMPEG: tag 0x[0-9a-f]+/'VP[89]0' is not supported with codec id \d+ and format "
                        rb"'webm / WebM'\r?\n?")


@contextmanager
def _without_tag_notice():
    """File descriptor 2 goes to a temporary file meanwhile; what came is passed on, less the notice."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = TAG_NOTICE.sub(b"", held.read())
            if rest:
                os.write(2, rest)


def open_webm(path: str | Path, fps: float, size: tuple[int, int], codec: str = "VP80") -> cv2.VideoWriter:
    """An opened ``cv2.VideoWriter`` writing ``path`` (``.webm``) at ``fps`` frames/s, ``size`` = (W, H),
    BGR frames; ConfigError when this OpenCV cannot encode ``codec``."""
    if codec not in CODECS:
        raise ConfigError(f"WebM codec must be one of {', '.join(CODECS)}, got {codec!r}")
    with _without_tag_notice():
        # by its absolute path: FFmpeg reads a relative name's "run:" (run:1-clip.webm) as a protocol
        writer = cv2.VideoWriter(os.path.abspath(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), float(fps),
                                 (int(size[0]), int(size[1])))
    if not writer.isOpened():
        folder = Path(path).parent
        if Path(path).is_dir():
            raise ConfigError(f"cannot write {path}: a folder has that name")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write {path}: its folder is missing or not writable")
        raise ConfigError(f"this OpenCV cannot write {codec} WebM to {path} (needs its FFmpeg backend with "
                          "libvpx; opencv-python-headless from PyPI has it)")
    return writer
