"""Workers die: SIGKILL mid-batch loses nothing (reclaim), SIGTERM finishes the batch in hand."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import redis
from tests.support.streamkit import all_results, report, result_counts, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from tests.support.procs import spawn_double
from moodstream.shared.wire import FIELD, decode_frame

HERE = Path(__file__).resolve().parent


def spawn_double_worker(url: str, name: str, **kw) -> subprocess.Popen:
    return spawn_double(url, name, **kw)


def pending_of(client, keys, consumer: str) -> list[str]:
    try:
        rows = client.xpending_range(keys.frames, keys.group, "-", "+", 1000, consumername=consumer)
    except redis.ResponseError:  # NOGROUP: no worker has started yet
        return []
    return [r["message_id"].decode() for r in rows]


def job_ids_of(client, keys, entry_ids: list[str]) -> set[str]:
    return {decode_frame(client.xrange(keys.frames, eid, eid)[0][1][FIELD]).job_id for eid in entry_ids}


def test_sigkill_mid_batch_is_reclaimed(redis_url, client, keys, checkpoint):
    common = {"batch_max": 8, "batch_wait_ms": 10, "reclaim_idle_ms": 1500}
    settings = settings_for(redis_url, **common)
    victim = spawn_double_worker(redis_url, "victim", delay_s=0.25, **common)
    survivor = None
    try:
        producer = Producer(settings)
        sent = [producer.submit_image(tiny_jpeg(i), source="kill", frame=i).job_id for i in range(200)]
        # the victim has published at least one batch and holds the next one
        wait_for(lambda: client.xlen(keys.results) >= 8 and pending_of(client, keys, "victim"), 60,
                 poll_s=0.01, what="the victim to be mid-batch")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed = pending_of(client, keys, "victim")
        killed_jobs = job_ids_of(client, keys, killed)
        served_by_victim = client.xlen(keys.results)
        assert killed, "the victim held no entries when killed"
        survivor = start_worker(settings, checkpoint, "survivor")
        wait_for(lambda: len({r.job_id for r in all_results(client, keys)}) >= 200, 90, what="every job answered")
        survivor.stop()
    finally:
        if victim.poll() is None:
            victim.kill()
    results = all_results(client, keys)
    counts = result_counts(results, sent)
    per_job = Counter(r.job_id for r in results)
    duplicated = {j for j, n in per_job.items() if n > 1}
    report("sigkill_mid_batch", **counts, killed_in_hand=len(killed), served_by_victim=served_by_victim,
           reclaimed=survivor.worker.reclaimed)
    assert counts["lost"] == 0 and counts["unexpected"] == 0 and counts["errors"] == 0
    assert duplicated <= killed_jobs  # duplicates only possible for the killed batch
    assert survivor.worker.reclaimed >= len(killed)
    assert client.xpending(keys.frames, keys.group)["pending"] == 0
    by_job = {r.job_id: r for r in results}
    assert all(by_job[j].worker == "survivor" for j in killed_jobs)  # the killed batch was redone elsewhere


def test_sigterm_finishes_the_batch_in_hand(redis_url, client, keys):
    common = {"batch_max": 8, "batch_wait_ms": 10}
    proc = spawn_double_worker(redis_url, "graceful", delay_s=0.5, **common)
    try:
        producer = Producer(settings_for(redis_url, **common))
        for i in range(40):
            producer.submit_image(tiny_jpeg(i), source="term", frame=i)
        wait_for(lambda: pending_of(client, keys, "graceful"), 60, poll_s=0.01, what="a batch in hand")
        in_hand = set(pending_of(client, keys, "graceful"))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert pending_of(client, keys, "graceful") == []  # everything it held was answered and acked
    served = json.loads(out.strip().splitlines()[-1])["served"]
    assert client.xlen(keys.results) == served >= len(in_hand) > 0
    assert client.xlen(keys.results) < 40  # it stopped early, leaving the rest for other workers
    assert not client.exists(keys.heartbeat("graceful"))
