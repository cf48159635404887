"""Issue 22 item 12: dead consumers piled up in the group (6 after a kill loop): every
worker SIGKILLed under a fresh name (a new pod name) stayed in XINFO CONSUMERS for
ever. Now a worker removes consumers that are dead: nothing pending, idle for twice
``reclaim_idle_ms`` and no heartbeat."""

from __future__ import annotations

import signal
import time

import pytest
from tests.support.procs import measure, spawn_double, stop, wait_until
from tests.support.streamkit import all_results, settings_for, tiny_jpeg

from moodstream.producer.client import Producer
from moodstream.shared.keys import Keys

pytestmark = pytest.mark.slow
KEYS = Keys("t")
KILLS = 6


def _consumers(client) -> dict[str, dict]:
    return {c["name"].decode(): c for c in client.xinfo_consumers(KEYS.frames, KEYS.group)}


def test_consumers_of_killed_workers_are_removed(redis_url, client):
    kw = {"batch_max": 4, "reclaim_idle_ms": 1000, "heartbeat_ttl_s": 2}
    producer = Producer(settings_for(redis_url))
    for i in range(KILLS):
        job = producer.submit_image(tiny_jpeg(i), source="kill", frame=i).job_id
        proc = spawn_double(redis_url, f"w-pod-{i}", **kw)
        wait_until(lambda: any(r.job_id == job for r in all_results(client, KEYS)), 120, f"worker {i} served")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    before = sorted(_consumers(client))
    live = spawn_double(redis_url, "w-live", **kw)
    try:
        t0 = time.monotonic()
        wait_until(lambda: set(_consumers(client)) == {"w-live"} or live.poll() is not None, 60,
                   "dead consumers removed")
        took = time.monotonic() - t0
        assert live.poll() is None, stop(live)[1][-2000:]
        left = _consumers(client)
        assert list(left) == ["w-live"]
    finally:
        live.send_signal(signal.SIGTERM)
        try:
            live.communicate(timeout=30)
        except Exception:
            stop(live)
    measure("dead_consumers_removed", before=len(before), after=len(left), removed_within_s=round(took, 1))
