"""A run's late frames are said, not lost silently: a result that comes after a later frame of its run
was released (its worker took longer than ``reorder_wait_ms``) is published untracked and is in no
track of the run. The run's summary said nothing of it (``stage.late`` was a counter in a log line), so
a reader of ``moodstream tracks`` could not tell that frames were missing. Now each run's summary has
``late_frames`` (right in every part, never going down) and ``tracks`` says it when > 0; a late result
of a run whose summary is already out (a straggler) is counted in ``<prefix>:track:stats``, which
``moodstream status`` shows.

Results are written straight to the results stream, and the real ``TrackStage`` steps on a fake clock.
"""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner
from tests.support.streamkit import settings_for

from moodstream.cli import cli
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.wire import FIELD, decode_result, encode_result
from moodstream.worker.tracking import stage as stage_mod
from moodstream.worker.tracking.stage import TrackStage

PROBS = {label: (0.65 if label == "happiness" else 0.05) for label in LABELS}


def add(client, keys, source: str, frame: int, face: bool = True, enqueued_at_ms: int | None = None) -> None:
    faces = [Face((100.0 + frame, 80.0, 160.0 + frame, 150.0), 0.99, emotion="happiness", probabilities=PROBS)]
    r = FrameResult(job_id=f"{source}-{frame}-{enqueued_at_ms}", source=source, frame=frame, worker="w",
                    faces=faces if face else [], timestamp_s=frame / 10, size=(640, 360),
                    enqueued_at_ms=enqueued_at_ms)
    client.xadd(keys.results, {FIELD: encode_result(r)})


def summaries(client, keys) -> list[dict]:
    return [json.loads(f[FIELD]) for _, f in client.xrange(keys.summaries)]


def late_run(stage: TrackStage, client, keys, source: str, t: float) -> None:
    """Frames 0..2 of ``source``, frame 1 after frame 2 was released: late."""
    for f in (0, 2):
        add(client, keys, source, f)
    stage.step(now_s=t)
    stage.step(now_s=t + 0.31)
    add(client, keys, source, 1)
    stage.step(now_s=t + 0.4)


def stage_for(redis_url, **kw) -> TrackStage:
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=1, pictures=False, **kw)
    stage._ensure_group()
    return stage


def test_a_run_s_summary_and_tracks_say_its_late_frames(redis_url, client, keys):
    from moodstream.worker.tracking.reader import tracks

    stage = stage_for(redis_url)
    for f in (0, 1, 2, 4, 5):  # frame 3's worker is slow
        add(client, keys, "cam", f)
    for f in range(4):
        add(client, keys, "hall", f)  # every frame in time
    stage.step(now_s=100.0)  # cam 0..2 and hall go at once; cam 4, 5 wait for frame 3
    stage.step(now_s=100.31)  # waited reorder_wait_ms: 4 and 5 go
    add(client, keys, "cam", 3)  # frame 3 at last: late
    add(client, keys, "cam", 6)
    stage.step(now_s=100.4)
    stage.flush()

    late = [r for r in (decode_result(f[FIELD]) for _, f in client.xrange(keys.tracked)) if r.source == "cam"]
    assert [(r.frame, f.track_id) for r in late for f in r.faces][-2:] == [(3, None), (6, 0)]  # published untracked
    got = {s["source"]: s for s in summaries(client, keys)}
    assert (got["cam"]["frames"], got["cam"]["late_frames"]) == (6, 1)
    assert (got["hall"]["frames"], got["hall"]["late_frames"]) == (4, 0)
    assert stage.late == 1 and stage.late_after_run_ended == 0

    env = {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    out = CliRunner().invoke(tracks, ["--from-start", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert {s["source"]: s["late_frames"] for s in map(json.loads, out.stdout.splitlines())} == {"cam": 1, "hall": 0}
    table = CliRunner().invoke(tracks, ["--from-start"], env=env)
    assert table.exit_code == 0, table.output
    assert table.stdout.count("late frame") == 1  # quiet for hall
    assert "cam (run 1, 6 frames; ended: the track stage stopped)\n1 late frame not tracked (over reorder_wait_ms)\n" \
        in table.stdout, table.stdout


def test_a_live_run_s_parts_count_its_late_frames_so_far(redis_url, client, keys, monkeypatch):
    """A run that goes on publishes its ended tracks in parts: each part has the run's late frames so
    far (as ``frames``), so the count never goes down and the last part has them all."""
    monkeypatch.setattr(stage_mod, "PART_TRACKS", 1)  # every track that ends is a part
    stage = stage_for(redis_url)

    def send(frames, late: int | None, t: float) -> None:
        if late is not None:
            add(client, keys, "cam", late)
        for f in frames:  # a face in frames 20k .. 20k+7, then 12 frames without one: the tracker lets it go
            add(client, keys, "cam", f, face=f % 20 < 8)
        stage.step(now_s=t)
        stage.step(now_s=t + 0.31)  # what waited for the frame held back goes

    send([*range(0, 25), *range(26, 31)], None, 100.0)  # frame 25 held back
    send([*range(31, 45), *range(46, 51)], 25, 101.0)  # 25 late; 45 held back
    send(range(51, 71), 45, 102.0)  # 45 late
    stage.flush()
    parts = summaries(client, keys)
    assert [(p["part"], p["last_part"]) for p in parts] == [(1, False), (2, False), (3, False), (4, True)], parts
    assert [p["late_frames"] for p in parts] == [0, 1, 2, 2]
    assert [p["frames"] for p in parts][-1] == 69  # 71 frames, 2 of them late


@pytest.mark.parametrize("ended_by", ["idle", "the next pass"])
def test_a_straggler_of_a_run_whose_summary_is_out_is_counted_for_status(redis_url, client, keys, ended_by):
    """A late result of a run that has ended cannot be added to its summary (it is out): it is
    counted in <prefix>:track:stats, and `moodstream status` says so. Quiet while there is none."""
    from moodstream.producer.status import render, snapshot

    stage = stage_for(redis_url, source_idle_s=5.0)
    for f in (0, 1, 2, 4, 5):
        add(client, keys, "cam", f, enqueued_at_ms=1_000 + f)  # frame 3's worker is slow
    stage.step(now_s=100.0)
    stage.step(now_s=100.31)
    if ended_by == "idle":
        stage.step(now_s=110.0)
    else:  # the same file again, enqueued after the first pass
        for f in range(3):
            add(client, keys, "cam", f, enqueued_at_ms=5_000 + f)
        stage.step(now_s=101.0)
    assert summaries(client, keys)[0]["late_frames"] == 0
    assert snapshot(client, keys)["track"] is None and "late" not in render(snapshot(client, keys))

    add(client, keys, "cam", 3, enqueued_at_ms=1_003)  # frame 3 at last: its run's summary is out
    stage.step(now_s=120.0)
    stage.flush()
    assert stage.late == 1 and stage.late_after_run_ended == 1
    assert [s["late_frames"] for s in summaries(client, keys)] == [0] * len(summaries(client, keys))
    stats = {k.decode(): v.decode() for k, v in client.hgetall(keys.track_stats).items()}
    assert (stats["late"], stats["late_after_run_ended"]) == ("1", "1")
    snap = snapshot(client, keys)
    assert (snap["track"]["late"], snap["track"]["late_after_run_ended"]) == (1, 1)
    text = render(snap)
    assert "track stage: 1 late result published untracked" in text and \
        "1 of them after its run's summary was out (in no summary)" in text, text

    again = stage_for(redis_url)  # a stage started later adds to the figures, never replaces them
    late_run(again, client, keys, "door", 200.0)
    again.flush()
    assert (again.late, again.late_after_run_ended) == (1, 0)
    assert snapshot(client, keys)["track"]["late"] == 2
    assert [s["late_frames"] for s in summaries(client, keys) if s["source"] == "door"] == [1]


def test_stats_it_cannot_write_cost_the_figures_not_the_stage(redis_url, client, keys, caplog):
    """<prefix>:track:stats of another type (or a user without the rules for it): said once, the
    results and summaries still published."""
    client.set(keys.track_stats, "not a hash")
    stage = stage_for(redis_url)
    with caplog.at_level(logging.WARNING, logger="moodstream.worker.tracking.stage"):
        late_run(stage, client, keys, "cam", 100.0)
        late_run(stage, client, keys, "hall", 101.0)
        stage.flush()
    assert stage.late == 2 and client.xlen(keys.tracked) == 6
    assert [s["late_frames"] for s in summaries(client, keys)] == [1, 1]
    said = [r.getMessage() for r in caplog.records if keys.track_stats in r.getMessage()]
    assert len(said) == 1 and "moodstream-track.rules" in said[0], said


def test_up_summary_has_each_run_s_late_frames_and_says_them(redis_url, client, keys, tmp_path, capsys):
    """`up --summary FILE` writes the runs its own stage ended (``stage.ended``): each ``videos`` item has
    ``late_frames``, as the service's summaries do, and the line after the people table says them. Its
    stage adds nothing to the deployment's <prefix>:track:stats (``stats=False``): `up` says them itself."""
    from types import SimpleNamespace

    from moodstream.up import _Tracking, _write_summary

    stage = stage_for(redis_url, keep_summaries=True, stats=False)
    late_run(stage, client, keys, "cam", 100.0)
    stage.flush()
    _write_summary(_Tracking(stage), stage.read, tmp_path / "s.json", SimpleNamespace(model_version="m"),
                   settings_for(redis_url))
    videos = json.loads((tmp_path / "s.json").read_text())["videos"]
    assert [(v["source"], v["frames"], v["late_frames"]) for v in videos] == [("cam", 2, 1)]
    assert "1 late frame not tracked (over reorder_wait_ms)" in capsys.readouterr().err
    assert not client.exists(keys.track_stats)


@pytest.mark.parametrize("since_ms", ["99999999999999999999", "-5", "abc"])
def test_status_shows_a_stats_hash_written_by_anyone(redis_url, client, keys, since_ms):
    """<prefix>:track:stats is any Redis writer's (a stage whose clock is far off, a hand's HSET):
    a ``since_ms`` past what the platform's time_t holds ended `moodstream status` (and --watch)
    in an OverflowError traceback; a negative one said 'since 1969-12-31'; more late results
    after their run's summary than late results in all were said as such. The count is shown,
    without a time that is none, and its part never over the whole."""
    client.hset(keys.track_stats, mapping={"late": 3, "late_after_run_ended": 7, "since_ms": since_ms})
    env = {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    text = CliRunner().invoke(cli, ["status"], env=env)
    as_json = CliRunner().invoke(cli, ["status", "--json"], env=env)
    assert text.exit_code == 0 and as_json.exit_code == 0, (text.output, as_json.output)
    line = next(x for x in text.output.splitlines() if x.startswith("track stage:"))
    assert line.startswith("track stage: 3 late results published untracked (over") and "since" not in line, line
    assert "3 of them after their run's summary was out" in line, line
    assert json.loads(as_json.output)["track"] == {"late": 3, "late_after_run_ended": 3, "trimmed_gaps": 0,
                                                   "trimmed_unread": 0, "since_ms": None}


def test_a_run_s_end_is_logged_in_counts_said_right(redis_url, client, keys, caplog):
    """The stage's line for an ended run said '1 tracks, 1 people' (a log line a user reads)."""
    import re

    stage = stage_for(redis_url)
    with caplog.at_level(logging.INFO, logger="moodstream.worker.tracking.stage"):
        late_run(stage, client, keys, "cam", 100.0)
        stage.flush()
    ended = [r.getMessage() for r in caplog.records if "of source cam ended" in r.getMessage()]
    assert len(ended) == 1, [r.getMessage() for r in caplog.records]
    counts = re.search(r"\): (\d+) (tracks?), (\d+) (person|people);", ended[0])
    assert counts, ended[0]
    tracks, people = int(counts[1]), int(counts[3])
    assert counts[2] == ("track" if tracks == 1 else "tracks") and counts[4] == ("person" if people == 1 else "people")
