"""The service's summaries stay bounded on a run that never ends (a live camera): the track
stage keeps one :class:`SourceSummary` per source run with ``series=False``, so its memory
must not grow with the frames. It used to keep every box, score, frame time
and smoothed label of the run (30 fps for a day is 2.6 M frames); past ``MEDIAN_KEEP``
frames a track's medians come from an evenly spaced sample, and episodes past
``MAX_EPISODES`` per track are counted, not kept."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import msgspec
import numpy as np
import pytest

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.tracking.summary import (MAX_EPISODES, MEDIAN_KEEP, EpisodeFinder, SourceSummary, StridedSample,
                                       SummaryConfig)

ROOT = Path(__file__).resolve().parents[2]
CLIPS = [ROOT / "tests" / "fixtures" / "clip_360p.mp4", ROOT / "samples" / "hamilton_clip.mp4"]
FPS = 30.0
FRAMES = 60_000  # 33 min at 30 fps: today's code held 134 MiB at 300,000 frames (27 at this length)
PEAK_BOUND_BYTES = 2 * 1024 * 1024  # 2 tracks: about 0.2 MiB of kept samples each, plus the frame in hand


def _frame(i: int, rng_values: np.ndarray) -> FrameResult:
    """Frame ``i`` of a two-person camera: fresh objects per frame, as a decoded result has."""
    faces = []
    for track in (0, 1):
        v = rng_values[(i * 2 + track) % len(rng_values)]
        x = 100.0 + 300.0 * track + float(v[0])
        top = LABELS[int(v[1]) % len(LABELS)] if (i // 45) % 7 == 3 else "neutrality"  # an expression now and then
        p = {label: (0.65 if label == top else 0.05) for label in LABELS}
        faces.append(Face((x, 50.0 + float(v[2]), x + 80.0, 130.0 + float(v[2])), 0.95 + float(v[3]) * 0.04,
                          emotion=top, probabilities=p, track_id=track))
    return FrameResult(source="rtsp://cam", frame=i, timestamp_s=i / FPS, faces=faces)


@pytest.mark.slow  # 60,000 frames under tracemalloc: about 20 s on a loaded 2-core CPU
def test_a_never_ending_run_stays_bounded():
    rng = np.random.default_rng(7)
    values = np.column_stack([rng.normal(0, 3, 4099), rng.integers(0, 8, 4099), rng.normal(0, 2, 4099),
                              rng.random(4099)])
    summary = SourceSummary("rtsp://cam", SummaryConfig(), series=False)
    for i in range(1000):  # warm up: the tracks, their first samples, numpy's caches
        summary.add(_frame(i, values))
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for i in range(1000, FRAMES):
            summary.add(_frame(i, values))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = peak - base
    print(f"summary of {FRAMES} frames x 2 tracks: traced peak {grown / 2**20:.2f} MiB above the start")
    assert grown < PEAK_BOUND_BYTES, f"{grown / 2**20:.1f} MiB for {FRAMES} frames"
    # and still a summary: medians near the scripted boxes, every frame counted
    entries = summary.entries()
    assert [e["frames"] for e in entries] == [FRAMES, FRAMES]
    assert entries[0]["box"] == pytest.approx([100, 50, 180, 130], abs=1.0)
    assert entries[1]["box"] == pytest.approx([400, 50, 480, 130], abs=1.0)
    assert sum(entries[0]["mean_probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_strided_sample_keeps_every_sth_value_of_the_whole_stream():
    sample = StridedSample(1, keep=64)
    for i in range(1000):
        sample.add((float(i),))
        assert sample.n <= 64 and sample.rows.shape[0] <= 64
    kept = sample.rows[: sample.n, 0]
    assert sample.stride == 16 and kept.tolist() == [float(i) for i in range(0, 1000, 16)]
    assert not sample.exact and sample.mean(0, total=499500.0) == pytest.approx(499.5)
    assert sample.median()[0] == pytest.approx(np.median(np.arange(1000)), abs=16)


def test_medians_are_exact_up_to_the_cap_and_close_past_it():
    """Up to MEDIAN_KEEP frames a track's box and score medians are numpy's over every frame
    (today's answer); past it, those of every s-th frame, within a pixel here."""
    rng = np.random.default_rng(3)
    for n in (MEDIAN_KEEP, 5 * MEDIAN_KEEP + 17):
        boxes = np.column_stack([rng.normal(200, 20, n), rng.normal(100, 10, n), rng.normal(300, 20, n),
                                 rng.normal(200, 10, n)])
        scores = rng.uniform(0.8, 1.0, n)
        summary = SourceSummary("a.mp4", series=False)
        for i in range(n):
            summary.add(FrameResult(source="a.mp4", frame=i, timestamp_s=i / FPS, faces=[
                Face(tuple(float(v) for v in boxes[i]), float(scores[i]), emotion="neutrality",
                     probabilities={label: 1 / len(LABELS) for label in LABELS}, track_id=0)]))
        [e] = summary.entries()
        exact = [round(float(v), 1) for v in np.median(boxes, axis=0)]
        assert e["mean_score"] == round(float(np.mean(scores)), 4)
        if n <= MEDIAN_KEEP:
            assert e["box"] == exact
        else:
            assert e["box"] == pytest.approx(exact, abs=1.0)  # a sample's, close


def test_episodes_past_the_cap_are_counted():
    neutral = LABELS.index("neutrality")
    finder = EpisodeFinder(neutral, tau_s=0.0, min_s=0.0, gap_s=0.0, default_step_s=0.1)
    happy = np.eye(len(LABELS))[LABELS.index("happiness")]
    calm = np.eye(len(LABELS))[neutral]
    n = MAX_EPISODES + 25
    for k in range(n):  # one-frame episodes with a neutral frame between them
        finder.add(k * 0.2, happy)
        finder.add(k * 0.2 + 0.1, calm)
    runs = finder.finish()  # the newest finished ones, and the last one (still open)
    assert len(finder.done) == MAX_EPISODES and len(runs) == MAX_EPISODES + 1
    assert finder.dropped == n - len(runs) == 24
    assert runs[0].start_s == pytest.approx(24 * 0.2) and runs[-1].start_s == pytest.approx((n - 1) * 0.2)
    assert finder.dropped_frames[LABELS.index("happiness")] == 24


@pytest.mark.slow  # the real models on CPU, a few seconds per clip
@pytest.mark.parametrize("clip", CLIPS, ids=lambda p: p.name)
def test_real_clips_summarise_as_before(clip, tmp_path):
    """On real clips (under MEDIAN_KEEP frames) the service's bounded summary (series=False, as
    the track stage builds it) equals ``analyze --summary``'s (series=True), and both give the
    answer of keeping every frame: numpy's median box and mean score over all the track's faces."""
    from click.testing import CliRunner

    from moodstream.worker.analyze import analyze_cmd

    out = tmp_path / "people.json"
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(clip), "--summary", str(out)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    records = [msgspec.json.decode(line, type=FrameResult) for line in result.stdout.splitlines() if line.strip()]
    written = json.loads(out.read_text())
    service = SourceSummary(str(clip), SummaryConfig(), series=False)
    for r in records:
        service.add(r)
    assert service.frames == len(records) == written["videos"][0]["frames"]
    entries = service.entries()
    assert entries and entries == [dict(t, thumbnail=None) for t in written["tracks"]]
    for e in entries:  # what keeping every frame gives
        faces = [f for r in records for f in r.faces if f.track_id == e["track_id"]]
        assert e["frames"] == len(faces) and e["episodes_dropped"] == 0
        assert e["box"] == [round(float(v), 1) for v in np.median(np.array([f.box for f in faces]), axis=0)]
        assert e["mean_score"] == round(float(np.mean([f.score for f in faces])), 4)
        median_score = float(np.median([f.score for f in faces]))
        assert ("detector score" in e["not_person_why"]) == (median_score < SummaryConfig().person_score_min
                                                             and "seen" not in e["not_person_why"])
