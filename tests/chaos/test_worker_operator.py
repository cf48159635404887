"""Issue 22 items 2 and 7 (worker side): an operator's commands on the worker's keys
(FLUSHALL, FLUSHDB, DEL of the frames or results stream, XTRIM, XGROUP DESTROY) and
a long Lua script (BUSY) never stop a worker: it recreates what it needs, logs one
line, and carries on. Real redis-server, real worker processes."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis
from tests.support.procs import measure, spawn_cli, spawn_double, stop, wait_until
from tests.support.streamkit import all_results, settings_for, tiny_jpeg

from moodstream.producer.client import Producer
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys

pytestmark = pytest.mark.slow
KEYS = Keys("t")


def _wait_exit(proc, timeout_s: float = 60) -> str:
    """Its stderr, once it has exited by itself (killed after ``timeout_s``)."""
    try:
        return proc.communicate(timeout=timeout_s)[1]
    except Exception:
        return stop(proc)[1]


def _served(client: redis.Redis, job_id: str) -> bool:
    return any(r.job_id == job_id and r.ok for r in all_results(client, KEYS))


def _operators(admin: redis.Redis) -> dict:
    return {
        "FLUSHALL": admin.flushall,
        "FLUSHDB": admin.flushdb,
        "DEL frames": lambda: admin.delete(KEYS.frames),
        "DEL results": lambda: admin.delete(KEYS.results),
        "XTRIM frames": lambda: admin.xtrim(KEYS.frames, maxlen=0, approximate=False),
        "XGROUP DESTROY": lambda: admin.xgroup_destroy(KEYS.frames, KEYS.group),
        "DEL frames+results": lambda: admin.delete(KEYS.frames, KEYS.results),
    }


def test_operator_commands_on_idle_workers_never_stop_them(redis_url, client):
    """Two idle workers (blocked in XREADGROUP); after each operator command both are
    still running and the next frame is answered. Failed before: both exited 1 with
    ``ResponseError: UNBLOCKED the stream key no longer exists`` at the first FLUSHALL."""
    workers = [spawn_double(redis_url, f"w-op{i}", batch_max=4) for i in range(2)]
    producer = Producer(settings_for(redis_url))
    recover_s = {}
    try:
        first = producer.submit_image(tiny_jpeg(0), source="op", frame=0).job_id
        wait_until(lambda: _served(client, first), 120, "the first frame answered")
        for i, (what, command) in enumerate(_operators(client).items(), start=1):
            wait_until(lambda: sum(c.get("cmd") == "xreadgroup" for c in client.client_list()) >= 2, 30,
                       f"both workers idle in XREADGROUP before {what}")
            command()
            time.sleep(0.3)
            t0 = time.monotonic()
            job = producer.submit_image(tiny_jpeg(i), source="op", frame=i).job_id
            wait_until(lambda: _served(client, job) or any(w.poll() is not None for w in workers), 60,
                       f"a frame answered after {what}")
            dead = [w for w in workers if w.poll() is not None]
            assert not dead, f"after {what}: worker exited {dead[0].returncode}: {stop(dead[0])[1][-600:]}"
            recover_s[what] = round(time.monotonic() - t0, 2)
        for w in workers:
            w.send_signal(signal.SIGTERM)
        logs = [_wait_exit(w) for w in workers]
        assert all(w.returncode == 0 for w in workers), [log[-600:] for log in logs]
        # one line per event: a warning that names the worker and what vanished
        recreated = [line for log in logs for line in log.splitlines() if "recreating it" in line]
        assert recreated and all("worker w-op" in line for line in recreated)
        assert not any("Traceback" in log for log in logs)
    finally:
        for w in workers:
            stop(w)
    measure("operator_commands_idle_workers", commands=list(recover_s), workers=2, worker_exits=0,
            frame_answered_after_s=recover_s)


def test_operator_commands_under_load_lose_no_served_work(redis_url, client):
    """FLUSHALL / DEL / XGROUP DESTROY while two workers are busy: they keep running and
    serve what is sent after; frames deleted by the operator are the operator's doing."""
    workers = [spawn_double(redis_url, f"w-load{i}", delay_s=0.02, batch_max=4) for i in range(2)]
    producer = Producer(settings_for(redis_url))
    stop_feed = threading.Event()

    def feed():
        i = 0
        while not stop_feed.is_set():
            producer.submit_image(tiny_jpeg(i % 50), source="load", frame=i)
            i += 1
            time.sleep(0.01)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        wait_until(lambda: client.xlen(KEYS.results) >= 20, 120, "workers busy")
        ops = _operators(client)
        for what in ("FLUSHALL", "DEL frames", "XGROUP DESTROY", "DEL frames+results", "FLUSHDB"):
            ops[what]()
            time.sleep(1.0)
            assert all(w.poll() is None for w in workers), f"a worker died after {what}"
        stop_feed.set()
        feeder.join(10)
        last = producer.submit_image(tiny_jpeg(99), source="load", frame=10_000).job_id
        wait_until(lambda: _served(client, last), 60, "a frame answered after the storm")
        assert all(w.poll() is None for w in workers)
    finally:
        stop_feed.set()
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            _wait_exit(w)
    assert all(w.returncode == 0 for w in workers), [w.returncode for w in workers]


def test_a_long_lua_script_busy_is_ridden_out():
    """Item 7: a script running past busy-reply-threshold makes Redis answer BUSY to
    every command; idle and serving workers wait it out instead of exiting 1."""
    script = ("local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end "
              "local t0 = now() while now() - t0 < 3000000 do end return 1")
    with EmbeddedRedis(extra_args=["--busy-reply-threshold", "200"]) as server:
        client = redis.Redis.from_url(server.url)
        workers = [spawn_double(server.url, f"w-busy{i}", batch_max=4) for i in range(2)]
        producer = Producer(settings_for(server.url))
        try:
            first = producer.submit_image(tiny_jpeg(0), source="busy", frame=0).job_id
            wait_until(lambda: _served(client, first), 120, "the first frame answered")
            sent = [producer.submit_image(tiny_jpeg(i), source="busy", frame=i).job_id for i in range(1, 40)]
            t0 = time.monotonic()
            _run_script(server.url, script)
            time.sleep(0.5)
            with pytest.raises(redis.ResponseError, match="BUSY"):
                client.ping()
            wait_until(lambda: client.ping() if time.monotonic() - t0 > 3.5 else False, 30, "the script ended")
            wait_until(lambda: {r.job_id for r in all_results(client, KEYS)} >= set(sent)
                       or any(w.poll() is not None for w in workers), 120, "every frame answered")
            exited = [w.returncode for w in workers if w.poll() is not None]
            assert not exited, f"workers exited {exited}: {[stop(w)[1][-600:] for w in workers]}"
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            logs = [_wait_exit(w) for w in workers]
        assert all(w.returncode == 0 for w in workers), [log[-600:] for log in logs]
        measure("busy_script_3s", workers=2, worker_exits=0, frames=len(sent) + 1)


def test_a_worker_starting_during_a_long_script_waits_for_it():
    """Item 7: `moodstream worker` checks Redis at start; a BUSY answer there was taken
    for a bad setting ("Redis at ... answered: BUSY ...", exit 1), so a worker that
    KEDA started during a long script died. Now it waits, as for a server starting."""
    script = ("local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end "
              "local t0 = now() while now() - t0 < 6000000 do end return 1")
    with EmbeddedRedis(extra_args=["--busy-reply-threshold", "100"]) as server:
        client = redis.Redis.from_url(server.url)
        _run_script(server.url, script)
        time.sleep(0.3)
        worker = spawn_cli("worker", "--consumer", "w-late", MOODSTREAM_REDIS_URL=server.url, MOODSTREAM_PREFIX="t",
                           MOODSTREAM_DEVICE="cpu", MOODSTREAM_BATCH_MAX="4")
        try:
            wait_until(lambda: client.ping() if not _busy(client) else False, 30, "the script ended")
            job = Producer(settings_for(server.url)).submit_image(tiny_jpeg(1), source="late", frame=0).job_id
            wait_until(lambda: _served(client, job) or worker.poll() is not None, 120, "a frame answered")
            assert worker.poll() is None, f"worker exited {worker.returncode}: {stop(worker)[1][-1500:]}"
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            _wait_exit(worker)
        assert worker.returncode == 0


def _run_script(url: str, script: str) -> None:
    """Run ``script`` in the background (Redis answers BUSY to everyone else meanwhile)."""
    client = redis.Redis.from_url(url, socket_timeout=30)
    threading.Thread(target=lambda: client.eval(script, 0), daemon=True).start()


def _busy(client: redis.Redis) -> bool:
    try:
        client.ping()
        return False
    except redis.ResponseError as exc:
        return "BUSY" in str(exc)
