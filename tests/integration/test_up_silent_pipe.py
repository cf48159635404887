"""`rpicam-vid ... | moodstream up -` with a camera that has sent nothing yet, then Ctrl-C or SIGTERM: the
summary was written, then the interpreter aborted at shutdown ('Fatal Python error: _enter_buffered_busy:
could not acquire lock for <_io.BufferedReader name='<stdin>'>': the producer's thread still waited in
stdin's read), exit 134 and a core file, where --help promises 130 / 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_while_stdin_has_sent_nothing_exits_as_promised(tmp_path, sig, code):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_DEVICE="cpu", MOODSTREAM_THREADS="1", PYTHONPATH=str(REPO))
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:  # (stdin stays open to the end: its EOF would free the read)
        proc = subprocess.Popen([sys.executable, "-m", "moodstream", "up", "-", "--no-dashboard", "--summary",
                                 str(tmp_path / "s.json")], cwd=tmp_path, env=env, stdin=subprocess.PIPE,
                                stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "redis-server at" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(8)  # the worker up and the producer in stdin's read (a pipe that has sent nothing)
        proc.send_signal(sig)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    err = log.read_text()
    assert "Fatal Python error" not in err, err[-2000:]
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    assert (tmp_path / "s.json").is_file()
    assert not (tmp_path / "core").exists()
