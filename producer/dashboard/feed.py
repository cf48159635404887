"""The dashboard's reader: plain XREAD over the streams into a :class:`Model`.

No consumer group: the dashboard never takes work from anyone, and every
viewer sees every entry. One thread reads ``<prefix>:results``,
``<prefix>:tracked`` and the summaries stream from their start (what the
streams still hold, so a page opened mid-run shows the run from its start),
then follows them; every ``fleet_every_s`` it takes the fleet's figures with
:mod:`moodstream.producer.status`'s functions. Redis calls go through
:class:`~moodstream.shared.retry.RedisRetry`: while Redis is away the model
says so and the page shows it; when it is back, reading goes on from the
last entry ids.

**Frames.** Results carry boxes, not pixels. The picture of a source's latest
frame is read back from ``<prefix>:frames`` at the entry its result names
(``frame_entry``; by its job id near the job's enqueue time for a result of a
worker of an earlier release: the track stage's :class:`~moodstream.worker.tracking.pictures.FramePictures`),
decoded and re-encoded as a small JPEG (never the stream's bytes as they
are), at most once per source and frame. Once the frames stream has trimmed
that entry (``stream_maxlen``), there is no picture: the page draws the boxes
on an empty frame and says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque

import cv2
import msgspec
import redis

from moodstream.producer.dashboard.model import MAX_SOURCES, Model, cut, entry_ms
from moodstream.worker.tracking.pictures import FramePictures
from moodstream.producer.status import (dead_letter_reasons, live_workers, redis_info, server_time_ms, track_lines,
                                        track_stats)
from moodstream.shared.errors import BadInputError, MessageError
from moodstream.shared.keys import Keys
from moodstream.shared.media import encode_jpeg
from moodstream.shared.record import FrameResult
from moodstream.shared.retry import RedisGone, RedisRetry
from moodstream.shared.settings import Settings
from moodstream.shared.transport import BacklogGauge, as_str, connect, redact
from moodstream.shared.wire import FIELD, decode_result

log = logging.getLogger(__name__)

READ_COUNT = 500  # results and tracked entries per XREAD call
SUMMARY_READ_COUNT = 4  # summaries entries per XREAD call: each can be megabytes (its face pictures)
MAX_ENTRY_BYTES = 1 << 20  # a results entry above this is skipped unread
MAX_SUMMARY_BYTES = 8 << 20  # a summaries entry (with its face pictures) above this is skipped unread
COMMIT_EVERY_S = 0.25  # one batch of updates for the page at most this often
RATE_WINDOW_S = 10.0  # frames/s now: results over the last this many seconds
DEAD_SHOWN = 5  # the last dead letters listed
FRAME_SIDE = 960  # the picture sent to the page is at most this wide

def parse_summary(fields: dict) -> tuple[str, dict] | None:
    """(source, summary) from a summaries-stream entry: its ``msg`` (or ``summary``) field holds
    JSON or msgpack of ``{"source"?, "tracks": [...]}``; None when it is not that."""
    raw = fields.get(FIELD) or fields.get(b"summary")
    if not isinstance(raw, bytes) or len(raw) > MAX_SUMMARY_BYTES:
        return None
    for decode in (msgspec.json.decode, msgspec.msgpack.decode):
        try:
            obj = decode(raw)
            break
        except (msgspec.DecodeError, RecursionError):
            continue
    else:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("tracks"), list):
        return None
    source = obj.get("source") or as_str(fields.get(b"source"))
    if not source and obj["tracks"] and isinstance(obj["tracks"][0], dict):
        source = obj["tracks"][0].get("source")
    return (str(source), obj) if source else None


class Feed:
    """Streams -> :class:`Model`, in a thread (:meth:`start`, :meth:`stop`)."""

    def __init__(self, settings: Settings, model: Model | None = None, *, block_ms: int = 1000,
                 fleet_every_s: float = 2.0, streams: dict[str, str] | None = None):
        """``streams``: other keys to read than the prefix's, by kind (``results``, ``tracked``,
        ``summaries``): ``up`` reads its own reply stream and its track stage's outputs."""
        self.settings = settings
        self.keys = Keys.from_settings(settings)
        self.model = model if model is not None else Model()
        self.client = connect(settings.redis_url, socket_timeout_s=10.0)
        self.block_ms = block_ms
        self.fleet_every_s = fleet_every_s
        named = {"results": self.keys.results, "tracked": self.keys.tracked, "summaries": self.keys.summaries,
                 **(streams or {})}
        self.streams = {key: kind for kind, key in named.items()}
        self.last = dict.fromkeys(self.streams, "0-0")
        self.arrivals: deque[int] = deque(maxlen=100_000)  # results entry times, for frames/s now
        self.frames: OrderedDict[str, tuple[str, bytes | None]] = OrderedDict()  # source -> (job, jpeg)
        self.pictures = FramePictures(self.client, self.keys.frames, settings.max_pixels)  # the track stage's reader
        self.gauge = BacklogGauge(self.client, self.keys)  # the backlog each refresh, without reading frames back
        self.skipped = 0
        self._stop = threading.Event()
        self.retry = RedisRetry("dashboard", settings.redis_url, self._stop, cap_s=5.0,
                                on_down=lambda exc: self.model.set_redis(False, self._say(exc)),
                                on_up=lambda: self.model.set_redis(True))
        self.thread = threading.Thread(target=self.run, name="dashboard-feed", daemon=True)

    def _say(self, exc: BaseException) -> str:
        return cut("cannot reach Redis: " + " ".join(redact(str(exc)).split()), 200)

    def start(self) -> Feed:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout=10)
        self.client.close()

    def run(self) -> None:
        next_fleet = 0.0
        last_commit = time.monotonic()
        while not self._stop.is_set():
            try:
                got = self.retry.call(self.read)
                self.model.set_redis(True)
                now = time.monotonic()
                if not got or now - last_commit >= COMMIT_EVERY_S:
                    self.model.commit()
                    last_commit = now
                if now >= next_fleet:
                    self.model.set_fleet(self.retry.call(self.fleet))
                    next_fleet = now + self.fleet_every_s
            except RedisGone:
                break
            except Exception as exc:  # e.g. an ACL user refused a command: say it, keep trying
                log.warning("dashboard: %s", exc)
                self.model.set_redis(False, cut(redact(str(exc)), 200))
                self._stop.wait(5.0)
        self.model.commit()

    def read(self) -> int:
        """A few summaries entries, then one XREAD over the results streams (blocking up to
        ``block_ms`` when there was no summary to read); entries folded into the model. Summaries
        are read apart, ``SUMMARY_READ_COUNT`` at a time: 500 of them in one reply was gigabytes."""
        summaries = {k: v for k, v in self.last.items() if self.streams[k] == "summaries"}
        n = self._take(self.client.xread(summaries, count=SUMMARY_READ_COUNT)) if summaries else 0
        others = {k: v for k, v in self.last.items() if k not in summaries}
        return n + self._take(self.client.xread(others, count=READ_COUNT, block=None if n else self.block_ms))

    def _take(self, resp) -> int:
        n = 0
        for stream, entries in resp or []:
            stream = as_str(stream)
            kind = self.streams[stream]
            for eid, fields in entries:
                eid = as_str(eid)
                self.last[stream] = eid
                n += 1
                self._fold(kind, eid, fields or {})
        return n

    def _fold(self, kind: str, eid: str, fields: dict) -> None:
        if kind == "summaries":
            parsed = parse_summary(fields)
            if parsed is None:
                self.skipped += 1
            else:
                self.model.fold_summary(parsed[0], parsed[1], eid)
            return
        raw = fields.get(FIELD)
        if raw is None or len(raw) > MAX_ENTRY_BYTES:
            self.skipped += 1
            return
        try:
            result = decode_result(raw)
        except MessageError:
            self.skipped += 1
            return
        if kind == "results":
            self.arrivals.append(entry_ms(eid))
        self.model.fold(kind, eid, result)

    def fleet(self) -> dict:
        """Workers, backlog, frames/s now, dead letters, the track stage's lines (late results, results
        trimmed before it read them): :mod:`producer.status`'s figures."""
        now = server_time_ms(self.client)
        while self.arrivals and self.arrivals[0] < now - RATE_WINDOW_S * 1000:
            self.arrivals.popleft()
        backlog = self.gauge.read()
        workers = [{"worker": cut(w.get("worker"), 80), "status": cut(w.get("status"), 20),
                    "device": cut(w.get("device"), 20), "served": w.get("served"), "age_s": w.get("age_s")}
                   for w in live_workers(self.client, self.keys, now)[:64]]
        dead = dead_letter_reasons(self.client, self.keys)  # the newest status.DEAD_COUNT_LIMIT
        last = []
        for eid, f in self.client.xrevrange(self.keys.dead, "+", "-", count=DEAD_SHOWN):
            g = {as_str(k): as_str(v) for k, v in f.items() if k != b"payload"}
            last.append({"id": as_str(eid), "reason": cut(g.get("reason"), 60), "detail": cut(g.get("detail"), 200),
                         "job_id": cut(g.get("job_id"), 80), "worker": cut(g.get("worker"), 80)})
        return {"time_ms": now, "prefix": self.keys.prefix, "redis": redis_info(self.client), "workers": workers,
                "busy": sum(w["status"] == "busy" for w in workers),
                "idle": sum(w["status"] == "idle" for w in workers),
                "backlog": {"intake": backlog.intake, "lag": backlog.lag, "pending": backlog.pending,
                            "total": backlog.total, "exact": backlog.exact},
                "frames_per_s": round(len(self.arrivals) / RATE_WINDOW_S, 1),
                "dead": {"length": dead["length"], "by_reason": {cut(k, 60): v for k, v in
                                                                 list(dead["by_reason"].items())[:20]},
                         "note": dead.get("note"), "last": last},
                "track_lines": track_lines(track_stats(self.client, self.keys))}

    # --- pictures -------------------------------------------------------------------------

    def frame_jpeg(self, source: str) -> tuple[bytes | None, str]:
        """The JPEG of ``source``'s latest frame and a note; (None, why) when there is none."""
        with self.model.lock:
            src = self.model.sources.get(source)
            latest = dict(src.latest) if src is not None and src.latest else None
        if latest is None or not latest.get("job") or (latest.get("entry") is None and latest.get("enq") is None):
            return None, "no frame known for this source"
        job = latest["job"]
        cached = self.frames.get(source)
        if cached is not None and cached[0] == job:
            return cached[1], "cached" if cached[1] else "frame no longer in the frames stream (trimmed)"
        try:
            jpeg = self._lookup(job, latest.get("enq"), latest.get("entry"))
        except (redis.RedisError, BadInputError) as exc:
            return None, cut(redact(str(exc)), 200)
        self.frames[source] = (job, jpeg)
        self.frames.move_to_end(source)
        while len(self.frames) > MAX_SOURCES:
            self.frames.popitem(last=False)
        return jpeg, "ok" if jpeg else "frame no longer in the frames stream (trimmed)"

    def _lookup(self, job: str, enq_ms: int | None, entry: str | None) -> bytes | None:
        """The frame at the entry the result names (its worker's ``frame_entry``), else by job id near
        its enqueue time (a worker of an earlier release): a job that waited in the intake behind more
        than a few dozen others lies past what that search reads."""
        rgb = self.pictures.frame(FrameResult(job_id=job, enqueued_at_ms=enq_ms, frame_entry=entry))
        if rgb is None:
            return None
        h, w = rgb.shape[:2]
        if w > FRAME_SIDE:
            rgb = cv2.resize(rgb, (FRAME_SIDE, max(1, round(h * FRAME_SIDE / w))), interpolation=cv2.INTER_AREA)
        return encode_jpeg(rgb, quality=80)
