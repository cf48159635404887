"""Issue 22 item 12: the worker's metrics server held one thread per idle connection,
with no timeout (400 idle connections: 400 threads, for ever). Now a connection that
sends nothing is closed after a timeout, and the threads serving at once are bounded.
Also: the server listens on loopback unless told otherwise."""

from __future__ import annotations

import socket
import threading
import time
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
