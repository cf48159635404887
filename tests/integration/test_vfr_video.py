"""Phones record at a variable frame rate: a frame's time is its timestamp, not its index over the
nominal rate. Before, every frame got index / fps: in a clip whose second half runs at 10 fps
where the header says 30, the last frame (5.9 s) was put at 3.0 s, and every episode and track
time after the change of rate with it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tests.support.vfr import retime_webm

from moodstream.shared.media import iter_video
from moodstream.worker.webm import open_webm

TIMES_MS = [round(i * 1000 / 30) for i in range(45)] + [1500 + 100 * i for i in range(45)]  # 30 fps, then 10


@pytest.fixture
def vfr(tmp_path):
    path = tmp_path / "vfr.webm"
    writer = open_webm(path, 30.0, (160, 120))
    for i in range(len(TIMES_MS)):
        img = np.full((120, 160, 3), (i * 2) % 255, np.uint8)
        cv2.putText(img, str(i), (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    retime_webm(path, TIMES_MS)
    return path


def test_frames_carry_their_own_times(vfr):
    items = list(iter_video(str(vfr)))
    assert all(it.error is None for it in items)  # not taken for a cut file either
    assert [it.frame for it in items] == list(range(len(TIMES_MS)))
    assert [it.timestamp_s for it in items] == pytest.approx([t / 1000 for t in TIMES_MS], abs=1e-3)


def test_sampling_by_fps_follows_the_times(vfr):
    """--fps 5: a frame every 0.2 s of video, so the 10 fps half gives one in two of its frames."""
    times = [it.timestamp_s for it in iter_video(str(vfr), fps=5)]
    assert times == pytest.approx([0.2 * k for k in range(len(times))], abs=0.034)
    assert len(times) == 30 and times[-1] == pytest.approx(5.8, abs=1e-3)  # 5.9 is 0.1 s after 5.8


def test_one_frame_out_of_order_costs_that_frame_only(tmp_path):
    """A frame whose timestamp does not increase (a muxer's glitch, two frames on one time) made
    every later frame of the file use index / nominal rate: in this clip, whose second half runs at
    10 fps, the last frame was put at 3.0 s instead of 5.9 s. Now that frame gets a time just after
    the one before it and the frames after it keep their own."""
    times = list(TIMES_MS)
    times[20] = times[19]  # frame 20 on frame 19's time
    path = tmp_path / "glitch.webm"
    writer = open_webm(path, 30.0, (160, 120))
    for i in range(len(times)):
        writer.write(np.full((120, 160, 3), (i * 2) % 255, np.uint8))
    writer.release()
    retime_webm(path, times)
    got = [it.timestamp_s for it in iter_video(str(path))]
    assert len(got) == len(times)
    assert all(b > a for a, b in zip(got, got[1:]))  # increasing, always
    assert times[19] / 1000 < got[20] < times[21] / 1000
    assert got[:20] + got[21:] == pytest.approx([t / 1000 for t in times[:20] + times[21:]], abs=1e-3)
