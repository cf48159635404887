"""The metrics contract (issue 16): a running worker with metrics_port set serves Prometheus
text whose moodstream_frames_total sums to the frames it finished, after real frames went
through a real Redis; its health endpoints answer 200."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families
from tests.support.streamkit import big_png, dead_letters, pending_count, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.wire import FIELD


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _by_label(families: dict, sample: str, label: str) -> dict[str, float]:
    fam = families[sample.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")]
    return {s.labels[label]: s.value for s in fam.samples if s.name == sample}


def test_scrape_adds_up_to_the_frames_sent(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url, metrics_port=0, metrics_host="127.0.0.1", max_pixels=100 * 100, batch_max=4)
    producer = Producer(settings)
    good = 14
    for i in range(good):
        producer.submit_image(tiny_jpeg(i), source="scrape", frame=i)
    # poison entries (see test_poison.py): each ends as a dead letter with its reason
    for payload in (b"not msgpack \xc1", b""):
        client.xadd(keys.frames, {FIELD: payload})
    client.xadd(keys.frames, {b"other": b"1"})  # no msg field
    producer.submit_image(big_png(), source="scrape", frame=99)  # 40,000 px > max_pixels (a JPEG is read smaller)
    poison = Counter({"not_msgpack": 2, "missing_field": 1, "too_large": 1})
    sent = good + sum(poison.values())

    w = start_worker(settings, checkpoint, "w-metrics")
    try:
        server = wait_for(lambda: getattr(w.worker, "metrics_server", None), 30,
                          what="moodstream.worker.metrics_server (the Worker starts a MetricsServer when metrics_port is set)")
        wait_for(lambda: pending_count(client, keys) == 0 and client.xlen(keys.results) >= good + 1
                 and client.xlen(keys.dead) >= sum(poison.values()), 60, what="every entry answered")
        wait_for(lambda: w.worker.served == sent, 10, what="the worker to count every entry")
        status, text = _get(server.port, "/metrics")
        batches = w.worker.batches
        health, ready = _get(server.port, "/healthz"), _get(server.port, "/readyz")
    finally:
        w.stop()
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}

    frames = _by_label(fams, "moodstream_frames_total", "outcome")
    assert sum(frames.values()) == sent == w.worker.served  # the contract
    assert frames["ok"] == good
    assert {k: v for k, v in frames.items() if k != "ok" and v} == dict(poison)
    dead = _by_label(fams, "moodstream_dead_letters_total", "reason")
    assert {k: v for k, v in dead.items() if v} == dict(poison)
    assert Counter(d["reason"].decode() for d in dead_letters(client, keys)) == poison

    (faces,) = [s.value for s in fams["moodstream_faces"].samples if s.name == "moodstream_faces_total"]
    assert faces == good  # the fixed test-double detector finds one face per good frame
    batch = {s.name: s.value for s in fams["moodstream_batch_size"].samples if not s.labels.get("le")}
    assert batch["moodstream_batch_size_count"] == batches and batch["moodstream_batch_size_sum"] == sent
    stages = _by_label(fams, "moodstream_stage_seconds_count", "stage")
    assert all(stages.get(s, 0) > 0 for s in ("queue_wait", "decode", "detect", "classify", "end_to_end")), stages
    (info,) = fams["moodstream_worker_info"].samples
    assert info.labels["model_version"] == checkpoint.version and info.labels["worker"] == "w-metrics"
    assert "redis://" not in text
    assert health[0] == 200, health
    assert ready[0] == 200, ready
