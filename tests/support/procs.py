"""Worker processes for the chaos suite, their memory, and the measurements report.

``MOODSTREAM_CHAOS_REPORT=PATH pytest tests/chaos`` writes what the suite
measured (peak RSS, stop times, counts) as JSON to PATH; docs/results/chaos_cpu.json
is such a run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MEASURED: dict[str, dict] = {}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, **extra)
    return env


def spawn_double(url: str, name: str, **kw) -> subprocess.Popen:
    """tests/support/double_worker.py, run as ``python -m tests.support.double_worker``: the real Worker and classifier, a fixed-box detector."""
    return subprocess.Popen([sys.executable, "-m", "tests.support.double_worker",
                             json.dumps({"url": url, "name": name, **kw})],
                            cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def spawn_cli(*args: str, **env: str) -> subprocess.Popen:
    """A real `moodstream ...` process, configured by MOODSTREAM_* variables only."""
    return subprocess.Popen([sys.executable, "-c", "from moodstream.cli import main; main()", *args],
                            cwd=REPO, env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` (from /proc), None where it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def stop(proc: subprocess.Popen, timeout_s: float = 30) -> tuple[str, str]:
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=timeout_s)


def shut_down(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """A still-running worker as a supervisor stops it: SIGTERM (it finishes what it holds),
    then SIGKILL if it has not exited within ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop(proc)


def measure(name: str, **values) -> None:
    MEASURED[name] = values
    print(f"\n[chaos] {name} " + json.dumps(values, sort_keys=True))


def write_report() -> None:
    path = os.environ.get("MOODSTREAM_CHAOS_REPORT")
    if path and MEASURED:
        Path(path).write_text(json.dumps({
            "command": "MOODSTREAM_CHAOS_REPORT=docs/results/chaos_cpu.json .venv/bin/python -m pytest -q tests/chaos",
            "machine": f"{os.cpu_count()} CPUs, no GPU", "at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "measured": MEASURED}, indent=1) + "\n")


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.05):
    """streamkit.wait_for, with the argument order the chaos tests read best in."""
    from tests.support.streamkit import wait_for

    return wait_for(predicate, timeout_s, poll_s=poll_s, what=what)
