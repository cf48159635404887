"""Three workers in one consumer group share a stream: every job gets exactly one result."""

from __future__ import annotations

import pytest
from tests.support.streamkit import all_results, report, result_counts, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer


@pytest.mark.slow
def test_three_workers_500_frames_exactly_once(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url, batch_max=16, batch_wait_ms=20)
    producer = Producer(settings)
    frames = [tiny_jpeg(i % 50) for i in range(500)]
    workers = [start_worker(settings, checkpoint, f"w{i}") for i in range(3)]
    try:
        sent = [producer.submit_image(data, source="scale", frame=i).job_id for i, data in enumerate(frames)]
        wait_for(lambda: client.xlen(keys.results) >= 500, 120, what="500 results")
    finally:
        for w in workers:
            w.stop()
    results = all_results(client, keys)
    counts = result_counts(results, sent)
    per_worker = {w.worker.name: w.worker.served for w in workers}
    report("three_workers", **counts, per_worker=per_worker,
           batches=sum(w.worker.batches for w in workers))
    assert counts["duplicates"] == 0 and counts["lost"] == 0 and counts["unexpected"] == 0
    assert counts["errors"] == 0
    assert sum(per_worker.values()) == 500
    assert sum(1 for n in per_worker.values() if n > 0) >= 2, per_worker  # the work was shared
    assert client.xpending(keys.frames, keys.group)["pending"] == 0
    r = results[0]
    assert r.model_version and r.worker in per_worker and len(r.faces) == 1
    assert set(r.timings_ms) >= {"queue_wait", "decode", "detect", "classify"}
    assert abs(sum(r.faces[0].probabilities.values()) - 1) < 0.01
    # heartbeats are removed on a clean stop
    assert not list(client.scan_iter(keys.heartbeat_pattern))


def test_dynamic_batching_full_or_oldest_waited(redis_url, client, keys, checkpoint):
    """A batch goes when it holds batch_max frames, or when its oldest frame has
    waited batch_wait_ms: a lone frame waits about that long, a burst does not."""
    from tests.support.doubles import FixedFaceDetectorTestDouble

    settings = settings_for(redis_url, batch_max=4, batch_wait_ms=400)
    detector = FixedFaceDetectorTestDouble()
    w = start_worker(settings, checkpoint, "w-batch", detector=detector)
    producer = Producer(settings)
    try:
        wait_for(lambda: list(client.scan_iter(keys.heartbeat_pattern)), 30, what="the worker")
        producer.submit_image(tiny_jpeg(1), source="lone")
        wait_for(lambda: client.xlen(keys.results) >= 1, 10, what="the lone frame")
        for i in range(8):  # a burst: two full batches, no waiting
            producer.submit_image(tiny_jpeg(10 + i), source="burst", frame=i)
        wait_for(lambda: client.xlen(keys.results) >= 9, 10, what="the burst")
    finally:
        w.stop()
    results = all_results(client, keys)
    lone = results[0]
    assert lone.timings_ms["queue_wait"] >= 350  # held for company, then sent alone
    assert detector.batches[:1] == [1]
    assert sorted(detector.batches[1:]) == [4, 4]
    burst_waits = [r.timings_ms["queue_wait"] for r in results[1:]]
    assert max(burst_waits) < 350, burst_waits


def test_max_frames_exits_after_n(redis_url, client, keys, checkpoint):
    from moodstream.shared.transport import group_backlog

    settings = settings_for(redis_url, batch_max=3)
    producer = Producer(settings)
    for i in range(10):
        producer.submit_image(tiny_jpeg(i), source="quota", frame=i)
    w = start_worker(settings, checkpoint, "w-quota", max_frames=4)
    w.thread.join(30)
    assert not w.thread.is_alive() and not w.error
    assert w.worker.served == 4 and client.xlen(keys.results) == 4
    b = group_backlog(client, keys)
    assert (b.lag, b.pending) == (6, 0)  # the rest is left, unread, for other workers
