"""`moodstream worker` started before its Redis (compose, systemd, a pod beside its Redis): it waited up
to redis_wait_s (MOODSTREAM_REDIS_WAIT_S; 10 s by default, minutes where an operator set more) without
a word, the wait looking like a hang, and only then said it could not reach Redis. It says what it
waits for when the wait begins, once, as produce, status and results do."""

from __future__ import annotations

import socket

from tests.support.procs import spawn_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_worker_says_it_waits_for_redis_when_the_wait_begins():
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    proc = spawn_cli("worker", "--backend", "onnx", MOODSTREAM_REDIS_URL=url, MOODSTREAM_REDIS_WAIT_S="1")
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert lines[0] == f"waiting up to 1 s for Redis at {url} (connection refused)", err
    assert lines[-1].startswith(f"Error: cannot reach Redis at {url}"), err
    assert len(lines) == 2, err
