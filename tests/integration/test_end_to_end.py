"""The real thing, end to end through Redis, via the documented CLI contract:
``moodstream worker`` (MTCNN + the shipped emotion model) serves until SIGTERM,
``moodstream produce`` prints one JSON line per job, ``moodstream results
--from-start --count N --timeout-s T`` prints N results and exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from moodstream.shared.labels import LABELS

REPO = Path(__file__).resolve().parents[2]
FACES = [REPO / "samples" / "audience.jpg",
         REPO / "tests" / "fixtures" / "images" / "wider_1_Handshaking_Handshaking_1_158.jpg"]


CLI = [sys.executable, "-c", "from moodstream.cli import main; main()"]  # the `moodstream` entry point


def moodstream(*args: str, env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=REPO, env=env, capture_output=True, text=True, **kw)


@pytest.fixture
def env(redis_url) -> dict:
    return {**os.environ, "MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": "e2e", "OMP_NUM_THREADS": "1",
            "MOODSTREAM_DEVICE": "cpu"}


def test_real_pipeline_through_redis_cli_contract(env, redis_url):
    import redis

    worker = subprocess.Popen([*CLI, "worker", "--batch-max", "4",
                               "--consumer", "e2e-worker"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        produced = moodstream("produce", *map(str, FACES), env=env, timeout=60)
        assert produced.returncode == 0, produced.stderr
        jobs = [json.loads(line) for line in produced.stdout.splitlines()]
        assert [set(j) for j in jobs] == [{"job_id", "source", "frame"}] * len(FACES)
        assert [j["source"] for j in jobs] == list(map(str, FACES))

        got = moodstream("results", "--from-start", "--count", str(len(FACES)), "--timeout-s", "150",
                         env=env, timeout=180)
        assert got.returncode == 0, got.stderr
        results = [json.loads(line) for line in got.stdout.splitlines()]
        assert {r["job_id"] for r in results} == {j["job_id"] for j in jobs}
        for r in results:
            assert r["error"] is None and r["faces"], r  # each of these images shows at least one face
            assert r["worker"] == "e2e-worker" and r["model_version"]
            assert set(r["timings_ms"]) >= {"queue_wait", "decode", "detect", "classify"}
            for face in r["faces"]:
                x1, y1, x2, y2 = face["box"]
                assert x2 > x1 and y2 > y1 and face["score"] >= 0.9 and len(face["landmarks"]) == 5
                assert face["emotion"] in LABELS and set(face["probabilities"]) == set(LABELS)
                assert abs(sum(face["probabilities"].values()) - 1) < 0.01

        # not enough results in time: non-zero exit
        short = moodstream("results", "--from-start", "--count", str(len(FACES) + 1), "--timeout-s", "1",
                           env=env, timeout=60)
        assert short.returncode != 0 and len(short.stdout.splitlines()) == len(FACES)

        client = redis.Redis.from_url(redis_url)
        assert client.exists("e2e:heartbeat:e2e-worker")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err[-3000:]
        assert not client.exists("e2e:heartbeat:e2e-worker")
    finally:
        if worker.poll() is None:
            worker.kill()


def test_up_with_embedded_redis(redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", MOODSTREAM_DEVICE="cpu")
    done = moodstream("up", str(FACES[0]), "--format", "jsonl", "--timeout-s", "120", env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embedded redis-server" in done.stderr
    (result,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["source"] == str(FACES[0]) and result["faces"] and result["error"] is None


def test_up_uses_the_configured_redis(env, redis_url):
    import redis

    done = moodstream("up", str(FACES[0]), "--detector", "haar", "--format", "table", "--timeout-s", "120",
                      env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MOODSTREAM_REDIS_URL" in done.stderr and "emotions" in done.stdout.splitlines()[0]
    client = redis.Redis.from_url(redis_url)
    assert client.xlen("e2e:results") == 1 and client.xlen("e2e:frames") == 1
    assert not list(client.scan_iter("e2e:reply:*"))  # up removes its own reply stream
