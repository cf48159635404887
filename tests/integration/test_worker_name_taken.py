"""Two workers under one consumer name (`worker --consumer w1` twice: a copied compose file, a second
terminal): the second took the first's pending entries as a dead run's ('took back 13 entries left
pending under this name (a previous run died)') while the first was alive and busy; 37 results for 24
frames, `status` showing one worker whose count went from 232 to 13. A name whose heartbeat still
beats from another process is refused; one whose beats stopped (a worker that died) is taken, once
its heartbeat expires, as before; a restart in the same host and process id (a container's) is ours."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.streamkit import settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer

REPO = Path(__file__).resolve().parents[2]


def _worker(redis_url: str, name: str, timeout: int = 90) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t", MOODSTREAM_DEVICE="cpu",
               MOODSTREAM_HEARTBEAT_TTL_S="5", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "moodstream", "worker", "--consumer", name, "--detector", "haar",
                           "--threads", "1", "--max-frames", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_second_worker_under_a_live_worker_s_name_is_refused(redis_url, client, keys, checkpoint):
    first = start_worker(settings_for(redis_url), checkpoint, "w-same")
    try:
        wait_for(lambda: client.exists(keys.heartbeat("w-same")), 30, what="the first worker's heartbeat")
        served_before = client.hget(keys.heartbeat("w-same"), "pid")
        out = _worker(redis_url, "w-same")
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert "worker name 'w-same' is taken by a live worker" in out.stderr, out.stderr[-2000:]
        assert f"on {socket.gethostname()} (pid {os.getpid()}" in out.stderr, out.stderr[-2000:]
        assert client.hget(keys.heartbeat("w-same"), "pid") == served_before  # the first one's beats go on
        assert first.thread.is_alive()
    finally:
        first.stop()


def test_a_name_whose_worker_died_is_taken_once_its_heartbeat_expires(redis_url, client, keys):
    """A heartbeat left by a worker killed with SIGKILL on another host: no beat comes, and the new
    worker goes on when the hash expires (at most heartbeat_ttl_s), saying why it waited."""
    key = keys.heartbeat("w-gone")
    client.hset(key, mapping={"worker": "w-gone", "host": "elsewhere", "pid": 1, "beat_at_ms": 1})
    client.expire(key, 3)
    Producer(settings_for(redis_url)).submit_image(tiny_jpeg(0), source="one")  # served, then it exits
    started = time.monotonic()
    out = _worker(redis_url, "w-gone")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "a heartbeat under this name from elsewhere (pid 1)" in out.stderr, out.stderr[-2000:]
    assert time.monotonic() - started < 60
