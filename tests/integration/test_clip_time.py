"""Annotated copies (``analyze --annotate``) and report clips (``--report``) play in the source's own
time. Both wrote every sampled frame once at the reader's rate: a GIF whose frames last 100 / 100 /
2000 / 100 ms (OpenCV's rate for it: its average, 1.75 frames/s) showed its first frame for the
first 0.57 s and its second and third at 0.57 s and 1.14 s, where they come at 0.1 and 0.2 s; a
phone video at 30 fps, then 10 (5.9 s) became a 3.0 s copy, its report clip out of step with the
chart beside it. Now each frame is held until the next frame's time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tests.support.clips import read_clip
from tests.support.vfr import retime_webm

from moodstream.worker.analyze import analyze_cmd
from moodstream.worker.annotate import MAX_HOLD_S
from moodstream.worker.webm import open_webm

LEVELS = (0, 80, 160, 240)  # frame i of a GIF: a flat grey of LEVELS[i]


def analyze(*args: str) -> list[dict]:
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def flat_gif(path: Path, delays_ms: list[int], numbers: bool = False) -> Path:
    """A GIF whose frame i is a flat grey of LEVELS[i] (or :func:`numbered`)."""
    frames = [Image.fromarray(numbered(i) if numbers else np.full((64, 96, 3), LEVELS[i], np.uint8))
              for i in range(len(delays_ms))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=delays_ms, loop=0)
    return path


def read_back(path: Path) -> tuple[float, list[np.ndarray]]:
    """A written clip's rate and its frames, read with OpenCV."""
    fps, _, frames = read_clip(path)
    assert frames, path
    return fps, frames


def shown_at(fps: float, frames: list[np.ndarray], t: float) -> np.ndarray:
    """The copy's frame at its time ``t`` (s)."""
    return frames[min(len(frames) - 1, int(t * fps))]


def grey(frame: np.ndarray) -> float:
    return float(frame.mean())


def numbered(i: int, size=(96, 64)) -> np.ndarray:
    """Frame ``i`` (under 100): its left half grey by its last digit, its right half by its first."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:, : w // 2], img[:, w // 2:] = 20 + 20 * (i % 10), 20 + 20 * (i // 10)
    return img


def number(frame: np.ndarray) -> int:
    """Which :func:`numbered` frame this is, read back from a lossy copy (the middle of each half)."""
    h, w = frame.shape[:2]
    left, right = frame[h // 4: -h // 4, w // 8: w * 3 // 8].mean(), frame[h // 4: -h // 4, w * 5 // 8: -w // 8].mean()
    return int(round((right - 20) / 20)) * 10 + int(round((left - 20) / 20))


def page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(block.group(1))


def test_a_gif_copy_shows_each_frame_for_its_delay(tmp_path):
    clip = flat_gif(tmp_path / "delays.gif", [100, 100, 2000, 100])
    out, page = tmp_path / "annotated", tmp_path / "report.html"
    records = analyze(str(clip), "--annotate", str(out), "--report", str(page))
    assert [r["timestamp_s"] for r in records] == [0.0, 0.1, 0.2, 2.2]
    for written in (out / "delays.mp4", tmp_path / "report-delays.webm"):
        fps, frames = read_back(written)
        assert len(frames) / fps == pytest.approx(2.3, abs=1.01 / fps), written  # the GIF's 2.3 s
        for t, level in ((0.05, 0), (0.15, 80), (0.25, 160), (1.2, 160), (2.15, 160), (2.25, 240)):
            assert grey(shown_at(fps, frames, t)) == pytest.approx(level, abs=12), (written, t)
    # the page's map from the clip's frames to the analysed frames: frame i first shown at clip_frames[i]
    (video,) = page_data(page)["videos"]
    fps, frames = read_back(tmp_path / "report-delays.webm")
    assert video["rate"] == pytest.approx(fps, abs=0.01)
    for i, first in enumerate(video["clip_frames"]):
        assert grey(frames[first]) == pytest.approx(LEVELS[i], abs=12)


TIMES_MS = [round(i * 1000 / 30) for i in range(45)] + [1500 + 100 * i for i in range(45)]  # 30 fps, then 10


def retimed(path: Path, times_ms: list[int]) -> Path:
    """A WebM whose frame i is :func:`numbered` and comes at ``times_ms[i]``."""
    writer = open_webm(path, 30.0, (96, 64))
    for i in range(len(times_ms)):
        writer.write(numbered(i))
    writer.release()
    retime_webm(path, times_ms)
    return path


@pytest.fixture
def vfr(tmp_path) -> Path:
    """A phone's clip: 1.5 s at 30 fps, then 4.5 s at 10; frame i :func:`numbered`."""
    return retimed(tmp_path / "vfr.webm", TIMES_MS)


def test_a_variable_frame_rate_copy_keeps_the_source_time(tmp_path, vfr):
    out, page = tmp_path / "annotated", tmp_path / "report.html"
    analyze(str(vfr), "--annotate", str(out), "--report", str(page))
    for written in (out / "vfr.mp4", tmp_path / "report-vfr.webm"):
        fps, frames = read_back(written)
        assert len(frames) / fps == pytest.approx(6.0, abs=0.11), written  # 5.9 s and its last frame's 0.1
        for t in (0.5, 1.0, 2.0, 3.55, 5.0, 5.95):  # the source frame at t: frame 45 at 1.5 s, then 10 a second
            k = round(t * 30) if t < 1.5 else 45 + int((t - 1.5) * 10 + 1e-6)
            assert number(shown_at(fps, frames, t)) == k, (written, t)


def test_fps_sampling_keeps_a_constant_rate_copy_as_it_was(tmp_path):
    """--fps 5 of a 3 s video at 30 fps: 15 frames at 5 frames/s, one each, 3 s as the source."""
    src = tmp_path / "thirty.webm"
    writer = open_webm(src, 30.0, (96, 64))
    for i in range(90):
        writer.write(numbered(i))
    writer.release()
    out, page = tmp_path / "annotated", tmp_path / "report.html"
    records = analyze(str(src), "--fps", "5", "--annotate", str(out), "--report", str(page))
    assert len(records) == 15
    for written in (out / "thirty.mp4", tmp_path / "report-thirty.webm"):
        fps, frames = read_back(written)
        assert fps == pytest.approx(5.0, abs=0.01) and len(frames) == 15, written
        assert [number(f) for f in frames] == [6 * k for k in range(15)]
    assert page_data(page)["videos"][0]["clip_frames"] == list(range(15))


def test_a_hostile_delay_is_held_for_a_bounded_time(tmp_path):
    """A GIF frame may ask for 655.35 s (its 16-bit delay in 1/100 s): held that long at 30 frames/s it
    was 19,660 copies of one frame in each clip. It is held MAX_HOLD_S, and the page maps the clip's
    frames to the analysed ones all the same."""
    delays = [100] * 40 + [655_350, 100]
    clip = flat_gif(tmp_path / "hostile.gif", delays, numbers=True)
    out, page = tmp_path / "annotated", tmp_path / "report.html"
    records = analyze(str(clip), "--annotate", str(out), "--report", str(page))
    assert records[-1]["timestamp_s"] == pytest.approx(4.0 + 655.35, abs=0.01)  # its own times: a timed GIF
    (video,) = page_data(page)["videos"]
    for written in (out / "hostile.mp4", tmp_path / "report-hostile.webm"):
        fps, frames = read_back(written)
        assert len(frames) / fps == pytest.approx(4.0 + MAX_HOLD_S, abs=1.01 / fps), written  # held, no longer
        assert [number(frames[first]) for first in video["clip_frames"]] == list(range(len(delays)))


def test_a_copy_of_frames_15_ms_apart_is_written(tmp_path):
    """A clip whose frames come 15 ms apart (its header says 30 frames/s): the copy's rate was
    1 / 15 ms, 66.667 frames/s, which OpenCV gives MPEG-4 as 66667/1000 (its time base takes at
    most 65535): the annotated copy could not be opened and the run failed."""
    times_ms = [15 * i for i in range(31)]
    src = retimed(tmp_path / "jitter.webm", times_ms)
    out, page = tmp_path / "annotated", tmp_path / "report.html"
    analyze(str(src), "--annotate", str(out), "--report", str(page))
    (video,) = page_data(page)["videos"]
    for written in (out / "jitter.mp4", tmp_path / "report-jitter.webm"):
        fps, frames = read_back(written)
        assert fps >= 1000 / 15 - 0.01 and len(frames) / fps == pytest.approx(0.465, abs=1.01 / fps), written
        for t in (0.01, 0.02, 0.25, 0.46):  # the source frame shown at t
            assert number(shown_at(fps, frames, t)) == int(t / 0.015 + 1e-6), (written, t)
    fps, frames = read_back(tmp_path / "report-jitter.webm")
    assert video["rate"] == pytest.approx(fps, abs=0.01)
    assert [number(frames[first]) for first in video["clip_frames"]] == list(range(len(times_ms)))


def test_a_first_gap_of_a_millisecond_does_not_set_the_copy_s_rate(tmp_path):
    """A phone's clip whose first two frames are 1 ms apart, then 30 frames/s: the copy's rate was
    taken from the first gap alone, 120 frames/s (the cap) for the whole copy, every frame written
    four times (four times the file and the encoding). Now the median of the first gaps: 30."""
    times_ms = [0, 1] + [1 + round(1000 * i / 30) for i in range(1, 45)]
    src = retimed(tmp_path / "dup.webm", times_ms)
    out, page = tmp_path / "annotated", tmp_path / "report.html"
    analyze(str(src), "--annotate", str(out), "--report", str(page))
    for written in (out / "dup.mp4", tmp_path / "report-dup.webm"):
        fps, frames = read_back(written)
        assert fps == pytest.approx(30, abs=0.01) and len(frames) == pytest.approx(46, abs=1), (written, fps)
        for t in (0.085, 0.518, 1.018, 1.45):  # the source frame shown at t (mid-frame: a copy frame rounds)
            assert number(shown_at(fps, frames, t)) == 1 + int((t - 0.001) * 30 + 1e-6), (written, t)
