"""``moodstream track``: face tracks through the service, in per-source frame order.

Workers serve the frames of one source in parallel, so their results reach
``<prefix>:results`` out of order. This stage reads the results stream with
its own consumer group (``<prefix>:trackers``), puts each source's results
back in frame order, runs the same :class:`worker.track.TrackState` as
``moodstream analyze`` (so the ids and smoothed emotions are the ones analyze
gives for the same frames), and adds each tracked result to
``<prefix>:tracked``; an entry is acked in the same MULTI as that XADD.

**When a frame is released.** Frame indexes of a sampled video are not
contiguous (``--every 3``: 0, 3, 6...; ``--fps``: gaps of 2 or 3), and a frame
may never come (dropped under backpressure, dead-lettered). A source's
smallest buffered frame is released as soon as it is the *expected* next one:

* frame 0 when nothing of the source was released yet;
* the last released frame + 1;
* the last released frame + at most the smallest gap seen so far between
  released frames of this source, once ``STRIDE_EVIDENCE`` gaps were seen
  (``--every N``: after three frames every frame goes at once; a frame
  between would need a gap smaller than any seen);

otherwise once the oldest buffered frame of the source has waited
``reorder_wait_ms`` (a lost frame, or the first frames of a sampled video).
Error results keep their place and pass through. A result for a frame older
than the last released one is *late* (its worker took longer than
``reorder_wait_ms``): it is published with ``track_id`` null and
``smoothed`` equal to the raw values, and logged; a second result for a
frame already seen (redelivery) is acked and dropped. So the latency a
tracked result adds is at most ``reorder_wait_ms``, usually none.

**One stage per deployment.** Order needs one reader per source: run one
``moodstream track`` (a second one in the same group would split sources
between them). Its state (tracks, buffers) is in memory: after a restart it
first re-reads its own unacked entries, and tracks start afresh (ids from 0
again for sources in mid-flight). A source idle for ``source_idle_s`` is
forgotten. Needs scipy (the ``worker`` extra), not torch.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import click
import msgspec
import redis

from moodstream.shared.errors import MessageError
from moodstream.shared.keys import Keys
from moodstream.shared.record import Face, FrameResult, Smoothed
from moodstream.shared.settings import Settings
from moodstream.shared.transport import TRANSIENT, Backoff, as_str, connect
from moodstream.shared.wire import FIELD, decode_result, encode_result, now_ms
from moodstream.worker.track import TrackerConfig, TrackState

log = logging.getLogger(__name__)

STRIDE_EVIDENCE = 3  # gaps between released frames seen before the smallest one is trusted
MAX_BUFFERED = 10_000  # per source: beyond this the oldest frame is released without waiting
RECENT = 512  # released frame indexes remembered per source, to tell a redelivery from a late result


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
        return "buffered"

    def expected(self, frame: int) -> bool:
        if self.last_released is None:
            return frame == 0
        gap = frame - self.last_released
        return gap == 1 or (self.gaps_seen >= STRIDE_EVIDENCE and self.min_gap is not None and gap <= self.min_gap)

    def ready(self, now_s: float, wait_s: float) -> list[Pending]:
        """Results to release now, in frame order."""
        out = []
        while self.buffered:
            head = min(self.buffered)
            waited = now_s - min(p.arrived_s for p in self.buffered.values())
            if not (self.expected(head) or waited >= wait_s or len(self.buffered) > MAX_BUFFERED):
                break
            out.append(self.buffered.pop(head))
            if self.last_released is not None:
                gap = head - self.last_released
                self.min_gap = gap if self.min_gap is None else min(self.min_gap, gap)
                self.gaps_seen += 1
            self.last_released = head
            self.recent.append(head)
        return out

    def drain(self) -> list[Pending]:
        """Everything buffered, in frame order (at shutdown)."""
        return self.ready(float("inf"), 0.0)


def untracked(faces: list[Face]) -> list[Face]:
    """Faces of a late result: no ``track_id``, ``smoothed`` = raw."""
    return [msgspec.structs.replace(f, track_id=None, smoothed=Smoothed(f.emotion, f.probabilities)) for f in faces]


class TrackStage:
    """Results stream -> per-source frame order -> TrackState -> ``<prefix>:tracked``."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None, *, name: str = "tracker",
                 reorder_wait_ms: int = 2000, block_ms: int = 200, source_idle_s: float = 300.0,
                 tracker: TrackerConfig | None = None):
        self.settings = settings
        self.keys = Keys.from_settings(settings)
        self.client = client if client is not None else connect(settings.redis_url)
        self.name = name
        self.wait_s = reorder_wait_ms / 1000
        self.block_ms = block_ms
        self.source_idle_s = source_idle_s
        self.tracker_config = tracker or TrackerConfig()
        self.orders: dict[str, SourceOrder] = {}
        self.states: dict[str, TrackState] = {}
        self.published = self.late = self.duplicates = self.skipped = 0
        self._stop = threading.Event()
        self._recover_from: str | None = "0"  # first re-read our own unacked entries after this id, then ">"

    # --- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until :meth:`request_stop`; then release what is buffered. Returns results published."""
        self._retry(self._ensure_group)
        log.info("track %s: reading %s as group %s, publishing to %s", self.name, self.keys.results,
                 self.keys.track_group, self.keys.tracked)
        while not self._stop.is_set():
            self._retry(self.step)
        self._retry(self.flush)
        log.info("track %s: stopped; %d published, %d late, %d duplicates, %d skipped", self.name,
                 self.published, self.late, self.duplicates, self.skipped)
        return self.published

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def step(self, now_s: float | None = None) -> int:
        """Read what arrived (waiting up to ``block_ms``), release what is ready, publish it."""
        ack_only: list[str] = []
        out: list[tuple[str, FrameResult]] = []
        for entry_id, fields in self._read():
            try:
                result = decode_result(fields.get(FIELD))
            except MessageError as exc:
                log.warning("track %s: skipping undecodable results entry %s: %s", self.name, entry_id, exc)
                self.skipped += 1
                ack_only.append(entry_id)
                continue
            now = time.monotonic() if now_s is None else now_s
            order = self.orders.setdefault(result.source, SourceOrder())
            verdict = order.add(Pending(entry_id, result, now))
            if verdict == "duplicate":
                self.duplicates += 1
                ack_only.append(entry_id)
            elif verdict == "late":
                self.late += 1
                log.warning("track %s: result for %s frame %d came after frame %d was released "
                            "(over reorder_wait_ms); published untracked", self.name, result.source,
                            result.frame, order.last_released)
                result.faces = untracked(result.faces)
                out.append((entry_id, result))
        out += self._release(time.monotonic() if now_s is None else now_s)
        self._publish(out, ack_only)
        return len(out)

    def flush(self) -> int:
        """Release and publish everything buffered, in order (shutdown)."""
        out = [self._tracked(p) for order in self.orders.values() for p in order.drain()]
        self._publish(out, [])
        return len(out)

    # --- helpers ------------------------------------------------------------------------

    def _release(self, now_s: float) -> list[tuple[str, FrameResult]]:
        out = []
        for source in list(self.orders):
            order = self.orders[source]
            out += [self._tracked(p) for p in order.ready(now_s, self.wait_s)]
            if not order.buffered and now_s - order.last_seen_s > self.source_idle_s:
                del self.orders[source]
                self.states.pop(source, None)
                log.info("track %s: source %s idle for %.0f s; its tracks ended", self.name, source,
                         self.source_idle_s)
        return out

    def _tracked(self, p: Pending) -> tuple[str, FrameResult]:
        r = p.result
        if r.error is None:
            state = self.states.setdefault(r.source, TrackState(self.tracker_config))
            r.faces = state.update(r.frame, r.timestamp_s, r.faces)
        return p.entry_id, r

    def _read(self) -> list[tuple[str, dict]]:
        """Entries to handle: first our own unacked ones (after a restart), then new ones."""
        if self._recover_from is not None:
            entries = self._xreadgroup(self._recover_from, None)
            if entries:
                self._recover_from = entries[-1][0]
                return entries
            self._recover_from = None  # none left: on to new entries
        return self._xreadgroup(">", self.block_ms)

    def _xreadgroup(self, start: str, block_ms: int | None) -> list[tuple[str, dict]]:
        resp = self.client.xreadgroup(self.keys.track_group, self.name, {self.keys.results: start}, count=500,
                                      block=block_ms)
        # no fields: an entry trimmed from the stream while pending; skipped and acked
        return [(as_str(eid), fields or {}) for eid, fields in (resp[0][1] if resp else [])]

    def _publish(self, out: list[tuple[str, FrameResult]], ack_only: list[str]) -> None:
        if not out and not ack_only:
            return
        pipe = self.client.pipeline(transaction=True)
        for _, r in out:
            r.published_at_ms = now_ms()
            pipe.xadd(self.keys.tracked, {FIELD: encode_result(r)}, maxlen=self.settings.results_maxlen,
                      approximate=True)
        pipe.xack(self.keys.results, self.keys.track_group, *[eid for eid, _ in out], *ack_only)
        pipe.execute()
        self.published += len(out)

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.keys.results, self.keys.track_group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    def _retry(self, fn):
        """Connection errors back off (capped); a vanished group (Redis restarted) is recreated."""
        backoff = Backoff(cap_s=10.0)
        while True:
            try:
                return fn()
            except TRANSIENT as exc:
                delay = backoff.next_delay_s()
                log.warning("track %s: Redis connection error (%s); retrying in %.2fs", self.name, exc, delay)
                time.sleep(delay)
            except redis.ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
                log.warning("track %s: consumer group vanished (Redis restarted?); recreating", self.name)
                self._ensure_group()


@click.command()
@click.option("--redis-url", help="Default: $MOODSTREAM_REDIS_URL.")
@click.option("--prefix", help="Key prefix (default: $MOODSTREAM_PREFIX or 'moodstream').")
@click.option("--consumer", default="tracker", show_default=True,
              help="Consumer name in the track group (keep it across restarts: unacked entries are re-read).")
@click.option("--reorder-wait-ms", type=click.IntRange(min=0), default=2000, show_default=True,
              help="A frame whose predecessors have not all arrived is released after waiting this long.")
@click.option("--source-idle-s", type=click.FloatRange(min=0), default=300.0, show_default=True,
              help="Forget a source's tracks after this long without results.")
def track(redis_url, prefix, consumer, reorder_wait_ms, source_idle_s):
    """Track faces along each source: results stream in, <prefix>:tracked out.

    Reads the results stream (its own consumer group), puts each source's
    results back in frame order, gives every face a track_id and a smoothed
    emotion (as `moodstream analyze` does in one process) and adds the result
    to <prefix>:tracked. Run one per deployment. The first SIGTERM/SIGINT
    publishes what is buffered and exits; a second exits at once.
    """
    settings = Settings.from_env(redis_url=redis_url, prefix=prefix)
    stage = TrackStage(settings, name=consumer, reorder_wait_ms=reorder_wait_ms, source_idle_s=source_idle_s)

    def on_signal(signum, frame):
        if stage.stopping:
            raise SystemExit(1)
        click.echo(f"track: {signal.Signals(signum).name}: publishing what is buffered, then exiting "
                   "(again to exit now)", err=True)
        stage.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    published = stage.run()
    click.echo(f"track: published {published} tracked results ({stage.late} late, "
               f"{stage.duplicates} duplicates dropped)", err=True)
