"""Live sources: a camera index or an rtsp:// / http(s):// stream that may drop and come back.

:class:`LiveSource` yields :class:`shared.media.FrameItem` frames from one live
source until it is stopped:

* **frame-rate cap** (``max_fps``): frames are read as the source sends them
  (a camera or stream must be drained, or its buffer goes stale) and only
  those at least ``1 / max_fps`` after the last kept one are yielded;
* **finite sources end**: a source that declares its length (an mp4 or an HLS
  VOD over http, where FFmpeg knows the frame count) is read once, and the
  iterator ends with it; one that gave no frame at all ends with an error item;
* **reconnect** (live sources only): when the source cannot be opened or stops
  sending, it is reopened after a wait that doubles from ``backoff_base_s`` up
  to ``backoff_cap_s``, with jitter (each wait is 50-100% of that), so a flock
  of producers does not hammer a camera in step. A connection counts as
  healthy, and resets the count of failures, only after ``stable_s`` of frames;
  one that opens and gives no frame, or drops sooner, counts as a failure.
  Each outage is one WARNING line, the recovery one INFO line, never a
  traceback;
* **stop**: after ``max_reconnects`` failures in a row (one ERROR line, and a
  last :class:`FrameItem` carrying the error, as ``iter_frames`` reports a
  failed input), on :meth:`LiveSource.stop` (from another thread or a signal
  handler), or on KeyboardInterrupt; the iterator then ends.

Frame indexes count every frame read (kept or skipped) and keep increasing
across reconnects, and so do camera shots (a broadcast's cuts, :mod:`shared.shots`:
each kept frame is held until the next is read, which decides its shot, one frame
of latency; a read that takes longer than ``hold_s``, or three times the usual read, a
stall, lets it go on its own, judged without a next frame); ``timestamp_s`` is the wall-clock time since the iterator started,
so tracks and smoothing downstream see one continuous timeline.
URLs are opened with FFmpeg's open and read timeouts, so a stream that stalls
without closing counts as a drop too. Frames and log lines name the source by
:func:`shared.media.source_name` (no credentials). Needs only OpenCV (no torch).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as ReadTimeout
from dataclasses import dataclass

import cv2

from moodstream.shared.errors import BadInputError
from moodstream.shared.media import FrameItem, is_camera_index, source_name, to_rgb8
from moodstream.shared.settings import Settings
from moodstream.shared.shots import ShotCounter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveConfig:
    max_fps: float | None = None  # keep at most this many frames per second; None: every frame
    max_reconnects: int | None = 10  # failures in a row (with backoff) before giving up; None: never
    backoff_base_s: float = 0.5  # first wait before reconnecting; doubles per failure in a row
    backoff_cap_s: float = 30.0  # longest wait between attempts (before jitter)
    open_timeout_ms: int = 10_000  # URLs: FFmpeg gives up opening after this long
    read_timeout_ms: int = 10_000  # URLs: a read that waits longer than this is a drop
    stable_s: float = 10.0  # a connection giving frames this long is healthy (resets the failure count)
    hold_s: float = 0.25  # a kept frame waits this long (or 3 usual reads) for the next read to decide its shot

    @classmethod
    def from_settings(cls, settings: Settings, **kw) -> LiveConfig:
        return cls(max_reconnects=settings.live_max_reconnects, backoff_cap_s=settings.live_backoff_cap_s, **kw)


MAX_FINITE_FRAMES = 1e9  # FFmpeg's frame count of a live stream is 0, negative or absurd


def is_finite(cap: object) -> bool:
    """Whether an opened capture declares its length (a file-like source, read once)."""
    try:
        n = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # type: ignore[attr-defined]
    except (AttributeError, cv2.error, TypeError, ValueError):
        return False
    return 0 < n < MAX_FINITE_FRAMES


def open_live(spec: str, config: LiveConfig) -> cv2.VideoCapture | None:
    """An opened capture for a camera index or URL, or None (never raises but KeyboardInterrupt).

    FFmpeg's open blocks in C for up to ``open_timeout_ms``, where Ctrl-C cannot reach it: it runs
    in a helper thread, and this one waits for it in short steps, so Ctrl-C ends the wait at once
    (the helper is a daemon thread: it does not hold up the exit)."""
    opened: list = []
    done = threading.Event()

    def run() -> None:
        try:
            opened.append(_open(spec, config))
        finally:
            done.set()

    threading.Thread(target=run, name=f"open {source_name(spec)}"[:60], daemon=True).start()
    while not done.wait(0.1):
        pass
    return opened[0] if opened else None


def _open(spec: str, config: LiveConfig) -> cv2.VideoCapture | None:
    try:
        if is_camera_index(spec):
            cap = cv2.VideoCapture(int(spec))
        else:
            cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, config.open_timeout_ms,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, config.read_timeout_ms])
    except cv2.error as exc:
        log.debug("live: opening %s failed: %s", spec, exc)
        return None
    if not cap.isOpened():
        cap.release()
        return None
    return cap


class LiveSource:
    """Frames of one live source, reconnecting when it drops; iterate :meth:`frames`.

    ``opener``, ``sleep``, ``clock`` and ``rng`` default to :func:`open_live`,
    :func:`time.sleep`, :func:`time.monotonic` and :mod:`random` (tests pass their own).
    """

    def __init__(self, spec: str, config: LiveConfig | None = None, *,
                 opener: Callable[[str, LiveConfig], object | None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.spec = spec
        self.name = source_name(spec)  # what frames and log lines call it (no credentials)
        self.config = config or LiveConfig()
        self.opener = opener or open_live
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self.read = self.kept = self.drops = self.reconnects = self.opens = 0
        self.finite = False  # the last opened capture declared its length
        self.interrupted = False  # Ctrl-C (KeyboardInterrupt) ended the iteration

    def stop(self) -> None:
        """End the iteration after the current read (thread-safe)."""
        self._stop.set()

    def backoff_s(self, attempt: int) -> float:
        """Longest wait before reconnect attempt ``attempt`` (1, 2, ...); the wait is 50-100% of it."""
        return min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** (attempt - 1))

    def frames(self) -> Iterator[FrameItem]:
        cfg, name = self.config, self.name
        min_gap_s = 1.0 / cfg.max_fps if cfg.max_fps else 0.0
        started = self.clock()
        last_kept: float | None = None
        failed = 0  # failures in a row: opens that failed, connections with no frame or shorter than stable_s
        down_since: float | None = None
        shots = ShotCounter()
        held: FrameItem | None = None  # the last kept frame, until the next read decides its shot
        reader = ThreadPoolExecutor(1, thread_name_prefix="live-read")  # reads while a held frame waits
        usual_s = 0.0  # a read's usual time (moving average): three times it is a stall
        try:
            while not self._stop.is_set():
                if failed:
                    if cfg.max_reconnects is not None and failed > cfg.max_reconnects:
                        log.error("live: giving up on %s: %d attempts failed in a row", name, failed)
                        yield FrameItem(name, self.read, error=BadInputError(
                            "unreadable", f"gave up after {failed} failed attempts in a row"))
                        return
                    delay = self.backoff_s(failed) * self.rng.uniform(0.5, 1.0)
                    log.debug("live: %s: attempt %d failed; next in %.2f s", name, failed, delay)
                    self._wait(delay)
                    if self._stop.is_set():
                        break
                cap = self.opener(self.spec, cfg)
                self.opens += 1
                if cap is None:
                    failed += 1
                    if down_since is None:  # never connected yet
                        down_since = self.clock()
                        log.warning("live: cannot open %s; retrying with backoff (at most %s times)", name,
                                    cfg.max_reconnects if cfg.max_reconnects is not None else "unlimited")
                    continue
                self.finite = is_finite(cap)
                if down_since is not None and self.read:
                    self.reconnects += 1
                    log.info("live: %s is back after %.1f s (%d attempts)", name, self.clock() - down_since, failed)
                opened_at, got = self.clock(), 0
                try:
                    while not self._stop.is_set():
                        began = time.monotonic()
                        if held is None:
                            ok, bgr = cap.read()
                        else:  # a stall must not hold the frame back: it goes on its own after a wait
                            reading = reader.submit(cap.read)
                            try:
                                ok, bgr = reading.result(timeout=max(cfg.hold_s, 3 * usual_s))
                            except ReadTimeout:
                                held.shot, kept = shots.last(), held
                                held = None
                                try:
                                    yield kept
                                finally:  # also when the iteration is closed: never release inside a read
                                    ok, bgr = reading.result()
                            except BaseException:  # an interrupt while waiting: the read ends first
                                wait([reading])
                                raise
                        usual_s += 0.1 * (time.monotonic() - began - usual_s)
                        if not ok or bgr is None:
                            break
                        now = self.clock()
                        index = self.read
                        self.read += 1
                        got += 1
                        shot = shots.see(bgr)
                        if held is not None:
                            held.shot, kept = shot, held
                            held = None
                            yield kept
                        if last_kept is not None and now - last_kept < min_gap_s - 1e-6:
                            continue
                        last_kept = now
                        self.kept += 1
                        held = FrameItem(name, index, round(now - started, 4), image=to_rgb8(bgr))
                finally:
                    cap.release()
                if held is not None:  # the connection ended (or a stop): its last frame judged on its own
                    held.shot, kept = shots.last(), held
                    held = None
                    yield kept
                if self._stop.is_set():
                    break
                if self.finite:  # a file over the network: read once, never re-read
                    if got == 0:
                        yield FrameItem(name, self.read, error=BadInputError("unreadable", "no decodable video frames"))
                    else:
                        log.info("live: %s ended after %d frames (a finite source: not reopened)", name, got)
                    return
                healthy = got > 0 and self.clock() - opened_at >= cfg.stable_s
                failed = 0 if healthy else failed + 1
                self.drops += 1
                if down_since is None or healthy:
                    down_since = self.clock()
                    log.warning("live: %s dropped after %d frames; reconnecting with backoff", name, self.read)
        except KeyboardInterrupt:
            self.interrupted = True  # the caller says so (produce exits 130, not 0)
            log.info("live: %s: interrupted; stopping", name)
            if held is not None:  # read before the interrupt: not lost
                held.shot = shots.last()
                yield held
        finally:
            reader.shutdown(wait=False)  # no read runs now: each was waited for
        log.info("live: %s: stopped after %d frames (%d kept, %d drops)", name, self.read, self.kept, self.drops)

    def _wait(self, delay_s: float) -> None:
        """Sleep ``delay_s``, in short steps so :meth:`stop` takes effect soon."""
        end = self.clock() + delay_s
        while not self._stop.is_set():
            left = end - self.clock()
            if left <= 0:
                return
            self.sleep(min(left, 0.2))
