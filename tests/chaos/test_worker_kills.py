"""Issue 22 item 10: healthy frames were dead-lettered with ``max_deliveries`` after
crashes that had nothing to do with them: a worker stopped during solo attempts and
restarted under the same name 6 times answered 2 healthy frames with max_deliveries.

A supervisor (Kubernetes, docker, systemd) stops a process with SIGTERM and SIGKILLs
it after a grace period; here the grace (0.3 s) is shorter than a solo attempt (the
test double's detector takes 1.5 s), so every stop ends in a SIGKILL mid-attempt.
Such deaths are not the frame's doing and must not count against it."""

from __future__ import annotations

import signal
import time

import pytest
from tests.support.procs import measure, shut_down, spawn_double, wait_until
from tests.support.streamkit import all_results, dead_letters, pending_count, result_counts, settings_for, tiny_jpeg

from moodstream.producer.client import Producer
from moodstream.shared.keys import Keys

pytestmark = pytest.mark.slow
KEYS = Keys("t")
STOPS = 6


def _attempts_started(client) -> int:
    """Solo attempts counted so far (a stop that takes one back, or a success, lowers it)."""
    return sum(int(v) for v in client.hvals(KEYS.attempts))


def _supervisor_stop(proc, grace_s: float = 0.3) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except Exception:
        proc.kill()
    proc.communicate(timeout=30)


def test_stops_during_solo_attempts_do_not_dead_letter_healthy_frames(redis_url, client):
    settings = settings_for(redis_url, batch_max=4, max_deliveries=3)
    kw = {"batch_max": 4, "max_deliveries": 3, "delay_s": 1.5}
    producer = Producer(settings)
    sent = [producer.submit_image(tiny_jpeg(i), source="healthy", frame=i).job_id for i in range(8)]
    proc = spawn_double(redis_url, "w-stopped", **kw)
    try:
        # the first stop lands mid-batch: its frames come back as suspects, served alone
        wait_until(lambda: pending_count(client, KEYS) > 0, 120, "a batch in hand")
        time.sleep(0.5)
        _supervisor_stop(proc)
        mid_attempt = 0
        for _ in range(STOPS):
            before = _attempts_started(client)
            proc = spawn_double(redis_url, "w-stopped", **kw)
            # stop it while a solo attempt is in flight: this process has counted one in the attempts hash
            wait_until(lambda: _attempts_started(client) > before or proc.poll() is not None, 120, "a solo attempt")
            time.sleep(0.2)
            mid_attempt += client.hlen(KEYS.attempts) > 0
            _supervisor_stop(proc)
        proc = spawn_double(redis_url, "w-stopped", **kw)
        wait_until(lambda: len({r.job_id for r in all_results(client, KEYS)}) >= len(sent), 240, "every frame answered")
    finally:
        shut_down(proc, timeout_s=60)
    counts = result_counts(all_results(client, KEYS), sent)
    dead = [d["reason"].decode() for d in dead_letters(client, KEYS)]
    measure("supervisor_stops_during_solo_attempts", stops=STOPS + 1, stops_mid_attempt=mid_attempt,
            healthy=len(sent), dead_lettered=len(dead), **counts)
    assert mid_attempt >= STOPS - 1, "the stops did not land in solo attempts: the test proves nothing"
    assert dead == [], f"healthy frames dead-lettered: {dead}"
    assert counts["lost"] == 0 and counts["errors"] == 0
