"""A producer faster than the workers keeps the stream bounded: it waits, or drops the oldest."""

from __future__ import annotations

import threading
import time

from streamkit import all_results, report, result_counts, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
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
    assert probe.max_len <= settings.stream_maxlen + 100  # MAXLEN ~ trims whole 100-entry nodes
    assert counts["lost"] == 0 and counts["duplicates"] == 0


def test_drop_mode_drops_the_oldest_for_live_sources(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url, lag_limit=30, backpressure="drop")
    ensure_group(client, keys)  # workers exist but are all busy elsewhere: nothing is read meanwhile
    notices = []
    producer = Producer(settings, notice=notices.append)
    with BacklogProbe(client, keys) as probe:
        sent = [producer.submit_image(tiny_jpeg(i), source="camera", frame=i).job_id for i in range(300)]
    bound = settings.lag_limit + producer.check_every
    assert probe.max_backlog <= bound + 1 and group_backlog(client, keys).total <= bound
    assert producer.stats.dropped >= 300 - bound and notices and "dropped" in notices[0]
    worker = start_worker(settings, checkpoint, "w-late")
    try:
        wait_for(lambda: client.xlen(keys.results) >= 300 - producer.stats.dropped, 60, what="the survivors")
    finally:
        worker.stop()
    results = all_results(client, keys)
    counts = result_counts(results, sent)
    report("backpressure_drop", **counts, dropped=producer.stats.dropped, lag_limit=settings.lag_limit,
           max_backlog=probe.max_backlog)
    assert counts["results"] == 300 - producer.stats.dropped and counts["duplicates"] == 0
    assert counts["lost"] == producer.stats.dropped
    # what was dropped is the oldest: the newest frame survives, frame 0 does not
    served_frames = {r.frame for r in results}
    assert 299 in served_frames and 0 not in served_frames


def _slow():
    from doubles import FixedFaceDetectorTestDouble

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
    client.xreadgroup(keys.group, "c1", {keys.frames: ">"})  # a worker takes everything left ...
    pending = client.xpending_range(keys.frames, keys.group, "-", "+", 1000)
    client.xack(keys.frames, keys.group, *[p["message_id"] for p in pending])  # ... and serves it
    assert group_backlog(client, keys).total == 0
    wait = Producer(settings_for(redis_url, lag_limit=20, backpressure="wait"), retry_for_s=5)
    t0 = time.monotonic()
    for i in range(10):
        wait.submit_image(tiny_jpeg(i), source="wait", frame=i)
    assert time.monotonic() - t0 < 5 and wait.stats.waited_s == 0
