"""``Producer``: turns bytes, arrays, files, folders, videos and cameras into frame
jobs on the intake list, with backpressure.

    producer = Producer(settings)                  # settings.redis_url must be set
    ref = producer.submit_image(jpeg_bytes, source="upload-17")
    for ref in producer.produce(["clip.mp4"], every_n=5):
        print(ref.job_id)

Each job is one ``RPUSH <prefix>:intake`` of its encoded message; a mover in
every worker (:mod:`worker.intake`) moves the intake's messages, in order, to
the frames stream the workers' consumer group reads. RPUSH can only append:
a producer's credential deletes nothing (its own frames or another
producer's) and picks no stream id (an XADD it may send could carry MAXLEN 0,
a far MINID or the largest id, which no ACL can refuse apart from XADD itself).

Before pushing, every few jobs the producer measures the backlog (the intake's
length plus the consumer group's lag and pending, one round trip that reads no
frame back: :class:`~moodstream.shared.transport.BacklogGauge`); above
``lag_limit`` (or fewer frames where that many of its own, at their size so far,
would hold over ``stream_max_mb``: :attr:`Producer.limit`) it waits for the
workers (``backpressure="wait"``, the default,
for files and live sources alike), or it does not send new frames until the
backlog falls (``"drop"``, for live cameras where a late frame is worth less
than a fresh one; measured at most every ``SHED_CHECK_S`` meanwhile): each such
frame is counted in ``stats.dropped`` and its :class:`JobRef` says ``dropped``.
The next frame of that source that is sent carries how many were dropped before
it (``FrameJob.dropped_before``): the track
stage counts them in the run's summary (``dropped_frames``); a source's last frame,
where it was dropped, is sent when the source ends (:meth:`Producer.end_source`).

Trimming is the movers' (``MINID`` below what the group has acknowledged), not
the producer's. Delivery is at-least-once: an RPUSH retried after a lost
connection may add the job twice (same job id).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import msgspec
import numpy as np
import redis

from moodstream.shared.errors import BadInputError, ConfigError, MessageError
from moodstream.shared.keys import Keys
from moodstream.shared.media import FrameItem, encode_jpeg, is_stream_spec, iter_frames, url_image_items
from moodstream.shared.pixels import check_rgb
from moodstream.shared.retry import RedisRetry
from moodstream.shared.settings import ENCODINGS, Settings, is_number, is_whole
from moodstream.shared.transport import MB, BacklogGauge, as_str, connect, frames_within, refuse_cluster
from moodstream.shared.record import FrameJob, Raw
from moodstream.shared.table import plural, printable
from moodstream.shared.wire import FIELD, decode_frame, encode_frame, new_job_id, now_ms

log = logging.getLogger(__name__)


class RefusedJob(BadInputError, ValueError):
    """A frame job every worker would refuse (``bad_field``), not sent: a ValueError to an API
    caller; :meth:`Producer.submit_item` counts it as its input's error, as a reader's."""

DROPS_KEPT = 1_024  # sources whose drop counts wait for their next frame (the newest drops')
HELD_KEPT = 16  # sources whose last dropped frame is held for end_source (the newest drops')
EPISODES_SAID_EVERY_S = 60.0  # a producer's waits (or runs of drops) after its first are said this often at most
# while dropping (drop mode), the backlog is measured at most this often, not each frame read: a file's
# frames come hundreds a second, and each measure is a round trip to the Redis found overloaded
SHED_CHECK_S = 0.1
WINDOW_MAX = 100_000  # job sizes a producer keeps for its limit (lag_limit + 1 at most): beyond, their mean stands
DEFAULT_ENCODING = Settings.__dataclass_fields__["encoding"].default  # png: the answers of analyze, frame for frame
# How video frames travel. png is lossless, so a frame gives the same answer through the service as in
# `analyze`; the lossy ones are smaller and change some answers. What each costs on the sample clip
# (bytes, encode time, faces and top emotions kept): `moodstream bench encoding`, docs/results/encoding_cpu.md.


# png at zlib level 1 (its default strategy: 35% smaller than OpenCV's default RLE, as fast), each row
# filtered by the row above it (UP): libpng's adaptive choice of a filter per row cost 1.7x the encode and
# 1.6x the decode on 1080p frames, for 8% more bytes (`moodstream bench encoding`, png_vs_adaptive).
# OpenCV before 4.10 has no filter setting: there, the adaptive choice
PNG_ADAPTIVE = [cv2.IMWRITE_PNG_COMPRESSION, 1]
PNG_PARAMS = PNG_ADAPTIVE + ([cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
                             if hasattr(cv2, "IMWRITE_PNG_FILTER") else [])


# a file's video frames are encoded on this many threads (the cores this process may run on, at most 4),
# twice as many frames ahead of the one sent (Producer.encoded_ahead): cv2.imencode lets go of the GIL
ENCODE_THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def encode_pixels(rgb: np.ndarray, encoding: str, jpeg_quality: int = 90) -> bytes:
    """An RGB uint8 frame as the bytes ``encoding`` (png, jpeg or webp) sends; raw
    frames travel as arrays (:class:`Raw`) and have no bytes here."""
    if encoding == "jpeg":
        return encode_jpeg(rgb, jpeg_quality)
    if encoding not in ("png", "webp"):
        raise ConfigError(f"encode_pixels: {encoding!r} has no byte encoding (png, jpeg, webp)")
    ext, params = ((".png", PNG_PARAMS) if encoding == "png"
                   else (".webp", [cv2.IMWRITE_WEBP_QUALITY, 90]))
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise BadInputError("unsupported", f"cannot {encoding}-encode this frame")
    return buf.tobytes()


def _unencodable_text(job: FrameJob) -> str | None:
    """The first of ``job``'s text fields that UTF-8 cannot encode (a lone surrogate), where one is."""
    for name in ("source", "job_id", "reply_to"):
        value = getattr(job, name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name
    return None


def _not_image_bytes(data: object) -> str:
    """What :meth:`Producer.submit_image` says of ``data`` that is not bytes."""
    head = f"submit_image takes an encoded image's bytes (JPEG, PNG, WebP...), got {type(data).__name__}"
    if isinstance(data, np.ndarray):
        return f"{head} ({data.dtype} {data.shape}): an RGB array goes to submit_array"
    if isinstance(data, str):
        return f"{head}: for a file, open(path, 'rb').read(), or Producer.produce([path])"
    if hasattr(data, "read"):
        return f"{head}: pass its bytes, f.read()"
    return head


def _check_rgb(rgb: object) -> None:
    """An RGB uint8 (H, W, 3) frame with pixels, or the error that says what it is instead."""
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"submit_array takes an RGB uint8 frame (a numpy array, H x W x 3), got {type(rgb).__name__}"
                        + (": encoded image bytes go to submit_image" if isinstance(rgb, (bytes, bytearray)) else ""))
    check_rgb(rgb, said=": not sent")


@dataclass(frozen=True)
class JobRef:
    """A job sent (or dropped). ``entry_id`` is None: a job is pushed to the intake list and
    gets its frames-stream id only when a worker's mover moves it (before the intake list it
    was the id of the producer's XADD); ``dropped`` says whether it was sent. A result names
    its job by ``job_id``."""

    job_id: str
    source: str
    frame: int
    entry_id: str | None  # None: the stream id is the mover's, not known to the producer
    dropped: bool = False  # not sent: backpressure="drop" and the backlog was over the limit (Producer.limit)

    def to_json(self) -> dict:
        return {"job_id": self.job_id, "source": self.source, "frame": self.frame}


@dataclass
class ProducerStats:
    sent: int = 0
    dropped: int = 0  # frames not sent under backpressure="drop" (the backlog was over Producer.limit)
    waited_s: float = 0.0  # time spent waiting under backpressure="wait"
    max_backlog: int = 0  # largest backlog measured
    failed_inputs: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    interrupted: bool = False  # Ctrl-C ended a live source (it ends quietly, as a finished one)


class Producer:
    def __init__(self, settings: Settings, client: redis.Redis | None = None, *, encoding: str | None = None,
                 jpeg_quality: int = 90, reply_to: str | None = None, retry_for_s: float = 60.0,
                 notice: Callable[[str], None] | None = None, stop: threading.Event | None = None,
                 reached: bool = False):
        """``retry_for_s``: how long an unreachable Redis is waited for (then ConfigError), once it
        has answered; until then, ``settings.redis_wait_s`` (10 s), as the commands wait at start: a
        Redis never reached is more likely a mistyped URL than an outage (it waited a minute);
        ``reached``: the caller has reached this Redis already (the CLI checks it at start, an rq job's
        connection fetched the job): ``retry_for_s`` from the first push;
        ``stop``: set it to end a wait for Redis at once (:class:`~moodstream.shared.retry.RedisGone`)
        and a live source within 0.1 s, its stalled read or not (what it read is still sent);
        ``encoding``: how video frames travel, ``settings.encoding`` unless given."""
        if not isinstance(settings, Settings):  # (None was 'NoneType' object has no attribute 'encoding')
            raise TypeError(f"Producer takes Settings (Producer(Settings.from_env(redis_url=...))), got "
                            f"{type(settings).__name__}")
        if not is_whole(jpeg_quality) or not 0 <= jpeg_quality <= 100:  # "90" was OpenCV's error, 500 its warning
            raise (ValueError if is_number(jpeg_quality) else TypeError)(
                f"jpeg_quality must be a whole number from 0 to 100, got {jpeg_quality!r}")
        encoding = encoding or settings.encoding
        if encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        self.settings = settings
        self.keys = Keys.from_settings(settings)
        self.client = client if client is not None else connect(settings.redis_url)
        self.gauge = BacklogGauge(self.client, self.keys)  # the backlog, without reading frames back
        self.encoding = encoding
        self.jpeg_quality = jpeg_quality
        self.reply_to = reply_to
        self.retry_for_s = retry_for_s
        # the one retry helper: a refused password at once, connection errors for retry_for_s (redis_wait_s
        # while Redis has never answered)
        self.stop = stop if stop is not None else threading.Event()  # set: waits for Redis and live sources end
        self.retry = RedisRetry("producer", settings.redis_url, self.stop, deadline_s=retry_for_s,
                                first_deadline_s=settings.redis_wait_s)
        self.retry.reached = reached
        self.notice = notice or (lambda msg: log.warning("%s", msg))
        self.stats = ProducerStats()
        self._live = False  # the frames being produced come from a live source (said in the wait notice)
        # measure the backlog every few jobs (check_every): the bound is limit + check_every per producer (and
        # in drop mode the last frame of each source it ends, sent whatever the backlog: end_source)
        # the sizes of the newest jobs sent, as many as stream_max_mb holds and one more (at most lag_limit + 1,
        # WINDOW_MAX): the limit in frames counts them (a moving mean of them followed 1 MB frames after
        # thumbnails 20 frames late: 2.5 times a 4 MB budget went before the first drop)
        self._sizes: deque[int] = deque()
        self._sizes_sum = 0
        self._since_check = 1 << 30  # check before the first job
        # waits and runs of drops: said the first time, then at most once a minute (_say_episode)
        self._episode_said_at: float | None = None
        self._episodes_unsaid = 0
        self._episode_said = False  # the current run of drops was said: its end is said too
        self._shedding = 0  # frames dropped since the backlog went over the limit (drop mode)
        self._measured_at = 0.0  # when the backlog was last measured (monotonic): SHED_CHECK_S apart while dropping
        # per source, frames dropped since the one sent before: the next one sent carries the count
        # (FrameJob.dropped_before), so the run's summary can say them; the sources of the newest
        # DROPS_KEPT drops are kept (a count of a source never sent again goes with it)
        self._dropped_since: OrderedDict[str, int] = OrderedDict()
        # per source, the last frame dropped of a sequence, held for :meth:`end_source`: frames dropped
        # after the last one sent of a source had no frame to say them (those of the newest HELD_KEPT
        # sources to drop one: a program interleaving cameras ends each with its own)
        self._held: OrderedDict[str, FrameJob] = OrderedDict()
        self._server_checked = False  # a Redis in cluster mode is refused before the first push

    # --- single jobs --------------------------------------------------------------

    def submit(self, job: FrameJob, *, always: bool = False) -> JobRef:
        """Add one job (after backpressure; ``always``: whatever the backlog); returns its reference,
        which says ``dropped`` when ``backpressure="drop"`` did not send it (counted in ``stats.dropped``;
        the next frame sent of its source says how many, ``FrameJob.dropped_before``). A job every
        worker would refuse (:func:`~moodstream.shared.wire.decode_frame`: a ``page`` that is not a
        whole number from 1, a negative frame, a time that is no number, a source of over 4,096
        characters...) raises :class:`RefusedJob` (a ValueError) naming the field, nothing sent: sent, it
        was dead-lettered and the caller told nothing."""
        for name in ("frame", "page", "shot"):  # numpy's integers as plain ones (np.int64(2) was no page; a
            value = getattr(job, name)       # reference holding np.int64 failed json.dumps)
            if is_whole(value) and type(value) is not int:
                setattr(job, name, int(value))
        if job.page is not None and (type(job.page) is not int or job.page < 1):  # (a bool is no page)
            raise RefusedJob("bad_field", f"page must be a whole number from 1 (a still image's, 1-based) or "
                                          f"None, got {job.page!r}: not sent")
        if job.reply_to is None and self.reply_to is not None:
            job.reply_to = self.reply_to
        if not always and not self._backpressure():
            # what every worker would refuse is refused here too, not counted as a dropped frame of its source
            # (it took the place of the frame held for end_source): its fields, as a worker reads them (its
            # pixels aside: not copied for a frame that is not sent)
            self._encoded(msgspec.structs.replace(job, image=b"\xff", raw=None, enqueued_at_ms=now_ms()))
            self.stats.dropped += 1
            self._shedding += 1
            if job.page is None:  # a frame of a sequence (a still image is a run of its own: no later frame)
                self._dropped_since[job.source] = self._dropped_since.pop(job.source, 0) + 1
                while len(self._dropped_since) > DROPS_KEPT:
                    self._dropped_since.popitem(last=False)
                self._held.pop(job.source, None)
                self._held[job.source] = job
                while len(self._held) > HELD_KEPT:
                    self._held.popitem(last=False)
            return JobRef(job.job_id, job.source, job.frame, None, dropped=True)
        if job.page is None and self._dropped_since.get(job.source):
            job.dropped_before = self._dropped_since[job.source]
        job.enqueued_at_ms = now_ms()
        payload = self._encoded(job, self.settings.max_message_bytes)
        if not self._server_checked:  # a job pushed to a cluster no worker could move (the CLI checks at start)
            self.retry.call(lambda: refuse_cluster(self.client, self.settings.redis_url))
            self._server_checked = True
        self.retry.call(lambda: self._push(payload))
        self.stats.sent += 1
        self._sent_bytes(len(payload))
        if job.page is None:  # said once, by the frame sent
            self._dropped_since.pop(job.source, None)
            self._held.pop(job.source, None)
        return JobRef(job.job_id, job.source, job.frame, None)

    @staticmethod
    def _encoded(job: FrameJob, max_bytes: int | None = None) -> bytes:
        """``job``'s message, read back as a worker reads it (a copy of the pixels' bytes: well under a
        millisecond a frame); RefusedJob where every worker would refuse it, BadInputError ``too_large``
        over ``max_bytes`` (the worker would dead-letter it unread)."""
        try:
            payload = encode_frame(job)
        except (NotImplementedError, TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            field = _unencodable_text(job)
            if field is not None:  # a text field, not the options ("options hold plain values" blamed them)
                raise RefusedJob("bad_field", f"{field} {printable(str(getattr(job, field)))[:80]} holds a character "
                                              f"UTF-8 cannot encode ({exc}): a lone surrogate, as Python names a file "
                                              "whose name is not UTF-8: rename the file, or pass the name as text "
                                              "(os.fsencode(name).decode('utf-8', 'replace')): not sent") from None
            raise RefusedJob("bad_field", f"frame {job.frame} of {printable(str(job.source))[:80]} cannot be encoded "
                                          f"({exc}): options hold plain values (str, numbers up to 64 bits, lists, "
                                          "dicts with str keys): not sent") from None
        if max_bytes is not None and len(payload) > max_bytes:
            raise BadInputError("too_large", f"frame {job.frame}: a message of {len(payload)} bytes once encoded "
                                             f"({'raw' if job.raw is not None else 'image'}) is over max_message_bytes "
                                             f"({max_bytes}): not sent")
        try:
            decode_frame(payload)
        except MessageError as exc:
            raise RefusedJob("bad_field", f"frame {job.frame} of {printable(str(job.source))[:80]}: {exc.detail}: "
                                          f"not sent (every worker would refuse it)") from None
        return payload

    def end_source(self, source: str, job_id: str | None = None) -> JobRef | None:
        """``source`` has given its last frame (its file ended, its stream stopped): if its last frame
        was dropped (``backpressure="drop"``), it is sent now, whatever the backlog, saying the frames
        dropped before it, so that the run's summary counts every frame dropped (none said them after
        the last frame sent) and its span ends where the source did. ``job_id``: another id for it
        (:meth:`produce` numbers the jobs it sends). None where nothing was sent: nothing held (the
        frames of the newest ``HELD_KEPT`` sources to drop one are held; a count left without its frame
        is said in a notice and forgotten, not given to a later run of that name), or the held frame is
        one every worker would refuse (too large once encoded...: said and counted in
        ``stats.failed_inputs`` as :meth:`submit_item` does). :meth:`produce` and the expander call it
        at the end of each source; a program submitting frames may too. Redis gone: raises, the frame
        still held and its drops counted."""
        job = self._held.pop(source, None)
        if job is None:
            lost = self._dropped_since.pop(source, 0)
            if lost:
                self.notice(f"producer: {printable(str(source))}: {plural(lost, 'frame')} dropped after its last frame "
                            "sent are not said in its run's summary (no frame of it held to say them: more than "
                            f"{HELD_KEPT} sources dropping at once)")
            return None
        before = self._dropped_since.get(source, 1)
        self.stats.dropped -= 1
        if before > 1:
            self._dropped_since[source] = before - 1
        else:
            self._dropped_since.pop(source, None)
        if job_id is not None:
            job.job_id = job_id
        try:
            return self.submit(job, always=True)
        except BadInputError as exc:  # never sendable (dropped before it was encoded): its input's error
            self.stats.dropped += 1
            self._dropped_since.pop(source, None)
            self.stats.failed_inputs.append((job.source, exc.reason))
            self.notice(f"producer: {printable(str(source))}: the last of its {plural(before, 'dropped frame')}, held to say "
                        f"them, was not sent: {exc}")
            return None
        except BaseException:  # not sent after all (Redis gone): still counted as dropped, still held
            self.stats.dropped += 1
            self._dropped_since[source] = before
            self._held[source] = job
            raise

    def unsaid(self, source: str) -> int:
        """Frames of ``source`` dropped since its last frame sent: the next one sent (or
        :meth:`end_source`) says them."""
        return self._dropped_since.get(source, 0)

    def _push(self, payload: bytes) -> None:
        """RPUSH the message to the intake list; a user that may not (the ACL rules of the release
        before the intake, which granted XADD on the frames stream) is one line that says what to grant."""
        with self._intake_refusals(f"push frame jobs to {self.keys.intake}"):
            self.client.rpush(self.keys.intake, payload)

    @contextmanager
    def _intake_refusals(self, doing: str) -> Iterator[None]:
        """Redis's refusals that no retry heals, each one line: a user that may not ``doing`` (the
        ACL rules of the release before the intake, which granted XADD on the frames stream and no
        list command) says what to grant; a WRONGTYPE from the intake key names it (the retry
        helper's names a stream)."""
        try:
            yield
        except redis.exceptions.NoPermissionError as exc:
            raise ConfigError(f"producer: this Redis user may not {doing} ({' '.join(str(exc).split())}): grant "
                              f"+rpush +llen on {self.keys.intake} besides the stream's reads, as "
                              "deploy/k8s/base/redis/acl/moodstream-producer.rules does (producers of this release "
                              "push to the intake list; upgrade the workers and Redis's users first)") from None
        except redis.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE") and as_str(self.client.type(self.keys.intake)) not in ("list", "none"):
                raise ConfigError(f"producer: {self.keys.intake} is not a list (a key set by hand?): nothing can be "
                                  "pushed to it; delete or rename it, or use another prefix") from None
            raise

    def submit_image(self, data: bytes, source: str = "bytes", frame: int = 0, *,
                     timestamp_s: float | None = None, job_id: str | None = None,
                     reply_to: str | None = None, options: dict | None = None, page: int | None = None,
                     shot: int | None = None) -> JobRef:
        """Encoded image bytes (JPEG, PNG, WebP...) as they are; the worker decodes them.
        ``page`` (1-based): a still image, that page of its file (1 for a one-page image): the
        track stage makes it a run of its own and publishes its summary at once. Without it the
        frames of ``source`` are one sequence (untimed ones ``default_fps`` apart). ``shot``: a video
        frame's camera shot (:mod:`moodstream.shared.shots`): the track stage ends the source's tracks
        where it changes. ``data`` is bytes (or a bytearray, a memoryview); anything else is a TypeError
        that says what to pass. Bytes that are no image are sent: the worker's result names the reason."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(_not_image_bytes(data))
        return self.submit(FrameJob(job_id or new_job_id(), source, frame, image=bytes(data), page=page, shot=shot,
                                    timestamp_s=timestamp_s, reply_to=reply_to, options=options or {}))

    def submit_array(self, rgb: np.ndarray, source: str = "array", frame: int = 0, *,
                     timestamp_s: float | None = None, job_id: str | None = None,
                     reply_to: str | None = None, options: dict | None = None, page: int | None = None,
                     shot: int | None = None) -> JobRef:
        """An RGB uint8 ``(H, W, 3)`` frame, encoded as this producer's ``encoding``; ``page``
        and ``shot`` as for :meth:`submit_image` (a multi-page TIFF's pages come here). A frame of
        another kind is refused before it is encoded (:func:`shared.pixels.check_rgb`, as a pipeline
        refuses it): a TypeError for what is no array, :class:`BadInputError` ``unsupported``
        (gray, RGBA, float...) or ``empty``."""
        _check_rgb(rgb)
        pixels = {"raw": Raw.of(np.asarray(rgb, dtype=np.uint8))} if self.encoding == "raw" \
            else {"image": encode_pixels(rgb, self.encoding, self.jpeg_quality)}
        return self.submit(FrameJob(job_id or new_job_id(), source, frame, timestamp_s=timestamp_s, page=page,
                                    shot=shot, reply_to=reply_to, options=options or {}, **pixels))

    def submit_item(self, item: FrameItem, job_id: str | None = None) -> JobRef | None:
        """A FrameItem from :func:`shared.media.iter_frames`, sent with its ``page`` where it
        is a still image, its ``shot`` where it is a video frame; an item carrying an error is reported through ``notice`` and counted,
        and None is returned (a frame dropped under backpressure gives a ref that says ``dropped``)."""
        if item.error is None:
            try:
                if item.image is not None:
                    return self.submit_array(item.image, item.source, item.frame, timestamp_s=item.timestamp_s,
                                             job_id=job_id, page=item.page, shot=item.shot)
                return self.submit_image(item.data or b"", item.source, item.frame, timestamp_s=item.timestamp_s,
                                         job_id=job_id, page=item.page, shot=item.shot)
            except BadInputError as exc:  # not encodable, or over max_message_bytes once encoded: this frame's
                item.error = exc  # error, said and counted as a reader's (the expander reads it there too)
        if item.error is not None:
            self.stats.failed_inputs.append((item.source, item.error.reason))
            # a video cut short fails after its frames were sent: not skipped
            self.notice(f"producer: {'skipped ' if item.frame == 0 else ''}{item.source}: {item.error}")
        return None

    # --- sources ------------------------------------------------------------------

    def produce(self, paths: list[str], every_n: int = 1, fps: float | None = None,
                max_frames: int | None = None, job_id_prefix: str | None = None) -> Iterator[JobRef]:
        """Image files, folders (recursively), videos, camera indexes and stream
        URLs; ``every_n`` / ``fps`` sample videos, ``max_frames`` caps each video.

        Live sources (camera indexes, rtsp/http URLs) are read by
        :class:`producer.live.LiveSource`: ``fps`` caps their rate, a drop is
        reconnected with backoff. Backpressure is the producer's setting for
        them too: ``wait`` stops reading the source while the workers catch up,
        ``drop`` (what a live camera wants) keeps reading it and does not send
        frames while the backlog is over ``lag_limit``. Yields the jobs sent;
        dropped frames are counted in ``stats.dropped``.

        ``paths`` is one path (str or Path) or camera index, or a list of them; they and the sampling are
        checked at the call (a TypeError or ValueError, as ``analyze``'s: one path as a str was iterated,
        its first character "/" walked as a folder, and every image on the machine sent)."""
        from moodstream.shared.inputs import check_sampling, input_specs

        specs = input_specs(paths, "produce")
        check_sampling(every_n, fps, max_frames, every_name="every_n")
        return self._produce(specs, int(every_n), fps, max_frames, job_id_prefix)

    def _produce(self, paths: list[str], every_n: int, fps: float | None, max_frames: int | None,
                 job_id_prefix: str | None) -> Iterator[JobRef]:
        n, source, last_frame = 0, None, 0

        def job_id() -> str | None:  # the n-th job sent
            return f"{job_id_prefix}-{n:06d}" if job_id_prefix else None

        for item, live in self.encoded_ahead(self._items(paths, every_n, fps, max_frames)):
            # the source before ended (another name, or its frames from the start again: a file named
            # twice): its last drop goes
            if source is not None and (item.source != source or item.frame < last_frame):
                ref = self.end_source(source, job_id())
                if ref is not None:
                    n += 1
                    yield ref
            self._live, source, last_frame = live, item.source, item.frame
            ref = self.submit_item(item, job_id=job_id())
            if ref is not None and not ref.dropped:
                n += 1
                yield ref
        if source is not None:
            ref = self.end_source(source, job_id())
            if ref is not None:
                yield ref
        self._live = False

    def encoded_ahead(self, items: Iterator[tuple[FrameItem, bool]],
                      threads: int | None = None) -> Iterator[tuple[FrameItem, bool]]:
        """``items``, (frame, as is) pairs, in their order, a file's decoded frames encoded (png, jpeg, webp)
        on ``threads`` threads (:data:`ENCODE_THREADS`; 1: none, each encoded as it is sent) up to twice as
        many frames ahead of the one sent, each then carried as its bytes (``data``, what
        :meth:`submit_array` would send). One thread encoded a 1920x1080 frame as PNG in 47 ms after
        reading it in 19: 18.6 frames a second, fewer than two CPU workers take; on 2 threads 31.9 (2-core
        Xeon, ``bench encoding``). A frame marked "as is" is passed on unencoded: a live source's, encoded
        as it is sent (a frame dropped under backpressure is never encoded), or one a resumed expander job
        skips; raw frames never are. Closed early (a stop, a job's limit), the frames read and not sent
        are not encoded."""
        threads = (ENCODE_THREADS if threads is None else threads) if self.encoding != "raw" else 0
        if threads < 2:
            yield from items
            return
        from concurrent.futures import ThreadPoolExecutor

        def encoded(item: FrameItem) -> FrameItem:
            try:
                _check_rgb(item.image)
                data = encode_pixels(item.image, self.encoding, self.jpeg_quality)
            except BadInputError as exc:  # as submit_array raises it: this frame's error
                return FrameItem(item.source, item.frame, item.timestamp_s, error=exc, rate=item.rate, shot=item.shot)
            return FrameItem(item.source, item.frame, item.timestamp_s, data=data, rate=item.rate, shot=item.shot)

        ahead: deque = deque()
        with ThreadPoolExecutor(threads, thread_name_prefix="encode") as pool:
            try:
                for item, live in items:
                    if item.image is None or live or item.page is not None:
                        while ahead:  # in order: the frames encoded before it go first
                            yield ahead[0][0].result(), ahead.popleft()[1]
                        yield item, live
                        continue
                    ahead.append((pool.submit(encoded, item), live))
                    while len(ahead) > 2 * threads or (ahead and ahead[0][0].done()):
                        yield ahead[0][0].result(), ahead.popleft()[1]
                while ahead:
                    yield ahead[0][0].result(), ahead.popleft()[1]
            finally:
                for future, _ in ahead:  # stopped: the frames read and not sent are not encoded
                    future.cancel()

    def _items(self, paths: list[str], every_n: int, fps: float | None,
               max_frames: int | None) -> Iterator[tuple[FrameItem, bool]]:
        for spec in paths:
            if self.stop.is_set():  # stopped (produce's first Ctrl-C): what was read is sent, nothing more read
                return
            # a photo by URL goes as a photo (page 1, no time), not as a live source's frame
            still = url_image_items(spec, self.settings.max_message_bytes, self.settings.max_pixels,
                                    stopping=self.stop.is_set, every_n=every_n, fps=fps, max_frames=max_frames)
            if still is not None or not is_stream_spec(spec):
                items = still if still is not None else iter_frames(
                    [spec], every_n=every_n, fps=fps, max_frames=max_frames, max_pixels=self.settings.max_pixels,
                    max_image_bytes=self.settings.max_message_bytes)
                for item in items:
                    yield item, False
                    if self.stop.is_set():
                        return
                continue
            from moodstream.producer.live import LiveConfig, LiveSource

            source = LiveSource(spec, LiveConfig.from_settings(self.settings, max_fps=fps, every_n=every_n),
                                stop=self.stop)
            for k, item in enumerate(source.frames()):
                if max_frames is not None and k >= max_frames:
                    source.stop()
                    break
                yield item, True
            if source.interrupted:
                self.stats.interrupted = True
                return

    # --- backpressure -------------------------------------------------------------

    def backlog(self) -> int:
        """Frames waiting: the intake list's length plus the group's lag and pending (one round trip)."""
        b = self.retry.call(lambda: self._measure())
        self._measured_at = time.monotonic()
        self.stats.max_backlog = max(self.stats.max_backlog, b.total)
        return b.total

    def _measure(self):
        with self._intake_refusals("measure the backlog"):  # LLEN of the intake: the rules of before lack it
            return self.gauge.read(count_limit=self.limit)  # counted past it: no need

    def _sent_bytes(self, n: int) -> None:
        """A job of ``n`` bytes went: kept in the newest sizes, the oldest beyond the budget forgotten."""
        self._sizes.append(n)
        self._sizes_sum += n
        budget, most = self.settings.stream_max_mb * MB, min(self.settings.lag_limit, WINDOW_MAX) + 1
        while len(self._sizes) > most or self._sizes_sum - self._sizes[0] > budget:
            self._sizes_sum -= self._sizes.popleft()

    @property
    def limit(self) -> int:
        """The backlog in frames above which this producer waits or drops: ``lag_limit``, or fewer where
        that many of its newest frames would hold over ``stream_max_mb`` in Redis (at their mean size
        beyond the ones it knows)."""
        lag_limit = self.settings.lag_limit
        if self._sizes_sum > self.settings.stream_max_mb * MB:  # all the sizes kept but the oldest fit
            return max(1, min(lag_limit, len(self._sizes) - 1))
        return frames_within(lag_limit, self.settings.stream_max_mb, self._frame_bytes)

    @property
    def _frame_bytes(self) -> float | None:
        """The newest jobs' mean size (None before the first)."""
        return self._sizes_sum / len(self._sizes) if self._sizes else None

    @property
    def check_every(self) -> int:
        """The backlog is measured every this many jobs (while dropping: every SHED_CHECK_S)."""
        return max(1, min(50, self.limit // 20))

    def _limit_said(self, limit: int) -> str:
        """The limit, as the notices say it: which setting holds the backlog."""
        if limit >= self.settings.lag_limit:
            return f"lag_limit {limit}"
        # three figures: 4 KB frames were "0.00 MB a frame"
        return (f"{plural(limit, 'frame')} (stream_max_mb {self.settings.stream_max_mb} at "
                f"{self._frame_bytes / MB:.3g} MB a frame; lag_limit {self.settings.lag_limit})")

    def _backpressure(self) -> bool:
        """True: send the job. False: drop it (``drop`` mode, backlog over :attr:`limit`)."""
        if self.stop.is_set():  # stopping: the frames read go, unwaited (a frame in hand, a live source's held one)
            return True
        self._since_check += 1
        if self._since_check < self.check_every and not self._shedding:
            return True
        if self._shedding and time.monotonic() - self._measured_at < SHED_CHECK_S:
            return False  # dropping: still over the limit as last measured, under SHED_CHECK_S ago
        self._since_check = 0
        limit = self.limit
        backlog = self.backlog()
        if backlog <= limit:
            if self._shedding:
                if self._episode_said:
                    self.notice(f"producer: backlog {backlog}, sending again after dropping "
                                f"{plural(self._shedding, 'frame')} "
                                f"({self.stats.dropped} so far)")
                self._shedding = 0
            return True
        if self.settings.backpressure == "drop":
            if not self._shedding:
                self._episode_said = self._say_episode(f"producer: backlog {backlog} > {self._limit_said(limit)}: "
                                                       "dropping new frames until it falls")
            return False
        live = " (a live source is not read meanwhile: --backpressure drop keeps it read)" if self._live else ""
        said = self._say_episode(f"producer: backlog {backlog} > {self._limit_said(limit)}: waiting for workers{live}")
        t0, poll_s = time.monotonic(), 0.01
        while backlog > limit and not self.stop.is_set():  # stopped: what was read goes now, unwaited
            self.stop.wait(poll_s)
            poll_s = min(0.5, poll_s * 1.5)
            backlog = self.backlog()
        waited = time.monotonic() - t0
        self.stats.waited_s += waited
        if backlog > limit:  # stopped while waiting: said whatever was said before
            self.notice(f"producer: stopped waiting for workers after {waited:.2f}s (backlog {backlog}): what was "
                        "read is sent")
        elif said:
            self.notice(f"producer: backlog {backlog}, resuming after {waited:.2f}s")
        return True

    def _say_episode(self, line: str) -> bool:
        """Say a wait or a run of drops when it is this producer's first, or the first
        :data:`EPISODES_SAID_EVERY_S` after the last one said (with how many went unsaid since): a
        producer faster than its workers waits every few dozen frames (``up`` on a long 1080p video said
        50 lines for 420 frames). Returns whether it was said (its end is said only then)."""
        now = time.monotonic()
        if self._episode_said_at is not None and now - self._episode_said_at < EPISODES_SAID_EVERY_S:
            self._episodes_unsaid += 1
            return False
        if self._episodes_unsaid:
            line += (f" (again: {self._episodes_unsaid} more since the last said; waited {self.stats.waited_s:.1f}s, "
                     f"dropped {self.stats.dropped} in all)")
        self.notice(line)
        self._episode_said_at, self._episodes_unsaid = now, 0
        return True

    # --- helpers ------------------------------------------------------------------

    def close(self) -> None:
        self.client.close()

