"""moodstream: emotion recognition on faces in image and video streams.

The stable Python API (imported on first use, so ``import moodstream`` stays light)::

    from moodstream import Settings, Pipeline, Producer, ResultReader, analyze, VideoAnalyzer, VideoFrame

* :class:`Settings` (``moodstream.shared.settings``): every setting, from the
  environment (``MOODSTREAM_*``) or keyword arguments.
* :class:`Pipeline` (``moodstream.worker.pipeline``): detect + classify a batch of
  RGB frames in this process.
* :func:`analyze` (``moodstream.worker.analyze``): images, folders and videos in,
  one record per frame out, as ``moodstream analyze`` prints them.
* :class:`VideoAnalyzer` / :class:`VideoFrame` (``moodstream.worker.video``): frames a
  program already holds (its own camera loop), tracked and smoothed along their source as
  ``analyze`` does a video's.
* :class:`Producer` / :class:`ResultReader` (``moodstream.producer``): submit frame
  jobs to Redis, read the results stream.
"""

from __future__ import annotations

import os
import signal
import sys


def _stopped_while_loading(signum, frame) -> None:
    """Ctrl-C while the ``moodstream`` command loads (this package, click, before the command runs):
    nothing has started, so nothing is left to stop or say; the code a shell gives an interrupted
    command. Was a KeyboardInterrupt traceback."""
    os._exit(128 + signum)


# first, before the imports below, and only as the `moodstream` command (or `python -m moodstream`):
# a program importing the package keeps its KeyboardInterrupt. moodstream.cli gives it back once it is
# loaded. A SIGINT the process was started without (nohup, a script's background job) stays ignored.
if (os.path.basename(sys.argv[0] if sys.argv else "") == "moodstream" or sys.argv[:1] == ["-m"]) \
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _stopped_while_loading)

from typing import TYPE_CHECKING  # noqa: E402

from moodstream.shared.settings import MAX_PIXELS_CEILING  # noqa: E402

# OpenCV reads its own decoder limit once, when the library loads, so it cannot follow a Settings made
# later: this is the one place it is set, to the ceiling of max_pixels, before any module of the package
# imports cv2 (shared/media.py set it, after worker/analyze.py, producer/live.py and others had loaded cv2:
# OpenCV kept its default, 2**30 pixels). Each decode's own max_pixels is checked on the header
# (shared.media.decode_image); OpenCV's limit backs that up for any cv2 decode in the process.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS_CEILING))

__version__ = "0.1.0"
__all__ = ["Settings", "Pipeline", "Producer", "ResultReader", "analyze", "VideoAnalyzer", "VideoFrame", "__version__"]

_API = {
    "Settings": "moodstream.shared.settings",
    "Pipeline": "moodstream.worker.pipeline",
    "analyze": "moodstream.worker.analyze",
    "Producer": "moodstream.producer.client",
    "ResultReader": "moodstream.producer.results",
    "VideoAnalyzer": "moodstream.worker.video",
    "VideoFrame": "moodstream.worker.video",
}

if TYPE_CHECKING:
    from moodstream.producer.client import Producer
    from moodstream.producer.results import ResultReader
    from moodstream.shared.settings import Settings
    from moodstream.worker.analyze import analyze
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.video import VideoAnalyzer, VideoFrame


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'moodstream' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
