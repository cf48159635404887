"""Redis plumbing both sides share: connecting, the consumer group, lag, backoff.

Needs only redis-py (no torch, no numpy).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import redis

from shared.errors import ConfigError
from shared.keys import Keys

log = logging.getLogger(__name__)

# errors after which a client should wait and try again (server restarting, network gone)
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def connect(redis_url: str | None, socket_timeout_s: float = 30.0) -> redis.Redis:
    """A client for ``redis_url`` (redis://, rediss:// for TLS, unix://; passwords in the URL).

    Binary responses (payloads are msgpack). ``socket_timeout_s`` must exceed the
    longest blocking read, which callers keep to a few seconds.
    """
    if not redis_url:
        raise ConfigError("no Redis configured: set MOODSTREAM_REDIS_URL (e.g. redis://localhost:6379/0) "
                          "or pass --redis-url; `moodstream up` starts an embedded server instead")
    try:
        return redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=socket_timeout_s,
                                    health_check_interval=30, decode_responses=False)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redis_url!r}: {exc}") from None


def ensure_group(client: redis.Redis, keys: Keys) -> bool:
    """Create the consumer group (and the stream) if absent; True if created.

    The group starts at id 0 so jobs enqueued before any worker started are
    served. Only BUSYGROUP (it exists already) is swallowed.
    """
    try:
        client.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        raise
    log.info("created consumer group %s on %s", keys.group, keys.frames)
    return True


def is_nogroup(exc: Exception) -> bool:
    """The stream or its group vanished (e.g. a Redis restart without persistence)."""
    return isinstance(exc, redis.ResponseError) and str(exc).startswith("NOGROUP")


@dataclass
class Backlog:
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acked
    exact: bool  # False where lag was estimated (capped at the counting limit)

    @property
    def total(self) -> int:
        return self.lag + self.pending


def group_backlog(client: redis.Redis, keys: Keys, count_limit: int = 100_000) -> Backlog:
    """How far the consumer group is behind the frames stream.

    Redis >= 7 reports ``lag`` in XINFO GROUPS, but as nil when entries were
    deleted or trimmed past the group's position; Redis 6.2 has no ``lag``.
    Either way we fall back to counting entries after ``last-delivered-id``
    (at most ``count_limit + 1`` of them, enough to compare with a limit).
    No stream or no group yet: the stream length counts as lag.
    """
    try:
        groups = client.xinfo_groups(keys.frames)
    except redis.ResponseError:  # no such key
        return Backlog(0, 0, True)
    for g in groups:
        if as_str(g.get("name")) != keys.group:
            continue
        pending = int(g.get("pending") or 0)
        lag = g.get("lag")
        if lag is not None:
            return Backlog(int(lag), pending, True)
        last = as_str(g.get("last-delivered-id")) or "0-0"
        n = len(client.xrange(keys.frames, "(" + last, "+", count=count_limit + 1))
        return Backlog(n, pending, n <= count_limit)
    return Backlog(int(client.xlen(keys.frames)), 0, True)



def as_str(v: object) -> str | None:
    """A reply field as str (clients here do not decode responses)."""
    return v.decode() if isinstance(v, bytes) else (None if v is None else str(v))


class Backoff:
    """Capped exponential backoff with jitter: 0.1 s, 0.2 s, 0.4 s ... at most ``cap_s``."""

    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0):
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay_s(self) -> float:
        delay = min(self.cap_s, self.base_s * 2 ** self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.8, 1.0)

    def sleep(self) -> float:
        delay = self.next_delay_s()
        time.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0
