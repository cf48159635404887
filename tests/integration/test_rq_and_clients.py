"""rq coarse jobs, the results reader, and an authenticated Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from tests.support.streamkit import all_results, round_trip, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from moodstream.producer.results import FROM_NOW, FROM_START, ResultReader
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.wire import FIELD, decode_frame

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"
CLI = [sys.executable, "-c", "from moodstream.cli import main; main()"]


def test_rq_job_expands_a_video_into_frame_jobs(redis_url, client, keys):
    env = {**os.environ, "MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    out = subprocess.run([*CLI, "produce", "--rq", "--every", "10", str(CLIP)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()  # ONE job for the whole video
    job_info = json.loads(line)
    assert job_info["source"] == str(CLIP) and job_info["frame"] is None
    assert client.llen(keys.intake) == 0 and client.xlen(keys.frames) == 0  # nothing expanded yet
    # no pickle anywhere: the stored job is JSON
    json.loads(zlib.decompress(client.hget(f"rq:job:{job_info['job_id']}", "data")))

    out = subprocess.run([*CLI, "expander", "--burst", "--media-root", str(CLIP.parent)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr

    cap = cv2.VideoCapture(str(CLIP))
    n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    expected = (n_frames + 9) // 10
    jobs = [decode_frame(m) for m in client.lrange(keys.intake, 0, -1)]  # in order, for a worker's mover
    assert len(jobs) == expected
    assert [j.frame for j in jobs] == [10 * i for i in range(expected)]
    assert all(j.job_id.startswith(job_info["job_id"] + "-") and j.source == str(CLIP) for j in jobs)
    job = Job.fetch(job_info["job_id"], connection=client, serializer=JSONSerializer)
    assert job.return_value()["frames"] == expected


def test_results_reader_positions_and_filters(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url)
    producer = Producer(settings)
    w = start_worker(settings, checkpoint, "w-reader")
    try:
        first = [producer.submit_image(tiny_jpeg(i), source=f"cam{i % 2}", frame=i).job_id for i in range(6)]
        wait_for(lambda: client.xlen(keys.results) >= 6, 30, what="six results")
        reader = ResultReader(settings)
        everything = list(reader.read(start=FROM_START))  # no follow, no count: up to the end
        assert sorted(r.job_id for r in everything) == sorted(first)
        assert [r.job_id for r in reader.read(start=FROM_START, source="cam1")] == \
            [r.job_id for r in everything if r.source == "cam1"]
        after = list(reader.read(start=everything[2].id))
        assert [r.job_id for r in after] == [r.job_id for r in everything[3:]]
        # from now: only what arrives after the call
        gen = reader.read(start=FROM_NOW, count=2, timeout_s=30)
        late = [producer.submit_image(tiny_jpeg(50 + i), source="late").job_id for i in range(2)]
        assert sorted(r.job_id for r in gen) == sorted(late)
        # a timeout with too few results ends the read
        assert list(reader.read(start=FROM_NOW, count=1, timeout_s=0.3)) == []
    finally:
        w.stop()


def test_reply_to_stream_gets_its_own_copy(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url)
    mine = keys.reply("caller-1")
    producer = Producer(settings, reply_to=mine)
    w = start_worker(settings, checkpoint, "w-reply")
    try:
        job = producer.submit_image(tiny_jpeg(1), source="rpc")
        other = Producer(settings).submit_image(tiny_jpeg(2), source="other")
        wait_for(lambda: client.xlen(keys.results) >= 2, 30, what="two results")
    finally:
        w.stop()
    replies = list(ResultReader(settings, stream=mine).read(start=FROM_START))
    assert [r.job_id for r in replies] == [job.job_id]
    assert {r.job_id for r in all_results(client, keys)} == {job.job_id, other.job_id}


def test_password_protected_redis(checkpoint):
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("requirepass", "s3cret pass")
        url = f"redis://:s3cret%20pass@127.0.0.1:{server.port}/0"
        settings = settings_for(url)
        keys = Keys(settings.prefix)
        try:
            with pytest.raises(redis.AuthenticationError):
                redis.Redis.from_url(server.url).ping()
            sent, got = round_trip(settings, checkpoint, "auth")
            assert sorted(r.job_id for r in got) == sorted(sent)
            authed = redis.Redis.from_url(url)
            assert authed.xpending(keys.frames, keys.group)["pending"] == 0
        finally:
            admin.close()


def test_results_drops_duplicates_with_bounded_memory(redis_url, client, keys, monkeypatch):
    """`results --follow` kept every job id it ever printed, to drop a job's second answer: its
    memory grew for as long as it ran (17 MB more after 300k results). The ids of the last
    SEEN_JOBS results are kept: a duplicate comes within the reclaim window, not a day later."""
    import moodstream.producer.results as results_module
    from moodstream.shared.record import FrameResult
    from moodstream.shared.wire import encode_result

    monkeypatch.setattr(results_module, "SEEN_JOBS", 10)
    for i in range(50):
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=f"j{i}", source="s", frame=i, faces=[]))})
    client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id="j49", source="s", frame=49, faces=[]))})
    reader = ResultReader(settings_for(redis_url))
    got = [r.job_id for r in reader.read(start=FROM_START, unique=True)]
    assert got == [f"j{i}" for i in range(50)]  # the recent duplicate dropped
    assert len(reader.seen) <= 10
    reader.close()


def test_produce_rq_with_reply_to_is_a_usage_error(redis_url):
    """`produce --rq --reply-to mine` dropped --reply-to (exit 0), so `results --reply-to mine` waited
    for ever: the expander's jobs carry no reply stream."""
    from click.testing import CliRunner

    from moodstream.cli import cli

    ran = CliRunner().invoke(cli, ["produce", "--rq", "--reply-to", "mine", "samples/street.jpg", "--redis-url",
                                   redis_url, "--prefix", "t"])
    assert ran.exit_code == 2 and "--reply-to" in ran.output and "--rq" in ran.output, ran.output


def test_expander_burst_exits_1_naming_the_jobs_that_failed(redis_url, client, keys, tmp_path):
    """`produce --rq missing.mp4` then `expander --burst`: both exited 0, the failure only a
    WARNING in the expander's log (a batch run could not tell it went wrong)."""
    env = {**os.environ, "MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    out = subprocess.run([*CLI, "produce", "--rq", "missing.mp4"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    job_id = json.loads(out.stdout)["job_id"]
    out = subprocess.run([*CLI, "expander", "--burst", "--media-root", str(tmp_path)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert f"1 job failed: {job_id}" in out.stderr and "missing.mp4" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
