"""Reading the results stream: ``ResultReader(settings).read(...)`` yields
:class:`~moodstream.shared.record.FrameResult` objects.

    reader = ResultReader(settings)
    for r in reader.read(start=FROM_START, count=10, timeout_s=30):
        print(r.job_id, r.error or [f.emotion for f in r.faces])

``start`` is :data:`FROM_START` (``"0"``), :data:`FROM_NOW` (``"$"``: only
results added after the call) or a stream entry id (results after that id, so
a reader can resume from the last ``id`` it printed). Plain XREAD: any number
of readers see every result; nothing is consumed.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Collection, Container, Iterator
from dataclasses import dataclass

import redis

from moodstream.shared.errors import MessageError
from moodstream.shared.keys import Keys
from moodstream.shared.recent import Recent
from moodstream.shared.retry import Outage, RedisGone, RedisRetry
from moodstream.shared.settings import Settings, is_number, is_whole
from moodstream.shared.table import OtherSources
from moodstream.shared.transport import (as_str, connect, is_fatal, name_wrong_type, ordinal_at, parse_id,
                                         probe_usable, trimmed_past)
from moodstream.shared.record import FrameResult
from moodstream.shared.wire import FIELD, decode_result

log = logging.getLogger(__name__)

FROM_START = "0"
FROM_NOW = "$"
SEEN_JOBS = 100_000  # job ids kept to drop a second answer (one comes within the reclaim window): ~10 MB
# a Redis stream id: milliseconds, optionally "-" and a sequence number, each a 64-bit unsigned integer
STREAM_ID = re.compile(r"(0|[1-9][0-9]{0,19})(-(0|[1-9][0-9]{0,19}))?")


def is_stream_id(text: str) -> bool:
    return bool(STREAM_ID.fullmatch(text)) and all(int(part) < 2**64 for part in text.split("-"))


@dataclass(frozen=True)
class Gap:
    """Results a reader may never have seen: the stream (which keeps about ``results_maxlen`` entries) was
    trimmed past ``after``, the id it read last, before it read on; ``through`` is the oldest entry it
    still held. ``count``: how many results were removed in between, where Redis 7 can tell (the reader
    had caught up with the stream at ``after``); None: some may have been (Redis 6.2, or a reader that
    started at ``after``)."""
    after: str
    through: str
    count: int | None

    def said(self, stream: str, maxlen: int) -> str:
        span = f"after {self.after} ({id_time(self.after)}) and before {self.through} ({id_time(self.through)})"
        keeps = (f"it keeps about results_maxlen={maxlen} entries: read sooner, or raise "
                 "MOODSTREAM_RESULTS_MAXLEN where the workers run")
        if self.count is not None:
            return (f"{self.count} {'result' if self.count == 1 else 'results'} {span} "
                    f"{'was' if self.count == 1 else 'were'} trimmed from {stream} before they were read ({keeps})")
        return (f"{stream} was trimmed past the result read last: results {span} may have been removed "
                f"before they were read ({keeps})")


def id_time(entry_id: str) -> str:
    """The UTC time of a stream id's milliseconds, to the second (when the entry was added)."""
    ms = int(entry_id.partition("-")[0])
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
    except (OverflowError, OSError, ValueError):  # an id typed by hand, past any date
        return f"{ms} ms"


class ResultReader:
    def __init__(self, settings: Settings, client: redis.Redis | None = None, stream: str | None = None,
                 block_ms: int = 1000, outage: Outage | None = None):
        """``outage``: where Redis is found unreachable, carried from one read to the next (their waits grow
        to 10 s, and a read waits for the try a read before it scheduled); another reader's on the same client
        shares its waits (one warning per try, not one per reader)."""
        if not isinstance(settings, Settings):  # (a URL was 'str' object has no attribute 'prefix')
            raise TypeError(f"ResultReader takes Settings (ResultReader(Settings.from_env(redis_url=...))), got "
                            f"{type(settings).__name__}")
        self.keys = Keys.from_settings(settings)
        self.redis_url = settings.redis_url
        self.redis_wait_s = settings.redis_wait_s  # how long a read that does not wait waits for Redis
        self.client = client if client is not None else connect(settings.redis_url)
        self.stream = stream or self.keys.results
        self.block_ms = block_ms
        self.outage = outage if outage is not None else Outage(cap_s=10.0)
        self.skipped = 0  # undecodable entries (logged, not yielded)
        self.results_maxlen = settings.results_maxlen
        self.gaps: list[Gap] = []  # results trimmed before they were read (each logged once)
        self._gap_checks = True  # off for a user refused XINFO STREAM (said once)
        self._ordinal: tuple[str, int] | None = None  # (an id read, the entries ever added up to it): Redis 7
        self.seen = Recent(SEEN_JOBS)  # job ids of the last SEEN_JOBS results (read())
        self.other_sources = OtherSources()  # read(source=...): the results of other sources, counted

    def last_id(self) -> str:
        """Id of the newest entry in the stream, ``0-0`` when empty or absent."""
        try:
            info = self.client.xinfo_stream(self.stream)
        except redis.ResponseError as exc:  # no such key; a refused command is raised
            if is_fatal(exc):
                raise
            return "0-0"
        return as_str(info.get("last-generated-id")) or "0-0"

    def read(self, start: str = FROM_NOW, follow: bool = False, count: int | None = None,
             timeout_s: float | None = None, source: str | None = None,
             job_ids: Container[str] | None = None, unique: bool = False) -> Iterator[FrameResult]:
        """Results after ``start``, filtered by ``source`` and ``job_ids``.

        Stops after ``count`` results, or at ``timeout_s``; without ``follow``
        and ``count`` it stops at the end of the stream, with either it waits
        for new entries. ``unique`` yields one result per job (delivery is at
        least once: a job can be answered twice) and counts only those.
        Redis calls go through the one retry helper: connection errors are
        retried with backoff (until ``timeout_s``, then the read ends; a read
        that does not wait and has no ``timeout_s`` gives up after the settings'
        ``redis_wait_s`` with a ConfigError); a refused password is one ConfigError.

        The arguments are checked at the call (a TypeError or ValueError that
        says what to pass): ``start`` a stream id, ``count`` a whole number from
        0, ``timeout_s`` finite seconds from 0, ``job_ids`` a collection of job
        id strings (a set; a list is made one), never a str or a generator.
        """
        start = _start(start)
        if count is not None and not is_whole(count):
            raise TypeError(f"count must be a whole number of results or None, got {count!r}")
        if count is not None and count < 0:
            raise ValueError(f"count must be a whole number from 0 (results to read) or None, got {count!r}")
        if timeout_s is not None and not is_number(timeout_s):
            raise TypeError(f"timeout_s must be a finite number of seconds or None (no limit), got {timeout_s!r}")
        if timeout_s is not None and (not math.isfinite(timeout_s) or timeout_s < 0):
            raise ValueError(f"timeout_s must be a finite number of seconds >= 0, or None: no limit; got {timeout_s!r}")
        if source is not None and not isinstance(source, str):
            raise TypeError(f"source must be a string (a result's source) or None, got {type(source).__name__}")
        job_ids = _job_ids(job_ids)
        # the call is "now", for the start and the timeout alike, not the first next() (a result answered in
        # between was never seen, and the timeout began late); a Redis that does not answer now is asked again
        # by the read itself, as before
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if start == FROM_NOW:
            try:
                start = self.last_id()
            except redis.RedisError:
                pass
        return self._results(start, follow, count, timeout_s, deadline, source, job_ids, unique)

    def _results(self, start: str, follow: bool, count: int | None, timeout_s: float | None, deadline: float | None,
                 source: str | None, job_ids: Container[str] | None, unique: bool) -> Iterator[FrameResult]:
        until = threading.Event()  # set at the deadline: a wait for Redis ends there (RedisGone)
        timer = None
        if deadline is not None:  # (at most what a Timer takes: 1e10 s overflowed its thread)
            timer = threading.Timer(min(max(0.0, deadline - time.monotonic()), threading.TIMEOUT_MAX / 2), until.set)
            timer.daemon = True
            timer.start()
        waits = follow or count is not None
        # a read that stops at the end of the stream, with no timeout of its own, does not wait for ever on a Redis
        # that is gone (it retried with a backoff growing to 10 s, the caller told nothing)
        retry = RedisRetry("results", self.redis_url, until,
                           deadline_s=self.redis_wait_s if not waits and timeout_s is None else None,
                           outage=self.outage)  # a read that ends at its timeout: the next one backs off on
        try:
            yield from self._read(retry, start, follow, count, deadline, source, job_ids, unique)
        except RedisGone:
            return
        finally:
            if timer is not None:
                timer.cancel()

    def _read(self, retry: RedisRetry, start: str, follow: bool, count: int | None, deadline: float | None,
              source: str | None, job_ids: Container[str] | None, unique: bool) -> Iterator[FrameResult]:
        last = retry.call(self.last_id) if start == FROM_NOW else start
        seen = self.seen = Recent(SEEN_JOBS)  # the job ids of the last SEEN_JOBS results, oldest first
        self.other_sources = OtherSources()
        waits = follow or count is not None
        n = 0
        while count is None or n < count:
            block = None
            if waits:
                block = self.block_ms
                if deadline is not None:
                    left_ms = int((deadline - time.monotonic()) * 1000)
                    if left_ms <= 0:
                        return
                    block = max(1, min(block, left_ms))
            resp = retry.call(lambda: self._named_xread(last, block))
            entries = resp[0][1] if resp else []
            if not entries and not waits:
                return
            for entry_id, fields in entries:
                last = as_str(entry_id)
                try:
                    result = decode_result(fields.get(FIELD))
                except MessageError as exc:
                    self.skipped += 1
                    log.warning("results: skipping entry %s of %s: %s", last, self.stream, exc)
                    continue
                if source is not None and result.source != source:
                    self.other_sources.add(result.source)
                    continue
                if job_ids is not None and result.job_id not in job_ids:
                    continue
                if unique:
                    if not seen.first_time(result.job_id):
                        continue
                result.id = last
                yield result
                n += 1
                if count is not None and n >= count:
                    return

    def _named_xread(self, last: str, block: int | None) -> list:
        """:meth:`_xread`; where the stream's key holds another type, a ConfigError that names it."""
        try:
            return self._xread(last, block)
        except redis.ResponseError as exc:
            name_wrong_type(self.client, exc, {self.stream: "stream"})
            raise

    def _xread(self, last: str, block: int | None) -> list:
        """XREAD after ``last``; in the same round trip, before it, XINFO STREAM, to tell whether entries after
        ``last`` were trimmed unread (:class:`Gap`: said once, as ``last`` then moves past it). Not from the
        start ("0": the start of what is held), nor for a user refused XINFO STREAM. Entries that came while
        the XREAD blocked are read again with an XINFO of then (a trim in one MULTI during the wait, the one
        before it could not see)."""
        if not self._gap_checks:
            return self.client.xread({self.stream: last}, count=500, block=block)
        info, resp = self._probed_xread(last, block)
        if block is not None and resp and resp[0][1] and _came_while_blocked(info, last):
            # the XINFO was answered before the wait: a trim within it (one MULTI, as a worker publishes a
            # batch, adding more than results_maxlen entries) was not in it, and XREAD read on from the oldest
            # entry held. Asked again, not waiting: XINFO then XREAD from the same id, as a read that finds
            # entries at once is asked
            info, resp = self._probed_xread(last, None)
        try:
            usable = probe_usable(info)
        except redis.exceptions.NoPermissionError:
            self._gap_checks, usable = False, False
            log.warning("results: this Redis user may not run XINFO STREAM on %s, so results trimmed from it "
                        "before they were read cannot be told (the ACL rules of deploy/k8s/base/redis/acl/"
                        "moodstream-reader.rules grant it)", self.stream)
        if usable:
            ordinal = self._ordinal[1] if self._ordinal is not None and self._ordinal[0] == last else None
            if last not in (FROM_START, "0-0") and (trimmed := trimmed_past(info, last, ordinal)) is not None:
                gap = Gap(last, *trimmed)
                self.gaps.append(gap)
                log.warning("results: %s", gap.said(self.stream, self.results_maxlen))
            # where this read ends at the stream's newest entry (or finds none after it), that entry's ordinal
            newest = as_str(resp[0][1][-1][0]) if resp and resp[0][1] else last
            if (n := ordinal_at(info, newest)) is not None:
                self._ordinal = (newest, n)
        return resp

    def _probed_xread(self, last: str, block: int | None) -> tuple[object, list]:
        """XINFO STREAM (its answer, or the error it gave) and XREAD after ``last``, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xinfo_stream(self.stream)
        pipe.xread({self.stream: last}, count=500, block=block)
        info, resp = pipe.execute(raise_on_error=False)
        if isinstance(resp, Exception):
            raise resp
        return info, resp

    def close(self) -> None:
        self.client.close()


def _came_while_blocked(info: object, last: str) -> bool:
    """Whether the entries an XREAD after ``last`` returned were added while it blocked: its XINFO STREAM,
    answered before the wait, held nothing after ``last`` (or no stream yet). A refused XINFO is no such
    answer (the reader stops asking)."""
    if isinstance(info, redis.exceptions.NoPermissionError):
        return False
    if isinstance(info, Exception):  # no such key when it asked
        return True
    newest = as_str(info.get("last-generated-id")) or "0-0"
    return parse_id(newest) <= parse_id(last)


def _start(start: object) -> str:
    """``read``'s start as XREAD takes it, or the error that says what to pass."""
    if is_whole(start) and start >= 0:
        start = str(start)  # 0 read as "0" did
    if not isinstance(start, str):
        raise TypeError(f"start must be FROM_START, FROM_NOW or a stream id (the 'id' of a result), got "
                        f"{type(start).__name__}")
    if start not in (FROM_START, FROM_NOW) and not is_stream_id(start):
        raise ValueError(f"start must be FROM_START, FROM_NOW or a stream id (MS or MS-SEQ, the 'id' of a result), "
                         f"got {start[:60]!r}")
    return start


def _job_ids(job_ids: object) -> Container[str] | None:
    """``read``'s job ids: a set or another collection of str (a list or tuple is made a set: a lookup per
    result), or the error that says what to pass."""
    if job_ids is None:
        return None
    if isinstance(job_ids, (str, bytes)):
        raise TypeError(f"job_ids must be a set of job ids, got one {type(job_ids).__name__}: for one job, "
                        "{job_id} (a string is a container of its letters)")
    if isinstance(job_ids, Iterator):
        raise TypeError("job_ids must be a set of job ids, got a generator or iterator (used up by the first "
                        "lookup): pass set(...)")
    if not isinstance(job_ids, Container):
        raise TypeError(f"job_ids must be a set of job ids, got {type(job_ids).__name__}")
    if isinstance(job_ids, Collection):  # a set that grows as jobs are submitted stays the caller's
        for job_id in job_ids:
            if not isinstance(job_id, str):
                hint = ": for a JobRef, ref.job_id" if hasattr(job_id, "job_id") else ""
                raise TypeError(f"job_ids must hold job id strings, got {type(job_id).__name__}{hint}")
        if isinstance(job_ids, (list, tuple)):
            return frozenset(job_ids)
    return job_ids

