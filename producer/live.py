"""Live sources: a camera index or an rtsp:// / http(s):// stream that may drop and come back.

:class:`LiveSource` yields :class:`shared.media.FrameItem` frames from one live
source until it is stopped:

* **frame-rate cap** (``max_fps``): frames are read as the source sends them
  (a camera or stream must be drained, or its buffer goes stale) and only
  those at least ``1 / max_fps`` after the last kept one are yielded; without it, ``every_n``
  keeps every n-th frame read (its index a multiple of n), as ``analyze`` samples a video;
* **finite sources end**: a source that declares its length (an mp4 or an HLS
  VOD over http, where FFmpeg knows the frame count) is read once, and the
  iterator ends with it; one that gave no frame at all ends with an error item, and so
  does one cut short (the download ended or stalled well before the length it announced:
  ``analyze``'s "truncated"), after its frames. Its frames are timed by their own times (a
  phone's variable frame rate; else index / its rate) and rate-capped by them, as ``analyze``
  reads the same file (:class:`shared.media.FrameTimes`): read as fast as it decodes, the clock
  squashed it. One that follows a live stream's frames (a URL that came back as a file) starts
  at the clock's time of its opening, so the source's time never goes back;
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
  failed input), on :meth:`LiveSource.stop` or the caller's ``stop`` event (from
  another thread or a signal handler), or on KeyboardInterrupt; the iterator then
  ends at once (within 0.1 s), an open or read in flight or not: they run on a
  thread of their own (:class:`shared.capture.Reader`), which releases the capture after them,
  never inside one. Every frame read is given (the one held for its shot judged alone);
* **Motion-JPEG** streams are read part by part (:mod:`shared.capture`): each at
  its own size (a camera reconfigured mid-stream), a part that is no picture
  skipped and counted, not a drop.

Frame indexes count every frame read (kept or skipped) and keep increasing
across reconnects, and so do camera shots (a broadcast's cuts, :mod:`shared.shots`:
each kept frame is held until the next is read, which decides its shot, one frame
of latency; a read that takes longer than ``hold_s``, or three times the usual read, a
stall, lets it go on its own, judged without a next frame); a live stream's ``timestamp_s`` is the wall-clock time
since the iterator started, each frame's later than the one before (:class:`shared.media.Stamps`: parts read
together are 0.1 ms apart), so tracks and smoothing downstream see one continuous timeline.
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
from dataclasses import dataclass

import cv2

from moodstream.shared.capture import (HOLD_S, FrameReader, Reader, Reads, open_on, until, why_no_frames,
                                       why_unopened)
from moodstream.shared.errors import BadInputError
from moodstream.shared.media import (FrameItem, FrameTimes, RateCap, Stamps, camera_missing, cut_short, decode_stored,
                                     is_camera_index, is_finite_stream, source_name, to_rgb8)
from moodstream.shared.settings import MAX_PIXELS_CEILING, Settings
from moodstream.shared.shots import ShotCounter
from moodstream.shared.table import plural

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveConfig:
    max_fps: float | None = None  # keep at most this many frames per second; None: every frame
    every_n: int = 1  # without max_fps: keep the frames whose index is a multiple of this (`--every`)
    max_reconnects: int | None = 10  # failures in a row (with backoff) before giving up; None: never
    backoff_base_s: float = 0.5  # first wait before reconnecting; doubles per failure in a row
    backoff_cap_s: float = 30.0  # longest wait between attempts (before jitter)
    open_timeout_ms: int = 10_000  # URLs: FFmpeg gives up opening after this long
    read_timeout_ms: int = 10_000  # URLs: a read that waits longer than this is a drop
    stable_s: float = 10.0  # a connection giving frames this long is healthy (resets the failure count)
    hold_s: float = HOLD_S  # a kept frame waits this long (or 3 usual reads) for the next read to decide its shot
    max_pixels: int = MAX_PIXELS_CEILING  # a Motion-JPEG part over this is skipped (shared.capture)

    @classmethod
    def from_settings(cls, settings: Settings, **kw) -> LiveConfig:
        return cls(max_reconnects=settings.live_max_reconnects, backoff_cap_s=settings.live_backoff_cap_s,
                   max_pixels=settings.max_pixels, **kw)


def is_finite(cap: object) -> bool:
    """Whether an opened capture declares its length (a file-like source, read once)."""
    try:
        n = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # type: ignore[attr-defined]
    except (AttributeError, cv2.error, TypeError, ValueError):
        return False
    return is_finite_stream(n)


def open_live(spec: str, config: LiveConfig) -> cv2.VideoCapture | None:
    """An opened capture for a camera index or URL, or None (never raises). FFmpeg's open blocks in C
    for up to ``open_timeout_ms``: :class:`LiveSource` runs it on its :class:`Reader`'s thread."""
    try:
        if is_camera_index(spec):
            cap = cv2.VideoCapture(int(spec))
        else:
            cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, config.open_timeout_ms,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, config.read_timeout_ms])
    except cv2.error as exc:
        log.debug("live: opening %s failed: %s", source_name(spec), exc)
        return None
    if not cap.isOpened():
        cap.release()
        return None
    return cap


class LiveSource:
    """Frames of one live source, reconnecting when it drops; iterate :meth:`frames`.

    ``opener``, ``sleep``, ``clock`` and ``rng`` default to :func:`open_live`,
    :func:`time.sleep`, :func:`time.monotonic` and :mod:`random` (tests pass their own).
    ``stop``: an event of the caller's (a producer's, set when it stops): set, the iteration ends
    as on :meth:`stop`, within 0.1 s, a read in flight or not.
    """

    def __init__(self, spec: str, config: LiveConfig | None = None, *,
                 opener: Callable[[str, LiveConfig], object | None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, stop: threading.Event | None = None):
        self.spec = spec
        self.name = source_name(spec)  # what frames and log lines call it (no credentials)
        self.config = config or LiveConfig()
        self.opener = opener or open_live
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._outer_stop = stop
        self.read = self.kept = self.drops = self.reconnects = self.opens = 0
        self.finite = False  # the last opened capture declared its length
        self.interrupted = False  # Ctrl-C (KeyboardInterrupt) ended the iteration

    def stop(self) -> None:
        """End the iteration within 0.1 s, a read in flight or not (thread-safe; from a signal handler too)."""
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set() or (self._outer_stop is not None and self._outer_stop.is_set())

    def backoff_s(self, attempt: int) -> float:
        """Longest wait before reconnect attempt ``attempt`` (1, 2, ...); the wait is 50-100% of it."""
        return min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** (attempt - 1))

    def frames(self) -> Iterator[FrameItem]:
        cfg, name = self.config, self.name
        min_gap_s = 1.0 / cfg.max_fps if cfg.max_fps else 0.0
        started = self.clock()
        last_kept: float | None = None
        stamp = Stamps()  # one timeline across reconnects: never back, never two frames at one time
        failed = 0  # failures in a row: opens that failed, connections with no frame or shorter than stable_s
        down_since: float | None = None
        shots = ShotCounter()
        held: FrameItem | None = None  # the last kept frame, until the next read decides its shot
        why: str | None = None  # why the opens of this outage fail, as far as can be told (None: not asked yet)
        reader = Reader(f"live-read {name}"[:60])  # opens, reads, releases: none blocks this thread
        try:
            while not self.stopping():
                if failed:
                    if cfg.max_reconnects is not None and failed > cfg.max_reconnects:
                        because = f" ({why})" if why else ""
                        log.error("live: giving up on %s: %d attempts failed in a row%s", name, failed, because)
                        yield FrameItem(name, self.read, error=BadInputError(
                            "unreadable", f"gave up after {plural(failed, 'failed attempt')} in a row{because}"))
                        return
                    delay = self.backoff_s(failed) * self.rng.uniform(0.5, 1.0)
                    log.debug("live: %s: attempt %d failed; next in %.2f s", name, failed, delay)
                    self._wait(delay)
                    if self.stopping():
                        break
                began = time.monotonic()
                cap = open_on(reader, lambda: self.opener(self.spec, cfg), self.stopping)
                if self.stopping():  # (stopped during the open: what it opens is released after it)
                    if cap is not None:
                        cap.release()
                    break
                self.opens += 1
                if cap is None:
                    failed += 1
                    if why is None:  # the first failed open of an outage: asked why (on the reader's thread)
                        took_s = time.monotonic() - began
                        asking = reader.submit(lambda: camera_missing(self.spec) if is_camera_index(self.spec)
                                               else why_unopened(self.spec, name, cfg.open_timeout_ms / 1000, took_s))
                        why = asking.result() if until(asking, self.stopping) else ""
                        if down_since is not None and why:
                            log.info("live: cannot reopen %s (%s)", name, why)
                    if down_since is None:  # never connected yet
                        down_since = self.clock()
                        log.warning("live: cannot open %s%s; retrying with backoff (at most %s times)", name,
                                    f" ({why})" if why else "",
                                    cfg.max_reconnects if cfg.max_reconnects is not None else "unlimited")
                    continue
                why = None
                self.finite = is_finite(cap)
                # a file's frames are timed and kept by the video's own times (read as fast as they decode,
                # the clock would squash it), as `analyze` reads the file; a live stream's by the clock
                times = FrameTimes(cap.get(cv2.CAP_PROP_FPS), timed=True) if self.finite else None
                announced = float(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.finite else 0.0
                file_rate = RateCap(cfg.max_fps) if self.finite and cfg.max_fps else None
                # after a live stream's frames (the URL came back as a file): on from the clock, never back
                file_from = self.clock() - started if self.finite and self.read else 0.0
                if down_since is not None and self.read:
                    self.reconnects += 1
                    log.info("live: %s is back after %.1f s (%d attempt%s)", name, self.clock() - down_since, failed,
                             "" if failed == 1 else "s")
                opened_at, got = self.clock(), 0
                frames_of = FrameReader(cap, self.spec, f"live: {name}",
                                        lambda data: decode_stored(data, cfg.max_pixels))
                reads = Reads(reader, cap, frames_of.read, f"live: {name}", self.stopping)
                try:
                    while not self.stopping():
                        reads.start()
                        if held is not None and reads.stalled(cfg.hold_s):
                            if self.stopping():
                                break
                            # a stall must not hold the frame back: it goes on its own, judged without a next
                            held.shot, kept = shots.last(), held
                            held = None
                            yield kept
                        if not reads.wait():  # stopped while the read goes on
                            break
                        ok, bgr = reads.result()
                        if not ok or bgr is None:
                            break
                        # (no read in flight: the next starts at the loop's top)
                        file_t = times.next(cap) if times is not None else 0.0
                        now = file_from + file_t if times is not None else self.clock() - started
                        index = self.read
                        self.read += 1
                        got += 1
                        shot = shots.see(bgr)
                        if held is not None:
                            held.shot, kept = shot, held
                            held = None
                            yield kept
                        if file_rate is not None and not file_rate.keep(file_t):
                            continue
                        if not self.finite and last_kept is not None and now - last_kept < min_gap_s - 1e-6:
                            continue
                        if not cfg.max_fps and index % cfg.every_n:  # analyze's rule: --fps, else --every
                            continue
                        last_kept = now
                        self.kept += 1
                        held = FrameItem(name, index, stamp(now), image=to_rgb8(bgr))
                finally:  # also on Ctrl-C and when the iteration is closed: never released inside a read
                    frames_of.close()
                    reads.release()
                if held is not None:  # the connection ended (or a stop): its last frame judged on its own
                    held.shot, kept = shots.last(), held
                    held = None
                    yield kept
                if self.stopping():
                    break
                if self.finite:  # a file over the network: read once, never re-read
                    short = cut_short(got, times.t, announced, times.rate) if got else None
                    if got == 0:  # why, where it can be told (an mp4's index at its end, no byte ranges)
                        asking = reader.submit(lambda: why_no_frames(self.spec))  # a stop comes at once
                        why = asking.result() if until(asking, self.stopping) else ""
                        yield FrameItem(name, self.read, error=BadInputError(
                            "unreadable", "no decodable video frames" + (f" ({why})" if why else "")))
                    elif short:  # the download ended or stalled: what was read was given, the cut is said
                        log.warning("live: %s: %s", name, short)
                        yield FrameItem(name, self.read, error=BadInputError("truncated", short))
                    else:
                        log.info("live: %s ended after %d frames (a finite source: not reopened)", name, got)
                    return
                healthy = got > 0 and self.clock() - opened_at >= cfg.stable_s
                failed = 0 if healthy else failed + 1
                self.drops += 1
                if down_since is None or healthy:
                    down_since = self.clock()
                    timeout_s = cfg.read_timeout_ms / 1000  # the camera stopped sending, or closed the stream
                    how = f"no frame for {timeout_s:g} s" if reads.last_s >= 0.9 * timeout_s else "the stream ended"
                    log.warning("live: %s dropped after %d frames (%s); reconnecting with backoff", name, self.read, how)
        except KeyboardInterrupt:
            self.interrupted = True  # the caller says so (produce exits 130, not 0)
            log.info("live: %s: interrupted; stopping", name)
            if held is not None:  # read before the interrupt: not lost
                held.shot = shots.last()
                yield held
        finally:
            reader.close()  # its thread ends after what it was given (a read in flight, the release behind it)
        log.info("live: %s: stopped after %d frames (%d kept, %d drops)", name, self.read, self.kept, self.drops)

    def _wait(self, delay_s: float) -> None:
        """Sleep ``delay_s``, in short steps so :meth:`stop` takes effect soon."""
        end = self.clock() + delay_s
        while not self.stopping():
            left = end - self.clock()
            if left <= 0:
                return
            self.sleep(min(left, 0.2))
