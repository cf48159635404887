"""Live sources: a camera index or an rtsp:// / http(s):// stream that may drop and come back.

:class:`LiveSource` yields :class:`shared.media.FrameItem` frames from one live
source until it is stopped:

* **frame-rate cap** (``max_fps``): frames are read as the source sends them
  (a camera or stream must be drained, or its buffer goes stale) and only
  those at least ``1 / max_fps`` after the last kept one are yielded;
* **reconnect**: when the source cannot be opened or stops sending, it is
  reopened with capped exponential backoff (``backoff_base_s`` doubling up to
  ``backoff_cap_s``); each drop is one WARNING line, the recovery one INFO
  line, never a traceback;
* **stop**: after ``max_reconnects`` failed attempts in a row (one ERROR
  line), on :meth:`LiveSource.stop` (from another thread or a signal
  handler), or on KeyboardInterrupt; the iterator then just ends.

Frame indexes count every frame read (kept or skipped) and keep increasing
across reconnects; ``timestamp_s`` is the wall-clock time since the iterator
started, so tracks and smoothing downstream see one continuous timeline.
URLs are opened with FFmpeg's open and read timeouts, so a stream that stalls
without closing counts as a drop too. Needs only OpenCV (no torch).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2

from moodstream.shared.media import FrameItem, to_rgb8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveConfig:
    max_fps: float | None = None  # keep at most this many frames per second; None: every frame
    max_reconnects: int | None = 10  # reopen attempts (with backoff) after a failure before giving up; None: never
    backoff_base_s: float = 0.5  # first wait before reconnecting; doubles per failed attempt
    backoff_cap_s: float = 30.0  # longest wait between attempts
    open_timeout_ms: int = 10_000  # URLs: FFmpeg gives up opening after this long
    read_timeout_ms: int = 10_000  # URLs: a read that waits longer than this is a drop


def open_live(spec: str, config: LiveConfig) -> cv2.VideoCapture | None:
    """An opened capture for a camera index or URL, or None (never raises)."""
    try:
        if spec.isdigit():
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

    ``opener``, ``sleep`` and ``clock`` default to :func:`open_live`,
    :func:`time.sleep` and :func:`time.monotonic` (tests pass their own).
    """

    def __init__(self, spec: str, config: LiveConfig | None = None, *,
                 opener: Callable[[str, LiveConfig], object | None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.spec = spec
        self.config = config or LiveConfig()
        self.opener = opener or open_live
        self.sleep = sleep
        self.clock = clock
        self._stop = threading.Event()
        self.read = self.kept = self.drops = self.reconnects = 0

    def stop(self) -> None:
        """End the iteration after the current read (thread-safe)."""
        self._stop.set()

    def backoff_s(self, attempt: int) -> float:
        """Wait before reconnect attempt ``attempt`` (1, 2, ...)."""
        return min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** (attempt - 1))

    def frames(self) -> Iterator[FrameItem]:
        cfg, spec = self.config, self.spec
        min_gap_s = 1.0 / cfg.max_fps if cfg.max_fps else 0.0
        started = self.clock()
        last_kept: float | None = None
        failed = 0  # failed attempts in a row
        down_since: float | None = None
        try:
            while not self._stop.is_set():
                cap = self.opener(spec, cfg)
                if cap is None:
                    failed += 1
                    if down_since is None:  # never connected yet
                        down_since = self.clock()
                        log.warning("live: cannot open %s; retrying with backoff (at most %s times)", spec,
                                    cfg.max_reconnects if cfg.max_reconnects is not None else "unlimited")
                    if cfg.max_reconnects is not None and failed > cfg.max_reconnects:
                        log.error("live: giving up on %s: %d attempts to open it failed in a row", spec, failed)
                        return
                    delay = self.backoff_s(failed)
                    log.debug("live: %s: attempt %d failed; next in %.2f s", spec, failed, delay)
                    self._wait(delay)
                    continue
                if down_since is not None and self.read:
                    self.reconnects += 1
                    log.info("live: %s is back after %.1f s (%d attempts)", spec, self.clock() - down_since, failed)
                failed, down_since = 0, None
                try:
                    while not self._stop.is_set():
                        ok, bgr = cap.read()
                        if not ok or bgr is None:
                            break
                        now = self.clock()
                        index = self.read
                        self.read += 1
                        if last_kept is not None and now - last_kept < min_gap_s - 1e-6:
                            continue
                        last_kept = now
                        self.kept += 1
                        yield FrameItem(spec, index, round(now - started, 4), image=to_rgb8(bgr))
                finally:
                    cap.release()
                if self._stop.is_set():
                    break
                self.drops += 1
                down_since = self.clock()
                log.warning("live: %s dropped after %d frames; reconnecting with backoff", spec, self.read)
        except KeyboardInterrupt:
            log.info("live: %s: interrupted; stopping", spec)
        log.info("live: %s: stopped after %d frames (%d kept, %d drops)", spec, self.read, self.kept, self.drops)

    def _wait(self, delay_s: float) -> None:
        """Sleep ``delay_s``, in short steps so :meth:`stop` takes effect soon."""
        end = self.clock() + delay_s
        while not self._stop.is_set():
            left = end - self.clock()
            if left <= 0:
                return
            self.sleep(min(left, 0.2))
