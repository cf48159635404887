"""The Redis worker: consume frame jobs, batch, run the pipeline, publish results.

One loop in a fixed order (as rq's worker does)::

    setup()
    try:
        while not (stop requested and nothing in hand):
            maintenance()      # heartbeat (HSET + EXPIRE, its index entry), XAUTOCLAIM stale entries
            batch = collect()  # XREADGROUP until batch_max frames, or the oldest waited batch_wait_ms
            serve(batch)       # decode (thread pool) -> pipeline -> results + dead letters + XACK in one MULTI
    finally:
        teardown()

Beside the loop, from setup to teardown, the worker's mover (:mod:`worker.intake`, a
thread with its own connection) moves frame jobs from the intake list producers push
to into the frames stream; a worker whose ACL user may not move serves the stream alone.

Delivery guarantees: an entry is acked only in the same MULTI/EXEC that adds
its result (or its dead letter), so a worker that dies loses nothing; its
entries are reclaimed by another worker after ``reclaim_idle_ms`` (by itself at
once when it restarts under the same consumer name), at the cost of a duplicate
result only if the first worker's EXEC landed and its reply was lost.

Validation is total: every entry a worker reads ends as a result or a dead
letter, and no exception raised by one message leaves the per-message path.
Poison that kills the process itself (a native crash, the OOM killer) is found
without blaming its batch-mates: an entry delivered again is a *suspect* and is
served alone; each solo attempt is counted in ``<prefix>:attempts`` before it
starts, and a suspect whose solo attempts reached ``max_deliveries`` is
dead-lettered. Deliveries to workers that died for other reasons cost nothing,
and so do stops that did not come from the frame (issue 22 item 10): the count
is cleared as soon as the frame has come through decoding and inference (the
steps that can kill a process), a SIGTERM during a solo attempt takes that
attempt back at once (a supervisor's SIGKILL after its grace period is not the
frame's doing), and suspects are tried fewest-deaths first, so unrelated kills
spread over them instead of piling on one.
Decoding runs in a thread pool: the next batch's frames decode while the
current batch is in the pipeline.

Errors by class, through the one retry helper (:mod:`moodstream.shared.retry`):
Redis connection errors, LOADING and BUSY (a long script) back off (capped,
exponential) and the loop resumes, with the batch in hand kept, until a stop is
requested; a stream or group that vanished (FLUSHALL, FLUSHDB, DEL, XGROUP
DESTROY: NOGROUP, or UNBLOCKED for a blocked read) is recreated with one log
line; what no retry heals (a refused password or ACL) stops the worker with one
line; a batch the pipeline rejects is retried frame by frame; anything else
propagates (logged, teardown runs).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np
import redis

from moodstream.shared.errors import BadInputError, ConfigError, MessageError
from moodstream.shared.keys import Keys
from moodstream.shared.media import PixelBudget, decode_pixels, decoded_scale
from moodstream.shared.retry import RedisGone, RedisRetry, is_missing_key, is_transient
from moodstream.shared.settings import Settings
from moodstream.shared.table import printable
from moodstream.shared.transport import as_str, check_kinds, connect, ensure_group
from moodstream.shared.record import ErrorInfo, FrameJob, FrameResult
from moodstream.shared.wire import FIELD, HEAD, TOO_LARGE, dead_letter_fields, decode_frame, encode_result, now_ms
from moodstream.worker.batching import BatchPolicy
from moodstream.worker.intake import Mover
from moodstream.worker.metrics import MetricsServer, WorkerMetrics, format_figures

log = logging.getLogger(__name__)
# the workers' index (Keys.heartbeats) keeps an entry this many heartbeat TTLs after its last beat
# (60 s at the default 15 s): a margin for the clocks of the workers that prune it
INDEX_KEPT_TTLS = 4
# a worker that served frames since its last beat beats again this long after it, not a third of the TTL
# later: `status` and the dashboard showed "served 58" beside 60 results for 5 s after the work ended
SERVED_BEAT_GAP_S = 0.5


class Status(str, Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"


class PipelineLike(Protocol):
    """What the worker needs of :class:`worker.pipeline.Pipeline`."""

    model_version: str

    def process(self, frames: list[np.ndarray]) -> list: ...  # list[FrameResult]


class StopNow(BaseException):
    """Raised by the second SIGTERM/SIGINT: leave at once (teardown still runs).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on
    the per-frame path (inference retries, decoding) can swallow it."""


@dataclass
class Entry:
    """One frames-stream entry in this worker's hands."""

    entry_id: str
    payload: bytes | None
    deliveries: int
    received: float  # time.monotonic() when read or claimed
    job: FrameJob | None = None
    error: BadInputError | None = None  # set: dead-letter it (with an error result when job is known)
    decoded: Future | None = None  # -> (RGB uint8 (H, W, 3), decode ms)
    suspect: bool = False  # delivered before: served alone, its solo attempts counted
    solo_attempts: int = 0  # deaths while served alone so far (from <prefix>:attempts)
    # set: payload is only the head of a message of this many bytes, over max_message_bytes (a mover's
    # stand-in, shared.wire.TOO_LARGE): dead-lettered as too_large, never decoded
    payload_bytes: int | None = None


@dataclass
class Outcome:
    entry: Entry
    result: FrameResult | None  # published to results (and reply_to)
    dead: tuple[str, str] | None = None  # (reason, detail) for the dead-letter stream


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def bare(exc: BaseException | None) -> BaseException | None:
    """``exc`` without its traceback, cause and context, to be kept on an entry: a kept traceback
    holds the frames it went through (serve() of the batch that read the entry, with its decoded
    frames), and ``raise ... from None`` still keeps the hidden exception's (its ``__context__``).
    One malformed message a batch chained batch to batch: 149 -> 2,523 MiB in 80 s."""
    if exc is not None:
        exc.__traceback__ = exc.__context__ = exc.__cause__ = None
    return exc


class Worker:
    def __init__(self, settings: Settings, pipeline: PipelineLike, *, name: str | None = None,
                 client: redis.Redis | None = None, max_frames: int | None = None,
                 handle_signals: bool = True, idle_block_ms: int = 500, device: str = ""):
        self.settings = settings
        self.pipeline = pipeline
        self.keys = Keys.from_settings(settings)
        self.name = name or default_worker_name()
        self.client = client if client is not None else connect(settings.redis_url)
        self.max_frames = max_frames
        self.handle_signals = handle_signals
        self.idle_block_ms = idle_block_ms
        self.device = device
        self.status = Status.STARTING
        self.served = 0  # entries finished (result or dead letter) and acked
        self.taken = 0  # entries read or claimed
        self.batches = 0
        self.dead_lettered = 0
        self.reclaimed = 0
        self._stop = threading.Event()
        self._signals = 0
        self._old_handlers: dict[int, object] = {}
        self._inhand: list[Entry] = []
        self._last_read_id: str | None = None  # the newest entry this worker read (a recreated group starts after it)
        self._solo_in_flight: list[str] = []  # suspects in decoding / inference now (their attempt counted)
        self._solo_started = 0.0  # time.monotonic() when that attempt began
        # liveness allows a long batch: a CPU batch of batch_max large frames can take tens of seconds
        self._liveness_timeout_s = max(60.0, 4 * settings.heartbeat_ttl_s)
        self._inhand_ids: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._claim_cursor = "0-0"
        self._next_beat = 0.0
        self._beat_at = 0.0  # time.monotonic() of the last beat
        self._beat_served = 0  # self.served as the last beat said it
        self._indexed = True  # the heartbeat also writes the workers' index (off where the ACL refuses it)
        self._named = False  # True once it beat under its name (setup refuses one another live worker beats under)
        self._next_claim = 0.0
        self._next_sweep = 0.0
        self._claim_interval_s = min(5.0, max(0.05, settings.reclaim_idle_ms / 2000))
        self._started_ms = now_ms()
        self._budget = PixelBudget(settings.max_pixels)  # pixels decoding at once, across decode threads
        # every Redis call that must get through: backoff, recreate a vanished group, fatal -> ConfigError
        self.retry = RedisRetry(f"worker {self.name}", settings.redis_url, self._stop, cap_s=10.0,
                                recreate=self._recreate, on_down=self._on_redis_down,
                                on_up=lambda: self.metrics.redis_check(True))
        self.policy = BatchPolicy.from_settings(settings)
        self.metrics = WorkerMetrics()
        self.metrics_server: MetricsServer | None = None  # serving when settings.metrics_port is set
        self._next_stats = time.monotonic() + settings.stats_interval_s
        self._mover: Mover | None = None  # moves the intake list to the frames stream (worker.intake); from setup

    # --- the loop -----------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped (signal, :meth:`request_stop`, ``max_frames``); returns entries served."""
        try:
            self.setup()
            while True:
                self.metrics.loop_tick()
                if self._mover is not None and self._mover.error is not None:  # what no retry heals: stop
                    raise self._mover.error
                if (self._stop.is_set() or self._quota_left() == 0) and not self._inhand:
                    break
                batch = self.retry.call(self._maintain_and_collect)  # both may run again: idempotent
                if batch:
                    self.serve(batch)
                self.metrics.redis_check(True)
        except StopNow:
            log.warning("worker %s: second signal, exiting now with %d entries in hand (they will be reclaimed)",
                        self.name, len(self._inhand))
        except RedisGone:
            log.warning("worker %s: stopping while Redis is unreachable; %d entries in hand stay pending there "
                        "and will be reclaimed", self.name, len(self._inhand))
        finally:
            self.teardown()
        return self.served

    def request_stop(self) -> None:
        """Finish the entries in hand, then leave (thread-safe)."""
        self._stop.set()

    def setup(self) -> None:
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        s = self.settings
        if s.metrics_port is not None:
            self.metrics_server = MetricsServer(self.metrics, s.metrics_host, s.metrics_port,
                                                liveness_timeout_s=self._liveness_timeout_s)
        self.metrics.set_info(worker=self.name, device=self.device or "unknown", backend=self.backend,
                              model_version=self.pipeline.model_version)
        self._pool = ThreadPoolExecutor(s.decode_threads, thread_name_prefix=f"decode-{self.name}")
        # keys of another type under the prefix: one line before any frame is taken (a results
        # stream that is not one would have its batches acked without their results; an attempts key
        # that is no hash stopped the worker after each restart's first batch, in words naming no key)
        k = self.keys
        self._retry(lambda: check_kinds(self.client, {k.frames: "stream", k.results: "stream", k.dead: "stream",
                                                      k.attempts: "hash", k.heartbeats: "zset"}))
        self._retry(self._ensure_group)
        if not self._check_name_free():  # stopped while watching another's heartbeat: leave it its name
            log.warning("worker %s: stop requested while a heartbeat under this name was watched: leaving "
                        "without taking the name or its pending entries", self.name)
            return
        self.status = Status.IDLE
        self._retry(self.heartbeat)
        self._retry(self._take_back_own)
        self._mover = Mover(s, name=self.name, client=self.client)
        self._mover.start()
        self.metrics.set_ready(True)
        log.info("worker %s ready: device %s, backend %s, model %s; serving %s (group %s), moving %s there, "
                 "batch_max=%d batch_wait_ms=%d%s", self.name, self.device or "unknown", self.backend,
                 self.pipeline.model_version, self.keys.frames, self.keys.group, self.keys.intake, s.batch_max,
                 s.batch_wait_ms, f", metrics on :{self.metrics_server.port}" if self.metrics_server else "")

    @property
    def backend(self) -> str:
        return str(getattr(self.pipeline, "backend", "torch"))

    def teardown(self) -> None:
        self.status = Status.STOPPING
        self.metrics.set_ready(False, "stopping")
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self._mover is not None:  # what it has not moved stays in the intake for other workers
            self._mover.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.retry.down:  # a goodbye to a server that is gone would only wait for timeouts
            log.info("worker %s: Redis unreachable; its heartbeat expires by itself", self.name)
        elif self._named:  # (refused the name: the heartbeat and consumer are another live worker's)
            self._goodbye()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        log.info("worker %s: stopped after %d entries in %d batches (%d dead-lettered, %d reclaimed)",
                 self.name, self.served, self.batches, self.dead_lettered, self.reclaimed)

    def _goodbye(self) -> None:
        try:
            # the index entry stays (the next beat of another worker drops it): removing the last
            # one would remove the index, and status would walk the keyspace until a worker beats
            self.client.delete(self.keys.heartbeat(self.name))
            mine = self.client.xpending_range(self.keys.frames, self.keys.group, "-", "+", 1, consumername=self.name)
            if not mine:  # nothing of ours is pending: forget this consumer name
                self.client.xgroup_delconsumer(self.keys.frames, self.keys.group, self.name)
        except redis.RedisError as exc:
            log.warning("worker %s: teardown could not reach Redis: %s", self.name, exc)

    def _on_signal(self, signum: int, frame) -> None:
        self._signals += 1
        if self._signals > 1:
            raise StopNow()
        log.warning("worker %s: %s received; finishing the batch in hand (send it again to exit now)",
                    self.name, signal.Signals(signum).name)
        self._stop.set()
        # a supervisor's SIGKILL may follow: that death is not the frame's doing, unless the attempt hangs
        # long enough for the liveness probe to be what stops us (a frame that hangs the worker counts)
        if self._solo_in_flight and time.monotonic() - self._solo_started < self._liveness_timeout_s:
            threading.Thread(target=self._take_back_attempt, args=(list(self._solo_in_flight),), daemon=True,
                             name=f"uncount-{self.name}").start()

    # --- maintenance --------------------------------------------------------------

    def _maintain_and_collect(self) -> list[Entry]:
        self.maintenance()
        return self.collect()

    def maintenance(self) -> None:
        now = time.monotonic()
        if self.settings.stats_interval_s and now >= self._next_stats:
            self._next_stats = now + self.settings.stats_interval_s
            log.info("worker %s: %s", self.name, format_figures(self.metrics.interval_figures()))
        if now >= self._next_beat or (self.served != self._beat_served and now >= self._beat_at + SERVED_BEAT_GAP_S):
            self.heartbeat()
        if now >= self._next_claim and not self._stop.is_set():
            self._next_claim = now + self._claim_interval_s
            self.reclaim()
        if now >= self._next_sweep and not self._stop.is_set():
            self._next_sweep = now + min(60.0, max(1.0, self.settings.reclaim_idle_ms / 1000))
            self.forget_dead_consumers()

    def _check_name_free(self) -> bool:
        """A ConfigError where another live worker beats under this consumer name (a second worker started
        with the first's ``--consumer``: it took the first's pending entries as a dead run's and served them
        twice). A heartbeat of this host and process id is this worker's before (a container restarted);
        another one is watched until it beats again (alive: refused) or expires (a worker that died: its
        name and pending entries are taken, as before), at most ``heartbeat_ttl_s``. False where a stop
        came during that watch: the name is not known to be free, so it is not taken (a SIGTERM there took
        a live worker's name, served its pending entries a second time and deleted its heartbeat)."""
        key = self.keys.heartbeat(self.name)

        def beat() -> dict[str, str]:  # HMGET: what the worker's ACL user may read of a hash (HSET, HMGET)
            values = self.client.hmget(key, ["host", "pid", "beat_at_ms"])
            return {} if values[2] is None else dict(zip(("host", "pid", "beat_at_ms"), map(as_str, values)))

        try:
            held = self._retry(beat)
        except ConfigError as exc:  # ACL rules without HMGET: the name is not checked, as before
            log.warning("worker %s: cannot check that no live worker holds this name (%s)", self.name, exc)
            return True
        who = (held.get("host"), held.get("pid"))
        if not held or who == (socket.gethostname(), str(os.getpid())):
            return True
        ttl_s = self.settings.heartbeat_ttl_s
        log.warning("worker %s: a heartbeat under this name from %s (pid %s): waiting up to %d s for its next beat "
                    "(a live worker under this name) or its end (a worker that died)", self.name,
                    printable(str(who[0]))[:80], printable(str(who[1]))[:20], ttl_s)
        deadline = time.monotonic() + ttl_s + 1
        while time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.2)
            now = self._retry(beat)
            if not now:
                return True  # expired (or its worker stopped): the name is free
            if now.get("beat_at_ms") != held.get("beat_at_ms") or (now.get("host"), now.get("pid")) != who:
                raise ConfigError(f"worker name {self.name!r} is taken by a live worker on {printable(str(who[0]))[:80]} "
                                  f"(pid {printable(str(who[1]))[:20]}, beating): two workers under one name take each "
                                  "other's frames as a dead worker's and serve them twice; give each worker its own "
                                  "--consumer (the default, <host>-<pid>, is)")
        if self._stop.is_set():  # the watch was cut short: that worker may well be alive
            return False
        log.warning("worker %s: that heartbeat did not beat in %d s: taking the name", self.name, ttl_s)
        return True

    def heartbeat(self) -> None:
        """The heartbeat hash (expires heartbeat_ttl_s after this beat) and this worker's entry in
        the index of heartbeats (``Keys.heartbeats``), in one MULTI. The index drops the entries
        that beat longer than INDEX_KEPT_TTLS heartbeat TTLs ago (by this worker's clock, as the
        scores are: a margin, so a worker whose clock is behind by less than that is never dropped
        while it beats; an entry whose hash expired costs ``status`` one empty read), so it holds
        about the fleet of the last minute; it is never emptied (nor expired), so a fleet scaled
        to zero keeps it and ``status`` does not fall back to SCAN."""
        key, beat_ms = self.keys.heartbeat(self.name), now_ms()
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={
            "worker": self.name, "host": socket.gethostname(), "pid": os.getpid(), "status": self.status.value,
            "device": self.device, "backend": self.backend, "model_version": self.pipeline.model_version,
            "served": self.served,
            "batches": self.batches, "dead_lettered": self.dead_lettered, "in_hand": len(self._inhand),
            "started_at_ms": self._started_ms, "beat_at_ms": beat_ms})
        pipe.expire(key, self.settings.heartbeat_ttl_s)
        if self._indexed:
            gone_ms = beat_ms - INDEX_KEPT_TTLS * self.settings.heartbeat_ttl_s * 1000
            pipe.zremrangebyscore(self.keys.heartbeats, "-inf", f"({gone_ms}")
            pipe.zadd(self.keys.heartbeats, {self.name: beat_ms})
        try:
            pipe.execute()
        except redis.exceptions.NoPermissionError as exc:
            # the ACL rules of the release before (deployed beside this image): beat without the
            # index rather than stop; status finds this worker by SCAN while no worker writes it
            if not self._indexed or self.keys.heartbeats not in str(exc):
                raise
            self._indexed = False
            log.warning("worker %s: this Redis user may not write the workers' index %s (%s): beating without "
                        "it; grant +zadd +zremrangebyscore on it (deploy/k8s/base/redis/acl/moodstream-worker.rules), "
                        "or status lists only the workers that write it once one does",
                        self.name, self.keys.heartbeats, exc)
            return self.heartbeat()
        self._beat_at, self._beat_served = time.monotonic(), self.served
        self._named = True  # it beats under the name: its goodbye may remove the heartbeat and consumer
        self._next_beat = self._beat_at + self.settings.heartbeat_ttl_s / 3

    def reclaim(self) -> None:
        """XAUTOCLAIM entries pending longer than reclaim_idle_ms (their worker died or hangs)."""
        room = min(self.settings.batch_max, self._quota_left())
        if room <= 0:
            return
        resp = self.client.xautoclaim(self.keys.frames, self.keys.group, self.name,
                                      min_idle_time=self.settings.reclaim_idle_ms,
                                      start_id=self._claim_cursor, count=room)
        self._claim_cursor = as_str(resp[0]) or "0-0"
        claimed = [(as_str(eid), fields) for eid, fields in resp[1] if eid is not None]
        deleted = [as_str(eid) for eid in (resp[2] if len(resp) > 2 else [])]
        if deleted:  # trimmed or deleted while pending (by hand: the movers trim only acked ones): Redis dropped them
            self._dead_letter_only(deleted, "trimmed", "entry trimmed from the stream before it was served")
        fresh = [(eid, f) for eid, f in claimed if eid not in self._inhand_ids]
        if not fresh:
            return
        self._accept_redelivered(fresh, at_least=1)  # absent from XPENDING: acked meanwhile, count it as new
        self.reclaimed += len(fresh)
        self.metrics.reclaimed(len(fresh))
        log.info("worker %s: reclaimed %d entries idle > %d ms", self.name, len(fresh), self.settings.reclaim_idle_ms)

    def forget_dead_consumers(self) -> None:
        """XGROUP DELCONSUMER the consumers of workers that are gone (a pod name is new on
        every restart, so they pile up): nothing pending, no heartbeat, and idle for twice
        reclaim_idle_ms. A live worker reads at least once a batch, and a batch is sized
        to end well inside reclaim_idle_ms, so none of them matches; a consumer that still
        holds entries is left until they are reclaimed (deleting it would drop them)."""
        min_idle_ms = 2 * self.settings.reclaim_idle_ms
        gone = []
        try:
            consumers = self.client.xinfo_consumers(self.keys.frames, self.keys.group)
        except redis.ResponseError as exc:  # the stream deleted (FLUSHALL, DEL) since the last read: nobody
            if "no such key" not in str(exc).lower():  # to forget; the next read recreates it (NOGROUP)
                raise
            return
        for c in consumers:
            name = as_str(c.get("name")) or ""
            if name == self.name or int(c.get("pending") or 0) or int(c.get("idle") or 0) < min_idle_ms:
                continue
            if self.client.exists(self.keys.heartbeat(name)):
                continue
            held = self.client.xgroup_delconsumer(self.keys.frames, self.keys.group, name)
            if held:  # it read between our two calls: alive after all, and those entries are lost to the group
                log.error("worker %s: consumer %s read %d entries while being removed; they stay in %s "
                          "unacked (XPENDING no longer lists them)", self.name, name, held, self.keys.frames)
            gone.append(name)
        if gone:
            log.info("worker %s: removed %d dead consumers (nothing pending, no heartbeat, idle > %d ms): %s",
                     self.name, len(gone), min_idle_ms, ", ".join(gone[:10]))

    # --- collecting a batch -------------------------------------------------------

    def _take_back_own(self) -> None:
        """Entries still pending under this consumer name (a worker that died and was
        restarted with the same name): take them back now, as suspects, instead of
        waiting reclaim_idle_ms for them."""
        # at most what a worker holds (a batch and the next one read ahead): memory stays bounded
        resp = self.client.xreadgroup(self.keys.group, self.name, {self.keys.frames: "0"},
                                      count=2 * self.settings.batch_max)
        entries = [(as_str(eid), fields) for eid, fields in (resp[0][1] if resp else [])]
        if not entries:
            return
        self._accept_redelivered(entries, at_least=2)  # ours before: delivered at least twice now
        log.warning("worker %s: took back %d entries left pending under this name (a previous run died)",
                    self.name, len(entries))

    def _accept_redelivered(self, entries: list[tuple[str, dict | None]], at_least: int) -> None:
        """Entries delivered before (reclaimed, or taken back): into hand with their
        delivery counts (XPENDING, at least ``at_least``) and solo attempts; those whose
        data is gone (nil or empty fields: deleted or trimmed while pending) are
        dead-lettered as trimmed."""
        ids = [eid for eid, _ in entries]
        counts = {as_str(p["message_id"]): int(p["times_delivered"]) for p in self.client.xpending_range(
            self.keys.frames, self.keys.group, min=min(ids, key=_id_key), max=max(ids, key=_id_key),
            count=len(ids) + len(self._inhand) + self.settings.batch_max, consumername=self.name)}
        solo = self._solo_attempts(ids)
        gone = []
        for eid, fields in entries:
            if not fields:
                gone.append(eid)
                continue
            self._accept(eid, fields, max(at_least, counts.get(eid, at_least)), solo.get(eid, 0))
        if gone:
            self._dead_letter_only(gone, "trimmed", "entry trimmed from the stream before it was served", ack=True)

    def _solo_attempts(self, entry_ids: list[str]) -> dict[str, int]:
        if not entry_ids:
            return {}
        values = self.client.hmget(self.keys.attempts, entry_ids)
        return {eid: int(v) for eid, v in zip(entry_ids, values) if v is not None}

    def collect(self) -> list[Entry]:
        """Read until batch_max entries are in hand, or the oldest has waited batch_wait_ms.

        A suspect (an entry delivered before) is served alone, ahead of the rest, the
        one with the fewest deaths first."""
        suspects = [(e.solo_attempts, i) for i, e in enumerate(self._inhand) if e.suspect and e.error is None]
        if suspects:
            e = self._inhand.pop(min(suspects)[1])
            self._inhand_ids.discard(e.entry_id)
            return [e]
        policy, cap = self.policy, self.policy.batch_max
        while not policy.full(len(self._inhand)) and not self._stop.is_set() and self._quota_left() > 0:
            if not self._inhand:
                if not self._read(cap, self.idle_block_ms):
                    break  # idle: back to the loop (stop check, heartbeat, reclaim)
                continue
            left_s = policy.wait_left_s(self._inhand[0].received)
            if left_s <= 0:
                break
            if not self._read(cap - len(self._inhand), None):  # poll: see BatchPolicy.poll_s
                time.sleep(min(left_s, policy.poll_s))
        batch, rest = self._inhand[:cap], self._inhand[cap:]
        self._inhand = rest
        self._inhand_ids = {e.entry_id for e in rest}
        return batch

    def _read(self, count: int, block_ms: int | None) -> int:
        count = min(count, self._quota_left())
        if count <= 0:
            return 0
        resp = self.client.xreadgroup(self.keys.group, self.name, {self.keys.frames: ">"},
                                      count=count, block=block_ms)
        entries = resp[0][1] if resp else []
        for eid, fields in entries:
            self._accept(as_str(eid), fields, deliveries=1)
        if entries:
            self._last_read_id = as_str(entries[-1][0])
        return len(entries)

    def _accept(self, entry_id: str, fields: dict, deliveries: int, solo_attempts: int = 0) -> None:
        """Take one entry into hand. Total: whatever the message holds, the entry ends
        in hand, with its job or with the error that dead-letters it."""
        e = Entry(entry_id, None, deliveries, time.monotonic(), suspect=deliveries > 1, solo_attempts=solo_attempts)
        try:
            e.payload = fields.get(FIELD) if isinstance(fields, dict) else None
            if e.payload is None and isinstance(fields, dict) and TOO_LARGE in fields:  # a mover's stand-in
                e.payload, e.payload_bytes = fields.get(HEAD) or b"", int(fields[TOO_LARGE])
            e.error = bare(self._check(e, solo_attempts))
        except Exception as exc:  # a bug in validation must not stop the fleet: this entry is dead-lettered
            log.exception("worker %s: validating entry %s failed", self.name, entry_id)
            e.error = BadInputError("bad_field", f"validation failed: {type(exc).__name__}: {exc}"[:300])
        if e.error is None and not e.suspect:  # a suspect decodes when its solo attempt has been counted
            e.decoded = self._pool.submit(self._decode, e.job)
        self._inhand.append(e)
        self._inhand_ids.add(entry_id)
        self.taken += 1

    def _check(self, e: Entry, solo_attempts: int) -> BadInputError | None:
        s = self.settings
        if e.payload_bytes is not None:
            return BadInputError("too_large", f"message of {e.payload_bytes} bytes is over max_message_bytes: the "
                                              f"mover that took it from the intake passed on only its first "
                                              f"{len(e.payload or b'')} bytes")
        if e.payload is None:
            return MessageError("missing_field", f"stream entry has no {FIELD.decode()!r} field")
        if isinstance(e.payload, (bytes, bytearray)) and len(e.payload) > s.max_message_bytes:
            return BadInputError("too_large", f"message of {len(e.payload)} bytes is over max_message_bytes "
                                              f"({s.max_message_bytes})")
        try:
            e.job = decode_frame(e.payload)
        except MessageError as exc:
            return exc
        if e.job.reply_to is not None and not e.job.reply_to.startswith(self.keys.reply_prefix):
            return MessageError("bad_field", f"reply_to {e.job.reply_to[:200]!r} is outside {self.keys.reply_prefix}*")
        if solo_attempts >= s.max_deliveries:
            return BadInputError("max_deliveries", f"a worker died {solo_attempts} times serving it alone "
                                                   f"(max_deliveries={s.max_deliveries})")
        return None

    def _decode(self, job: FrameJob) -> tuple[np.ndarray, float]:
        """Runs in the decode pool. RGB uint8 (H, W, 3) and the time it took, or BadInputError."""
        t0 = time.perf_counter()
        img = decode_pixels(job.image, job.array, self.settings.max_pixels, self._budget)
        return img, (time.perf_counter() - t0) * 1000

    def _quota_left(self) -> int:
        return 1 << 62 if self.max_frames is None else max(0, self.max_frames - self.taken)

    # --- serving a batch ----------------------------------------------------------

    def serve(self, batch: list[Entry]) -> None:
        self.status = Status.BUSY
        self.metrics.batch(len(batch))
        start_ms = now_ms()
        outcomes: list[Outcome] = []
        ready: list[tuple[Entry, np.ndarray, float]] = []
        suspects = [e.entry_id for e in batch if e.suspect and e.error is None]
        if suspects:  # counted before any work on them: if this process dies now, it is on their account
            self._retry(lambda: self._count_solo_attempt(suspects))
            self._solo_in_flight, self._solo_started = suspects, time.monotonic()
            for e in batch:
                if e.entry_id in suspects:
                    e.decoded = self._pool.submit(self._decode, e.job)
        for e in batch:
            if e.error is None:
                try:
                    img, decode_ms = e.decoded.result()
                    ready.append((e, img, decode_ms))
                    continue
                except BadInputError as exc:
                    e.error = bare(exc)
                except Exception as exc:  # a decoder bug: this entry fails, the batch goes on
                    log.exception("worker %s: decoding entry %s failed", self.name, e.entry_id)
                    e.error = BadInputError("unreadable", f"{type(exc).__name__}: {exc}")
            outcomes.append(self._failed(e, e.error.reason, e.error.detail or str(e.error)))
        self._prefetch()  # the next batch decodes while this one is in the pipeline
        frame_results = self._infer([img for _, img, _ in ready])
        if suspects:  # through decoding and inference alive: no death so far was this frame's doing
            self._solo_in_flight = []
            self._retry(lambda: self.client.hdel(self.keys.attempts, *suspects))
        for (e, img, decode_ms), fr in zip(ready, frame_results):
            if isinstance(fr, Exception):
                outcomes.append(self._failed(e, "inference_failed", f"{type(fr).__name__}: {fr}"))
                continue
            try:
                timings = {"queue_wait": max(0, start_ms - e.job.enqueued_at_ms), "decode": round(decode_ms, 3),
                           **fr.timings_ms}
                result = self._result(e, faces=fr.faces, size=fr.size, timings_ms=timings,
                                      scale=decoded_scale(e.job.image, img))  # a JPEG over max_pixels, read smaller
                encode_result(result)  # a result that cannot be encoded fails here, alone, not the publish
                outcomes.append(Outcome(e, result))
            except Exception as exc:  # a record we cannot build is this frame's failure, not the batch's
                log.exception("worker %s: building the result of entry %s failed", self.name, e.entry_id)
                outcomes.append(self._failed(e, "inference_failed", f"{type(exc).__name__}: {exc}"))
        self._retry(lambda: self.publish(outcomes))
        self.served += len(batch)
        self.batches += 1
        self._observe(outcomes, frame_results)
        self.status = Status.IDLE
        log.debug("worker %s: batch %d of %d served (%d failed)", self.name, self.batches, len(batch),
                  sum(o.dead is not None for o in outcomes))

    def _observe(self, outcomes: list[Outcome], frame_results: list) -> None:
        """Metrics of a published batch: one outcome per entry, stages in seconds."""
        m = self.metrics
        for o in outcomes:
            r = o.result
            m.frame_done("ok" if r is not None and r.error is None else (o.dead[0] if o.dead else r.error.reason))
            if o.dead is not None:
                m.dead_lettered(o.dead[0])
            if r is None:
                continue
            m.faces(len(r.faces))
            for stage in ("queue_wait", "decode"):
                if stage in r.timings_ms:
                    m.stage(stage, r.timings_ms[stage] / 1000)
            if r.enqueued_at_ms:
                m.stage("end_to_end", max(0, r.published_at_ms - r.enqueued_at_ms) / 1000)
        timed = next((fr for fr in frame_results if not isinstance(fr, Exception)), None)
        for stage in ("detect", "classify"):  # per batch, not per frame
            if timed is not None and stage in (timed.timings_ms or {}):
                m.stage(stage, float(timed.timings_ms[stage]) / 1000)
        m.batch_done()

    def _prefetch(self) -> None:
        if self._stop.is_set() or len(self._inhand) >= self.settings.batch_max:
            return
        try:
            self._read(self.settings.batch_max - len(self._inhand), None)
        except redis.RedisError as exc:  # the publish that follows meets it, backs off or recreates
            if not is_transient(exc) and not is_missing_key(exc):
                raise
            log.debug("worker %s: prefetch skipped: %s", self.name, exc)

    def _infer(self, images: list[np.ndarray]) -> list:
        """FrameResults in order; a batch that raises is retried one frame at a time,
        and a frame that still fails gets its exception in its place."""
        if not images:
            return []
        try:
            out = self.pipeline.process(images)
            if len(out) != len(images):
                raise RuntimeError(f"pipeline returned {len(out)} results for {len(images)} frames")
            return out
        except Exception:
            log.exception("worker %s: batch of %d frames failed; retrying frame by frame", self.name, len(images))
        out = []
        for img in images:
            try:
                out.append(self.pipeline.process([img])[0])
            except Exception as exc:
                log.exception("worker %s: a frame failed on its own", self.name)
                out.append(exc)
        return out

    def _result(self, e: Entry, **kw) -> FrameResult:
        job = e.job
        assert job is not None
        return FrameResult(job_id=job.job_id, source=job.source, frame=job.frame, worker=self.name,
                           timestamp_s=job.timestamp_s, page=job.page, shot=job.shot, model_version=self.pipeline.model_version,
                           enqueued_at_ms=job.enqueued_at_ms, frame_entry=e.entry_id,
                           dropped_before=job.dropped_before or None, **kw)

    def _failed(self, e: Entry, reason: str, detail: str) -> Outcome:
        """Dead-letter the entry; if we know its job, the caller also gets an error result."""
        log.warning("worker %s: dead-lettering entry %s (%s: %s)", self.name, e.entry_id, reason, detail)
        result = None
        if e.job is not None:
            result = self._result(e, error=ErrorInfo(reason, detail),
                                  timings_ms={"queue_wait": max(0, now_ms() - e.job.enqueued_at_ms)})
        return Outcome(e, result, (reason, detail))

    def _take_back_attempt(self, entry_ids: list[str]) -> None:
        """Undo the count of a solo attempt that a stop request interrupts (in a thread:
        the signal handler must not wait on Redis)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for eid in entry_ids:
                pipe.hincrby(self.keys.attempts, eid, -1)
            left = pipe.execute()
            done = [eid for eid, n in zip(entry_ids, left) if int(n) <= 0]
            if done:
                self.client.hdel(self.keys.attempts, *done)
            log.info("worker %s: stop requested during the solo attempt of %s: not counted against it",
                     self.name, ", ".join(entry_ids))
        except redis.RedisError as exc:
            log.warning("worker %s: could not take back the solo attempt of %s: %s", self.name, entry_ids, exc)

    def _count_solo_attempt(self, entry_ids: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for eid in entry_ids:
            pipe.hincrby(self.keys.attempts, eid, 1)
        pipe.execute()

    def publish(self, outcomes: list[Outcome]) -> None:
        """Results, dead letters and the XACK of every entry in one MULTI/EXEC.

        A ``reply_to`` that names a key of another type fails alone (Redis runs
        the rest of the transaction): logged, the shared results stream has the result.
        Each reply stream expires ``reply_ttl_s`` after its last result."""
        s = self.settings
        pipe = self.client.pipeline(transaction=True)
        replies: dict[int, str] = {}  # command index -> reply_to key
        written: dict[int, tuple[str, Outcome]] = {}  # command index -> the shared stream and whose entry
        for o in outcomes:
            if o.result is not None:
                o.result.published_at_ms = now_ms()
                payload = encode_result(o.result)
                written[len(pipe.command_stack)] = (self.keys.results, o)
                pipe.xadd(self.keys.results, {FIELD: payload}, maxlen=s.results_maxlen, approximate=True)
                reply_to = self._reply_to(o.entry)
                if reply_to is not None:
                    replies[len(pipe.command_stack)] = reply_to
                    pipe.xadd(reply_to, {FIELD: payload}, maxlen=s.results_maxlen, approximate=True)
                    replies[len(pipe.command_stack)] = reply_to
                    pipe.expire(reply_to, s.reply_ttl_s)  # one stream per caller: never kept for ever
            if o.dead is not None:
                e = o.entry
                written[len(pipe.command_stack)] = (self.keys.dead, o)
                pipe.xadd(self.keys.dead, dead_letter_fields(
                    o.dead[0], o.dead[1], e.entry_id, e.deliveries, self.name, e.payload,
                    e.job.job_id if e.job else None, e.payload_bytes), maxlen=s.stream_maxlen, approximate=True)
        ids = [o.entry.entry_id for o in outcomes]
        pipe.xack(self.keys.frames, self.keys.group, *ids)
        pipe.hdel(self.keys.attempts, *ids)
        answers = pipe.execute(raise_on_error=False)
        lost = {i: written[i] for i, answer in enumerate(answers) if i in written and isinstance(answer, Exception)}
        if lost:  # acked in the same EXEC without their result or dead letter: their frames go back
            self._put_back(lost, answers)
        for i, answer in enumerate(answers):
            if isinstance(answer, Exception):
                if i in replies:
                    log.warning("worker %s: cannot add to reply_to %r: %s", self.name, replies[i][:200], answer)
                else:
                    raise answer
        self.dead_lettered += sum(o.dead is not None for o in outcomes)

    def _reply_to(self, e: Entry) -> str | None:
        """The job's ``reply_to`` where :meth:`_check` accepted it (under the reply prefix); a
        rejected one gets nothing (its job's error result goes to the shared stream only)."""
        reply_to = e.job.reply_to if e.job is not None else None
        return reply_to if reply_to is not None and reply_to.startswith(self.keys.reply_prefix) else None

    def _put_back(self, lost: dict[int, tuple[str, Outcome]], answers: list) -> None:
        """Entries acked in a batch's EXEC whose result or dead letter failed (a key of another
        type: Redis runs the rest of a MULTI): their messages are added to the frames stream
        again, so that no frame is lost, and the worker stops with one line."""
        entries = {o.entry.entry_id: o.entry for _, o in lost.values()}
        back = [e.payload for e in entries.values() if e.payload is not None and e.payload_bytes is None]
        try:
            for payload in back:  # no MAXLEN: it trimmed unread frames too; the movers trim below the acked
                self.client.xadd(self.keys.frames, {FIELD: payload})
            done = f"their {len(back)} messages put back on {self.keys.frames}"
        except redis.RedisError as exc:
            log.error("worker %s: could not put back entries %s: %s", self.name, ", ".join(entries), exc)
            done = f"their messages NOT put back ({exc}): see the log for the entry ids"
        i, (key, _) = next(iter(lost.items()))
        why = f"{key!r} is not a stream" if str(answers[i]).startswith("WRONGTYPE") else str(answers[i])
        raise ConfigError(f"worker {self.name}: cannot add to {key!r}: {why}; {len(entries)} entries were acked "
                          f"without it, {done}. Delete or rename that key, or use another prefix")

    def _dead_letter_only(self, entry_ids: list[str], reason: str, detail: str, ack: bool = False) -> None:
        pipe = self.client.pipeline(transaction=True)
        for eid in entry_ids:
            pipe.xadd(self.keys.dead, dead_letter_fields(reason, detail, eid, 0, self.name, None),
                      maxlen=self.settings.stream_maxlen, approximate=True)
        if ack:
            pipe.xack(self.keys.frames, self.keys.group, *entry_ids)
        pipe.hdel(self.keys.attempts, *entry_ids)
        pipe.execute()
        self.dead_lettered += len(entry_ids)
        self.served += len(entry_ids)
        for _ in entry_ids:
            self.metrics.frame_done(reason)
        self.metrics.dead_lettered(reason, len(entry_ids))
        log.warning("worker %s: %d entries %s: %s", self.name, len(entry_ids), reason, ", ".join(entry_ids[:5]))

    # --- helpers ------------------------------------------------------------------

    def _ensure_group(self) -> None:
        ensure_group(self.client, self.keys)

    def _recreate(self) -> None:
        """After FLUSHALL / DEL / XGROUP DESTROY: the group again, and this worker's heartbeat
        at once (status and KEDA see it without waiting for the next beat). Where the stream is
        still there (XGROUP DESTROY), the group starts after the last entry this worker read, not
        at 0: the entries before it were served (re-serving them all gave up to stream_maxlen
        duplicates); at most what other workers read past it comes again."""
        start = "0"
        if self._last_read_id is not None and self.client.exists(self.keys.frames):
            start = self._last_read_id
        if ensure_group(self.client, self.keys, start_id=start) and start != "0":
            log.warning("worker %s: consumer group recreated after entry %s (the last this worker read)",
                        self.name, start)
        self.heartbeat()

    def _retry(self, fn):
        """Run ``fn`` until it gets through (see :mod:`moodstream.shared.retry`). Used
        where giving up would lose work, so only a stop request ends it (RedisGone:
        the work stays pending in Redis)."""
        return self.retry.call(fn)

    def _on_redis_down(self, exc: BaseException) -> None:
        self.metrics.redis_check(False, str(exc))
        self.metrics.loop_tick()  # backing off is the loop turning: a restart would not bring Redis back


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
