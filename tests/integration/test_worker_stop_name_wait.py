"""A worker stopped while it watches a heartbeat under its consumer name (`worker --consumer w1` started
by mistake beside a live w1, then Ctrl-C / SIGTERM during its "waiting up to 15 s for its next beat"):
it said "that heartbeat did not beat in 15 s: taking the name" at once, took the live worker's pending
entries as a dead run's, served them (a second result for each) and deleted the live worker's heartbeat
on its way out. A stop during that watch now leaves without taking the name: nothing served, the live
worker's entries still pending under it, its heartbeat kept."""

from __future__ import annotations

import logging

import redis

from tests.support.streamkit import settings_for, tiny_jpeg

from moodstream.shared.record import FrameResult
from moodstream.shared.transport import ensure_group
from moodstream.shared.wire import FIELD
from moodstream.producer.client import Producer
from moodstream.worker.service import Worker


class _StubPipeline:
    """No model: an empty result per frame (what is under test is which entries get served at all)."""

    model_version = "stub"

    def process(self, frames):
        return [FrameResult(size=(f.shape[1], f.shape[0]), faces=[], model_version="stub", timings_ms={})
                for f in frames]


class _StopWhileWatching(redis.Redis):
    """A client that requests the worker's stop at its second read of the heartbeat under its name:
    a SIGTERM arriving while the worker watches that heartbeat for a beat."""

    worker: Worker | None = None
    reads = 0

    def hmget(self, *args, **kwargs):
        out = super().hmget(*args, **kwargs)
        self.reads += 1
        if self.reads == 2 and self.worker is not None:
            self.worker.request_stop()
        return out


def test_a_stop_while_watching_a_taken_name_takes_neither_the_name_nor_its_entries(redis_url, client, keys, caplog):
    settings = settings_for(redis_url)
    producer = Producer(settings)
    for i in range(3):
        producer.submit_image(tiny_jpeg(i), source="cam", frame=i)
    ensure_group(client, keys)
    while (message := client.lpop(keys.intake)) is not None:  # as the live worker's mover did
        client.xadd(keys.frames, {FIELD: message})
    # the live worker "w1", on another host, holds the three frames (read, being served) and beats
    client.xreadgroup(keys.group, "w1", {keys.frames: ">"}, count=10)
    client.hset(keys.heartbeat("w1"), mapping={"worker": "w1", "host": "elsewhere", "pid": 7, "beat_at_ms": 1})
    client.expire(keys.heartbeat("w1"), 30)

    own = _StopWhileWatching.from_url(redis_url)
    worker = Worker(settings, _StubPipeline(), name="w1", client=own, handle_signals=False)
    own.worker = worker
    with caplog.at_level(logging.INFO, logger="moodstream.worker.service"):
        served = worker.run()

    assert own.reads >= 2  # it did watch the heartbeat
    assert served == 0
    assert client.xlen(keys.results) == 0  # no second result for the live worker's frames
    pending = client.xpending_range(keys.frames, keys.group, "-", "+", 10)
    assert [(p["consumer"], p["times_delivered"]) for p in pending] == [(b"w1", 1)] * 3
    assert client.hget(keys.heartbeat("w1"), "host") == b"elsewhere"  # the live worker's heartbeat kept
    assert "did not beat" not in caplog.text  # it waited no heartbeat TTL: it said so and took the name
    assert "stop requested" in caplog.text
