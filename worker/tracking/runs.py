"""A source's run as the track stage holds it (:mod:`worker.tracking.stage`): its reorder buffer
(:class:`SourceOrder`), what it answered and where its results were enqueued (:class:`SourceRun`,
:class:`EnqueueSpan`, :func:`answer_key`), and the messages made of it (:func:`summary_message`,
:func:`untracked`). Pure: no Redis, the clock passed in."""

from __future__ import annotations

import base64
import heapq
from collections import deque
from dataclasses import dataclass, field

import msgspec

from moodstream.shared.media import encode_jpeg
from moodstream.shared.recent import Recent
from moodstream.shared.record import Face, FrameResult, Smoothed
from moodstream.worker.tracking.summary import SourceSummary, summary_settings
from moodstream.worker.tracking.tracker import TrackState

STRIDE_EVIDENCE = 3  # gaps between released frames seen before the smallest one is trusted
MAX_BUFFERED = 10_000  # per source: beyond this the oldest frame is released without waiting
RECENT = 512  # released frame indexes remembered per source, to tell a redelivery from a late result
RECENT_JOBS = 20_000  # job ids remembered per run, to drop a job's second answer
THUMB_JPEG_QUALITY = 85


@dataclass
class Pending:
    entry_id: str
    result: FrameResult
    arrived_s: float


@dataclass
class SourceOrder:
    """The reorder buffer of one source (pure: the clock is passed in)."""

    buffered: dict[int, Pending] = field(default_factory=dict)
    last_released: int | None = None
    min_gap: int | None = None
    gaps_seen: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    last_seen_s: float = 0.0
    # heaps of the buffered frame numbers and of (arrival, frame), the latter pruned as it is read:
    # releasing n buffered frames is n log n (a min over the whole buffer for each was 5 s for 10,000)
    frames: list = field(default_factory=list)
    arrivals: list = field(default_factory=list)

    def add(self, p: Pending) -> str:
        """Buffer a result: ``"buffered"``, ``"duplicate"`` (this frame was buffered or released
        before) or ``"late"`` (older than the last released frame; the caller publishes it untracked)."""
        self.last_seen_s = p.arrived_s
        frame = p.result.frame
        if frame in self.buffered or frame in self.recent:
            return "duplicate"
        if self.last_released is not None and frame < self.last_released:
            return "late"
        self.buffered[frame] = p
        heapq.heappush(self.frames, frame)
        heapq.heappush(self.arrivals, (p.arrived_s, frame))
        return "buffered"

    def _oldest_arrival(self) -> float:
        while self.buffered.get(self.arrivals[0][1]) is None or \
                self.buffered[self.arrivals[0][1]].arrived_s != self.arrivals[0][0]:
            heapq.heappop(self.arrivals)  # released since
        return self.arrivals[0][0]

    def expected(self, frame: int) -> bool:
        if self.last_released is None:
            return frame == 0
        gap = frame - self.last_released
        return gap == 1 or (self.gaps_seen >= STRIDE_EVIDENCE and self.min_gap is not None and gap <= self.min_gap)

    def ready(self, now_s: float, wait_s: float) -> list[Pending]:
        """Results to release now, in frame order."""
        out = []
        while self.buffered:
            head = self.frames[0]
            waited = now_s - self._oldest_arrival()
            if not (self.expected(head) or waited >= wait_s or len(self.buffered) > MAX_BUFFERED):
                break
            heapq.heappop(self.frames)
            out.append(self._release(head))
        if not self.buffered:
            self.arrivals.clear()
        return out

    def _release(self, head: int) -> Pending:
        if self.last_released is not None:
            gap = head - self.last_released
            self.min_gap = gap if self.min_gap is None else min(self.min_gap, gap)
            self.gaps_seen += 1
        self.last_released = head
        self.recent.append(head)
        return self.buffered.pop(head)

    def drain(self) -> list[Pending]:
        """Everything buffered, in frame order (at shutdown, at the end of a run)."""
        return self.ready(float("inf"), 0.0)


@dataclass(frozen=True, slots=True)  # one per source remembered (RUN_NUMBERS_KEPT): small
class EnqueueSpan:
    """Where a run's answered results were enqueued, to tell its stragglers (results of its jobs
    that come after it ended) from the next pass: the earliest ``(first_ms, first_frame)`` and the
    latest ``(last_ms, last_frame)``, and the frames it answered where they are kept."""

    first_ms: int
    first_frame: int
    last_ms: int
    last_frame: int
    answered: frozenset = frozenset()  # kept for a run ended by the next pass (bounded: RECENT)

    def holds(self, r: FrameResult) -> bool:
        """Was ``r`` enqueued during this run? A producer enqueues a pass in frame order, so a frame
        the run did not answer was enqueued after the earliest answered one and numbered above it,
        and before the latest and below it. A new pass starts at a frame the run answered, or at
        its first or below, whatever its producer's clock says."""
        t = r.enqueued_at_ms
        return (t is not None and self.first_ms <= t <= self.last_ms and self.first_frame < r.frame < self.last_frame
                and r.frame not in self.answered)


@dataclass
class SourceRun:
    """One pass of a producer over a source: its reorder buffer, its tracks, the job ids it answered."""

    source: str
    number: int  # 1 for the first run of this source the stage saw
    state: TrackState
    summary: SourceSummary
    order: SourceOrder = field(default_factory=SourceOrder)
    picture_best: dict = field(default_factory=dict)  # track id -> (best pixel-free score read, frames read)
    thumbnails: dict = field(default_factory=dict)  # ended track id -> its picture, base64 JPEG
    parts: int = 0  # parts of its summary published
    jobs: Recent = field(default_factory=lambda: Recent(RECENT_JOBS))  # answer_key without the source -> entry id
    after: EnqueueSpan | None = None  # the run before, ended by this one: its stragglers are late
    max_frame: int | None = None
    first: tuple[int, int] | None = None  # (enqueue time, frame) of the earliest answered result, lowest frame
    last: tuple[int, int] | None = None  # (enqueue time, frame) of the latest, highest frame

    @property
    def max_enqueued_ms(self) -> int | None:
        return self.last[0] if self.last is not None else None

    def answered_by(self, r: FrameResult) -> str | None:
        """The results entry that answered ``r``'s job in this run, if any."""
        key = answer_key(r)
        return self.jobs.get(key[1:]) if key is not None else None

    def restarts(self, r: FrameResult) -> bool:
        """Does ``r`` (a job not answered in this run, no straggler of the run before) start the
        frame numbers again? A producer enqueues a run in frame order, so a frame at or below the
        highest one, enqueued after all of them, is a new pass; so is a frame number this run has
        answered, under another job (without enqueue times, or stamped by a clock behind the
        first pass's: it was dropped as a duplicate, never published)."""
        if self.max_frame is None or r.frame > self.max_frame:
            return False
        at, latest = r.enqueued_at_ms, self.max_enqueued_ms
        if at is not None and latest is not None and at > latest:
            return True
        return r.frame in self.order.buffered or r.frame in self.order.recent

    def straggler(self, r: FrameResult) -> bool:
        """Enqueued during the previous run: it belongs there (it ended), not here."""
        return self.after is not None and self.after.holds(r)

    def span(self, answered: bool = False) -> EnqueueSpan | None:
        """Where this run's results were enqueued (None: none had an enqueue time); ``answered``:
        with the frames it answered (the last ``RECENT``)."""
        if self.first is None or self.last is None:
            return None
        return EnqueueSpan(*self.first, *self.last, frozenset(self.order.recent) if answered else frozenset())

    def note(self, entry_id: str, r: FrameResult) -> None:
        key = answer_key(r)
        if key is not None:
            self.jobs.put(key[1:], entry_id)
        self.max_frame = r.frame if self.max_frame is None else max(self.max_frame, r.frame)
        if r.enqueued_at_ms is not None:
            at = (r.enqueued_at_ms, r.frame)
            self.first = at if self.first is None else min(self.first, at)
            self.last = at if self.last is None else max(self.last, at)


def answer_key(r: FrameResult) -> tuple | None:
    """What two answers to one job share: the source, job id and frame the worker copies from the
    message. A job id alone is not enough: the producer chooses it (``produce(job_id_prefix=...)``,
    ``<rq job id>-<n>``), so it comes again in another source. Not the enqueue time: an rq expand
    job stopped just after adding frame n adds it again on resuming, under its job id, stamped
    later (the same frame, to publish once). None without a job id (no second answer can be told)."""
    return (r.source, r.job_id, r.frame) if r.job_id else None


def thumbnail_b64(picture) -> str:
    return base64.b64encode(encode_jpeg(picture, THUMB_JPEG_QUALITY)).decode()


def summary_message(run: SourceRun, why: str, last: bool = True) -> dict:
    """What the summaries stream holds for a run: ``worker.tracking.summary``'s per-track entries
    (``thumbnail`` null) and each picture as base64 JPEG under ``thumbnails[track_id]``. A run
    that ended is one message (``part`` 1, ``last_part`` true) unless it published parts while it
    went on: each part has the tracks that ended since the one before (``last_part`` false), the
    last one the rest; every track is in exactly one part. ``frames``: the run's frames so far;
    ``late_frames``: its results published untracked so far because they came late (each part has the
    count so far, as ``frames``: it never goes down, the last part has them all); ``dropped_frames``:
    the frames its producer did not send (backpressure "drop"), so far, the same way; ``page``: only a
    still image's run has it (its page, 1-based), as its tracks do."""
    tracks = run.summary.entries() if last else run.summary.take_retired()
    thumbnails = {}
    for t in tracks:
        tid = t["track_id"]
        b64 = run.thumbnails.pop(tid, None)
        picture = run.summary.pictures.picture(tid) if b64 is None else None
        if picture is not None:
            b64 = thumbnail_b64(picture)
        if b64 is not None:
            thumbnails[str(tid)] = b64
    still = {"page": run.summary.page} if run.summary.page is not None else {}  # a still image's run
    if run.summary.scale:  # a photo read smaller: its tracks' boxes are in those pixels
        still["scale"] = run.summary.scale
    return {"source": run.source, **still, "run": run.number, "ended": why, "frames": run.summary.frames,
            "late_frames": run.summary.late_frames, "dropped_frames": run.summary.dropped_frames,
            "part": run.parts + 1, "last_part": last,
            "tracks": tracks, "thumbnails": thumbnails, "summary": summary_settings(run.summary.config)}


def untracked(faces: list[Face]) -> list[Face]:
    """Faces of a late result: no ``track_id``, ``smoothed`` = raw."""
    return [msgspec.structs.replace(f, track_id=None, smoothed=Smoothed(f.emotion, f.probabilities)) for f in faces]
