"""A stream's frames where FFmpeg's own decoding goes wrong: Motion-JPEG over a URL, part by part.

A camera's MJPEG stream (multipart JPEG over http, RTP/JPEG over rtsp) is a sequence of pictures
that owe each other nothing, and OpenCV's FFmpeg reader decodes it as one video: every frame comes
at the size of the first (a camera reconfigured from 4:3 to 16:9 mid-stream came squashed into its
old size, at a third of its pixels; opencv/opencv#27116), and a part FFmpeg cannot decode (cut
short or garbled on a lossy link, a PNG) fails the read, which ends the stream there (a drop and a
reconnect; ``analyze`` ended the stream, "0 errors"). :class:`FrameReader` therefore takes such a
stream's parts undecoded (OpenCV's raw mode, ``CAP_PROP_FORMAT`` -1) and decodes each with the one
image decoder, which its caller passes (:func:`shared.media.decode_stored`: its format and size checks,
``max_pixels``; passed, as shared.media reads streams through this module):
each at its own size, grey, CMYK, progressive or 16-bit as it comes. A part that is no picture is
skipped and counted, the first of a capture said in a WARNING line, their number when it closes; after
:data:`MAX_BAD_PARTS` in a row the read fails (a stream of nothing but bad parts is a dead one).
Files, camera indexes and other codecs (H.264...) are read by ``cap.read()`` as before.

A live stream's reads (:class:`Reads`) run on a thread of their own (:class:`Reader`): FFmpeg's open
and read block in C, where Ctrl-C cannot reach them, for up to their timeouts (a stall, a server that
never answers) or longer (a stream trickling bytes), and a capture released while a read runs crashes
the process when the read returns (a segfault; ``terminate called`` where the thread came back into
Python as it shut down). The iterating thread waits in short steps, so a stop or Ctrl-C comes at once,
and the release is queued behind the read in flight. ``producer.live.LiveSource`` (``produce``, ``up``)
and :func:`shared.media.iter_video` for a stream (``analyze URL``) read so.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait

import cv2
import numpy as np

from moodstream.shared.errors import BadInputError

log = logging.getLogger(__name__)

MJPEG_TAGS = {b"MJPG", b"mjpg", b"AVI1", b"JPEG", b"jpeg"}  # CAP_PROP_FOURCC of a Motion-JPEG stream
MAX_BAD_PARTS = 100  # parts in a row that are no picture: the stream gives nothing, the read fails
HOLD_S = 0.25  # a kept frame waits this long (or 3 usual reads) for the next read to decide its shot (shared.shots)


def fourcc(cap: cv2.VideoCapture) -> bytes:
    try:
        return int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
    except (OverflowError, ValueError, cv2.error):  # a NaN or negative answer: no codec said
        return b""


class FrameReader:
    """``read()`` -> ``(ok, array)`` as ``cap.read()`` gives them (BGR, or grey for a grey part of an
    MJPEG stream), for a capture opened on ``spec``; see the module's docstring. ``decode``: a part's
    bytes -> its array as stored, or BadInputError (``shared.media.decode_stored`` within max_pixels).
    ``name`` names the source in log lines (no credentials); ``skipped`` counts the parts that were no
    picture."""

    def __init__(self, cap: cv2.VideoCapture, spec: str, name: str, decode: Callable[[bytes], np.ndarray]):
        self.cap, self.name, self.decode = cap, name, decode
        self.skipped = 0
        # a URL only: a camera index's raw mode is V4L2's own (undecoded buffers), a file's frames are one video's
        self.parts = "://" in spec and fourcc(cap) in MJPEG_TAGS and bool(cap.set(cv2.CAP_PROP_FORMAT, -1))

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.parts:
            return self.cap.read()
        for _ in range(MAX_BAD_PARTS):
            ok, packet = self.cap.read()
            if not ok or packet is None:
                return False, None
            try:
                return True, self.decode(packet.tobytes())
            except BadInputError as exc:
                self.skipped += 1
                level = logging.WARNING if self.skipped == 1 else logging.DEBUG
                log.log(level, "%s: skipped a part that is not a decodable picture (%s)%s", self.name, exc,
                        "; the others are counted" if self.skipped == 1 else "")
        log.warning("%s: %d parts in a row were no picture: ending the stream", self.name, MAX_BAD_PARTS)
        return False, None

    def close(self) -> None:
        """Says how many parts were skipped in all, where more than the first (said at once)."""
        if self.skipped > 1:
            log.warning("%s: skipped %d parts in all that were not decodable pictures", self.name, self.skipped)


class Reader:
    """Runs what it is given (a capture's open, its reads, its release), in order, on one daemon
    thread. A daemon thread, not a pool's: the interpreter's exit joins a pool's threads, which waited
    out a stalled read. The thread ends after :meth:`close`, once what it was given is done."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Callable[[], object]) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn))
        return future

    def close(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
                future.set_exception(exc)


def until(future: Future, stopping: Callable[[], bool], timeout_s: float | None = None) -> bool:
    """Whether ``future`` is done within ``timeout_s`` (None: however long it takes); False once
    ``stopping()``. Waits in 0.1 s steps: a stop is seen within 0.1 s, and Ctrl-C (KeyboardInterrupt)
    comes at once, what runs left to its thread."""
    end = None if timeout_s is None else time.monotonic() + timeout_s
    while not future.done():
        if stopping():
            return False
        step = 0.1 if end is None else min(0.1, end - time.monotonic())
        if step <= 0:
            return False
        wait([future], timeout=step)
    return True


def never() -> bool:
    return False


class Reads:
    """One capture's reads, one at a time on ``reader``'s thread: :meth:`start` one, :meth:`wait` for
    it (False if ``timeout_s`` or a stop came first: it goes on), take its :meth:`result`; and
    :meth:`release` the capture, behind the read in flight if there is one. ``usual_s``: a read's
    usual time (a moving average), by which a stall is told (three times it); ``last_s``: the last one's."""

    def __init__(self, reader: Reader, cap: cv2.VideoCapture, read: Callable[[], tuple[bool, object]], name: str,
                 stopping: Callable[[], bool] = never):
        self.reader, self.cap, self._read, self.name, self.stopping = reader, cap, read, name, stopping
        self.usual_s = 0.0
        self.last_s = 0.0  # how long the last read took (one that failed: a timeout, or the stream's end)
        self._reading: Future | None = None
        self._began = 0.0

    def start(self) -> None:
        self._began = time.monotonic()
        self._reading = self.reader.submit(self._read)

    def wait(self, timeout_s: float | None = None) -> bool:
        return until(self._reading, self.stopping, timeout_s)

    def stalled(self, hold_s: float = HOLD_S) -> bool:
        """Whether the read in flight is a stall: not done within ``hold_s`` or three usual reads (or a stop
        came first), so a frame held for its shot goes on its own (the read goes on)."""
        return not self.wait(max(hold_s, 3 * self.usual_s))

    def result(self) -> tuple[bool, object]:
        """The read's ``(ok, frame)``, waiting for it; an OpenCV error in it is a failed read."""
        reading, self._reading = self._reading, None
        try:
            ok, frame = reading.result()
        except cv2.error as exc:
            log.debug("%s: the read failed: %s", self.name, exc)
            ok, frame = False, None
        self.last_s = time.monotonic() - self._began
        self.usual_s += 0.1 * (self.last_s - self.usual_s)
        return ok, frame

    def release(self) -> None:
        """Now, or after the read in flight, on its thread (not waited for): never inside a read."""
        if self._reading is not None and not self._reading.done():
            self.reader.submit(self.cap.release)
        else:
            self.cap.release()


def release_opened(opening: Future) -> None:
    """Queued behind an open nobody waits for any more (a stop or Ctrl-C came during it): what it
    opened is released."""
    cap = opening.result() if opening.exception() is None else None
    if cap is not None:
        cap.release()


def open_on(reader: Reader, opener: Callable[[], cv2.VideoCapture | None],
            stopping: Callable[[], bool] = never) -> cv2.VideoCapture | None:
    """``opener()`` run on ``reader``'s thread and waited for (None when stopped first); what it
    raises is raised here. Stopped or interrupted during it, what it opens is released after it."""
    opening, opened = reader.submit(opener), False
    try:
        opened = until(opening, stopping)
    finally:
        if not opened:
            reader.submit(lambda: release_opened(opening))
    return opening.result() if opened else None


def http_get(spec: str, wait_s: float, headers: dict[str, str] | None = None, read_bytes: int = 0, *,
             body: Callable[[object], object] | None = None, total_s: float | None = None,
             proxy: str | None = None):
    """One GET of an http(s) URL, redirects not followed, the URL's user and password sent only where
    the server asks for basic auth (as FFmpeg): (answer, the first ``read_bytes`` of its body, or what
    ``body(answer)`` returns, read while the connection is open; for a 2xx answer only, else b"");
    None for a URL that is no http(s) one. ``proxy``: an http proxy's URL (the expander's
    :class:`producer.url_guard.UrlGuard`), asked for the URL (an https one through CONNECT), so that
    its checks and byte count hold for this request as for FFmpeg's. Raises what the connection
    raises (OSError, http.client.HTTPException, ValueError for a port that is no number), and what
    ``body`` raises; TimeoutError where the exchange took over ``total_s`` in all (default
    ``2 * wait_s``; each read has ``wait_s``: a server may send a byte a read)."""
    import base64
    import http.client
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(spec)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    https = parts.scheme.lower() == "https"
    kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    via = urlsplit(proxy) if proxy is not None else None
    if via is not None and not https:  # a proxy is asked for the whole URL (without its user and password)
        path = f"http://{parts.netloc.rpartition('@')[2]}{path}"
    headers = {"User-Agent": "moodstream", **(headers or {})}
    total_s = 2 * wait_s if total_s is None else total_s
    for _ in range(2):
        if via is None:
            conn = kind(parts.hostname, parts.port, timeout=wait_s)
        else:
            conn = kind(via.hostname, via.port, timeout=wait_s)
            if https:
                conn.set_tunnel(parts.hostname, parts.port)
        # the whole exchange within total_s: the socket's timeout bounds each read only, and a
        # server sending its headers a byte at a time held http.client's header reads for hours
        cut = threading.Timer(total_s, _hang_up, (conn,))
        cut.daemon = True
        cut.start()
        try:
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            data = b""
            if answer.status < 300:
                data = body(answer) if body is not None else _read_for(answer, read_bytes, wait_s) if read_bytes \
                    else b""
        except (OSError, http.client.HTTPException):
            if getattr(conn, "hung_up", False):  # what the cut made of it (the peer closed, no status line)
                raise TimeoutError(f"no whole answer within {total_s:g} s") from None
            raise
        finally:
            cut.cancel()
            conn.close()
        if getattr(conn, "hung_up", False):  # headers cut short read as ended: not an answer
            raise TimeoutError(f"no whole answer within {total_s:g} s")
        challenge = (answer.getheader("WWW-Authenticate") or "").lower()
        if answer.status != 401 or parts.username is None or "Authorization" in headers \
                or not challenge.startswith("basic"):
            break
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return answer, data


def _hang_up(conn) -> None:
    """Cut ``conn`` short (:func:`http_get`'s time bound): its blocked read returns at once."""
    conn.hung_up = True
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass


def _read_for(answer, limit: int, wait_s: float) -> bytes:
    """Up to ``limit`` bytes of ``answer``'s body, read for at most about ``wait_s`` seconds in all (a
    server trickling a byte a second held a plain read(limit) for hours): what came by then."""
    data, deadline = bytearray(), time.monotonic() + wait_s
    while len(data) < limit and time.monotonic() < deadline:
        chunk = answer.read1(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def why_unopened(spec: str, name: str, open_timeout_s: float, took_s: float) -> str:
    """Why FFmpeg could not open ``spec``, in a few words, or "" where nothing can be told: OpenCV says
    only that it failed. An open that ran into ``open_timeout_s`` says so; an http(s) URL is asked once
    more, for its status line only (:func:`http_get`, no body read): 'HTTP 404 Not Found', 'HTTP 302
    Found, to URL', 'connection refused'.
    ``name``: the URL as log lines call it (no credentials)."""
    import http.client
    import socket
    from urllib.parse import urljoin

    from moodstream.shared.transport import redact

    timed_out = took_s >= 0.9 * open_timeout_s
    slow = f"no answer within {open_timeout_s:g} s" if timed_out else ""
    wait_s = min(2.0 if timed_out else 5.0, open_timeout_s)  # silent through FFmpeg's whole open: 2 s more tell
    try:
        got = http_get(spec, wait_s)
    except ValueError:  # a port that is no number
        return slow
    except (socket.timeout, TimeoutError):
        return f"no answer within {open_timeout_s if timed_out else wait_s:g} s"
    except ConnectionRefusedError:
        return "connection refused"
    except (OSError, http.client.HTTPException) as exc:
        return getattr(exc, "strerror", None) or type(exc).__name__
    if got is None:
        return slow
    answer = got[0]
    said = f"HTTP {answer.status} {answer.reason}".strip()
    if 300 <= answer.status < 400 and answer.getheader("Location"):
        return f"{said}, to {redact(urljoin(name, answer.getheader('Location')))}"
    if answer.status >= 300:
        return said
    content = answer.getheader("Content-Type") or "no content type"
    if timed_out:  # it answers, but what follows came too slowly for FFmpeg to see a frame in time
        return f"{said} ({content}), but no frame within {open_timeout_s:g} s"
    return f"{said} ({content}), not a video FFmpeg can read"


HEAD_BYTES = 1 << 16  # of a video over http, read to find its top-level boxes (why_no_frames)
FASTSTART = ("its index (the mp4's moov box) comes after its media and the server does not serve byte "
             "ranges, so FFmpeg cannot go back to the media once it has read the index: download the file "
             "and analyse it there, serve it from a server that answers Range requests, or move its index "
             "to the front (ffmpeg -i IN -c copy -movflags +faststart OUT)")


def why_no_frames(spec: str, wait_s: float = 5.0) -> str:
    """Why a video over http(s) that FFmpeg opened gave no frame, where it can be told, else "": an
    MP4 / MOV whose index (its ``moov`` box) follows its media (``mdat``: OpenCV's writer and many
    cameras write it so) on a server that ignores Range requests (Python's http.server): read front to
    back, FFmpeg finds the index only past the media it indexes (:data:`FASTSTART`). One GET for the
    file's first :data:`HEAD_BYTES` (asked as a range: a server that answers 206 serves ranges)."""
    import http.client
    import struct

    try:
        got = http_get(spec, wait_s, {"Range": f"bytes=0-{HEAD_BYTES - 1}"}, HEAD_BYTES)
    except (OSError, http.client.HTTPException, ValueError):
        return ""
    if got is None or got[0].status != 200:  # 206: ranges served; an error status: not this
        return ""
    head, at = got[1], 0
    while at + 8 <= len(head):  # the top-level boxes the head holds: size (32 bits, 1: 64 after the type), type
        size, kind = struct.unpack(">I4s", head[at:at + 8])
        if size == 1 and at + 16 <= len(head):
            size = struct.unpack(">Q", head[at + 8:at + 16])[0]
        if kind == b"moov":
            return ""
        if kind == b"mdat":  # sized 0, it runs to the file's end: no index after it (a recording cut off)
            return FASTSTART if size else ""
        if size < 8:  # 0: to the end of the file (the media, or no box at all)
            return ""
        at += size
    return ""
