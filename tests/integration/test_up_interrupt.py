"""Ctrl-C in `moodstream up --summary` (acceptance run): it printed click's bare "Aborted!", exited 1 and
wrote no summary for the frames already answered. Like `analyze`, it must say what it did, keep the
per-person summary of what was answered, and exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.procs import parent_pid

REPO = Path(__file__).resolve().parents[2]


def test_ctrl_c_keeps_the_summary_of_what_was_answered(tmp_path):
    clip = REPO / "samples" / "hamilton_clip.mp4"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu")
    summary = tmp_path / "out" / "s.json"
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "up", str(clip), "--no-dashboard", "--format",
                             "jsonl", "--summary", str(summary)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        answered = [proc.stdout.readline() for _ in range(5)]  # some frames answered, not all 60
        assert all(answered), "up printed no results"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Aborted!" not in err, err[-3000:]
    assert "interrupted (Ctrl-C)" in err and str(summary) in err, err[-3000:]
    got = json.loads(summary.read_text())
    assert got["tracks"] and got["tracks"][0]["frames"] >= 5  # the answered frames' people, kept
    n = len(answered) + len(out.splitlines())
    assert n < 60 or got["tracks"][0]["frames"] <= n


def test_up_with_a_redis_it_cannot_reach_fails_in_one_line():
    """With MOODSTREAM_REDIS_URL naming a port nothing listens on, `up` retried for a minute, printed
    the producer's traceback and exited 0 ("0 results for 0 frames": the loop's end condition held)."""
    import socket
    import time

    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu", MOODSTREAM_REDIS_URL=f"redis://127.0.0.1:{port}/0",
               MOODSTREAM_REDIS_WAIT_S="1")  # not the default 10 s: the wait is not what is tested here
    start = time.monotonic()
    ran = subprocess.run([sys.executable, "-m", "moodstream", "up", str(REPO / "samples" / "street.jpg"),
                          "--no-dashboard"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1, (ran.returncode, ran.stderr[-3000:])
    assert "Traceback" not in ran.stderr and "Redis" in ran.stderr, ran.stderr[-3000:]
    assert time.monotonic() - start < 40


def test_a_dashboard_that_cannot_start_is_one_line():
    """Its reason was buried under "RuntimeError: cannot join thread before it is started": the
    clean-up joined threads that a failure before their start had left unstarted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu", MOODSTREAM_DASHBOARD_HOST="0.0.0.0")
    ran = subprocess.run([sys.executable, "-m", "moodstream", "up", str(REPO / "samples" / "street.jpg"), "--dashboard"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1 and "set a token" in ran.stderr, ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr and "cannot join" not in ran.stderr, ran.stderr[-3000:]


def test_sigterm_stops_up_as_ctrl_c_does_and_leaves_no_redis_behind(tmp_path):
    """SIGTERM (`kill`, supervisord, `docker stop`) ended `up` at once (exit 143 from the signal) and
    left its embedded redis-server running, re-parented to init, with its temporary folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu")
    summary = tmp_path / "s.json"
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "up", str(REPO / "samples" / "hamilton_clip.mp4"),
                             "--no-dashboard", "--format", "jsonl", "--summary", str(summary)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert all(proc.stdout.readline() for _ in range(3)), "up printed no results"
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                   text=True).stdout.split()]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    assert json.loads(summary.read_text())["interrupted"] is True
    left = [pid for pid in children if os.path.exists(f"/proc/{pid}") and
            "redis" in open(f"/proc/{pid}/cmdline").read()]
    assert not left, f"redis-server left running: {left}"


def test_stay_open_stops_the_worker_as_it_says_and_ctrl_c_is_quiet():
    """`up --stay-open` said "the worker and track stage stop" once every frame was answered, but its
    worker went on serving (its heartbeat beating) until the page closed; a terminal's Ctrl-C, which
    reaches the embedded redis-server too, then printed the worker's "Redis unreachable" warnings."""
    import time

    import redis

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "up", str(REPO / "samples" / "street.jpg"),
                             "--stay-open", "--dashboard-port", "0"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, as a terminal's foreground job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        url = _until_it_stays_open(proc, lines)
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while client.keys("moodstream:heartbeat:*") and time.monotonic() < deadline:
            time.sleep(0.2)
        beating = client.keys("moodstream:heartbeat:*")
        client.close()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole group, the embedded redis-server included
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = "".join(lines) + err
    assert not beating, f"the worker still serves while the page stays open: {beating}"
    assert proc.returncode == 0, (proc.returncode, err[-3000:])
    assert "Traceback" not in err and "unreachable" not in err, err[-3000:]


def test_sigterm_while_the_page_stays_open_leaves_no_redis_behind():
    """`up --stay-open` put the default handlers back before waiting on the page: SIGTERM (`kill`,
    `docker stop`) then ended it at once and left its embedded redis-server running, re-parented to init."""

    import redis

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "up", str(REPO / "samples" / "street.jpg"),
                             "--stay-open", "--dashboard-port", "0"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        url = _until_it_stays_open(proc, lines)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        left = client.ping()
    except redis.ConnectionError:
        left = False
    if left:
        try:
            client.shutdown(nosave=True)  # the test's own leftover, not the next test's
        except redis.RedisError:
            pass
    assert not left, f"its redis-server still answers at {url}"
    assert "Traceback" not in err, err[-3000:]


def _until_it_stays_open(proc: subprocess.Popen, lines: list[str]) -> str:
    """``up --stay-open``'s stderr read into ``lines`` until it says the page stays open; its Redis URL."""
    import re

    while not any("stays open" in line for line in lines):
        line = proc.stderr.readline()
        assert line, "".join(lines)[-3000:]
        lines.append(line)
    return re.search(r"embedded redis-server at (\S+)", "".join(lines)).group(1)


def test_a_signal_while_up_starts_exits_as_its_help_says_and_leaves_no_redis(tmp_path):
    """SIGTERM while `up` starts (its embedded redis-server up, the models loading): its help says 143
    on SIGTERM, and it was click's 'Aborted!' and exit 1, the code of a run that failed. The server goes
    with it (a process group of its own: only `up` can stop it)."""
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "up", str(REPO / "samples" / "hamilton_clip.mp4"),
                             "--no-dashboard"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # said once the server answers, before the models load
        assert "embedded redis-server at" in line, line
        server = [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_pid(int(p)) == proc.pid]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, (proc.returncode, err[-3000:])
    assert "Aborted!" not in err and "Traceback" not in err and "interrupted (SIGTERM)" in err, err[-3000:]
    time.sleep(0.2)
    assert server and not any(_running_redis(pid) for pid in server)  # (re-parented to init where left)


def _running_redis(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"redis-server" in f.read()
    except OSError:
        return False

