"""``analyze --report`` on long and large videos: the page's clip and the report's memory stay in
proportion to what the page shows.

The clip was the video's own size at OpenCV's VP8 bitrate (1.5 bits a pixel a second, which VP8
never reaches, so it encodes near-lossless): 139 KB and 0.25 s of encoding a 1080p frame (13 GB
for an hour at 25 frames/s), for a page that shows it at most 640 pixels wide. It is now scaled
to ``clip_max_px`` on its longer side (960 by default; boxes and labels drawn at that size).
And the report kept every face's probabilities of every frame (about 380 bytes a face a frame:
120 MiB for an hour of three faces at 30 frames/s) for a chart of at most ``MAX_POINTS`` points
a track: a track's chart now holds at most twice that many buckets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from tests.support.clips import read_clip
from tests.support.memory import Kept

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.report import MAX_POINTS, Report

FPS = 30.0


def _face(track: int, x: float, y: float, side: float, p: np.ndarray, emotion: str = "happiness") -> Face:
    return Face((x, y, x + side, y + side), 0.99, emotion=emotion,
                probabilities={k: float(v) for k, v in zip(LABELS, p)}, track_id=track)


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1))


def _clip(page: Path) -> tuple[tuple[int, int], list[np.ndarray]]:
    (webm,) = page.parent.glob(f"{page.stem}-*.webm")
    _, size, frames = read_clip(webm)
    return size, frames


def _report_of_1080p(page: Path, **kwargs) -> None:
    """Three grey 1080p frames, a happy face (yellow box) at x 800-1100, y 400-700."""
    report = Report(page, **kwargs)
    p = np.full(len(LABELS), 0.01)
    p[LABELS.index("happiness")] = 0.93
    for i in range(3):
        record = FrameResult(source="talk.mp4", frame=i, timestamp_s=i / FPS, size=[1920, 1080],
                             faces=[_face(0, 800.0, 400.0, 300.0, p)])
        report.add(record, np.full((1080, 1920, 3), 128, np.uint8), True, FPS)
    report.close()


def test_a_1080p_clip_is_scaled_to_the_pages_size_with_its_boxes(tmp_path):
    page = tmp_path / "r.html"
    _report_of_1080p(page)
    (w, h), frames = _clip(page)
    assert (w, h) == (960, 540), "the clip keeps the video's shape, its longer side at 960"
    frame = frames[1].astype(int)
    # the box's left edge is at x 400 of the scaled clip (800 of the video), drawn in happiness's
    # yellow (RGB 255, 200, 0: BGR blue low, red high); x 800 is now grey, inside the box
    edge, inside = frame[250:330, 399:402].reshape(-1, 3).mean(0), frame[250:330, 799:802].reshape(-1, 3).mean(0)
    assert edge[2] > 200 and edge[0] < 80, edge
    assert abs(inside - 128).max() < 12, inside
    data = _page_data(page)["videos"][0]
    assert data["size"] == [1920, 1080], "the page names the video's own size"


def test_a_clip_can_keep_the_videos_own_size(tmp_path):
    page = tmp_path / "r.html"
    _report_of_1080p(page, clip_max_px=0)
    assert _clip(page)[0] == (1920, 1080)


def test_a_small_video_keeps_its_size(tmp_path):
    page = tmp_path / "r.html"
    report = Report(page)
    for i in range(3):
        report.add(FrameResult(source="cam.mp4", frame=i, timestamp_s=i / FPS, size=[640, 360], faces=[]),
                   np.full((360, 640, 3), 90, np.uint8), True, FPS)
    report.close()
    assert _clip(page)[0] == (640, 360)


def _long_run(report: Report, first: int, last: int, tracks: int = 5) -> None:
    rng = np.random.default_rng(first)
    image = np.zeros((16, 16, 3), np.uint8)
    for i in range(first, last):
        faces = [_face(k, 1.0, 1.0, 8.0, rng.dirichlet(np.ones(len(LABELS)))) for k in range(tracks)]
        report.add(FrameResult(source="day.mp4", frame=i, timestamp_s=i / FPS, size=[16, 16], faces=faces),
                   image, True, FPS)


def test_the_reports_memory_does_not_grow_with_each_faces_frames(tmp_path):
    """5 faces a frame: 6,000 frames held 11.5 MiB more than the first 2,000 (about 380 bytes a face a
    frame); now a track's chart is bounded, and what grows is a frame's time and clip frame (the page's)
    and the summary's median sample up to its bound (MEDIAN_KEEP rows a track)."""
    report = Report(tmp_path / "r.html")
    _long_run(report, 0, 2 * MAX_POINTS + 400)  # every track past its bound
    with Kept(collect=False) as kept:
        _long_run(report, 2 * MAX_POINTS + 400, 2 * MAX_POINTS + 6400)
    grown = kept.grown
    print(f"6,000 frames x 5 faces: {grown / 2**20:.2f} MiB more")
    assert grown < 2 * 2**20, f"{grown / 2**20:.2f} MiB for 6,000 frames of 5 faces; {kept.where()}"


def test_a_long_tracks_chart_averages_its_points_over_the_whole_span(tmp_path):
    page = tmp_path / "r.html"
    report = Report(page)
    n = 5 * MAX_POINTS + 17
    image = np.zeros((16, 16, 3), np.uint8)
    for i in range(n):
        p = np.full(len(LABELS), 0.0)
        share = i / (n - 1)  # happiness rises 0 -> 100% along the video, neutrality falls
        p[LABELS.index("happiness")], p[LABELS.index("neutrality")] = share, 1 - share
        report.add(FrameResult(source="lecture.mp4", frame=i, timestamp_s=i / FPS, size=[16, 16],
                               faces=[_face(0, 1.0, 1.0, 8.0, p)]), image, True, FPS)
    report.close()
    (track,) = _page_data(page)["videos"][0]["tracks"]
    points = track["points"]
    assert MAX_POINTS // 2 <= len(points) <= MAX_POINTS
    times = [pt[0] for pt in points]
    span, step = (n - 1) / FPS, (n - 1) / FPS / MAX_POINTS  # a point every `step` s, were they even
    assert times == sorted(times) and times[0] <= 1.5 * step and times[-1] >= span - 1.5 * step
    assert max(b - a for a, b in zip(times, times[1:])) <= 3 * step, "no part of the span coarser than another"
    happy = [pt[1 + LABELS.index("happiness")] for pt in points]
    neutral = [pt[1 + LABELS.index("neutrality")] for pt in points]
    assert happy == sorted(happy) and happy[0] <= 1 and happy[-1] >= 99
    assert all(99 <= a + b <= 101 for a, b in zip(happy, neutral))
    for t, h in zip(times, happy):  # each point the mean of consecutive frames: its time and value agree
        assert abs(h - 100 * t * FPS / (n - 1)) <= 1.5, (t, h)


def test_analyze_scales_the_reports_clip_as_asked(tmp_path):
    from click.testing import CliRunner

    from moodstream.worker.analyze import analyze_cmd

    clip = Path(__file__).resolve().parents[1] / "fixtures" / "clip_360p.mp4"
    page = tmp_path / "r.html"
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(clip), "--max-frames", "3", "--report", str(page),
                                              "--report-clip-px", "320"])
    assert result.exit_code == 0, result.output
    assert _clip(page)[0] == (320, 180)
