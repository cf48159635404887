"""A finite video over http (a file on a web server: it announces its length) read by `produce URL`
and the expander (:class:`producer.live.LiveSource`) and by `analyze URL` (:func:`iter_video`) as
`analyze` reads the file itself: its frames' own times (a phone's variable frame rate), a download
cut short said as a cut file is, and a live stream that comes back as a file keeps one timeline.
Real HTTP servers on 127.0.0.1 (tests/support/expanderkit.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tests.support.expanderkit import CLIP, Site, body, mjpeg, ranged
from tests.support.vfr import retime_webm

from moodstream.producer.live import LiveConfig, LiveSource
from moodstream.shared.media import iter_video
from moodstream.worker.webm import open_webm

VFR_MS = [round(i * 1000 / 30) for i in range(45)] + [1500 + 100 * i for i in range(45)]  # 30 fps, then 10


def served(site: Site, path: str) -> str:
    return f"http://127.0.0.1:{site.port}{path}"


def live_items(url: str, max_fps: float | None = None, **config) -> tuple[LiveSource, list]:
    config = {"max_reconnects": 0, **config}
    source = LiveSource(url, LiveConfig(max_fps=max_fps, open_timeout_ms=5000, read_timeout_ms=5000, **config))
    return source, list(source.frames())


@pytest.fixture(scope="module")
def vfr_webm(tmp_path_factory):
    path = tmp_path_factory.mktemp("vfr") / "vfr.webm"
    writer = open_webm(path, 30.0, (160, 120))
    for i in range(len(VFR_MS)):
        writer.write(np.full((120, 160, 3), (i * 2) % 255, np.uint8))
    writer.release()
    retime_webm(path, VFR_MS)
    return path


@pytest.mark.parametrize("fps", [None, 5.0])
def test_a_variable_frame_rate_file_over_http_keeps_its_frames_own_times(vfr_webm, fps):
    """A phone's clip (30 fps, then 10: 5.9 s) on a web server. `produce URL`, the expander and
    `analyze URL` timed it by index / its nominal rate: the last frame at 2.97 s, not 5.9 (and
    `--fps 5` kept 15 frames, not 30), where `analyze` of the file gives each frame its own time."""
    want = [f for f in iter_video(str(vfr_webm), fps=fps) if f.error is None]
    site = Site({"/vfr.webm": body(vfr_webm.read_bytes(), "video/webm")})
    try:
        source, items = live_items(served(site, "/vfr.webm"), max_fps=fps)
        analyzed = list(iter_video(served(site, "/vfr.webm"), fps=fps))
    finally:
        site.close()
    assert want[-1].timestamp_s == pytest.approx(5.9 if fps is None else 5.8, abs=1e-3)
    assert source.finite and all(f.error is None for f in items + analyzed)
    for got in (items, analyzed):
        assert [f.frame for f in got] == [f.frame for f in want]
        assert [f.timestamp_s for f in got] == pytest.approx([f.timestamp_s for f in want], abs=1e-3)


def test_a_live_stream_that_comes_back_as_a_file_keeps_one_timeline():
    """A URL that served a live MJPEG stream, dropped, and came back as an mp4 (a camera's
    gateway that falls back to a recording): the file's frames were timed from 0 again, after
    frames of the stream timed up to 0.4 s: the source's time went back. They follow the stream
    now, spaced by the file's own times."""
    connections = []
    stream, clip = mjpeg(10, gap_s=0.02), body(CLIP.read_bytes())

    def route(h):
        connections.append(1)
        (stream if len(connections) == 1 else clip)(h)

    site = Site({"/cam": route})
    try:
        source, items = live_items(served(site, "/cam"), max_reconnects=2, backoff_base_s=0.05)
    finally:
        site.close()
    times = [f.timestamp_s for f in items]
    assert source.finite and len(items) == 10 + 12 and all(f.error is None for f in items), items[-1:]
    assert all(b > a for a, b in zip(times, times[1:])), times
    file_times = [f.timestamp_s for f in iter_video(str(CLIP))]
    assert [t - times[10] for t in times[10:]] == pytest.approx(file_times, abs=1e-3)


def test_analyze_of_a_live_stream_gives_each_frame_its_own_time(monkeypatch):
    """`analyze URL` of a live MJPEG stream times frames by the clock, rounded to 0.1 ms: parts that
    arrive together were given one time (as the expander gave 0.0422 twice in CI). Here its clock moves
    1 us a look, so every frame's time rounds to 0: each is now later than the one before."""
    import types

    import moodstream.shared.media as media
    ticks = iter(range(10**9))
    monkeypatch.setattr(media, "time", types.SimpleNamespace(monotonic=lambda: next(ticks) * 1e-6))
    site = Site({"/cam": mjpeg(8, gap_s=0.0)})
    try:
        items = list(iter_video(served(site, "/cam")))
    finally:
        site.close()
    times = [f.timestamp_s for f in items if f.error is None]
    assert len(times) == 8 and all(b > a for a, b in zip(times, times[1:])), times


def test_a_download_cut_short_is_said_as_analyze_says_it(tmp_path):
    """A 10 s mp4 (300 frames) whose server closes the connection half way through its media
    data: `analyze URL` read 150 frames and said the video was truncated; `produce URL` and the
    expander read the same 150 and ended as if the video had, 'ended after 150 frames', exit 0.
    Now the frames read are given, then the same error item as `analyze`'s."""
    path = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (96, 64))
    for i in range(300):  # a number on each: 200 KB in all (FFmpeg reads the first 32 KB whole to open it)
        img = np.full((64, 96, 3), (i * 3) % 255, np.uint8)
        cv2.putText(img, str(i), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    data = path.read_bytes()
    site = Site({"/whole.mp4": ranged(data), "/cut.mp4": ranged(data, cut_at=len(data) // 2)})
    try:
        _, whole = live_items(served(site, "/whole.mp4"))
        analyzed = list(iter_video(served(site, "/cut.mp4")))
        source, items = live_items(served(site, "/cut.mp4"))
    finally:
        site.close()
    assert len(whole) == 300 and all(f.error is None for f in whole)
    assert analyzed[-1].error is not None and analyzed[-1].error.reason == "truncated"
    assert len(items) == len(analyzed) and 100 < len(items) < 300
    assert all(f.error is None for f in items[:-1]) and items[-1].error is not None
    assert items[-1].error.reason == "truncated" and str(items[-1].error) == str(analyzed[-1].error)
    assert items[-1].frame == analyzed[-1].frame == len(items) - 1


def test_an_mp4_with_its_index_at_the_end_on_a_server_without_byte_ranges_says_why_it_gives_no_frame():
    """An mp4 written with its index (the moov box) after its media data (OpenCV's writer, many cameras)
    on a server that does not answer Range requests (Python's http.server): FFmpeg reads to the index
    and cannot go back to the media, so no frame comes. `analyze URL`, `produce URL` and the expander
    said only 'no decodable video frames' of the bundled sample, which plays from disk: now they say
    why and what to do. Served with byte ranges it reads, and an mp4 whose media is missing is not
    blamed on the server."""
    from tests.support.expanderkit import LONG_CLIP, no_frames_mp4

    data = LONG_CLIP.read_bytes()
    site = Site({"/plain.mp4": body(data), "/ranged.mp4": ranged(data), "/empty.mp4": ranged(no_frames_mp4())})
    try:
        analyzed = list(iter_video(served(site, "/plain.mp4")))
        source, items = live_items(served(site, "/plain.mp4"))
        fine = [f for f in iter_video(served(site, "/ranged.mp4")) if f.error is None]
        empty = list(iter_video(served(site, "/empty.mp4")))
    finally:
        site.close()
    for got in (analyzed, items):
        assert len(got) == 1 and got[0].error is not None, got
        detail = got[0].error.detail
        assert detail.startswith("no decodable video frames (its index (the mp4's moov box) comes after its "
                                 "media and the server does not serve byte ranges"), detail
        assert "-movflags +faststart" in detail
    assert len(fine) == 60
    assert [f.error.detail for f in empty] == ["no decodable video frames"]


def _drip(h, byte: bytes, times: int, gap_s: float = 0.1) -> None:
    """A server's answer a byte at a time, ``gap_s`` apart, until the asker hangs up."""
    import time

    try:
        for _ in range(times):
            h.wfile.write(byte)
            h.wfile.flush()
            time.sleep(gap_s)
    except OSError:  # the asker hung up
        pass


def test_asking_why_no_frame_came_is_bounded_in_time_on_a_server_that_trickles():
    """The question why_no_frames asks (the file's first 64 KB) stops after its wait, whatever the server
    sends: a byte a tenth of a second would have held `analyze URL` for almost two hours."""
    import time

    from moodstream.shared.capture import why_no_frames

    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        _drip(h, b"\0", 100)

    site = Site({"/slow.mp4": trickle})
    try:
        began = time.monotonic()
        assert why_no_frames(served(site, "/slow.mp4"), wait_s=1.0) == ""
        assert time.monotonic() - began < 3
    finally:
        site.close()


@pytest.mark.parametrize("ask", ["why_no_frames", "why_unopened"])
def test_asking_why_is_bounded_in_time_on_a_server_that_trickles_its_headers(ask):
    """A server that sends its status line and then a header a byte at a time (each byte well within
    the socket's timeout): the body's read had a bound, the headers' none; http.client reads up to 100
    lines of 64 KB each, so `analyze URL` waited for hours. Now the whole question has one."""
    import threading
    import time

    from moodstream.shared import capture

    def trickle(h):
        h.send_response_only(200)
        h.flush_headers()
        _drip(h, b"X", 60)

    site = Site({"/slow.mp4": trickle})
    url = served(site, "/slow.mp4")
    call = {"why_no_frames": lambda: capture.why_no_frames(url, wait_s=1.0),
            "why_unopened": lambda: capture.why_unopened(url, url, 1.0, 0.1)}[ask]
    got: list[str] = []
    try:
        began = time.monotonic()
        asking = threading.Thread(target=lambda: got.append(call()), daemon=True)
        asking.start()
        asking.join(10)
        took = time.monotonic() - began
    finally:
        site.close()
    assert got and took < 4, f"still asking after {took:.1f} s"
    assert got[0] == ("" if ask == "why_no_frames" else "no answer within 1 s"), got


def test_an_mp4_whose_media_runs_to_its_end_is_not_said_to_have_its_index_there():
    """A recording cut off while written (a camera's power lost) leaves its media box sized 0, 'to the
    end of the file', and no index at all: moving the index to the front cannot help, yet why_no_frames
    said FFmpeg could not reach the index after the media and advised `-movflags +faststart`."""
    import struct

    from moodstream.shared.capture import FASTSTART, why_no_frames

    ftyp = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0)
    site = Site({"/cut.mp4": body(ftyp + struct.pack(">I4s", 0, b"mdat") + bytes(4096)),
                 "/late_index.mp4": body(ftyp + struct.pack(">I4s", 4104, b"mdat") + bytes(4096))})
    try:
        assert why_no_frames(served(site, "/cut.mp4"), wait_s=2.0) == ""
        assert why_no_frames(served(site, "/late_index.mp4"), wait_s=2.0) == FASTSTART
    finally:
        site.close()
