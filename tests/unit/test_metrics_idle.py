"""Issue 22 item 12: the worker's metrics server held one thread per idle connection,
with no timeout (400 idle connections: 400 threads, for ever). Now a connection that
sends nothing is closed after a timeout, and the threads serving at once are bounded.
Also: the server listens on loopback unless told otherwise."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from moodstream.shared.settings import Settings
from moodstream.worker.metrics import MAX_CONNECTIONS, MetricsServer, WorkerMetrics

IDLE = 400



@pytest.mark.slow
def test_idle_connections_hold_a_bounded_number_of_threads_for_a_bounded_time():
    with MetricsServer(WorkerMetrics(), "127.0.0.1", 0, idle_timeout_s=1.0) as server:
        before = threading.active_count()
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(IDLE)]
        try:
            time.sleep(0.5)
            held = threading.active_count() - before
            assert held <= MAX_CONNECTIONS, f"{held} threads for {IDLE} idle connections"
            # the idle ones are closed by the server after the timeout, and it answers again
            deadline = time.monotonic() + 15
            while threading.active_count() - before > 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert threading.active_count() - before <= 0, "idle connections never timed out"
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
                assert r.status == 200
        finally:
            for s in socks:
                s.close()


def test_metrics_listen_on_loopback_by_default():
    assert Settings.from_env(env={}).metrics_host == "127.0.0.1"
    assert Settings.from_env(env={"MOODSTREAM_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"


@pytest.mark.parametrize("piece", [b"X-Slow: 1\r\n", b"x"], ids=["a-line-at-a-time", "a-byte-at-a-time"])
def test_clients_that_drip_headers_lose_their_slot_after_the_timeout_in_all(piece):
    """The timeout bounded each read, not the request: 16 clients sending a header line every 3 s
    held every slot for minutes, and every liveness probe was closed unanswered. Then the deadline
    was checked as each line began: one byte at a time inside a line still held them all."""
    stop = threading.Event()
    with MetricsServer(WorkerMetrics(), "127.0.0.1", 0, idle_timeout_s=1.0) as server:

        def drip() -> None:
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(b"GET /healthz HTTP/1.0\r\nX-Long: ")
                try:
                    while not stop.wait(0.5):  # well within the per-read timeout
                        s.sendall(piece)
                except OSError:  # the server cut the connection: what is wanted
                    pass

        threads = [threading.Thread(target=drip, daemon=True) for _ in range(MAX_CONNECTIONS)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            deadline, answered = time.monotonic() + 6, False
            while time.monotonic() < deadline and not answered:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2) as r:
                        answered = r.status in (200, 503)
                except OSError:
                    time.sleep(0.2)
            assert answered, "no probe answered while slow clients held the slots"
        finally:
            stop.set()


def test_head_is_answered_and_other_methods_are_not_allowed():
    with MetricsServer(WorkerMetrics(), "127.0.0.1", 0) as server:
        url = f"http://127.0.0.1:{server.port}/healthz"
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5) as r:
            assert r.status in (200, 503) and r.read() == b""
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=5)
        assert exc.value.code == 405 and "GET" in exc.value.headers.get("Allow", "")
