"""An audit of the day's features (frames' own times, cut videos, animated GIFs, stdin spooling, the
track stage's parts), each defect reproduced here first.

A WebM / Matroska file announces its length by its container's duration (OpenCV makes a frame
count of it): every track's, and from its first timestamp, not from 0. A whole recording whose
frames start at 10 s (a cut of a live stream, copied with its times) or whose sound goes on after
its last frame was called ``truncated``, and ``analyze`` exited 1 on a good file. And a WebM with
no duration in its header (what browsers' MediaRecorder writes, variable frame rate by nature) had
its frames' own times thrown away: index / nominal rate again."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from tests.support.vfr import DURATION, elements, retime_webm

from moodstream.shared.containers import container_whole
from moodstream.shared.media import iter_video
from moodstream.worker.webm import open_webm

FPS = 30


def webm(path, frames: int):
    writer = open_webm(path, FPS, (160, 120))
    for i in range(frames):
        img = np.full((120, 160, 3), (i * 2) % 255, np.uint8)
        cv2.putText(img, str(i), (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    return path


def set_duration(path, ms: float | None) -> None:
    """The Segment's duration set to ``ms``, or taken out (a Void element in its place)."""
    b = bytearray(path.read_bytes())
    for e, d, s in list(elements(bytes(b))):
        if e == DURATION:
            if ms is None:
                b[d - 3:s] = bytes([0xEC, 0x80 | (s - d + 1)]) + b"\0" * (s - d + 1)
            else:
                b[d:s] = struct.pack(">d" if s - d == 8 else ">f", float(ms))
    path.write_bytes(bytes(b))


def errors(path) -> list[str]:
    return [it.error.reason for it in iter_video(str(path)) if it.error is not None]


def test_a_whole_webm_whose_times_start_late_is_not_truncated(tmp_path):
    clip = webm(tmp_path / "late.webm", 60)
    retime_webm(clip, [10_000 + round(i * 1000 / FPS) for i in range(60)])  # 10.0 .. 11.97 s; duration 12 s
    items = list(iter_video(str(clip)))
    assert [it.error.reason for it in items if it.error] == [], items[-1].error
    assert len(items) == 60 and items[-1].timestamp_s == pytest.approx(59 / FPS, abs=2e-3)
    cut = tmp_path / "late-cut.webm"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    assert errors(cut) == ["truncated"]  # a cut one still is


def test_a_whole_webm_that_lasts_longer_than_its_video_is_not_truncated(tmp_path):
    """Its sound (or its last frame, shown for long) goes on 3 s after the last frame's time."""
    clip = webm(tmp_path / "sound.webm", 60)
    set_duration(clip, 5000.0)
    assert container_whole(str(clip)) and errors(clip) == []
    # a download that stopped with its file already at full size (the rest zeros) is still cut
    zeros = tmp_path / "zeros.webm"
    data = bytearray(webm(tmp_path / "long.webm", 150).read_bytes())
    data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
    zeros.write_bytes(bytes(data))
    assert not container_whole(str(zeros)) and errors(zeros) == ["truncated"]


def test_a_webm_without_a_duration_keeps_its_frames_times(tmp_path):
    """A browser's recording: variable frame rate, no duration (OpenCV: no frame count)."""
    times = [round(i * 1000 / FPS) for i in range(45)] + [1500 + 100 * i for i in range(45)]
    clip = webm(tmp_path / "recorded.webm", len(times))
    retime_webm(clip, times)
    set_duration(clip, None)
    items = list(iter_video(str(clip)))
    assert all(it.error is None for it in items)
    assert [it.timestamp_s for it in items] == pytest.approx([t / 1000 for t in times], abs=1e-3)
