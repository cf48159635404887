"""The track stage restarted while a source is live (a pod restart, a deploy: SIGTERM; a crash, an
OOM kill: SIGKILL), as a user sees it: the real ``moodstream track`` process on a real Redis, fed
results straight to the results stream (each face's frame in ``<prefix>:frames``, for its picture),
read back with the real ``moodstream tracks``."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
import redis
from tests.support.procs import spawn_cli, stop, wait_until

from moodstream.producer.dashboard.model import Model
from moodstream.shared.keys import Keys
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameJob, FrameResult, Raw
from moodstream.shared.wire import FIELD, decode_result, encode_frame, encode_result

pytestmark = pytest.mark.slow
KEYS = Keys("t")


def send(client: redis.Redis, source: str, frames, pass_name: str, enqueued_from_ms: int) -> None:
    """Results of one producer pass over ``source`` (one face drifting right, happy), each frame's
    pixels in the frames stream, different for each pass (so each run's face picture is its own)."""
    rng = np.random.default_rng(sum(map(ord, pass_name)))
    probs = {label: (0.65 if label == "happiness" else 0.05) for label in LABELS}
    for f in frames:
        job_id, at_ms = f"{pass_name}-{f}", enqueued_from_ms + f
        pixels = Raw.of(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8))
        entry = client.xadd(KEYS.frames, {FIELD: encode_frame(FrameJob(job_id, source, f, raw=pixels,
                                                                       enqueued_at_ms=at_ms))}).decode()
        face = Face((100.0 + f, 80.0, 160.0 + f, 150.0), 0.99, emotion="happiness", probabilities=probs)
        client.xadd(KEYS.results, {FIELD: encode_result(FrameResult(
            job_id=job_id, source=source, frame=f, worker="w", faces=[face], timestamp_s=f / 30,
            size=(640, 360), enqueued_at_ms=at_ms, frame_entry=entry))})


def tracked(client: redis.Redis) -> list[FrameResult]:
    return [decode_result(f[FIELD]) for _, f in client.xrange(KEYS.tracked)]


def start_stage(redis_url: str, client: redis.Redis):
    t0 = time.monotonic()
    stage = spawn_cli("track", "--reorder-wait-ms", "200", MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")

    def reading() -> bool:
        try:  # its consumer in the group read since this process started (the one before keeps the name)
            return any(c["name"] == b"tracker" and c["idle"] < (time.monotonic() - t0) * 1000 - 100
                       for c in client.xinfo_consumers(KEYS.results, KEYS.track_group))
        except redis.ResponseError:
            return False

    wait_until(lambda: reading() or stage.poll() is not None, 60, "the stage reading")
    assert stage.poll() is None, stop(stage)[1][-2000:]
    return stage


def sigterm(stage) -> str:
    stage.send_signal(signal.SIGTERM)
    _, err = stage.communicate(timeout=60)
    assert stage.returncode == 0 and "Traceback" not in err, err[-2000:]
    return err


def tracks_json(redis_url: str, pictures) -> list[dict]:
    """What `moodstream tracks --from-start --json --pictures DIR` prints, one summary a line."""
    proc = spawn_cli("tracks", "--from-start", "--json", "--pictures", str(pictures), MOODSTREAM_REDIS_URL=redis_url,
                     MOODSTREAM_PREFIX="t")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_run_after_a_restart_is_never_numbered_as_one_before(redis_url, client, tmp_path, how):
    """The stage kept its run numbers in memory: restarted while a source was live, it numbered that
    source's next run 1 again, as it had numbered the first. `moodstream tracks` then showed two
    different runs as "cam (run 1 ...)", and --pictures wrote both runs' faces to one file
    (cam-<hash>-run1-t0.jpg): the first run's person showed the second run's face; a reader keying
    runs by (source, run) merged or overwrote them. SIGTERM (a deploy): the camera's run before is
    summarised at the stop and the one after starts where it went on. SIGKILL (a crash, an OOM kill):
    run 1 of the file ended by its second pass, run 2 live when killed (its summary lost with the
    stage), a third pass after the restart. The dashboard's people panel, which starts a run's people afresh
    where its source's frames start again from 0, showed the camera's person of the run before the
    restart and the one after as one (tracked results said nothing of their run)."""
    stage = start_stage(redis_url, client)
    try:
        send(client, "cam", range(10), "p1", 1_000)
        if how == "SIGKILL":
            send(client, "cam", range(10), "p2", 5_000)  # a second pass: run 1 ends, its summary out
        wait_until(lambda: len(tracked(client)) == (20 if how == "SIGKILL" else 10), 60, "the results tracked")
        if how == "SIGKILL":
            wait_until(lambda: client.xlen(KEYS.summaries) == 1, 60, "run 1's summary")
            stage.kill()
            stage.communicate(timeout=60)
        else:
            sigterm(stage)
        stage = start_stage(redis_url, client)
        if how == "SIGKILL":
            send(client, "cam", range(10), "p3", 9_000)
        else:
            send(client, "cam", range(10, 20), "p1", 1_000)  # the camera goes on
        wait_until(lambda: len(tracked(client)) == (30 if how == "SIGKILL" else 20), 60, "the results tracked")
        sigterm(stage)
    finally:
        stop(stage)
    shown = tracks_json(redis_url, tmp_path)
    runs = [(s["source"], s["run"]) for s in shown]
    assert runs == ([("cam", 1), ("cam", 3)] if how == "SIGKILL" else [("cam", 1), ("cam", 2)]), runs
    pictures = [s["tracks"][0]["thumbnail"] for s in shown]
    assert None not in pictures and len(set(pictures)) == 2, pictures  # each run's person its own face
    assert (tmp_path / pictures[0]).read_bytes() != (tmp_path / pictures[1]).read_bytes()
    # the dashboard's people panel, fed the tracked stream: the newest run's person alone (the camera's
    # frames went on across the restart, its ids from 0 again: one person of both runs' frames)
    model = Model()
    for entry_id, fields in client.xrange(KEYS.tracked):
        model.fold("tracked", entry_id.decode(), decode_result(fields[FIELD]))
    cam = model.sources["cam"]
    assert [(p.track_id, p.frames) for p in cam.people.values()] == [(0, 10)] and cam.runs == len(runs) + \
        (how == "SIGKILL"), (cam.people, cam.runs)


def test_a_straggler_after_a_restart_starts_no_run(redis_url, client, tmp_path):
    """A deploy (SIGTERM) while frame 4 of a run was with a slow worker: the stage summarised the run
    without it and stopped; the restarted one took the slow answer for the start of a new run of the
    source: a run of one frame (summary "cam (run 1, 1 frame ...)", beside the real run 1), its face
    one more track. Now the run's span, written at its end, tells the straggler: published untracked,
    counted in <prefix>:track:stats (late_after_run_ended), in no run."""
    stage = start_stage(redis_url, client)
    try:
        send(client, "cam", [*range(4), *range(5, 10)], "p1", 1_000)
        wait_until(lambda: len(tracked(client)) == 9, 60, "the results tracked")
        sigterm(stage)
        stage = start_stage(redis_url, client)
        send(client, "cam", [4], "p1", 1_000)  # the slow worker's answer, after the restart
        wait_until(lambda: len(tracked(client)) == 10, 60, "the straggler published")
        sigterm(stage)
    finally:
        stop(stage)
    shown = tracks_json(redis_url, tmp_path)
    assert [(s["source"], s["run"], s["frames"]) for s in shown] == [("cam", 1, 9)], shown
    [straggler] = [r for r in tracked(client) if r.frame == 4]
    assert [f.track_id for f in straggler.faces] == [None]
    assert client.hget(KEYS.track_stats, "late_after_run_ended") == b"1"


@pytest.mark.parametrize("hand", ["a field no stage wrote", "a key of another type"])
def test_run_numbers_someone_else_wrote_cost_nothing_but_themselves(redis_url, client, caplog, hand):
    """<prefix>:track:runs is any Redis writer's: a field that is no run record ("7", [1.5], a huge
    number, not JSON) is ignored; the hash replaced by a string is said once (WRONGTYPE), the numbers
    are then kept in memory only. Either way every result is tracked and every run summarised."""
    import logging

    from tests.support.streamkit import settings_for

    from moodstream.worker.tracking.stage import TrackStage

    if hand == "a key of another type":
        client.set(KEYS.track_runs, "not a hash")
    else:
        client.hset(KEYS.track_runs, mapping={"a": "7", "b": "[1.5]", "c": json.dumps([2**60]), "d": "[{"})
    client.xgroup_create(KEYS.results, KEYS.track_group, id="0", mkstream=True)
    for source in "abcd":
        send(client, source, range(3), source, 1_000)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=0, block_ms=1, pictures=False)
    with caplog.at_level(logging.WARNING, logger="moodstream.worker.tracking.stage"):
        stage.step(now_s=100.0)
        stage.flush()
    assert len(tracked(client)) == 12
    assert sorted((s["source"], s["run"]) for s in (json.loads(f[FIELD]) for _, f in client.xrange(KEYS.summaries))) \
        == [(s, 1) for s in "abcd"]
    said = [r.getMessage() for r in caplog.records if KEYS.track_runs in r.getMessage()]
    assert len(said) == (hand == "a key of another type"), said
