"""`mkfifo p; moodstream produce p` with no writer yet, or `sleep 1000 | moodstream produce -` (a camera piped
in that has sent nothing): produce's first Ctrl-C or SIGTERM only set its stop flag, and the main thread
went back into the open (or read) that waits for the pipe, in C (Python retries a call a signal interrupted
where the handler raises nothing); only a second signal ended it. Now the first ends the wait: nothing of
that pipe was read, so nothing is lost; the count is said and the exit is 130 / 143, no traceback.
The writer's end stays open all along (closing it would free the wait and hide the defect)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.procs import REPO, clean_env
from tests.support.streamkit import queued_jobs

PIPE_WAITS = {"fifo": ("wait_for_partner",), "stdin": ("pipe_read", "anon_pipe_read")}  # the kernel's wchan


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return ""


def _waiting_in(pid: int, where: tuple[str, ...], timeout_s: float = 60) -> None:
    """Until the process's main thread sleeps in the kernel where ``where`` names (its wchan)."""
    deadline = time.monotonic() + timeout_s
    while (seen := _wchan(pid)) not in where:
        assert time.monotonic() < deadline, f"produce never waited in the pipe ({where}); last in {seen!r}"
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _wchan_shown():
    """/proc/PID/wchan names where a sleeping process waits ("0" where the kernel hides it): asked of a sleep."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while _wchan(proc.pid) in ("", "0") and time.monotonic() < deadline:
            time.sleep(0.05)
        if _wchan(proc.pid) in ("", "0"):
            pytest.skip("/proc/PID/wchan says nothing here: no way to tell that produce waits in the pipe")
    finally:
        proc.kill()
        proc.wait()


def _produce(redis_url: str, paths: list[str], stdin, log: Path) -> subprocess.Popen:
    env = clean_env(MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    with open(log, "wb") as err:  # (a file, not a pipe: communicate() would close stdin, its EOF freeing the read)
        return subprocess.Popen([sys.executable, "-m", "moodstream", "produce", *paths], cwd=REPO, env=env,
                                stdin=stdin, stdout=subprocess.DEVNULL, stderr=err)


def _stopped_once(proc: subprocess.Popen, sig: int, log: Path) -> tuple[int | None, str]:
    """The exit code after one ``sig`` (None: still running after a bounded wait, then killed), and stderr."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)  # bounded: the defect waited for a second signal forever
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        return None, log.read_text()
    return proc.returncode, log.read_text()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_one_stop_ends_produce_on_a_fifo_without_a_writer(redis_url, tmp_path, sig, code):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    proc = _produce(redis_url, [str(fifo)], subprocess.DEVNULL, tmp_path / "err.txt")
    try:
        _waiting_in(proc.pid, PIPE_WAITS["fifo"])
        got, err = _stopped_once(proc, sig, tmp_path / "err.txt")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert got == code, f"exit {got} after one signal (None: still waiting); stderr:\n{err[-2000:]}"
    assert "Traceback" not in err, err
    assert "produced 0 jobs" in err, err


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_one_stop_ends_produce_on_a_stdin_that_sent_nothing(redis_url, tmp_path, sig, code):
    proc = _produce(redis_url, ["-"], subprocess.PIPE, tmp_path / "err.txt")
    try:
        _waiting_in(proc.pid, PIPE_WAITS["stdin"])
        got, err = _stopped_once(proc, sig, tmp_path / "err.txt")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdin.close()  # (only now: its end would free the read)
    assert got == code, f"exit {got} after one signal (None: still waiting); stderr:\n{err[-2000:]}"
    assert "Traceback" not in err and "Fatal Python error" not in err, err
    assert "produced 0 jobs" in err, err


def test_the_frames_read_before_a_silent_fifo_are_all_sent(redis_url, client, keys, tmp_path):
    """`produce clip.mp4 p`: the clip's last frames are still being encoded (a few ahead of the one sent)
    when produce waits for p's writer; the stop ends the wait and they go, each once."""
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    clip = REPO / "tests" / "fixtures" / "clip_360p.mp4"  # 12 frames
    proc = _produce(redis_url, [str(clip), str(fifo)], subprocess.DEVNULL, tmp_path / "err.txt")
    try:
        _waiting_in(proc.pid, PIPE_WAITS["fifo"])
        got, err = _stopped_once(proc, signal.SIGINT, tmp_path / "err.txt")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert got == 130, err
    assert "produced 12 jobs" in err, err
    assert sorted(j.frame for j in queued_jobs(client, keys)) == list(range(12))
