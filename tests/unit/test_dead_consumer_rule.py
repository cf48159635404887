"""Which consumers a worker removes from the group (issue 22 item 12), against a real
redis-server: only those with nothing pending, no heartbeat and idle for twice
reclaim_idle_ms. Removing one that holds entries would drop them from the pending list."""

from __future__ import annotations

import time

import redis

from moodstream.shared.keys import Keys
from moodstream.shared.settings import Settings
from moodstream.shared.transport import ensure_group
from moodstream.worker.service import Worker

KEYS = Keys("t")


class _NoPipeline:
    model_version = "none"  # the sweep never infers


def test_only_dead_idle_consumers_without_entries_are_removed(redis_url):
    client = redis.Redis.from_url(redis_url)
    ensure_group(client, KEYS)
    client.xadd(KEYS.frames, {"msg": b"x"})
    for name in ("dead-idle", "alive-beating", "me"):
        client.xreadgroup(KEYS.group, name, {KEYS.frames: "0"}, count=1)  # seen, nothing new delivered
    client.xreadgroup(KEYS.group, "dead-holding", {KEYS.frames: ">"}, count=1)  # holds the entry
    client.hset(KEYS.heartbeat("alive-beating"), "worker", "alive-beating")
    settings = Settings.from_env(env={}, redis_url=redis_url, prefix="t", reclaim_idle_ms=1000)  # (its floor)
    worker = Worker(settings, _NoPipeline(), name="me", client=client, handle_signals=False)
    time.sleep(2.2)  # everyone idle past 2 x reclaim_idle_ms
    worker.forget_dead_consumers()
    left = {c["name"].decode(): int(c["pending"]) for c in client.xinfo_consumers(KEYS.frames, KEYS.group)}
    assert left == {"alive-beating": 0, "dead-holding": 1, "me": 0}


def test_a_recently_active_consumer_stays(redis_url):
    client = redis.Redis.from_url(redis_url)
    ensure_group(client, KEYS)
    client.xadd(KEYS.frames, {"msg": b"x"})
    client.xreadgroup(KEYS.group, "just-read", {KEYS.frames: ">"}, count=1)
    client.xack(KEYS.frames, KEYS.group, client.xrange(KEYS.frames)[0][0])  # nothing pending, no heartbeat
    settings = Settings.from_env(env={}, redis_url=redis_url, prefix="t", reclaim_idle_ms=60_000)
    Worker(settings, _NoPipeline(), name="me", client=client, handle_signals=False).forget_dead_consumers()
    assert [c["name"] for c in client.xinfo_consumers(KEYS.frames, KEYS.group)] == [b"just-read"]
