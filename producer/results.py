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
import threading
import time
from collections.abc import Container, Iterator

import redis

from moodstream.shared.errors import MessageError
from moodstream.shared.keys import Keys
from moodstream.shared.recent import Recent
from moodstream.shared.retry import RedisGone, RedisRetry
from moodstream.shared.settings import Settings
from moodstream.shared.transport import as_str, connect, is_fatal
from moodstream.shared.record import FrameResult
from moodstream.shared.wire import FIELD, decode_result

log = logging.getLogger(__name__)

FROM_START = "0"
FROM_NOW = "$"
SEEN_JOBS = 100_000  # job ids kept to drop a second answer (one comes within the reclaim window): ~10 MB


class ResultReader:
    def __init__(self, settings: Settings, client: redis.Redis | None = None, stream: str | None = None,
                 block_ms: int = 1000):
        self.keys = Keys.from_settings(settings)
        self.redis_url = settings.redis_url
        self.client = client if client is not None else connect(settings.redis_url)
        self.stream = stream or self.keys.results
        self.block_ms = block_ms
        self.skipped = 0  # undecodable entries (logged, not yielded)
        self.seen = Recent(SEEN_JOBS)  # job ids of the last SEEN_JOBS results (read())

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
        retried with backoff (until ``timeout_s``, then the read ends); a
        refused password is one ConfigError.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        until = threading.Event()  # set at the deadline: a wait for Redis ends there (RedisGone)
        timer = None
        if timeout_s is not None:
            timer = threading.Timer(timeout_s, until.set)
            timer.daemon = True
            timer.start()
        retry = RedisRetry("results", self.redis_url, until)
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
            resp = retry.call(lambda: self.client.xread({self.stream: last}, count=500, block=block))
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

    def close(self) -> None:
        self.client.close()

