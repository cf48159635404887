"""The one stop-aware retry helper every long-running Redis command goes through.

Errors by class (as rq's worker loop and arq's connection module sort them):

* **fatal** (a refused password, an ACL user without the command, a Redis
  Cluster's CROSSSLOT / MOVED / CLUSTERDOWN): no wait
  heals it -> :class:`~moodstream.shared.errors.ConfigError`, one line, the URL
  redacted, at once;
* **transient** (connection refused or reset, timeouts, ``LOADING`` after a
  restart, ``BUSY`` while a long script runs, ``READONLY`` during a failover,
  ``max number of clients``): capped exponential backoff with jitter. A stop
  request cuts the wait short and, while Redis is still unreachable, ends the
  call with :class:`RedisGone` (the work in hand stays pending in Redis);
  past ``deadline_s`` -> ConfigError;
* **missing key** (``NOGROUP``; a blocked ``XREADGROUP`` answered ``UNBLOCKED the
  stream key no longer exists`` or ``... consumer group ... no longer exists``;
  i.e. after FLUSHALL, FLUSHDB, DEL, XGROUP DESTROY, a restart without
  persistence): ``recreate()``, one warning line, retry;
* anything else is re-raised: a bug or a bad command is not retried.

Usage::

    retry = RedisRetry("worker w1", settings.redis_url, stop_event,
                       recreate=lambda: ensure_group(client, keys))
    entries = retry.call(lambda: client.xreadgroup(...))

Needs only redis-py (no torch, no numpy).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from moodstream.shared.errors import ConfigError
from moodstream.shared.transport import CLUSTER, FATAL, TRANSIENT, Backoff, describe_cluster, describe_fatal, redact

log = logging.getLogger(__name__)
T = TypeVar("T")

# READONLY: a replica promoted or demoted under us; it heals when the client reconnects to the primary
_TRANSIENT = (*TRANSIENT, redis.exceptions.ReadOnlyError)


class RedisGone(Exception):
    """A stop was requested while Redis was unreachable (work stays pending in Redis)."""


class Outage:
    """An unreachable Redis as calls that each end before it is back see it (a reader whose reads end at
    their timeout, as ``up``'s loop reads): carried from one :class:`RedisRetry` to the next
    (``RedisRetry(..., outage=...)``), so the waits grow to the cap as one long call's do, and a call
    made before the next try is due waits for it, without a try or a warning of its own (``up``'s
    reader began again at 0.1 s at every read: about 6.5 warnings a second). Reset once a call gets
    through. One thread's (a reader's)."""

    def __init__(self, cap_s: float = 10.0):
        self.backoff = Backoff(cap_s=cap_s)
        self.down = False  # the last try failed on an unreachable (or busy) Redis
        self.next_try_s = 0.0  # time.monotonic() from which the next try is due


def _reply(exc: BaseException) -> str:
    """The server's error reply: redis-py prefixes errors inside a pipeline with
    ``Command # N (...) of pipeline caused error: ``."""
    msg = str(exc)
    head, sep, tail = msg.partition(" of pipeline caused error: ")
    return tail if sep and head.startswith("Command # ") else msg


def is_missing_key(exc: BaseException) -> bool:
    """The stream or its consumer group vanished: ``NOGROUP``, or a blocked XREADGROUP
    released with ``UNBLOCKED ... no longer exists`` (DEL, FLUSHALL, XGROUP DESTROY)."""
    if not isinstance(exc, redis.ResponseError):
        return False
    msg = _reply(exc)
    return msg.startswith("NOGROUP") or (msg.startswith("UNBLOCKED") and "no longer exists" in msg)


def is_busy(exc: BaseException) -> bool:
    """``BUSY``: a script or function is running (transient; SCRIPT KILL or its end heals it).
    Not BUSYGROUP or BUSYKEY, which are answers about keys."""
    if not isinstance(exc, redis.ResponseError):
        return False
    msg = _reply(exc)
    return msg == "BUSY" or msg.startswith("BUSY ")


def is_out_of_memory(exc: BaseException) -> bool:
    """Redis at its ``maxmemory`` refusing a write (``OOM command not allowed``; in a MULTI, the
    EXEC's ``EXECABORT``): transient, as memory is freed (trimming, an operator)."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):  # redis-py's class for "OOM ..." (prefix dropped)
        return True
    if not isinstance(exc, redis.ResponseError):
        return False
    msg = _reply(exc)
    return msg.startswith("OOM ") or ("EXECABORT" in msg and "OOM " in msg) or (
        isinstance(exc, redis.exceptions.ExecAbortError) and "maxmemory" in msg)


def is_transient(exc: BaseException) -> bool:
    """Waiting heals it (see the module docstring); a refused password never is."""
    if isinstance(exc, FATAL):
        return False
    return isinstance(exc, _TRANSIENT) or is_busy(exc) or is_out_of_memory(exc)


class RedisRetry:
    """Runs Redis calls until they get through (see the module docstring).

    ``actor`` names the caller in log lines (``"worker w1"``). ``stop`` is the
    caller's stop request; ``on_down(exc)`` / ``on_up()`` are told when Redis is
    found unreachable and when a call gets through again (metrics, readiness).
    ``first_deadline_s``: until Redis first answers (a call gets through, or the
    server replies, ``LOADING`` too), an unreachable Redis is waited for this long
    instead of ``deadline_s``: one never reached is more likely a wrong URL than an
    outage (the commands' ``redis_wait_s`` at start). Set :attr:`reached` where the
    caller has reached it already. ``outage``: an :class:`Outage` the calls carry on from (their
    backoff, and a try not due yet waited for), where each call ends before Redis is back.
    """

    def __init__(self, actor: str, redis_url: str | None, stop: threading.Event | None = None, *,
                 cap_s: float = 10.0, deadline_s: float | None = None, first_deadline_s: float | None = None,
                 recreate: Callable[[], None] | None = None,
                 on_down: Callable[[BaseException], None] | None = None,
                 on_up: Callable[[], None] | None = None, outage: Outage | None = None):
        self.actor = actor
        self.redis_url = redis_url
        self.stop = stop if stop is not None else threading.Event()
        self.cap_s = cap_s
        self.deadline_s = deadline_s
        self.first_deadline_s = first_deadline_s
        self.reached = False  # Redis has answered a call (first_deadline_s no longer applies)
        self.recreate = recreate
        self.on_down = on_down
        self.on_up = on_up
        self.outage = outage  # carried from the calls of RedisRetry objects before this one (a reader's)
        self._down = False
        self._recreating = False  # inside recreate(): a missing key there is re-raised, not recursed on
        self.recreated = 0  # times recreate() ran (a missing stream or group)

    @property
    def down(self) -> bool:
        """The last call met an unreachable (or busy) Redis and has not got through since."""
        return self._down

    def call(self, fn: Callable[[], T]) -> T:
        outage = self.outage
        backoff = outage.backoff if outage is not None else Backoff(cap_s=self.cap_s)
        if outage is not None and outage.down:  # the try a call before this one scheduled: not sooner
            self._down = True  # (its return is said, as a call that waited itself says it)
            self.stop.wait(max(0.0, outage.next_try_s - time.monotonic()))
            if self.stop.is_set():
                raise RedisGone(f"{self.actor}: stop requested while Redis is unreachable")
        first_failure: float | None = None
        missing_in_a_row = 0
        while True:
            try:
                out = fn()
            except BaseException as exc:
                if not isinstance(exc, redis.RedisError):
                    raise
                if isinstance(exc, FATAL):
                    raise ConfigError(describe_fatal(exc, self.redis_url)) from None
                if isinstance(exc, CLUSTER):
                    raise ConfigError(f"{self.actor}: {describe_cluster(self.redis_url)}") from None
                if isinstance(exc, redis.ResponseError) and _reply(exc).startswith("WRONGTYPE"):
                    raise ConfigError(f"{self.actor}: a key moodstream keeps a stream in is not a stream "
                                      "(another program's key, or one changed by hand): delete or rename it, or use "
                                      f"another prefix ({_one_line(exc)[:120]})") from None
                if not isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) or \
                        isinstance(exc, redis.BusyLoadingError):  # the server replied: the URL is right
                    self.reached = True
                if is_transient(exc):
                    first_failure = first_failure if first_failure is not None else time.monotonic()
                    self._wait_out(exc, backoff, first_failure)
                    continue
                if is_missing_key(exc) and self.recreate is not None and not self._recreating:
                    # the first recreate is at once; an operator deleting keys in a loop meets backoff
                    if missing_in_a_row:
                        self.stop.wait(backoff.next_delay_s())
                    missing_in_a_row += 1
                    self._recreate(exc)
                    continue
                raise
            self.reached = True
            if outage is not None:  # through: the next outage starts its waits from the first again
                outage.down = False
                outage.backoff.reset()
            if self._down:
                self._down = False
                log.info("%s: Redis at %s is back", self.actor, redact(self.redis_url))
                if self.on_up is not None:
                    self.on_up()
            return out

    def _wait_out(self, exc: BaseException, backoff: Backoff, first_failure: float) -> None:
        self._down = True
        if self.outage is not None:
            self.outage.down = True
        if self.on_down is not None:
            self.on_down(exc)
        if self.stop.is_set():
            raise RedisGone(f"{self.actor}: stop requested while Redis is unreachable ({exc})")
        delay = backoff.next_delay_s()
        deadline_s = self.deadline_s
        if not self.reached and self.first_deadline_s is not None:
            deadline_s = self.first_deadline_s if deadline_s is None else min(deadline_s, self.first_deadline_s)
        if deadline_s is not None:
            left_s = first_failure + deadline_s - time.monotonic()
            if left_s <= 0:
                url = redact(self.redis_url)
                if is_out_of_memory(exc):  # it answered: reached, full
                    raise ConfigError(f"{self.actor}: Redis at {url} refused writes for {deadline_s:g} s, out of "
                                      f"memory (its maxmemory; {_one_line(exc)}): free memory there (a stream's "
                                      "backlog, other programs' keys) or raise its maxmemory") from None
                if is_busy(exc):
                    raise ConfigError(f"{self.actor}: Redis at {url} answered BUSY for {deadline_s:g} s (a script "
                                      f"running; {_one_line(exc)})") from None
                raise ConfigError(f"{self.actor}: cannot reach Redis at {url} for {deadline_s:g} s: {exc}") from None
            # the last try at the deadline: a backoff that would end past it is cut to it (it gave up when the
            # next one would: after 6 s of the 10 it said, and a Redis back in the other 4 was never asked)
            delay = min(delay, left_s)
        what = ("busy (a script is running)" if is_busy(exc) else
                "out of memory (maxmemory: writes refused)" if is_out_of_memory(exc) else "unreachable")
        log.warning("%s: Redis %s (%s); retrying in %.2fs", self.actor, what, _one_line(exc), delay)
        if self.outage is not None:  # a call after this one, should this one end first, tries no sooner
            self.outage.down, self.outage.next_try_s = True, time.monotonic() + delay
        self.stop.wait(delay)
        if self.stop.is_set():
            raise RedisGone(f"{self.actor}: stop requested while Redis is unreachable ({exc})")

    def _recreate(self, exc: BaseException) -> None:
        """Recreate what vanished; its own transient errors are waited out like any call's."""
        log.warning("%s: stream or consumer group gone (%s); recreating it and carrying on",
                    self.actor, _one_line(exc)[:120])
        self._recreating = True
        try:
            self.call(self.recreate)
        finally:
            self._recreating = False
        self.recreated += 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
