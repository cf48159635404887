"""Issue 22 item 8: drop mode deleted other producers' frames, and live sources always
dropped. A drop-mode producer beside a wait-mode one made the wait-mode producer lose
53 of 600 frames silently; `produce` of a live source dropped 459 of 2,500 under the
default `wait`. Now a producer never deletes an entry of the stream: `drop` sheds
its own new frames while the backlog is over lag_limit, and counts each one where
its caller sees it (``JobRef.dropped``, ``stats.dropped``, produce's summary line).

Real redis-server, the real Worker and emotion classifier in a thread (a fixed-box
detector that takes ``delay_s`` per batch stands in for a slow fleet), real
producers, a real MJPEG server for the live source, `moodstream produce` as a process."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from tests.support.procs import measure, spawn_cli
from tests.support.streamkit import all_results, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.transport import ensure_group, group_backlog


def _slow():
    from tests.support.doubles import FixedFaceDetectorTestDouble

    return FixedFaceDetectorTestDouble(delay_s=0.05)


def _drain(client, keys, timeout_s: float = 180) -> None:
    """Until the workers have answered everything in the stream."""
    wait_for(lambda: group_backlog(client, keys).total == 0, timeout_s, poll_s=0.2, what="an empty backlog")


@pytest.mark.slow
def test_a_drop_mode_producer_never_deletes_another_producers_frames(redis_url, client, keys, checkpoint):
    n = 300
    settings = settings_for(redis_url, lag_limit=30, batch_max=8)
    waiter = Producer(settings.replace(backpressure="wait"), notice=lambda m: None)
    dropper = Producer(settings.replace(backpressure="drop"), notice=lambda m: None)
    dropper_refs: list = []

    def shed():
        for i in range(n):
            dropper_refs.append(dropper.submit_image(tiny_jpeg(i), source="drop", frame=i, job_id=f"drop-{i}"))

    worker = start_worker(settings, checkpoint, "w-slow", detector=_slow())
    try:
        t = threading.Thread(target=shed, daemon=True)
        t.start()
        for i in range(n):
            waiter.submit_image(tiny_jpeg(i), source="wait", frame=i, job_id=f"wait-{i}")
        t.join(180)
        _drain(client, keys)
    finally:
        worker.stop()
    served = {r.job_id for r in all_results(client, keys)}
    lost_wait = sum(f"wait-{i}" not in served for i in range(n))
    unserved_drop = sum(f"drop-{i}" not in served for i in range(n))
    measure("drop_beside_wait", wait_sent=n, wait_lost=lost_wait, drop_offered=n,
            drop_unserved=unserved_drop, drop_counted=dropper.stats.dropped, lag_limit=settings.lag_limit)
    assert lost_wait == 0, f"the wait-mode producer lost {lost_wait} of {n} frames to the drop-mode one"
    assert dropper.stats.dropped > 0  # it did have to shed
    assert unserved_drop == dropper.stats.dropped  # every frame it did not get served, it counted
    assert {r.job_id for r in dropper_refs if r.dropped} == {f"drop-{i}" for i in range(n)} - served


FRAMES = 150


def _mjpeg(n: int) -> bytes:
    """n distinct 64x48 JPEG frames as one multipart/x-mixed-replace body."""
    parts = [cv2.imencode(".jpg", np.full((48, 64, 3), 7 * i % 255, np.uint8))[1].tobytes() for i in range(n)]
    return b"".join(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(p), p)
                    for p in parts)


class _Camera(BaseHTTPRequestHandler):
    """An MJPEG stream of FRAMES frames as fast as the reader takes them (TCP holds the
    rest back while it does not read), then silence: only max_frames ends the read."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            self.wfile.write(_mjpeg(FRAMES))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        time.sleep(30)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_a_live_source_under_the_default_wait_drops_nothing(redis_url, client, keys, checkpoint):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Camera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stream = f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    settings = settings_for(redis_url, lag_limit=10, batch_max=8)
    assert settings.backpressure == "wait"  # the default
    producer = Producer(settings, notice=lambda m: None)
    worker = start_worker(settings, checkpoint, "w-slow", detector=_slow())
    try:
        refs = list(producer.produce([stream], max_frames=FRAMES))
        _drain(client, keys)
    finally:
        worker.stop()
        server.shutdown()
    served = {r.job_id for r in all_results(client, keys)}
    measure("live_source_default_wait", frames=FRAMES, sent=len(refs), dropped=producer.stats.dropped,
            served=len(served & {r.job_id for r in refs}), waited_s=round(producer.stats.waited_s, 2))
    assert producer.stats.dropped == 0
    assert len(refs) == FRAMES and {r.job_id for r in refs} <= served
    assert producer.stats.waited_s > 0  # it did wait for the worker


def test_produce_counts_every_drop_in_its_summary_line(redis_url, client, keys, tmp_path):
    """`moodstream produce --backpressure drop` with no worker: what it printed as jobs is
    what the stream holds, and its summary line counts the rest as dropped."""
    n = 40
    for i in range(n):
        (tmp_path / f"f{i:03d}.jpg").write_bytes(tiny_jpeg(i))
    ensure_group(client, keys)  # a fleet that exists but reads nothing meanwhile
    proc = spawn_cli("produce", str(tmp_path), "--backpressure", "drop", "--lag-limit", "8",
                     MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX=keys.prefix)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    jobs = [line for line in out.splitlines() if line.startswith("{")]
    summary = re.search(r"produced (\d+) jobs(?:, dropped (\d+))?", err)
    assert summary, err[-2000:]
    produced, dropped = int(summary[1]), int(summary[2] or 0)
    in_stream = client.llen(keys.intake)  # pushed, waiting for a worker's mover
    measure("produce_drop_summary", images=n, produced=produced, dropped=dropped, printed=len(jobs),
            in_stream=in_stream)
    assert produced == len(jobs) == in_stream  # what it says it sent is there, unread
    assert dropped > 0 and produced + dropped == n  # and every other image is counted as dropped
