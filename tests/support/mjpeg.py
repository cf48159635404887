"""A real MJPEG stream over HTTP on 127.0.0.1 (the live-source tests).

``serve(port)`` sends :data:`FRAMES_PER_CONNECTION` frames a connection and closes it (a drop).
``serve(port, script)`` sends what ``script(connection)`` says (``connection``: 1, 2, ... in the
order they came): an iterable of parts, each ``bytes`` written as they are (:func:`part` makes a
multipart part of an image), a ``float`` (a pause of that many seconds) or :class:`Slowly` (bytes
trickled); or an :class:`Answer`, a plain HTTP answer (a 404, a 500, a redirect) instead of a stream.
The stream closes when the script ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

FRAMES_PER_CONNECTION = 12


@dataclass(frozen=True)
class Slowly:
    """``data`` written a byte at a time, ``per_byte_s`` apart (a camera on a link that crawls)."""

    data: bytes
    per_byte_s: float


@dataclass(frozen=True)
class Answer:
    """A plain HTTP answer: ``status`` with ``headers`` and no stream."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


Script = Callable[[int], "Iterable[bytes | float | Slowly] | Answer"]


def picture(h: int, w: int, level: int = 100) -> np.ndarray:
    """A BGR frame: a ``level`` grey background with a red box over its middle-left quarter, at the
    same place relative to the frame whatever its size (a camera's picture at another resolution)."""
    img = np.full((h, w, 3), level, np.uint8)
    cv2.rectangle(img, (w // 4, h // 4), (w // 2 - 1, h // 2 - 1), (40, 40, 230), -1)
    return img


def jpeg(img: np.ndarray, *params: int) -> bytes:
    return cv2.imencode(".jpg", img, list(params))[1].tobytes()


def street_jpegs(n: int) -> list[bytes]:
    """``n`` JPEGs of samples/street.jpg (960 x 540, its faces), each a little brighter than the one before
    (no two alike): a camera's Motion-JPEG of a real scene."""
    from pathlib import Path

    photo = cv2.imread(str(Path(__file__).resolve().parents[2] / "samples" / "street.jpg"))
    return [jpeg(cv2.convertScaleAbs(photo, alpha=1.0, beta=3 * i)) for i in range(n)]


def part(body: bytes, content_type: str = "image/jpeg") -> bytes:
    return (b"--frame\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (content_type.encode(), len(body))
            + body + b"\r\n")


def bursts(connection: int) -> list[bytes | float]:
    """The default script: FRAMES_PER_CONNECTION frames 5 ms apart, then the connection closes."""
    out: list[bytes | float] = []
    for i in range(FRAMES_PER_CONNECTION):
        out += [part(jpeg(np.full((48, 64, 3), 20 * i % 255, np.uint8))), 0.005]
    return out


class MJPEGHandler(BaseHTTPRequestHandler):
    """multipart/x-mixed-replace parts as the server's script says, then the connection closes."""

    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def do_GET(self):  # noqa: N802
        with self.server.lock:
            self.server.connections += 1
            number = self.server.connections
        script = self.server.script(number)
        if isinstance(script, Answer):
            self.send_response(script.status)
            for name, value in script.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for item in script:
                if isinstance(item, float):
                    time.sleep(item)
                elif isinstance(item, Slowly):
                    for byte in item.data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(item.per_byte_s)
                else:
                    self.wfile.write(item)
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, *args):
        pass


def serve(port: int = 0, script: Script = bursts) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), MJPEGHandler)
    server.daemon_threads = True  # a stalled connection does not hold up shutdown
    server.script, server.connections, server.lock = script, 0, threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"


def silent() -> tuple[socket.socket, list]:
    """A listening socket that accepts connections and never answers; (socket, the connections held)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept())
            except OSError:  # closed
                return

    threading.Thread(target=accept, daemon=True).start()
    return sock, held


def stalling(frames: int, stall_s: float, size: tuple[int, int] = (48, 64)) -> list:
    """A script: ``frames`` frames 10 ms apart, a stall of ``stall_s``, one more frame."""
    good = part(jpeg(picture(*size)))
    return [x for _ in range(frames) for x in (good, 0.01)] + [stall_s, good]


def ctrl_c_in_a_stall(args: list[str], frames: int = 10, ready_s: float = 30) -> tuple[int, float, list[str], str]:
    """`python -m moodstream *args URL` on a stream of ``frames`` frames and a 30 s stall; SIGINT once it
    has printed ``frames`` lines (the last frame is let go 0.25 s into the stall), or after ``ready_s``.
    Returns (its exit code, seconds from SIGINT to its exit, its stdout lines, its stderr)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    server = serve(0, lambda connection: stalling(frames, 30.0, (96, 128)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", *args, url(server)], env=env, text=True,
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + ready_s
        while len(lines) < frames and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=40)
        return proc.returncode, time.monotonic() - sent, lines, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        server.shutdown()
        server.server_close()
