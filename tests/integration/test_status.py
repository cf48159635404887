"""`moodstream status` and producer.status against a real redis-server and a real worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from tests.support.procs import spawn_double
from tests.support.streamkit import big_png, report, settings_for, start_worker, tiny_jpeg, wait_for

import moodstream.producer.status as status_mod
from moodstream.cli import cli
from moodstream.producer.client import Producer
from moodstream.producer.status import (count_since, dead_letter_reasons, keda_lag, live_workers, render,
                                        server_time_ms, snapshot)
from moodstream.shared.embedded import free_port
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.transport import ensure_group
from moodstream.shared.wire import FIELD, encode_result

MOODSTREAM = [sys.executable, "-c", "from moodstream.cli import main; main()"]
HERE = Path(__file__).resolve().parent


def test_snapshot_shows_backlog_then_the_worker_that_drains_it(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url)
    ensure_group(client, keys)  # as the first worker does
    producer = Producer(settings)
    n = 12
    for i in range(n):
        producer.submit_image(tiny_jpeg(i), source="status", frame=i)
    before = snapshot(client, keys)
    assert before["workers"] == []
    assert before["backlog"]["total"] == n and before["backlog"]["exact"]
    assert before["intake"] == before["backlog"]["intake"] == n  # pushed, no worker's mover to move them
    assert before["lag"] == before["backlog"]["lag"] == 0  # XINFO GROUPS lag: what KEDA reads
    assert f"backlog: {n} = {n} in the intake" in render(before)
    assert before["results"]["length"] == 0 and before["frames_per_s"] == 0

    w = start_worker(settings, checkpoint, "w-status")
    try:
        (me,) = wait_for(lambda: [x for x in live_workers(client, keys) if x["served"] == n], 60,
                         what="the heartbeat to report every frame served")
        snap = snapshot(client, keys, window_s=30)
    finally:
        w.stop()
    assert me["worker"] == "w-status" and me["model_version"] == checkpoint.version
    assert me["batches"] >= 2 and me["dead_lettered"] == 0 and me["pid"] > 0 and me["status"] in ("idle", "busy")
    assert 0 <= me["age_s"] < settings.heartbeat_ttl_s
    assert [x["worker"] for x in snap["workers"]] == ["w-status"]
    assert snap["backlog"] == {"intake": 0, "lag": 0, "pending": 0, "total": 0, "exact": True} and snap["lag"] == 0
    assert snap["intake"] == 0
    assert snap["results"]["length"] == n and snap["results"]["last_minute"] == n
    assert snap["frames_per_s"] == round(n / 30, 2)
    assert snap["redis"]["version"] and "redis://" not in json.dumps(snap)
    assert live_workers(client, keys) == []  # a stopped worker removes its heartbeat


def test_an_idle_worker_says_every_frame_it_served_within_a_second(redis_url, client, keys, checkpoint):
    """The dashboard showed `served 58` beside 60 results for up to a third of heartbeat_ttl_s after the
    work ended: the count went out only with the next scheduled beat. A worker that served frames since
    its last beat beats again once it is half a second past it."""
    settings = settings_for(redis_url, heartbeat_ttl_s=90)  # scheduled beats every 30 s: never in this test
    ensure_group(client, keys)
    w = start_worker(settings, checkpoint, "w-fresh")
    try:
        wait_for(lambda: live_workers(client, keys), 60, what="the worker's first beat")
        producer = Producer(settings)
        n = 5
        for i in range(n):
            producer.submit_image(tiny_jpeg(i), source="fresh", frame=i)
        wait_for(lambda: client.xlen(keys.results) == n, 60, what="every result")
        done = time.monotonic()
        (me,) = wait_for(lambda: [x for x in live_workers(client, keys) if x["served"] == n], 5,
                         what="the heartbeat to say every frame served")
        assert time.monotonic() - done < 2.5 and me["status"] == "idle"
    finally:
        w.stop()


def test_dead_letters_counted_by_reason(redis_url, client, keys, checkpoint, monkeypatch):
    settings = settings_for(redis_url, max_pixels=100 * 100)
    poison = [b"not msgpack \xc1", b"", b"\xc1\xc1", None]  # None: an entry without the msg field
    for payload in poison:
        client.xadd(keys.frames, {FIELD: payload} if payload is not None else {b"other": b"1"})
    Producer(settings).submit_image(big_png(), source="big")  # 40,000 px: too_large (a JPEG is read smaller)
    w = start_worker(settings, checkpoint, "w-dead")
    try:
        wait_for(lambda: client.xlen(keys.dead) >= len(poison) + 1, 60, what="all dead-lettered")
    finally:
        w.stop()
    want = {"not_msgpack": 3, "missing_field": 1, "too_large": 1}
    d = snapshot(client, keys)["dead_letters"]
    assert d["by_reason"] == want and d["length"] == 5 and d["counted"] == 5 and not d["truncated"]
    monkeypatch.setattr(status_mod, "PAGE", 2)  # the same counts when read over several pages
    assert dead_letter_reasons(client, keys)["by_reason"] == want
    part = dead_letter_reasons(client, keys, limit=3)  # the newest three
    assert part["truncated"] and part["counted"] == 3 and "newest 3 of 5" in part["note"]
    newest = [f[b"reason"].decode() for _, f in client.xrevrange(keys.dead, count=3)]
    assert part["by_reason"] == dict(Counter(newest))


@pytest.fixture(params=["admin", "no_scripts"])
def counting_client(request, any_client):
    """A client of the Redis 7 and of the 6.2 server (``any_client``), as an admin and as a user
    refused scripts (``-@scripting``: an ACL like the dashboard's), where XRANGE counts."""
    if request.param == "admin":
        yield any_client
        return
    any_client.acl_setuser("noscripts", enabled=True, passwords=["+noscripts"], keys=["*"],
                           commands=["+@all", "-@scripting"])
    kw = any_client.connection_pool.connection_kwargs
    c = redis.Redis(host=kw["host"], port=kw["port"], username="noscripts", password="noscripts")
    yield c
    c.close()
    any_client.acl_deluser("noscripts")


def test_count_since_pages_and_window(counting_client, monkeypatch):
    client = counting_client
    for ms in (1000, 2000, 3000, 3001, 4000):
        client.xadd("s", {"x": 1}, id=f"{ms}-0")
    monkeypatch.setattr(status_mod, "PAGE", 2)
    assert count_since(client, "s", 2000) == (4, False)
    assert count_since(client, "s", 0) == (5, False)
    assert count_since(client, "s", 5000) == (0, False)
    assert count_since(client, "s", 0, limit=3) == (3, True)
    assert count_since(client, "s", 3000, limit=3) == (3, False)  # exactly the limit, nothing beyond


def test_keda_lag_is_none_without_a_group(redis_url, client, keys):
    assert keda_lag(client, keys) is None
    client.xadd(keys.frames, {"x": 1})
    assert keda_lag(client, keys) is None
    assert snapshot(client, keys)["backlog"]["lag"] == 1  # no group yet: the stream length


def test_a_snapshot_asks_xinfo_groups_once_and_says_keda_s_lag_from_that_reply(redis_url, client, keys):
    """`status` sent XINFO GROUPS twice a snapshot (each `--watch` redraw, each dashboard refresh): once for
    the backlog, again for the lag KEDA reads. The backlog's reply says it; the same lag as
    :func:`keda_lag` asks for: none without a stream or group, Redis's figure, nil after an XDEL."""
    from moodstream.shared.transport import BacklogGauge

    gauge = BacklogGauge(client, keys)

    def xinfo_groups() -> int:
        return _calls(client)["xinfo|groups"]

    states = []
    for step in ("no stream", "no group", "lag", "xdel"):
        if step == "no group":
            ids = [client.xadd(keys.frames, {"x": i}) for i in range(3)]
        elif step == "lag":
            ensure_group(client, keys)
        elif step == "xdel":
            client.xdel(keys.frames, ids[1])  # an unread entry: Redis 7.0's lag is nil from here on
        before = xinfo_groups()
        snap = snapshot(client, keys)
        assert xinfo_groups() - before == 1, step  # the backlog's round trip
        states.append((step, snap["lag"], keda_lag(client, keys)))
        states.append((step, snapshot(client, keys, gauge=gauge)["lag"], keda_lag(client, keys)))  # `--watch`'s
    assert all(lag == keda for _, lag, keda in states), states
    assert [lag for _, lag, _ in states[::2]][:3] == [None, None, 3], states


def test_status_json_and_screen_name_the_live_worker(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url)
    Producer(settings).submit_image(tiny_jpeg(1), source="cli")
    w = start_worker(settings, checkpoint, "w-cli")
    try:
        wait_for(lambda: client.xlen(keys.results) == 1 and live_workers(client, keys), 60, what="one result")
        proc = subprocess.run([*MOODSTREAM, "status", "--json", "--redis-url", redis_url, "--prefix", "t"],
                              capture_output=True, text=True, timeout=60)
        screen = CliRunner().invoke(cli, ["status", "--redis-url", redis_url, "--prefix", "t"])
    finally:
        w.stop()
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)  # the contract: one JSON object naming the live workers, lag and backlog
    assert [x["worker"] for x in snap["workers"]] == ["w-cli"]
    assert snap["lag"] == 0 and snap["backlog"]["total"] == 0 and snap["results"]["length"] == 1
    assert screen.exit_code == 0, screen.output
    assert "workers: 1 live" in screen.output and "w-cli" in screen.output and "backlog: 0" in screen.output


@pytest.mark.slow
def test_status_without_redis_is_one_line_and_exit_1():
    """One error line, exit 1; before it, at once, the line that says what it waits for (the wait
    was silent: ~10 s, the default redis_wait_s, that looked like a hang). Both on stderr, nothing on stdout."""
    port = free_port()
    url = f"redis://admin:hunter2@127.0.0.1:{port}/0"
    res = CliRunner().invoke(cli, ["status", "--redis-url", url], env={"MOODSTREAM_REDIS_WAIT_S": "1"})
    assert res.exit_code == 1 and res.stdout == "", res.output
    wait, error = res.stderr.splitlines()
    assert wait == f"waiting up to 1 s for Redis at redis://***@127.0.0.1:{port}/0 (connection refused)"
    assert error.startswith(f"Error: cannot reach Redis at redis://***@127.0.0.1:{port}/0: ")
    assert "hunter2" not in res.output and "Traceback" not in res.output


def test_watch_redraws_until_ctrl_c(redis_url):
    proc = subprocess.Popen([*MOODSTREAM, "status", "--watch", "0.2", "--json", "--redis-url", redis_url,
                             "--prefix", "t"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        drawn = [proc.stdout.readline() for _ in range(2)]  # two redraws (a fixed 3 s: a slow start saw one)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # stopped, as `results --follow` is (was 0)
    assert "Traceback" not in err
    frames = [json.loads(line) for line in ("".join(drawn) + out).splitlines()]
    assert len(frames) >= 2 and all("backlog" in f and "workers" in f for f in frames)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_results_follow_stops_on_ctrl_c_with_what_it_printed(redis_url, client, keys, sig, code):
    """`results --follow` is stopped with Ctrl-C: it said click's 'Aborted!' and exited 1, the code
    of 'fewer than --count arrived' (SIGTERM: no line, 143 only by the default handler). Now it stops
    quietly, what it printed kept, 128 + the signal, as `produce` and `analyze` do."""
    client.xadd(keys.results, {FIELD: _result(0)})
    proc = subprocess.Popen([*MOODSTREAM, "results", "--from-start", "--follow", "--redis-url", redis_url,
                             "--prefix", "t"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # the result printed (its handlers are in place by then) ...
        wait_for(lambda: any(c.get("cmd") in ("xread", "xreadgroup") for c in client.client_list()), 60,
                 what="results --follow blocked in XREAD")  # ... then it waits for more
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Aborted" not in err and "Traceback" not in err, err
    assert [json.loads(line)["job_id"] for line in (first + out).splitlines()] == [f"{0:032x}"]


@pytest.mark.slow
def test_a_worker_draining_a_backlog_is_busy_the_whole_time(redis_url, client, keys):
    """Issue 23 item 7: the heartbeat is written between batches, so `status` showed a
    worker "idle" for the whole drain of a backlog with 16 entries in hand. A real worker
    process (double_worker.py: the real Worker, a detector taking 0.5 s a batch) drains 64
    frames; every time it holds entries in the group, status says busy and counts them."""
    settings = settings_for(redis_url, batch_max=8)
    ensure_group(client, keys)
    producer = Producer(settings)
    n = 64
    for i in range(n):
        producer.submit_image(tiny_jpeg(i), source="drain", frame=i)
    proc = spawn_double(redis_url, "w-drain", delay_s=0.5, batch_max=8)
    samples = []  # (status, pending shown, pending in XPENDING) while the backlog drains
    try:
        wait_for(lambda: live_workers(client, keys), 120, what="the worker's heartbeat")
        deadline = time.monotonic() + 180
        def held() -> int:
            return {c["name"].decode(): c["pending"] for c in client.xinfo_consumers(keys.frames, keys.group)
                    }.get("w-drain", 0)

        while client.xlen(keys.results) < n and time.monotonic() < deadline:
            # held before and after status reads: between two reads the worker may ack its last
            # entries, and then status rightly says idle (a fresh clone's run once saw 1 in 41)
            before, workers = held(), live_workers(client, keys)
            for w in workers:
                samples.append((w["status"], w["pending"], min(before, held())))
            time.sleep(0.1)
        assert client.xlen(keys.results) == n, proc.stderr.read() if proc.poll() is not None else "too slow"
        done = snapshot(client, keys)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    holding = [s for s in samples if s[2] > 0]
    report("status_drain", samples=len(samples), holding=len(holding),
           busy_while_holding=sum(status == "busy" for status, _, _ in holding))
    assert len(holding) >= 10, samples  # 8 batches of 0.5 s each, sampled every 0.1 s
    assert all(status == "busy" and shown > 0 for status, shown, _ in holding), \
        Counter(status for status, _, _ in holding)
    (me,) = done["workers"] or [{"pending": 0, "status": "idle"}]
    assert me["pending"] == 0 and me["status"] == "idle"  # drained: holds nothing


def test_frames_per_s_now_beside_the_average(redis_url, client, keys):
    """Issue 23 item 7: frames/s was a 60 s average only (1,001 frames done in 0.9 s showed
    16.68 frames/s). Now the last 5 s beside it, in --json (new keys) and on the screen."""
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    for i in range(40):  # 40 results 30 s ago, 50 in the last second
        client.xadd(keys.results, {FIELD: b"x"}, id=f"{now_ms - 30_000 + i}-0")
    for i in range(50):
        client.xadd(keys.results, {FIELD: b"x"}, id=f"{now_ms - 1_000 + i * 10}-0")
    snap = snapshot(client, keys, window_s=60)
    assert snap["frames_per_s"] == round(90 / 60, 2)  # the average, as before
    assert snap["frames_per_s_now"] == round(50 / 5, 2)
    assert snap["results"]["recent"] == 50 and snap["results"]["recent_window_s"] == 5
    screen = render(snap)
    assert "10.00 frames/s now" in screen and "1.50 average" in screen, screen


def _result(i: int) -> bytes:
    """A worker's result of three faces (box, score, landmarks, emotion, probabilities): ~1.2 KB."""
    probs = dict(zip(LABELS, (0.4, 0.2, 0.1, 0.1, 0.08, 0.06, 0.04, 0.02)))
    faces = [Face(box=(10.5 + f, 20.25, 90.75, 120.125), score=0.998, landmarks=[(30.5 + k, 50.25) for k in range(5)],
                  emotion="neutral", probabilities=probs) for f in range(3)]
    return encode_result(FrameResult(job_id=f"{i:032x}", source="rtsp://camera-1.example/stream1", frame=i,
                                     size=(1280, 720), faces=faces, model_version="emotion-v1",
                                     timings_ms={"detect": 31.5, "classify": 4.2}, worker="w-1",
                                     enqueued_at_ms=1733390000000 + i))


def test_a_snapshot_over_a_full_window_sends_counts_not_results(redis_url, client, keys):
    """Counting the frames/s windows read every result in them by XRANGE, each whole (every face
    of its frame): 20,000 results in the last minute were 36 MB sent to `status` per snapshot (the
    window, and its last 5 s again), each redraw of --watch (docs/results/status_results_window.json).
    The counts are the same now, and Redis sends counts and ids, not the results."""
    now = server_time_ms(client)
    pipe = client.pipeline(transaction=False)
    for i in range(20_000):  # 40 s of results, ending 10 s ahead: thousands in the last 5 s when counted
        pipe.xadd(keys.results, {FIELD: _result(i)}, id=f"{now - 30_000 + i * 2}-0")
    pipe.execute()
    before = int(client.info("stats")["total_net_output_bytes"])
    snap = snapshot(client, keys, window_s=60)
    sent = int(client.info("stats")["total_net_output_bytes"]) - before
    r = snap["results"]
    assert r["length"] == r["last_minute"] == 20_000 and not r["truncated"]
    assert r["recent"] >= 1000 and not r["recent_truncated"]
    assert sent < 64 * 1024, f"{sent} bytes sent for one snapshot"


def test_a_heartbeat_key_of_another_type_is_skipped(redis_url, client, keys):
    """`status` once died on HGETALL of a heartbeat key that is not a hash (WRONGTYPE traceback)."""
    client.set(keys.heartbeat("evil"), "x")
    client.hset(keys.heartbeat("w1"), mapping={"worker": "w1", "status": "idle", "beat_at_ms": 1, "served": 3})
    assert [w["worker"] for w in live_workers(client, keys)] == ["w1"]
    ran = CliRunner().invoke(cli, ["status", "--redis-url", redis_url, "--prefix", "t", "--json"])
    assert ran.exit_code == 0 and "Traceback" not in ran.output, (ran.output, ran.exception)


class _NoPipeline:
    model_version = "none"  # only its name goes into the heartbeat


def _calls(client) -> Counter:
    return Counter({k[len("cmdstat_"):]: int(v["calls"]) for k, v in client.info("commandstats").items()})


def test_live_workers_among_many_unrelated_keys_reads_no_keyspace(redis_url, client, keys):
    """On a Redis shared with other applications, live_workers() walked the whole keyspace (SCAN
    MATCH <prefix>:heartbeat:* COUNT 1000): 200 SCAN calls for 200,000 unrelated keys, each redraw
    of `status --watch` and every 2 s with the dashboard open. Now a handful of commands whatever
    the database holds; by SCAN as before where no worker writes the index (a rolling upgrade)."""
    from moodstream.worker.service import Worker

    settings = settings_for(redis_url)
    names = [f"w-{i}" for i in range(4)]
    for name in names:
        Worker(settings, _NoPipeline(), name=name, client=client, handle_signals=False).heartbeat()
    pipe = client.pipeline(transaction=False)
    for i in range(200):
        pipe.mset({f"other:app:{i}:{j}": "x" for j in range(1000)})
    pipe.execute()
    before = _calls(client)
    workers = live_workers(client, keys)
    spent = _calls(client) - before - Counter(info=1)
    assert [w["worker"] for w in workers] == names
    # TIME, XINFO CONSUMERS, the index, and a HGETALL a worker (one pipeline): nothing that grows with the database
    assert spent["scan"] == 0 and spent["hgetall"] == len(names) and sum(spent.values()) <= len(names) + 3, dict(spent)
    assert all(w["model_version"] == "none" and w["age_s"] is not None for w in workers)
    client.delete(keys.heartbeats)  # workers of the release before: no index, found by SCAN
    assert [{**w, "age_s": 0} for w in live_workers(client, keys)] == [{**w, "age_s": 0} for w in workers]


def test_the_workers_index_stays_small_and_lists_only_live_heartbeats(redis_url, client, keys):
    """Each beat drops the index entries older than INDEX_KEPT_TTLS heartbeat TTLs (workers killed
    long ago; the margin is for clocks); a worker killed since (its hash expired) or that left (hash
    removed) is not listed, and the last one to leave keeps the index, so `status` on a fleet scaled
    to zero does not walk the keyspace."""
    from moodstream.worker.service import INDEX_KEPT_TTLS, Worker

    settings = settings_for(redis_url)  # heartbeat_ttl_s=5
    now = server_time_ms(client)
    kept_ms = INDEX_KEPT_TTLS * settings.heartbeat_ttl_s * 1000
    client.zadd(keys.heartbeats, {"killed-long-ago": now - kept_ms - 5000, "killed-just-now": now - 6000})
    worker = Worker(settings, _NoPipeline(), name="w-a", client=client, handle_signals=False)
    worker.heartbeat()
    assert client.zrange(keys.heartbeats, 0, -1) == [b"killed-just-now", b"w-a"]
    assert [w["worker"] for w in live_workers(client, keys)] == ["w-a"]
    worker.teardown()
    before = _calls(client)
    assert live_workers(client, keys) == []
    assert (_calls(client) - before)["scan"] == 0 and client.exists(keys.heartbeats)


@pytest.mark.parametrize("bad", ["nonsense", "-1", "99999999999999999999999-0", "1-2-3", ""])
def test_results_from_an_id_that_is_no_stream_id_is_a_usage_error(redis_url, bad):
    """`results --from-id nonsense` was Redis's ResponseError as a traceback; '' read from now, silently."""
    ran = CliRunner().invoke(cli, ["results", "--from-id", bad, "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 2 and "--from-id" in ran.output and "Traceback" not in ran.output, ran.output


def test_bytes_that_are_not_utf8_and_terminal_escapes_in_redis_are_shown_safely(redis_url, client, keys):
    """A heartbeat or dead letter holding b'\\xff' crashed `status` (UnicodeDecodeError) and made the
    dashboard report Redis down; escape sequences in them reached the terminal raw."""
    client.hset(keys.heartbeat("x"), mapping={"worker": "w\x1b[2J\x1b[31mRED", "status": "idle", "device": b"\xff",
                                              "beat_at_ms": 1, "served": 1})
    client.xadd(keys.dead, {"reason": b"\xff\xfe bad", "detail": "\x1b]0;PWNED\x07evil"})
    ran = CliRunner().invoke(cli, ["status", "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 0 and "Traceback" not in ran.output, (ran.output, ran.exception)
    assert "\x1b" not in ran.output and "\x07" not in ran.output
    assert [w["worker"] for w in live_workers(client, keys)] == ["w\x1b[2J\x1b[31mRED"]  # the data itself kept


def test_the_redis_version_a_server_reports_is_shown_escaped(redis_url, client, keys):
    """The screen's first line shows INFO's redis_version, a server's words (a proxy, or a server that
    is not Redis, says what it likes): it was the one field of the screen shown raw."""
    snap = snapshot(client, keys)
    snap["redis"]["version"] = "7.2\x1b[2J\x1b]0;PWNED\x07"
    first = render(snap).splitlines()[0]
    assert first.endswith("redis 7.2\\x1b[2J\\x1b]0;PWNED\\x07"), first


def test_a_heartbeat_with_no_time_or_name_reads_as_unknown_not_decades_old(redis_url, client, keys):
    """A heartbeat with beat_at_ms=-5 showed as seen 1796464589 s ago; one with no fields at all as
    worker "-", though its key names the worker."""
    client.hset(keys.heartbeat("w-neg"), mapping={"worker": "w-neg", "status": "idle", "beat_at_ms": -5})
    client.hset(keys.heartbeat("w-bare"), mapping={"status": "idle"})
    workers = {w["worker"]: w for w in live_workers(client, keys)}
    assert set(workers) == {"w-neg", "w-bare"}
    assert workers["w-neg"]["age_s"] is None and workers["w-bare"]["age_s"] is None
    ran = CliRunner().invoke(cli, ["status", "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 0 and "w-bare" in ran.output and "1796" not in ran.output, ran.output


@pytest.mark.parametrize("key,command", [("results", ["results"]), ("results", ["status"]), ("dead", ["status"]),
                                         ("frames", ["produce", "samples/street.jpg"]),
                                         ("intake", ["produce", "samples/street.jpg"]), ("intake", ["status"])])
def test_a_stream_key_of_another_type_is_one_line(redis_url, client, keys, key, command):
    """A results, dead-letter or frames key turned into a string made `results`, `status` and `produce`
    end with redis's WRONGTYPE traceback (and ended a running `results --follow` / `status --watch`).
    And `produce`, failing so, left Ctrl-C and SIGTERM ignored in its process (held while the count is
    said, never given back): a program running it lost its Ctrl-C, and the suite's later children
    inherited SIGINT ignored (two Ctrl-C tests failed in a full run)."""
    import signal
    from pathlib import Path

    client.set(getattr(keys, key), "not a stream")
    repo = Path(__file__).resolve().parents[2]
    args = [a if not a.startswith("samples/") else str(repo / a) for a in command]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ran = CliRunner().invoke(cli, [*args, "--redis-url", redis_url, "--prefix", "t"])
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # given back, whatever the ending
    assert ran.exit_code == 1 and "Traceback" not in ran.output, (ran.output, ran.exception)
    said = "not a list" if key == "intake" else "not a stream"  # the intake is a list: produce names it
    assert said in ran.output or "WRONGTYPE" in ran.output, ran.output
    assert isinstance(ran.exception, SystemExit), repr(ran.exception)


def test_dead_letters_are_counted_over_the_newest_thousand(redis_url, client, keys):
    """Each redraw of `status --watch` read up to 100,000 dead letters to count their reasons, each
    with 4 KiB of its message: 451 MB and 6 s a redraw for a full stream of 100,000, 45 MB for the
    default MAXLEN of 10,000 (docs/results/status_dead_letters.py). Now the newest 1,000, the
    dashboard's bound, and the JSON says so with the keys it had."""
    pipe = client.pipeline(transaction=False)
    for i in range(1500):  # the oldest 500 one reason, the newest 1,000 another
        pipe.xadd(keys.dead, {"reason": "bad_field" if i < 500 else "too_large", "detail": "x", "msg": b"\0" * 4096})
    pipe.execute()
    before = client.info("stats")["total_net_output_bytes"]
    d = snapshot(client, keys)["dead_letters"]
    read = client.info("stats")["total_net_output_bytes"] - before
    assert d == {"length": 1500, "by_reason": {"too_large": 1000}, "counted": 1000, "truncated": True,
                 "note": "reasons counted over the newest 1000 of 1500 dead letters"}
    assert read < 1100 * 4200, read  # the newest 1,000 entries (and the rest of the snapshot), not all 1,500
    assert "[reasons counted over the newest 1000 of 1500 dead letters]" in render(snapshot(client, keys))


def test_a_worker_whose_user_may_not_write_the_index_still_beats(redis_url, client, keys, caplog):
    """A worker image deployed beside the ACL rules of the release before (no ZADD /
    ZREMRANGEBYSCORE on the index) stopped at its first heartbeat, NOPERM: an upgrade of the image
    alone took the whole fleet down. Now it beats without the index, says so once, and is found by
    SCAN while no worker writes the index."""
    import logging

    from moodstream.worker.service import Worker

    user = f"old-rules-{free_port()}"
    client.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["~t:*"],
                       commands=["+@all", "-zadd", "-zremrangebyscore"])
    try:
        old = redis.Redis.from_url(redis_url, username=user, password="pw")
        worker = Worker(settings_for(redis_url), _NoPipeline(), name="w-old", client=old, handle_signals=False)
        with caplog.at_level(logging.WARNING, logger="moodstream.worker.service"):
            worker.heartbeat()
            worker.heartbeat()
        assert client.exists(keys.heartbeat("w-old")) and not client.exists(keys.heartbeats)
        assert [w["worker"] for w in live_workers(client, keys)] == ["w-old"]
        said = [r.getMessage() for r in caplog.records if keys.heartbeats in r.getMessage()]
        assert len(said) == 1 and "zadd" in said[0].lower(), said
        old.close()
    finally:
        client.acl_deluser(user)


def test_bench_stream_waits_for_a_worker_by_the_index_not_by_scan(redis_url, client, keys):
    """`bench stream --no-spawn` against a running deployment waited for a heartbeat by SCAN MATCH
    over the whole keyspace (200 SCAN calls a 0.2 s poll among 200,000 unrelated keys)."""
    from moodstream.trainer.bench.stream import _wait_for_worker
    from moodstream.worker.service import Worker

    settings = settings_for(redis_url)
    Worker(settings, _NoPipeline(), name="w-live", client=client, handle_signals=False).heartbeat()
    pipe = client.pipeline(transaction=False)
    for i in range(20):
        pipe.mset({f"other:app:{i}:{j}": "x" for j in range(1000)})
    pipe.execute()
    before = _calls(client)
    _wait_for_worker(client, settings, None, timeout_s=5)
    assert (_calls(client) - before)["scan"] == 0


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_status_watch_and_tracks_follow_stop_as_results_does(redis_url, client, keys, sig, code):
    """`status --watch` and `tracks --follow` are stopped with Ctrl-C as `results --follow` is, yet
    exited 0 on Ctrl-C (a script could not tell a stop from a run that ended) and were killed outright
    by SIGTERM (no handler: what was printed could end mid-screen). Now 128 + the signal, quietly,
    every printed line whole."""
    common = ["--redis-url", redis_url, "--prefix", "t"]
    watch = subprocess.Popen([*MOODSTREAM, "status", "--watch", "0.2", "--json", *common],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tracks = subprocess.Popen([*MOODSTREAM, "tracks", "--follow", *common],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = watch.stdout.readline()  # a screen drawn: its handlers are in place
        wait_for(lambda: any(c.get("cmd") in ("xread", "xreadgroup") for c in client.client_list()), 60,
                 what="tracks --follow blocked in XREAD")
    finally:
        for proc in (watch, tracks):
            proc.send_signal(sig)
        (out, err), (t_out, t_err) = watch.communicate(timeout=30), tracks.communicate(timeout=30)
    assert (watch.returncode, tracks.returncode) == (code, code), err + t_err
    assert "Traceback" not in err + t_err and "Aborted" not in err + t_err, err + t_err
    assert all("backlog" in json.loads(line) for line in (first + out).splitlines())
    assert t_out == ""
