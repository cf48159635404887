"""What the expander and source tests share: a real `moodstream expander` process
with a time bound, rq jobs as Redis holds them, and small HTTP servers on
127.0.0.1 whose every request is counted."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.support.procs import spawn_cli
from rq.job import Job
from rq.serializers import JSONSerializer

from moodstream.shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"  # 12 frames, moov at the end
LONG_CLIP = REPO / "samples" / "hamilton_clip.mp4"  # 60 frames
PREFIX = "t"


def settings(url: str, **kw) -> Settings:
    return Settings.from_env(env={}, redis_url=url, prefix=PREFIX, **kw)


def burst_here(s: Settings, client, monkeypatch) -> None:
    """One burst of the expander's own job class in this process (rq's SimpleWorker, so that a test can
    patch what it calls), on settings ``s``; the expander's stop signal's handler put back after it."""
    from rq import SimpleWorker

    from moodstream.producer import rq_jobs

    monkeypatch.setattr(rq_jobs, "_expander_settings", s)
    before = signal.getsignal(rq_jobs.STOP_SIGNAL)
    try:
        worker = SimpleWorker([rq_jobs.coarse_queue(s, client)], connection=client, serializer=JSONSerializer,
                              job_class=rq_jobs.ExpansionJob)
        # without rq's pubsub thread (its commands to a worker): in this process, after the expander's stop
        # signal, its teardown waited out the thread's 60 s read (a minute a test; the expander's own process
        # ends at once)
        worker.subscribe = worker.unsubscribe = lambda: None
        worker.work(burst=True)
    finally:
        signal.signal(rq_jobs.STOP_SIGNAL, before)


def expander(redis_url: str, *flags: str, **env: str) -> subprocess.Popen:
    """A real `moodstream expander` (configured by flags and MOODSTREAM_* variables)."""
    return spawn_cli("expander", *flags, MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX=PREFIX, **env)


def run_burst(redis_url: str, *flags: str, timeout_s: float = 60, **env: str) -> tuple[int | None, str]:
    """`expander --burst` bounded by ``timeout_s``: (exit code or None if it had to be killed, stderr)."""
    proc = expander(redis_url, "--burst", *flags, **env)
    try:
        _, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        _, err = proc.communicate(timeout=30)
        return None, err


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL an expander and its rq work horse (a child in its own process group, holding our pipes)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == proc.pid:  # ppid
            children.append(int(stat.parent.name))
    proc.kill()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def job(client, job_id: str) -> Job:
    return Job.fetch(job_id, connection=client, serializer=JSONSerializer)


def job_error(j: Job) -> str:
    r = j.latest_result()
    return (r.exc_string or "") if r is not None else ""


Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class Site:
    """A threading HTTP server on 127.0.0.1 serving ``routes`` (path -> handler);
    ``hits`` counts every request by path, ``times`` records when each came."""

    def __init__(self, routes: dict[str, Route]):
        self.hits: Counter[str] = Counter()
        self.times: list[float] = []
        self.routes = routes
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0]
                site.hits[path] += 1
                site.times.append(time.monotonic())
                route = site.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def body(data: bytes, content_type: str = "video/mp4") -> Route:
    def send(h):
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    return send


def ranged(data: bytes, content_type: str = "video/mp4", cut_at: int | None = None) -> Route:
    """``data`` as a web server serves a file, byte ranges too (FFmpeg asks for an mp4's index at its
    end, then its media data); ``cut_at``: an answer that holds the byte at ``cut_at`` ends there,
    the connection closed mid-body (a download cut short). The index, past it, still comes whole."""
    def send(h):
        asked = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", "") or "")
        start = int(asked.group(1)) if asked else 0
        end = int(asked.group(2)) + 1 if asked and asked.group(2) else len(data)
        h.send_response(206 if asked else 200)
        h.send_header("Content-Type", content_type)
        h.send_header("Accept-Ranges", "bytes")
        if asked:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        h.send_header("Content-Length", str(end - start))
        h.end_headers()
        stop = end if cut_at is None or not start <= cut_at < end else cut_at
        h.wfile.write(data[start:stop])
        h.close_connection = True
    return send


def redirect(location: str) -> Route:
    def send(h):
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return send


def mjpeg(frames: int | None, size: tuple[int, int] = (64, 48), gap_s: float = 0.01) -> Route:
    """An MJPEG stream of ``frames`` frames (None: without end), then the connection closes."""
    import cv2
    import numpy as np

    def send(h):
        h.send_response(200)
        h.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        h.end_headers()
        i = 0
        while frames is None or i < frames:
            img = np.full((size[1], size[0], 3), 7 * i % 255, np.uint8)
            jpg = cv2.imencode(".jpg", img)[1].tobytes()
            h.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                          + jpg + b"\r\n")
            i += 1
            time.sleep(gap_s)
    return send


def no_frames_mp4() -> bytes:
    """The fixture clip without its media data: FFmpeg opens it (12 frames declared) and decodes none."""
    d = CLIP.read_bytes()
    return d[:36] + d[21495:]  # ftyp + free, then moov (mdat cut out)
