"""Issue 22 item 1: memory amplification at decode, under an RSS limit as a container
has one. A watchdog SIGKILLs the real worker process when its RSS passes the limit
(as the OOM killer would) and a supervisor restarts it, under the same name or a new
one. The exact message of the issue, ``"options": {"a": [{} x 4Mi]}`` (4 MiB that
decoded to +300 MiB), must end as a dead letter after at most ``max_deliveries``
deaths, and the healthy frames around it must be served.

Failed before: 8 of 8 restarts died, no dead letter, 0 of 12 healthy frames served."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from tests.support.corpus import options_bomb
from tests.support.procs import measure, shut_down, spawn_double, wait_until
from tests.support.streamkit import all_results, dead_letters, settings_for, tiny_jpeg

from moodstream.producer.client import Producer
from moodstream.shared.keys import Keys
from moodstream.shared.wire import FIELD

pytestmark = pytest.mark.slow
KEYS = Keys("t")
HEADROOM_MIB = 200  # the limit: the warm worker's RSS plus this (the bomb alone needed +300 MiB)
MAX_DELIVERIES = 3


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


class RssWatchdog:
    """SIGKILLs the watched process when its RSS passes ``limit_mib`` (a container's
    memory limit and its OOM killer), polling every few milliseconds."""

    def __init__(self, limit_mib: float):
        self.limit_mib = limit_mib
        self.pid: int | None = None
        self.kills = 0
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.003):
            pid = self.pid
            if pid is None:
                continue
            rss = rss_mib(pid)
            self.peak_mib = max(self.peak_mib, min(rss, self.limit_mib))
            if rss > self.limit_mib:
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass
                self.pid = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.parametrize("naming", ["same-name", "new-names"])
def test_a_memory_bomb_is_dead_lettered_under_an_rss_limit(redis_url, client, naming):
    settings = settings_for(redis_url, max_deliveries=MAX_DELIVERIES, batch_max=4, reclaim_idle_ms=1000)
    kw = {"batch_max": 4, "max_deliveries": MAX_DELIVERIES, "reclaim_idle_ms": 1000}
    producer = Producer(settings)
    warm = producer.submit_image(tiny_jpeg(0), source="warm", frame=0).job_id
    proc = spawn_double(redis_url, "w-mem", **kw)
    watchdog = None
    restarts, names = 0, ["w-mem"]
    try:
        wait_until(lambda: any(r.job_id == warm for r in all_results(client, KEYS)), 120, "the warm-up frame")
        baseline = rss_mib(proc.pid)
        watchdog = RssWatchdog(baseline + HEADROOM_MIB)
        watchdog.pid = proc.pid
        bomb_id = client.xadd(KEYS.frames, {FIELD: options_bomb(4 * 1024 * 1024, job_id="bomb")}).decode()
        healthy = [producer.submit_image(tiny_jpeg(i), source="healthy", frame=i).job_id for i in range(1, 13)]

        def done() -> bool:
            nonlocal proc, restarts
            if proc.poll() is not None:  # the supervisor: restart it, as k8s restarts a container
                restarts += 1
                assert restarts <= 8, f"{restarts} restarts and the bomb is still not dead-lettered"
                names.append("w-mem" if naming == "same-name" else f"w-mem-{restarts}")
                proc = spawn_double(redis_url, names[-1], **kw)
                watchdog.pid = proc.pid
            ok = {r.job_id for r in all_results(client, KEYS) if r.ok}
            dead = {d["entry_id"].decode() for d in dead_letters(client, KEYS)}
            return set(healthy) <= ok and bomb_id in dead

        wait_until(done, 300, "the bomb dead-lettered and every healthy frame served", poll_s=0.1)
        served = len(set(healthy) & {r.job_id for r in all_results(client, KEYS) if r.ok})
        reason = next(d["reason"].decode() for d in dead_letters(client, KEYS) if d["entry_id"].decode() == bomb_id)
        assert restarts <= MAX_DELIVERIES
        assert served == len(healthy)
        peak = watchdog.peak_mib
    finally:
        if watchdog is not None:
            watchdog.close()
        shut_down(proc, timeout_s=30)
    measure(f"memory_bomb_rss_limit_{naming}", message_mib=4, limit_mib=round(baseline + HEADROOM_MIB),
            baseline_rss_mib=round(baseline), peak_rss_mib=round(peak), restarts=restarts,
            oom_kills=watchdog.kills, dead_letter_reason=reason, healthy_served=f"{served}/{len(healthy)}")
