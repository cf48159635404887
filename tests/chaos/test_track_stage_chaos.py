"""The track stage under attack (issue 22, items 6 and 2): a second run of the same
file, entries left pending under its name, Redis SIGKILLed with AOF, SIGTERM while
Redis is down, a wrong password, a forged log line, and operators deleting its keys.

Results are written straight to the results stream (the stage reads nothing
else), so each test controls exactly which frames, job ids and enqueue times
arrive; the stage is the real ``TrackStage`` (in-process, with a fake clock) or
the real ``moodstream track`` process.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time

import pytest
import redis
from tests.support.procs import measure, spawn_cli, stop, wait_until
from tests.support.streamkit import settings_for

from moodstream.worker.tracking.stage import TrackStage
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.wire import FIELD, decode_result, encode_result

pytestmark = pytest.mark.slow
KEYS = Keys("t")


def result(source: str, frame: int, job_id: str, enqueued_at_ms: int | None) -> FrameResult:
    """One face drifting right, happy: enough for the tracker to follow it."""
    probs = {label: (0.65 if label == "happiness" else 0.05) for label in LABELS}
    face = Face((100.0 + frame, 80.0, 160.0 + frame, 150.0), 0.99, emotion="happiness", probabilities=probs)
    return FrameResult(job_id=job_id, source=source, frame=frame, worker="w", faces=[face],
                       timestamp_s=frame / 30, size=(640, 360), enqueued_at_ms=enqueued_at_ms)


def add(client: redis.Redis, r: FrameResult) -> str:
    return client.xadd(KEYS.results, {FIELD: encode_result(r)}).decode()


def tracked(client: redis.Redis) -> list[FrameResult]:
    return [decode_result(f[FIELD]) for _, f in client.xrange(KEYS.tracked)]


def make_group(client: redis.Redis) -> None:
    client.xgroup_create(KEYS.results, KEYS.track_group, id="0", mkstream=True)


def run_steps(stage: TrackStage, start_s: float, n: int = 12, dt_s: float = 0.5) -> None:
    for i in range(n):
        stage.step(now_s=start_s + i * dt_s)


def test_a_second_run_of_the_same_file_is_a_new_run_not_duplicates(redis_url, client, caplog):
    """Item 6: run two of a file (same source, frames 0..59 again, new job ids) was
    dropped whole as duplicates, or after a stage restart published untracked as
    "late". Now: a restart of frame numbers starts a new run (ids from 0 again),
    a worker's second answer to a job is dropped and logged when it happens."""
    caplog.set_level(logging.INFO, logger="moodstream")
    settings = settings_for(redis_url)
    make_group(client)
    for f in [*range(55), 56, 57, 58, 59]:  # run one, frame 55 still on its way
        add(client, result("clip.mp4", f, f"r1-{f}", 1_000 + f))
    first = TrackStage(settings, name="tracker", reorder_wait_ms=300, block_ms=20)
    first.step(now_s=100.0)
    assert len(tracked(client)) == 55  # 0..54 in order; 56..59 wait for 55
    del first  # crashed with 56..59 pending under its name

    add(client, result("clip.mp4", 55, "r1-55", 1_055))
    for f in range(60):  # run two of the same file
        add(client, result("clip.mp4", f, f"r2-{f}", 5_000 + f))
    add(client, result("clip.mp4", 10, "r2-10", 5_010))  # a worker answered job r2-10 twice
    restarted = TrackStage(settings, name="tracker", reorder_wait_ms=300, block_ms=20)
    caplog.clear()
    run_steps(restarted, 200.0)
    drop_lines = [r.getMessage() for r in caplog.records if "r2-10" in r.getMessage()]

    out = tracked(client)
    jobs = [r.job_id for r in out]
    assert sorted(jobs) == sorted([f"r1-{f}" for f in range(60)] + [f"r2-{f}" for f in range(60)])
    run2 = [r for r in out if r.job_id.startswith("r2-")]
    assert [r.frame for r in run2] == list(range(60))  # in order
    assert all(f.track_id == 0 for r in run2 for f in r.faces), [f.track_id for r in run2 for f in r.faces]
    assert restarted.duplicates == 1 and restarted.late == 0
    assert drop_lines, "the duplicate was not logged when it was dropped"
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0
    measure("track_second_run", run_two_tracked=len(run2), run_two_untracked=sum(
        f.track_id is None for r in run2 for f in r.faces), duplicates_dropped=restarted.duplicates)


def test_without_enqueue_times_a_frame_number_answered_again_starts_a_new_run(redis_url, client):
    """Item 6 for results without ``enqueued_at_ms`` (older producers): frames 0..9 twice under
    new job ids are two runs, each summarised, not ten duplicates."""
    make_group(client)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=20)
    for run in (1, 2):
        for f in range(10):
            add(client, result("cam", f, f"r{run}-{f}", None))
        run_steps(stage, 100.0 * run, n=3)
    stage.flush()
    out = tracked(client)
    assert len(out) == 20 and stage.duplicates == 0 and stage.late == 0
    assert all(f.track_id == 0 for r in out for f in r.faces)
    assert [json.loads(f[FIELD])["run"] for _, f in client.xrange(KEYS.summaries)] == [1, 2]


def test_a_newline_in_a_source_name_cannot_forge_a_log_line(redis_url, client, caplog):
    """Item 6: the stage logged source names raw."""
    caplog.set_level(logging.INFO, logger="moodstream")
    make_group(client)
    source = "cam\n2026-01-01 00:00:00 CRITICAL moodstream: forged"
    for f in (0, 2):
        add(client, result(source, f, f"j{f}", 1_000 + 10 * f))
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=100, block_ms=20)
    run_steps(stage, 0.0, n=3)
    add(client, result(source, 1, "j1", 1_010))  # came after frame 2 was released: late, logged
    add(client, result(source, 1, "j1", 1_010))  # and answered twice: a duplicate, logged
    run_steps(stage, 10.0, n=2)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("moodstream.worker.tracking")]
    assert any("forged" in line for line in lines)  # the source was logged ...
    assert not [line for line in lines if "\n" in line or "\r" in line]  # ... on one line


def test_entries_pending_under_its_name_are_taken_back_without_a_restart(redis_url, client):
    """Item 6: results delivered to the stage whose reply never reached it (Redis died
    between executing XREADGROUP and answering) stayed pending until a restart. Made
    exact here: the delivery happens in the same MULTI as the XADD, so the running
    stage never sees it."""
    settings = settings_for(redis_url, reclaim_idle_ms=1000)
    make_group(client)
    stage = TrackStage(settings, name="tracker", reorder_wait_ms=3000, block_ms=50)
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        pipe = client.pipeline(transaction=True)
        for f in range(5):
            pipe.xadd(KEYS.results, {FIELD: encode_result(result("s", f, f"j{f}", 1_000 + f))})
        pipe.xreadgroup(KEYS.track_group, "tracker", {KEYS.results: ">"}, count=5)
        pipe.execute()
        for f in range(5, 10):
            add(client, result("s", f, f"j{f}", 1_000 + f))
        wait_until(lambda: len(tracked(client)) >= 10, 20, "all ten results tracked")
    finally:
        stage.request_stop()
        thread.join(30)
    out = tracked(client)
    assert [r.frame for r in out] == list(range(10))
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0


def _feed(url: str, n: int, per_s: float, stop_feed: threading.Event, sent: list[str]) -> None:
    """Add ``n`` results (4 sources, frames in order), retrying through Redis restarts."""
    c = redis.Redis.from_url(url, socket_timeout=5)
    for i in range(n):
        if stop_feed.is_set():
            return
        r = result(f"cam{i % 4}", i // 4, f"j{i}", 1_000 + i)
        while not stop_feed.is_set():
            try:
                add(c, r)
                sent.append(r.job_id)
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        time.sleep(1 / per_s)


def test_no_result_is_missing_after_redis_is_sigkilled_with_aof(tmp_path):
    """Item 6: after a Redis SIGKILL + AOF restart, results stayed pending under the
    stage's name (read but never published) until it restarted: 1 of 600 missing.
    Three SIGKILLs while 600 results stream in; every one must reach the tracked
    stream (a second copy is allowed: delivery is at least once)."""
    server = EmbeddedRedis(extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    server.start()
    stage = spawn_cli("track", "--reorder-wait-ms", "500", MOODSTREAM_REDIS_URL=server.url, MOODSTREAM_PREFIX="t",
                      MOODSTREAM_RECLAIM_IDLE_MS="2000")
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    stop_feed, sent = threading.Event(), []
    feeder = threading.Thread(target=_feed, args=(server.url, 600, 100.0, stop_feed, sent), daemon=True)
    try:
        wait_until(lambda: _has_group(client), 30, "the stage's group")
        feeder.start()
        for _ in range(3):
            wait_until(lambda: len(sent) >= 100 * (_ + 1) + 50, 60, "results flowing")
            server.kill()
            time.sleep(0.3)
            server.start()
        feeder.join(120)

        def missing() -> set[str]:
            try:
                return set(sent) - {r.job_id for r in tracked(client)}
            except redis.ConnectionError:
                return set(sent)

        try:
            wait_until(lambda: not missing(), 40, "every result tracked")
        except AssertionError:
            pass
        lost = missing()
        assert stage.poll() is None, stop(stage)[1][-2000:]
        measure("track_redis_sigkill_aof", sent=len(sent), missing=len(lost), sigkills=3)
        assert len(sent) == 600 and not lost, sorted(lost)[:10]
    finally:
        stop_feed.set()
        stop(stage)
        server.stop()


def _has_group(client: redis.Redis) -> bool:
    try:
        return any(g["name"] == KEYS.track_group.encode() for g in client.xinfo_groups(KEYS.results))
    except redis.ResponseError:
        return False


def test_sigterm_while_redis_is_down_exits_within_seconds():
    """Item 6: the stage ignored SIGTERM while Redis was down (still running after 20 s)."""
    server = EmbeddedRedis().start()
    stage = spawn_cli("track", MOODSTREAM_REDIS_URL=server.url, MOODSTREAM_PREFIX="t")
    try:
        client = redis.Redis.from_url(server.url)
        wait_until(lambda: _has_group(client), 30, "the stage's group")
        server.kill()
        time.sleep(2.0)  # backing off by now
        t0 = time.monotonic()
        stage.send_signal(signal.SIGTERM)
        try:
            _, err = stage.communicate(timeout=20)
        except Exception:
            pytest.fail("still running 20 s after SIGTERM with Redis down")
        took = time.monotonic() - t0
        measure("track_sigterm_redis_down", exit_s=round(took, 2), returncode=stage.returncode)
        assert took < 5, took
        assert "Traceback" not in err, err[-2000:]
    finally:
        stop(stage)
        server.stop()


def test_a_wrong_password_is_one_line_and_exit_1():
    """Item 6: the stage retried a wrong password for ever."""
    server = EmbeddedRedis(extra_args=["--requirepass", "right-one"]).start()
    url = f"redis://:wrong-one@127.0.0.1:{server.port}/0"
    t0 = time.monotonic()
    stage = spawn_cli("track", MOODSTREAM_REDIS_URL=url, MOODSTREAM_PREFIX="t")
    try:
        try:
            _, err = stage.communicate(timeout=30)
        except Exception:
            pytest.fail("still running 30 s after start with a wrong password")
        took = time.monotonic() - t0
        lines = [line for line in err.splitlines() if line.strip()]
        measure("track_wrong_password", exit_s=round(took, 2), returncode=stage.returncode, stderr_lines=len(lines))
        assert stage.returncode == 1, err
        assert len(lines) == 1 and "wrong-one" not in err and "Traceback" not in err, err
        assert took < 15, took
    finally:
        stop(stage)
        server.stop()


def test_operators_deleting_its_keys_do_not_kill_the_stage(redis_url, client):
    """Item 2: FLUSHALL, DEL of the results or tracked stream, XGROUP DESTROY killed
    `moodstream track` (ResponseError: UNBLOCKED ...). Now each is one line, the stage
    recreates what it needs and tracks what comes next."""
    stage = spawn_cli("track", "--reorder-wait-ms", "200", MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    try:
        wait_until(lambda: _has_group(client), 30, "the stage's group")
        attacks = [("del-results", lambda: client.delete(KEYS.results)),
                   ("xgroup-destroy", lambda: client.xgroup_destroy(KEYS.results, KEYS.track_group)),
                   ("del-tracked", lambda: client.delete(KEYS.tracked)),
                   ("flushall", lambda: client.flushall())]
        for k, (name, attack) in enumerate(attacks):
            time.sleep(0.5)  # the stage is blocked in XREADGROUP
            attack()
            time.sleep(0.5)
            assert stage.poll() is None, f"died after {name}: " + stop(stage)[1][-2000:]
            jobs = {add(client, result(f"after-{name}", f, f"{name}-{f}", 1_000 + f)) and f"{name}-{f}"
                    for f in range(5)}
            wait_until(lambda: jobs <= {r.job_id for r in tracked(client)}, 30, f"results tracked after {name}")
        stage.send_signal(signal.SIGTERM)
        _, err = stage.communicate(timeout=30)
    finally:
        stop(stage)
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert stage.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    # one line per attack (DEL tracked needs none: XADD recreates it)
    assert 2 <= len(warnings) <= len(attacks), err


def test_a_job_answered_again_after_its_run_ended_is_published_once(redis_url, client):
    """A worker's second answer to a job (a reclaimed frame served twice) that came after the
    job's run had ended was not recognised (job ids were remembered per run): it was published a
    second time, untracked, as a late frame of the next run. Now it is dropped as a duplicate."""
    make_group(client)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=20)
    for f in range(10):
        add(client, result("clip.mp4", f, f"r1-{f}", 1_000 + f))
    run_steps(stage, 100.0, n=3)
    for f in range(10):
        add(client, result("clip.mp4", f, f"r2-{f}", 5_000 + f))
    run_steps(stage, 110.0, n=3)
    add(client, result("clip.mp4", 3, "r1-3", 1_003))  # job r1-3 answered again, its run over
    run_steps(stage, 120.0, n=3)
    stage.flush()
    jobs = [r.job_id for r in tracked(client)]
    assert sorted(jobs) == sorted([f"r1-{f}" for f in range(10)] + [f"r2-{f}" for f in range(10)]), jobs
    assert stage.duplicates == 1 and stage.late == 0
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0


def run_ended_without_frame_4(redis_url, client, monkeypatch, ended_by: str) -> TrackStage:
    """A stage whose run of clip.mp4 (frames 0..9, frame 4's worker slow) has ended: ``idle`` (10 s
    without a result) or ``eviction`` (two other sources past MAX_RUNS = 2)."""
    from moodstream.worker.tracking import stage as stage_mod

    if ended_by == "eviction":
        monkeypatch.setattr(stage_mod, "MAX_RUNS", 2)
    make_group(client)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=20,
                       source_idle_s=5.0 if ended_by == "idle" else 1e9)
    for f in [*range(4), *range(5, 10)]:
        add(client, result("clip.mp4", f, f"r1-{f}", 1_000 + f))
    run_steps(stage, 100.0, n=3)
    if ended_by == "idle":
        run_steps(stage, 110.0, n=2)  # idle 10 s: the run ends
    else:
        for other in ("a", "b"):
            add(client, result(other, 0, f"{other}-0", 2_000))
        run_steps(stage, 101.5, n=2)
    assert "clip.mp4" not in stage.runs
    return stage


@pytest.mark.parametrize("ended_by", ["idle", "eviction"])
def test_a_late_result_of_a_run_that_ended_starts_no_run(redis_url, client, monkeypatch, ended_by):
    """A run ended (its source idle past source_idle_s, or evicted past MAX_RUNS sources at once)
    and then a slow worker's result for it came: it started run 2 of the source, a run of one
    frame whose summary counted its face as a person. Now it is published untracked, as a late
    result of the run it belongs to, and no run starts."""
    stage = run_ended_without_frame_4(redis_url, client, monkeypatch, ended_by)
    add(client, result("clip.mp4", 4, "r1-4", 1_004))  # the slow worker's answer
    run_steps(stage, 120.0, n=3)
    stage.flush()
    late = [r for r in tracked(client) if r.job_id == "r1-4"]
    assert len(late) == 1 and all(f.track_id is None for f in late[0].faces), late
    assert stage.late == 1
    runs = [(s["source"], s["run"]) for s in map(lambda e: json.loads(e[1][FIELD]), client.xrange(KEYS.summaries))]
    assert ("clip.mp4", 2) not in runs and ("clip.mp4", 1) in runs, runs
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0


def summaries(client: redis.Redis) -> list[tuple[str, int, int]]:
    """(source, run, frames) of each summary published."""
    entries = (json.loads(f[FIELD]) for _, f in client.xrange(KEYS.summaries))
    return [(s["source"], s["run"], s["frames"]) for s in entries]


def test_a_job_id_of_another_source_drops_none_of_its_results(redis_url, client):
    """Job ids are the producer's to choose (``produce(job_id_prefix=...)``, ``<rq job id>-<n>``): two
    sources with the same ids are two jobs each. The ended runs' job ids were kept for all sources
    together, so source B's every result was dropped as 'a second answer' to source A's jobs, acked
    and never published."""
    make_group(client)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=20, source_idle_s=5.0)
    for f in range(5):
        add(client, result("hall", f, f"batch-{f:06d}", 1_000 + f))
    run_steps(stage, 100.0, n=3)
    run_steps(stage, 110.0, n=2)  # idle: the run of 'hall' ends, its job ids kept
    for f in range(5):
        add(client, result("gate", f, f"batch-{f:06d}", 2_000 + f))
    run_steps(stage, 120.0, n=3)
    stage.flush()
    gate = [r for r in tracked(client) if r.source == "gate"]
    assert [r.frame for r in gate] == list(range(5)) and stage.duplicates == 0, (gate, stage.duplicates)
    assert all(f.track_id == 0 for r in gate for f in r.faces)
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0


def test_a_frame_sent_again_under_its_job_id_is_published_once(redis_url, client):
    """An rq expand job stopped just after adding frame n adds it again when it resumes, under its
    job id (``<rq job id>-<n>``) and stamped later: one frame, answered twice. The key of a second
    answer leaves the enqueue time out for this: taken for a new pass, the run would end there."""
    make_group(client)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=20)
    for f in range(5):
        add(client, result("clip.mp4", f, f"rq1-{f:06d}", 1_000 + f))
    run_steps(stage, 100.0, n=3)
    for f in range(4, 10):  # resumed at frame 4, sent again
        add(client, result("clip.mp4", f, f"rq1-{f:06d}", 2_000 + f))
    run_steps(stage, 101.5, n=3)
    stage.flush()
    out = tracked(client)
    assert [r.frame for r in out] == list(range(10)) and stage.duplicates == 1, [r.frame for r in out]
    assert all(f.track_id == 0 for r in out for f in r.faces) and stage.late == 0
    assert summaries(client) == [("clip.mp4", 1, 10)]
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0


@pytest.mark.parametrize("clock", ["went back", "skewed into the run before", "forged in the run before"])
def test_a_new_run_is_not_taken_for_stragglers_of_the_one_before(redis_url, client, clock):
    """A result enqueued before the source's ended run's last enqueue was taken for a straggler of
    that run: published untracked, no run started. A producer whose clock went back, a second
    producer on the source name with a clock behind the first, or one forged result stamped at the
    end of time in the run before (every later result of the source, for ever) then had a whole
    run published untracked and never summarised. A straggler belongs to the run before by its place
    there: enqueued between frames answered below and above its own number."""
    make_group(client)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=20, source_idle_s=5.0)
    second = {"went back": 1_000, "skewed into the run before": 15_000, "forged in the run before": 50_000}[clock]
    for f in range(100):
        add(client, result("cam", f, f"r1-{f}", 10_000 + 100 * f))
    if clock == "forged in the run before":
        add(client, result("cam", 100, "forged", (1 << 53) - 1))
    run_steps(stage, 100.0, n=3)
    run_steps(stage, 110.0, n=2)  # idle: run 1 ends
    for f in range(10):
        add(client, result("cam", f, f"r2-{f}", second + f))
    run_steps(stage, 120.0, n=3)
    stage.flush()
    run2 = [r for r in tracked(client) if r.job_id.startswith("r2-")]
    assert [r.frame for r in run2] == list(range(10)), [r.frame for r in run2]
    assert all(f.track_id == 0 for r in run2 for f in r.faces), [f.track_id for r in run2 for f in r.faces]
    assert stage.late == 0 and ("cam", 2, 10) in summaries(client), summaries(client)
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0


@pytest.mark.parametrize("second_ms", [1_000, 10_050], ids=["before the first", "inside the first"])
def test_a_second_pass_stamped_by_a_clock_behind_is_not_dropped(redis_url, client, second_ms):
    """While the first run of a source goes on, a second pass from a producer whose clock is behind
    (enqueued 'before' the first pass's last frame): its frame numbers were answered already, under
    other job ids, so each of its results was dropped as a duplicate frame, acked, never published.
    A frame answered again under another job is a new pass, as without enqueue times; the frames
    after it are no stragglers of the first pass, which answered them."""
    make_group(client)
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=20)
    for f in range(10):
        add(client, result("cam", f, f"r1-{f}", 10_000 + 100 * f))
    run_steps(stage, 100.0, n=3)
    for f in range(10):
        add(client, result("cam", f, f"r2-{f}", second_ms + f))
    run_steps(stage, 101.5, n=3)
    stage.flush()
    out = tracked(client)
    assert sorted(r.job_id for r in out) == sorted([f"r1-{f}" for f in range(10)] + [f"r2-{f}" for f in range(10)])
    assert stage.duplicates == 0 and stage.late == 0
    assert summaries(client) == [("cam", 1, 10), ("cam", 2, 10)]
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0


@pytest.mark.parametrize("ended_by", ["idle", "eviction"])
def test_a_straggler_answered_twice_after_its_run_ended_is_published_once(redis_url, client, monkeypatch,
                                                                         ended_by):
    """A straggler of a run that had ended went out untracked without its job being remembered, so
    the job's second answer (the frame served twice) went out again: published twice."""
    stage = run_ended_without_frame_4(redis_url, client, monkeypatch, ended_by)
    add(client, result("clip.mp4", 4, "r1-4", 1_004))  # the slow worker's answer ...
    run_steps(stage, 120.0, n=2)
    add(client, result("clip.mp4", 4, "r1-4", 1_004))  # ... and the same frame served again
    run_steps(stage, 130.0, n=2)
    stage.flush()
    assert [r.job_id for r in tracked(client)].count("r1-4") == 1
    assert stage.late == 1 and stage.duplicates == 1
    assert client.xpending(KEYS.results, KEYS.track_group)["pending"] == 0
