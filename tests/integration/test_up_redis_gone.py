"""`moodstream up` whose Redis goes away and stays gone.

* Your Redis (MOODSTREAM_REDIS_URL) killed mid-run, then Ctrl-C or `--timeout-s`: it ended with "up:
  producer failed" and a traceback ending in `RedisGone: producer: stop requested while Redis is
  unreachable`, and `--summary` wrote `"videos": []` though tracked rows had been printed, with nothing
  saying it was incomplete.
* Its own embedded redis-server killed: it did not notice, and waited `--timeout-s` (an hour by default).
* Its results reader warned about 6.5 times a second while Redis was down: its wait began again at
  0.08 s at every read, where the worker's and the track stage's grow to the cap.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.support.procs import parent_pid

from moodstream.shared.embedded import EmbeddedRedis

REPO = Path(__file__).resolve().parents[2]
CLIP = str(REPO / "samples" / "hamilton_clip.mp4")  # 60 frames: far from done when Redis goes


def _env(sending: bool = True, **extra: str) -> dict[str, str]:
    """``sending``: a backlog of at most 8 frames, so the producer is still sending (waiting for the
    worker) when Redis goes; else it has sent the clip's 60 frames in a moment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu", **extra)
    if sending:
        env["MOODSTREAM_LAG_LIMIT"] = "8"
    return env


class _Up:
    """A real `moodstream up` process; its stderr read in a thread (lines, as they come)."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "moodstream", "up", *args, "--no-dashboard",
                                      "--format", "jsonl"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.err: list[str] = []
        self._reader = threading.Thread(target=lambda: self.err.extend(iter(self.proc.stderr.readline, "")),
                                        daemon=True)
        self._reader.start()

    def rows(self, n: int) -> list[dict]:
        got = [self.proc.stdout.readline() for _ in range(n)]
        assert all(got), f"up printed {sum(map(bool, got))} rows:\n{self.stderr()[-3000:]}"
        return [json.loads(line) for line in got]

    def finish(self, timeout_s: float) -> tuple[str, str]:
        """Its exit (bounded: a run that does not notice fails the test, it is not waited on for ever);
        the rest of its stdout, and its whole stderr."""
        out: list[str] = []
        drain = threading.Thread(target=lambda: out.append(self.proc.stdout.read()), daemon=True)
        drain.start()
        try:
            self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        drain.join(10)
        self._reader.join(10)
        return "".join(out), self.stderr()

    def stderr(self) -> str:
        return "".join(self.err)


def _one_line_redis_gone(err: str) -> None:
    assert "Traceback" not in err and "RedisGone" not in err and "producer failed" not in err, err[-3000:]


@pytest.mark.slow
def test_ctrl_c_while_your_redis_is_gone_is_one_line_and_keeps_the_summary(tmp_path):
    summary = tmp_path / "s.json"
    with EmbeddedRedis() as server:
        up = _Up([CLIP, "--summary", str(summary)], _env(MOODSTREAM_REDIS_URL=server.url))
        rows = up.rows(5)
        server.kill()  # and it stays gone
        # the run notices: its reader's warnings (a bounded wait; a run that never warns fails below)
        time.sleep(3)
        up.proc.send_signal(signal.SIGINT)
        out, err = up.finish(timeout_s=180)
    _one_line_redis_gone(err)
    assert up.proc.returncode == 130, (up.proc.returncode, err[-3000:])
    said = [line for line in err.splitlines() if "interrupted (Ctrl-C)" in line]
    assert said and "unreachable" in said[0], err[-3000:]
    got = json.loads(summary.read_text())
    printed = rows + [json.loads(line) for line in out.splitlines()]
    # what was answered is kept, and the summary says it is not the whole run
    assert got["videos"] and got["videos"][0]["frames"] >= 5, (got["videos"], len(printed))
    assert got["interrupted"] is True and "unreachable" in got["incomplete"], got
    assert "incomplete" in err and str(summary) in err, err[-3000:]


@pytest.mark.slow
def test_the_timeout_while_your_redis_is_gone_is_one_line(tmp_path):
    with EmbeddedRedis() as server:
        up = _Up([CLIP, "--timeout-s", "30"], _env(MOODSTREAM_REDIS_URL=server.url))
        up.rows(3)
        server.kill()
        out, err = up.finish(timeout_s=180)
    _one_line_redis_gone(err)
    assert up.proc.returncode == 1, (up.proc.returncode, err[-3000:])
    last = err.strip().splitlines()[-1]
    assert "unreachable" in last and "after 30s" in last, err[-3000:]


@pytest.mark.slow
def test_up_notices_its_embedded_redis_server_died(tmp_path):
    """A bounded wait of 120 s for its exit, where it waited out --timeout-s (3600 s): its producer had
    sent every frame (a producer still sending gave up after its own 60 s, "producer failed")."""
    summary = tmp_path / "s.json"
    up = _Up([CLIP, "--summary", str(summary)], _env(sending=False))
    try:
        up.rows(3)
        url = re.search(r"embedded redis-server at (\S+)", up.stderr()).group(1)
        port = url.rsplit(":", 1)[1].split("/")[0]
        server = [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_pid(int(p)) == up.proc.pid
                  and f"{port}" in _cmdline(int(p))]
        assert len(server) == 1, server
        os.kill(server[0], signal.SIGKILL)
    except BaseException:
        up.proc.kill()
        raise
    out, err = up.finish(timeout_s=120)
    _one_line_redis_gone(err)
    assert up.proc.returncode == 1, (up.proc.returncode, err[-3000:])
    last = err.strip().splitlines()[-1]
    assert "embedded redis-server" in last and ("exited" in last or "killed" in last), err[-3000:]
    got = json.loads(summary.read_text())  # what was answered, said to be incomplete
    assert got["videos"] and got["videos"][0]["frames"] >= 3 and got["incomplete"], got


@pytest.mark.slow
def test_the_results_reader_backs_off_as_the_others_do(caplog):
    """Reads that each end at their timeout while Redis is down: their waits grow to the cap, carried
    from one read to the next, and each try is one warning (it was 0.08 s again, and a warning, at
    every read: about 6.5 a second in `up`'s loop)."""
    import socket

    from moodstream.producer.results import ResultReader
    from moodstream.shared.settings import Settings

    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.from_env(env={}, redis_url=f"redis://127.0.0.1:{port}/0")
    reader = ResultReader(settings, stream="x:reply")
    caplog.set_level(logging.WARNING, logger="moodstream.shared.retry")
    try:
        for _ in range(12):  # as `up`'s loop reads: no wait of its own, its timeout bounds the retries
            assert list(reader.read(start="0", timeout_s=0.5)) == []
    finally:
        reader.close()
    waits = [float(m.group(1)) for r in caplog.records if (m := re.search(r"retrying in ([0-9.]+)s", r.getMessage()))]
    assert waits, caplog.text
    # 12 reads of 0.5 s: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s ... (each 80-100 %), not 60 tries of 0.1 s
    assert len(waits) <= 10, (len(waits), waits)
    assert max(waits) > 1.0 and waits == sorted(waits), waits


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


