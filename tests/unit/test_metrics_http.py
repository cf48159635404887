"""moodstream.worker.metrics: the figures, their Prometheus text, and the health endpoints over real HTTP (127.0.0.1, port 0)."""

from __future__ import annotations

import logging
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from moodstream.shared.errors import ConfigError
from moodstream.worker.metrics import STAGES, MetricsServer, WorkerMetrics, format_figures, scrub

SECRET = "hunter2"
URL = f"redis://admin:{SECRET}@db.internal:6379/0"


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:PORT/PATH, 5xx included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label items): value} from Prometheus text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture
def served():
    m = WorkerMetrics()
    with MetricsServer(m, "127.0.0.1", 0, liveness_timeout_s=0.3) as server:
        yield m, server


def test_counts_reach_the_scrape(served):
    m, server = served
    m.set_info(device="cpu", backend="torch", model_version="cpu12+ft6-2026-11-28", worker="host-12")
    for size in (8, 8, 3):
        m.batch(size)
    m.batch_done()
    for outcome in ["ok"] * 17 + ["too_large", "unreadable"]:
        m.frame_done(outcome)
    m.dead_lettered("too_large")
    m.dead_lettered("unreadable")
    m.dead_lettered("trimmed", n=3)
    m.faces(21)
    m.reclaimed(2)
    m.stage("decode", 0.004)
    m.stage("end_to_end", 1.7)
    m.loop_tick()
    status, ctype, text = get(server.port, "/metrics")
    assert status == 200 and ctype == CONTENT_TYPE_LATEST
    s = samples(text)
    frames = {dict(k[1])["outcome"]: v for k, v in s.items() if k[0] == "moodstream_frames_total"}
    assert frames == {"ok": 17, "too_large": 1, "unreadable": 1} and sum(frames.values()) == 19
    dead = {dict(k[1])["reason"]: v for k, v in s.items() if k[0] == "moodstream_dead_letters_total"}
    assert dead == {"too_large": 1, "unreadable": 1, "trimmed": 3}
    assert s[("moodstream_faces_total", ())] == 21
    assert s[("moodstream_reclaimed_total", ())] == 2
    assert s[("moodstream_batch_size_count", ())] == 3 and s[("moodstream_batch_size_sum", ())] == 19
    assert s[("moodstream_batch_size_bucket", (("le", "4.0"),))] == 1
    assert s[("moodstream_batch_size_bucket", (("le", "8.0"),))] == 3
    assert s[("moodstream_batch_in_progress", ())] == 0
    assert s[("moodstream_stage_seconds_count", (("stage", "decode"),))] == 1
    assert s[("moodstream_stage_seconds_bucket", (("le", "2.5"), ("stage", "end_to_end")))] == 1
    assert s[("moodstream_stage_seconds_bucket", (("le", "1.0"), ("stage", "end_to_end")))] == 0
    assert s[("moodstream_stage_seconds_count", (("stage", "queue_wait"),))] == 0  # exported before use
    info = [k for k in s if k[0] == "moodstream_worker_info"]
    assert info == [("moodstream_worker_info", (("backend", "torch"), ("device", "cpu"),
                                                 ("model_version", "cpu12+ft6-2026-11-28"), ("worker", "host-12")))]
    assert abs(s[("moodstream_last_loop_timestamp_seconds", ())] - time.time()) < 60


def test_two_workers_in_one_process_do_not_share_figures():
    a, b = WorkerMetrics(), WorkerMetrics()
    a.frame_done("ok")
    a.batch(4)
    assert a.registry.get_sample_value("moodstream_frames_total", {"outcome": "ok"}) == 1
    assert b.registry.get_sample_value("moodstream_frames_total", {"outcome": "ok"}) == 0
    assert b.registry.get_sample_value("moodstream_batch_size_count") == 0


def test_batch_in_progress_gauge():
    m = WorkerMetrics()
    m.batch(5)
    assert m.registry.get_sample_value("moodstream_batch_in_progress") == 5
    m.batch_done()
    assert m.registry.get_sample_value("moodstream_batch_in_progress") == 0


def test_healthz_follows_the_loop(served):
    m, server = served
    m.loop_tick()
    status, _, body = get(server.port, "/healthz")
    assert status == 200 and "loop turned" in body
    time.sleep(0.45)  # past liveness_timeout_s=0.3 without a tick
    status, _, body = get(server.port, "/healthz")
    assert status == 503 and "has not turned" in body
    m.loop_tick()
    assert get(server.port, "/healthz")[0] == 200


def test_readyz_needs_the_model_and_redis(served):
    m, server = served
    status, _, body = get(server.port, "/readyz")
    assert status == 503 and "starting" in body
    m.set_ready(True)
    assert get(server.port, "/readyz")[:1] == (200,)
    assert m.registry.get_sample_value("moodstream_ready") == 1
    m.redis_check(False, f"Error 111 connecting to {URL}. Connection refused.")
    status, _, body = get(server.port, "/readyz")
    assert status == 503 and "redis unreachable" in body and "Connection refused" in body
    assert SECRET not in body and "db.internal" not in body
    assert m.registry.get_sample_value("moodstream_ready") == 0
    m.redis_check(True)
    assert get(server.port, "/readyz")[0] == 200
    m.set_ready(False, "shutting down")
    status, _, body = get(server.port, "/readyz")
    assert status == 503 and "shutting down" in body


def test_a_password_never_reaches_a_label_or_a_body(served, caplog):
    m, server = served
    caplog.set_level(logging.DEBUG, logger="moodstream.worker.metrics")
    m.frame_done(URL)  # a caller bug: a URL where a reason belongs
    m.dead_lettered(f"failed on {URL}")
    for bad in ({"worker": URL}, {"device": f"admin:{SECRET}@db"}, {"backend": "x\n" + SECRET}):
        with pytest.raises(ValueError, match="refused"):
            m.set_info(**bad)
    m.stage(URL, 0.1)  # not a stage: not recorded, and the worker goes on
    m.set_ready(False, f"cannot reach {URL}")
    _, _, text = get(server.port, "/metrics")
    _, _, ready = get(server.port, "/readyz")
    assert SECRET not in text and SECRET not in ready and SECRET not in caplog.text
    s = samples(text)
    assert s[("moodstream_frames_total", (("outcome", "other"),))] == 1
    assert s[("moodstream_dead_letters_total", (("reason", "other"),))] == 1
    assert {dict(k[1]).get("stage") for k in s if k[0] == "moodstream_stage_seconds_count"} == set(STAGES)


def test_scrub():
    assert scrub(f"connect {URL} failed") == "connect <url> failed"
    assert SECRET not in scrub(f"user admin:{SECRET}@db.internal:6379 refused")
    assert scrub("Timeout reading from socket") == "Timeout reading from socket"


def test_unknown_path_is_404(served):
    _, server = served
    assert get(server.port, "/")[0] == 404


def test_busy_port_is_a_config_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ConfigError, match="cannot listen"):
            MetricsServer(WorkerMetrics(), "127.0.0.1", s.getsockname()[1])


def test_close_stops_serving():
    server = MetricsServer(WorkerMetrics(), "127.0.0.1", 0)
    port = server.port
    assert get(port, "/healthz")[0] == 200
    server.close()
    server.close()  # twice is harmless
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_interval_figures_are_deltas():
    m = WorkerMetrics()
    for _ in range(2):
        m.batch(4)
    for _ in range(8):
        m.frame_done("ok")
    m.stage("queue_wait", 0.1)
    m.stage("queue_wait", 0.3)
    m.dead_lettered("too_large")
    f = m.interval_figures()
    assert f["frames"] == 8 and f["batches"] == 2 and f["mean_batch"] == 4.0
    assert f["queue_wait_ms_mean"] == 200.0 and f["dead_lettered"] == 1 and f["frames_per_s"] > 0
    assert "frames/s" in format_figures(f) and "mean 4.0" in format_figures(f)
    again = m.interval_figures()
    assert again["frames"] == 0 and again["batches"] == 0 and again["mean_batch"] == 0.0


def test_metrics_settings_from_env():
    from moodstream.shared.settings import Settings

    s = Settings.from_env({"MOODSTREAM_METRICS_PORT": "9100", "MOODSTREAM_STATS_INTERVAL_S": "0"})
    assert s.metrics_port == 9100 and s.stats_interval_s == 0.0 and s.metrics_host == "127.0.0.1"
    assert Settings.from_env({}).metrics_port is None  # off unless set
    for env, match in [({"MOODSTREAM_METRICS_PORT": "70000"}, "metrics_port"),
                       ({"MOODSTREAM_METRICS_PORT": "nine"}, "MOODSTREAM_METRICS_PORT"),
                       ({"MOODSTREAM_STATS_INTERVAL_S": "-1"}, "stats_interval_s")]:
        with pytest.raises(ConfigError, match=match):
            Settings.from_env(env)
