"""A camera piped in: `rpicam-vid -t 0 --codec mjpeg -o - | moodstream analyze -` (a Raspberry Pi's camera,
which OpenCV cannot open itself), or `--codec h264`, or `ffmpeg ... -f mpegts -`. A video on stdin was
copied to a temporary file to its end before a frame was read (FFmpeg seeks in an mp4): a pipe that does
not end gave nothing, ever, while it filled the disk. Motion-JPEG, raw H.264 / H.265 and MPEG transport
streams need no seeking: their frames are read as they come now (FFmpeg reads them through a named pipe
fed from stdin); an mp4 on stdin is still copied first.

Each test writes into a real OS pipe from a thread and holds it open: the first frames must come while
the writer is still there."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from moodstream.shared.media import piped_items
from tests.support.heif import annex_b, hevc_picture
from tests.support.mjpeg import street_jpegs

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"
WAIT_S = 60.0  # a bound for a hang, never reached when it works


class Camera:
    """A writer on a real pipe: ``first`` chunks at once, then it holds the pipe open until :meth:`go`,
    then ``rest`` and end of stream (or, with ``rest`` None, more chunks until the reader hangs up)."""

    def __init__(self, first: list[bytes], rest: list[bytes] | None):
        read_fd, write_fd = os.pipe()
        self.reader, self.writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
        self.first, self.rest, self.released = first, rest, threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for chunk in self.first:
                self.writer.write(chunk)
                self.writer.flush()
            self.released.wait(WAIT_S)
            for chunk in self.rest if self.rest is not None else iter(lambda: self.first[-1], None):
                self.writer.write(chunk)
                self.writer.flush()
        except (BrokenPipeError, ValueError):  # the reader hung up
            pass
        finally:
            try:
                self.writer.close()
            except OSError:
                pass
            self.done.set()

    def go(self):
        self.released.set()


def first_frames_while_open(camera: Camera, want: int, **kwargs) -> tuple[list, list]:
    """The items read before the camera is let go (``want`` of them, or a hang), then all the rest."""
    got, early = [], []
    reading = iter(piped_items("-", camera.reader, **kwargs))
    finished = threading.Event()

    def consume():
        for item in reading:
            got.append(item)
        finished.set()

    threading.Thread(target=consume, daemon=True).start()
    deadline = time.monotonic() + WAIT_S
    while len(got) < want and time.monotonic() < deadline and not finished.is_set():
        time.sleep(0.05)
    early = list(got)
    camera.go()
    assert finished.wait(WAIT_S), "the read did not end after the pipe did"
    return early, got


def test_a_motion_jpeg_camera_pipe_gives_frames_as_they_come():
    frames = street_jpegs(12)
    camera = Camera(frames[:8], frames[8:])
    early, items = first_frames_while_open(camera, 4)
    assert len(early) >= 4, "no frame came while the pipe was open: it was copied to its end first"
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(12)], items[-1:]
    assert all(i.source == "-" and i.image.shape == (540, 960, 3) for i in items)
    assert [i.timestamp_s for i in items] == pytest.approx([k * 0.04 for k in range(12)])  # FFmpeg's 25 fps


def test_a_raw_hevc_camera_pipe_gives_frames_as_they_come():
    pytest.importorskip("pillow_heif", reason="pillow-heif (its x265 encoder writes the HEVC here)")
    unit = annex_b(*hevc_picture((960, 540), quality=80))
    camera = Camera([unit] * 8, [unit] * 4)
    early, items = first_frames_while_open(camera, 4)
    assert len(early) >= 4, "no frame came while the pipe was open: it was copied to its end first"
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(12)], items[-1:]


def test_a_pipe_that_never_ends_stops_at_max_frames_and_lets_the_writer_go():
    camera = Camera(street_jpegs(6), None)  # then the last picture again and again, until the reader hangs up
    camera.go()
    items = list(piped_items("-", camera.reader, max_frames=5))
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(5)]
    camera.reader.close()
    assert camera.done.wait(WAIT_S), "the writer was never let go"


def test_an_mp4_on_stdin_is_still_read_whole():
    """An mp4's index may come at its end: it is copied first, as before, and read as the file is."""
    camera = Camera([CLIP.read_bytes()], [])
    camera.go()
    items = list(piped_items("-", camera.reader))
    assert len(items) == 60 and all(i.error is None for i in items)


def test_a_pipe_ffmpeg_cannot_read_is_one_error_not_a_hang():
    """Bytes that look like an MPEG transport stream (a sync byte every 188) and are noise: FFmpeg gave up
    on them, and OpenCV went on to its other readers, one of which opened the named pipe again, after the
    thread feeding it had finished: an open that waits for a writer, forever (analyze hung, and ignored
    SIGTERM). OpenCV is held to FFmpeg for the pipe."""
    import random

    noise = random.Random(7)
    data = b"".join(b"\x47" + noise.randbytes(187) for _ in range(2000))
    camera = Camera([data], [])
    camera.go()
    got, finished = [], threading.Event()

    def consume():
        got.extend(piped_items("-", camera.reader))
        finished.set()

    threading.Thread(target=consume, daemon=True).start()
    assert finished.wait(WAIT_S), "the read hung"
    assert len(got) == 1 and got[0].error is not None and got[0].error.reason == "unreadable"
    assert "moodstream-stdin" not in str(got[0].error)  # stdin named, not our pipe
