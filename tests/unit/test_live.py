"""moodstream.producer.live: a real MJPEG stream over HTTP on 127.0.0.1 that drops and comes back on the
same port; giving up after max_reconnects; the frame-rate cap; KeyboardInterrupt."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from moodstream.producer.live import LiveConfig, LiveSource
from tests.support.mjpeg import FRAMES_PER_CONNECTION, serve


def test_stream_that_drops_and_comes_back(caplog):
    server = serve(0)
    port = server.server_address[1]
    source = LiveSource(f"http://127.0.0.1:{port}/stream.mjpg",
                        LiveConfig(backoff_base_s=0.05, backoff_cap_s=0.2, max_reconnects=50,
                                   open_timeout_ms=2000, read_timeout_ms=2000))
    frames, restarted = [], []

    def restart_later():  # the server goes away after the first connection, and comes back
        time.sleep(0.5)
        restarted.append(serve(port))

    with caplog.at_level(logging.INFO, logger="moodstream.producer.live"):
        for item in source.frames():
            frames.append(item)
            if len(frames) == FRAMES_PER_CONNECTION:
                server.shutdown()
                server.server_close()
                threading.Thread(target=restart_later, daemon=True).start()
            if len(frames) >= 2 * FRAMES_PER_CONNECTION:
                source.stop()
    restarted[0].shutdown()
    restarted[0].server_close()
    assert len(frames) == 2 * FRAMES_PER_CONNECTION
    assert [f.frame for f in frames] == list(range(len(frames)))  # indexes go on across the reconnect
    times = [f.timestamp_s for f in frames]
    assert times == sorted(times) and times[FRAMES_PER_CONNECTION] - times[FRAMES_PER_CONNECTION - 1] >= 0.3
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert source.drops == 1 and source.reconnects == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dropped after 12 frames" in warnings[0].getMessage()
    assert any("is back after" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text


def test_gives_up_after_max_reconnects_with_capped_backoff(caplog):
    clock = FakeClock()
    source = LiveSource("rtsp://127.0.0.1:1/none", LiveConfig(max_reconnects=5, backoff_base_s=0.5, backoff_cap_s=2.0),
                        opener=lambda spec, cfg: None, sleep=clock.sleep, clock=clock)
    with caplog.at_level(logging.INFO, logger="moodstream.producer.live"):
        items = list(source.frames())
    assert len(items) == 1 and items[0].error.reason == "unreadable"  # the failure ends the source as an error
    assert "gave up after 6 failed attempts" in str(items[0].error)
    assert [source.backoff_s(k) for k in range(1, 6)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    full = 0.5 + 1.0 + 2.0 + 2.0 + 2.0  # each wait is 50-100% of the capped exponential (jitter)
    assert full / 2 <= clock.now <= full and clock.now != pytest.approx(full)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert levels == [("WARNING", "live: cannot open rtsp://127.0.0.1:1/none; retrying with backoff "
                                  "(at most 5 times)"),
                      ("ERROR", "live: giving up on rtsp://127.0.0.1:1/none: 6 attempts failed in a row")]


def test_frame_rate_cap_keeps_frames_at_most_max_fps():
    clock = FakeClock()
    cap = FakeCapture(clock, n=100, step_s=0.01)  # a source sending 100 frames/s for 1 s
    source = LiveSource("0", LiveConfig(max_fps=25, max_reconnects=0), opener=cap.open, sleep=clock.sleep, clock=clock)
    kept = [f for f in source.frames() if f.error is None]
    assert source.read == 100 and len(kept) == 25
    assert [f.frame for f in kept] == list(range(0, 100, 4))


def test_keyboard_interrupt_ends_the_iteration_quietly(caplog):
    clock = FakeClock()
    cap = FakeCapture(clock, n=5, step_s=0.01, interrupt=True)
    source = LiveSource("0", LiveConfig(max_reconnects=0), opener=cap.open, sleep=clock.sleep, clock=clock)
    with caplog.at_level(logging.INFO, logger="moodstream.producer.live"):
        assert len([f for f in source.frames() if f.error is None]) == 5
    assert "interrupted" in caplog.text and cap.released
    assert source.interrupted  # so that produce exits 130, not 0 as a finished run (found by an audit)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class FakeCapture:
    """TEST DOUBLE of an opened cv2.VideoCapture: ``n`` frames ``step_s`` apart on the fake
    clock, then end of stream (or KeyboardInterrupt). Opens once; later opens fail."""

    def __init__(self, clock: FakeClock, n: int, step_s: float, interrupt: bool = False):
        self.clock, self.n, self.step_s, self.interrupt = clock, n, step_s, interrupt
        self.opened = self.released = False

    def open(self, spec, cfg):
        if self.opened:
            return None
        self.opened = True
        return self

    def read(self):
        if self.n == 0:
            if self.interrupt:
                raise KeyboardInterrupt
            return False, None
        self.n -= 1
        self.clock.now += self.step_s
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self):
        self.released = True


class StallingCapture:
    """TEST DOUBLE of an opened capture whose stream stalls: ``before`` frames at once, then a read
    that blocks ``stall_s`` (a network hiccup, a camera that sends only on motion), then one more."""

    def __init__(self, before: int, stall_s: float):
        self.before, self.stall_s, self.reads, self.released = before, stall_s, 0, False
        self.reading = threading.Lock()  # held while a read runs: release must never come inside one

    def open(self, spec, cfg):
        return None if self.reads else self

    def read(self):
        with self.reading:
            self.reads += 1
            if self.reads == self.before + 1:
                time.sleep(self.stall_s)
            if self.reads > self.before + 1:
                return False, None
            return True, np.full((36, 64, 3), 40 * self.reads % 255, np.uint8)

    def release(self):
        assert self.reading.acquire(blocking=False), "released during a read"
        self.reading.release()
        self.released = True


def test_a_stall_does_not_hold_back_the_last_frame():
    """Each kept frame waits for the next read, which decides its camera shot (a flash is no cut). A
    stream that stalls held its last frame (and the answer to it) for as long as the stall, up to
    read_timeout_ms: now it goes on its own after a short wait, its shot judged without a next frame."""
    cap = StallingCapture(before=5, stall_s=2.0)
    source = LiveSource("0", LiveConfig(max_reconnects=0), opener=cap.open)
    started, got = time.monotonic(), []
    for item in source.frames():
        if item.error is None:  # then the end of the stream (max_reconnects=0: an error item)
            got.append((item.frame, item.shot, time.monotonic() - started))
    assert [f for f, _, _ in got] == [0, 1, 2, 3, 4, 5]
    assert got[4][2] < 1.0, got  # frame 4 out before the stall ends (2 s)
    assert got[5][2] >= 2.0 and all(s is not None for _, s, _ in got)
    assert cap.released


def test_a_closed_iteration_waits_for_the_read_before_releasing():
    cap = StallingCapture(before=2, stall_s=0.5)
    source = LiveSource("0", LiveConfig(max_reconnects=0), opener=cap.open)
    frames = source.frames()
    assert [next(frames).frame for _ in range(2)] == [0, 1]  # frame 1 given during the stalled read
    frames.close()
    assert cap.released
