"""Redis plumbing both sides share: connecting, the consumer group, lag, backoff.

Needs only redis-py (no torch, no numpy).
"""

from __future__ import annotations

import logging
import random
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis

from moodstream.shared.errors import ConfigError
from moodstream.shared.keys import Keys

log = logging.getLogger(__name__)

# errors after which a client should wait and try again (server restarting, network gone);
# but see is_fatal: redis-py makes a refused password a ConnectionError too
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
# errors no waiting heals: a wrong or missing password, an ACL user without the command
FATAL = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError,
         redis.exceptions.AuthenticationWrongNumberOfArgsError)


def is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, FATAL)


def redact(url: str | None) -> str:
    """The URL with its password (and user) replaced by ``***``: safe for logs and errors."""
    if not url:
        return str(url)
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:  # e.g. a port that is not a number: mask whatever stands before the '@'
        return re.sub(r"//[^/]*@", "//***@", url)


def describe_fatal(exc: BaseException, url: str | None) -> str:
    return f"Redis at {redact(url)} refused us: {exc} (check the password / ACL user in the URL)"


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
    except ValueError as exc:  # the message quotes no URL; ours is redacted (it may hold a password)
        raise ConfigError(f"bad Redis URL {redact(redis_url)}: {str(exc).replace(redis_url, '***')}") from None


def check_connection(client: redis.Redis, redis_url: str | None, wait_s: float = 10.0) -> None:
    """Fail at start-up, with one line, on what no retry heals: a wrong password, an
    unknown host, a database number the server does not have. A server that refuses
    connections is waited for up to ``wait_s`` (it may be starting); after that, too,
    one line. Once running, callers retry connection errors with backoff: a server
    that was reachable and went away is expected back."""
    kw = client.connection_pool.connection_kwargs
    host = kw.get("host")
    if host and not kw.get("path"):
        try:
            socket.getaddrinfo(host, kw.get("port") or 6379)
        except socket.gaierror as exc:
            raise ConfigError(f"Redis host {host!r} is unknown ({exc.strerror}); check {redact(redis_url)}") from None
    deadline = time.monotonic() + wait_s
    backoff = Backoff(cap_s=1.0)
    while True:
        try:
            client.ping()
            return
        except FATAL as exc:
            raise ConfigError(describe_fatal(exc, redis_url)) from None
        except redis.ResponseError as exc:  # e.g. "DB index is out of range" at SELECT
            raise ConfigError(f"Redis at {redact(redis_url)} answered: {exc}") from None
        except TRANSIENT as exc:
            if time.monotonic() + backoff.next_delay_s() > deadline:
                raise ConfigError(f"cannot reach Redis at {redact(redis_url)}: {exc}") from None
            log.info("waiting for Redis at %s: %s", redact(redis_url), exc)
            backoff.sleep()


def ensure_group(client: redis.Redis, keys: Keys, *, stream: str | None = None, group: str | None = None,
                 start_id: str = "0") -> bool:
    """Create the consumer group (and the stream) if absent; True if created.

    By default the workers' group on the frames stream; ``stream`` / ``group``
    name another (the track stage's on the results stream). The group starts at
    ``start_id`` ("0": entries added before any consumer started are served).
    Only BUSYGROUP (it exists already) is swallowed.
    """
    stream, group = stream or keys.frames, group or keys.group
    try:
        client.xgroup_create(stream, group, id=start_id, mkstream=True)
    except redis.ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        raise
    log.info("created consumer group %s on %s", group, stream)
    return True


def is_nogroup(exc: Exception) -> bool:
    """The stream or its group vanished (e.g. a Redis restart without persistence)."""
    return isinstance(exc, redis.ResponseError) and str(exc).startswith("NOGROUP")


@dataclass
class Backlog:
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acked
    exact: bool  # False where lag was capped at the counting limit (then it is a lower bound)

    @property
    def total(self) -> int:
        return self.lag + self.pending


# Entries after an id, counted inside Redis in chunks: only a number crosses the
# network, never the frames. Bounded by ARGV[2] (+1 to tell "over the limit").
_COUNT_AFTER = """
local n, start = 0, ARGV[1]
local limit, chunk = tonumber(ARGV[2]), tonumber(ARGV[3])
while n <= limit do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', chunk)
  local k = #batch
  n = n + k
  if k < chunk then break end
  start = '(' .. batch[k][1]
end
return n
"""


def count_after(client: redis.Redis, stream: str, after_id: str, limit: int, chunk: int = 64) -> int:
    """How many entries of ``stream`` have ids after ``after_id`` (at most ``limit + 1``)."""
    return int(client.eval(_COUNT_AFTER, 1, stream, "(" + after_id, limit, chunk))


def group_backlog(client: redis.Redis, keys: Keys, count_limit: int = 100_000) -> Backlog:
    """How far the consumer group is behind the frames stream: entries after the
    group's ``last-delivered-id`` (counted, at most ``count_limit + 1``) plus pending.

    Not Redis's own ``lag`` from XINFO GROUPS: it is nil on Redis 7 when entries
    past the group's position were deleted, absent on 6.2, and plain wrong after
    XDEL or trimming in cases Redis has not fixed everywhere (redis/redis#13337,
    #13957): a phantom backlog that blocks ``backpressure=wait`` producers for
    ever. Counting costs one short script per check, inside Redis.
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
        last = as_str(g.get("last-delivered-id")) or "0-0"
        n = count_after(client, keys.frames, last, count_limit)
        return Backlog(min(n, count_limit + 1), pending, n <= count_limit)
    n = int(client.xlen(keys.frames))
    return Backlog(n, 0, True)


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
