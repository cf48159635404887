"""What a producer's drop counts (``FrameJob.dropped_before``) do where a program or a run does what the
first tests did not: sources interleaved through the Python API (two cameras), a frame held to say the
drops that every worker would refuse, a file named twice. A real producer on a real redis-server; the
jobs are read as a worker reads them (the wire's decode of what was pushed)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.support.streamkit import settings_for, tiny_jpeg

from moodstream.producer.client import HELD_KEPT, SHED_CHECK_S, Producer
from moodstream.shared.transport import ensure_group
from moodstream.shared.wire import decode_frame

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "hamilton_clip.mp4"


def _recording(producer: Producer) -> list:
    """The jobs ``producer`` pushes, as a worker decodes them."""
    jobs: list = []
    real_push = producer._push
    producer._push = lambda payload: (jobs.append(decode_frame(payload)), real_push(payload))
    return jobs


def test_interleaved_sources_each_say_their_drops_when_they_end(redis_url, client, keys):
    """Two cameras submitted in turn, both dropping: the frame held for each source's end is its own (one
    frame was held for all sources: ending A sent nothing, A's 29 drops were never said, 29 of 58)."""
    settings = settings_for(redis_url, lag_limit=20, backpressure="drop")
    ensure_group(client, keys)
    producer = Producer(settings, notice=lambda m: None)
    jobs = _recording(producer)
    for i in range(80):
        producer.submit_image(tiny_jpeg(i), source=("A", "B")[i % 2], frame=i // 2)
    assert producer.stats.dropped > 40
    ended = [producer.end_source("A"), producer.end_source("B")]
    assert [(r.source, r.frame) for r in ended] == [("A", 39), ("B", 39)]
    said = {s: sum(j.dropped_before for j in jobs if j.source == s) for s in "AB"}
    assert said["A"] + said["B"] == producer.stats.dropped and said["A"] > 0 and said["B"] > 0


def test_a_count_that_cannot_be_said_is_not_given_to_the_source_s_next_run(redis_url, client, keys):
    """More sources dropping at once than frames are held for: an ended source whose frame was let go
    cannot say its drops, but a later run of that name (frame numbers from 0) did carry them as its own
    (a new run's summary counted frames dropped in the run before it)."""
    settings = settings_for(redis_url, lag_limit=5, backpressure="drop")
    ensure_group(client, keys)
    notices: list[str] = []
    producer = Producer(settings, notice=notices.append)
    names = [f"cam{k}" for k in range(HELD_KEPT + 2)]
    for i in range(4 * len(names)):
        producer.submit_image(tiny_jpeg(i), source=names[i % len(names)], frame=i // len(names))
    assert producer.end_source("cam0") is None  # the oldest held frame was let go for the newest sources
    assert any("cam0" in n and "not said" in n for n in notices), notices
    client.delete(keys.intake)  # the backlog is down
    time.sleep(SHED_CHECK_S)  # while dropping, the backlog is checked SHED_CHECK_S apart: the next check is due
    jobs = _recording(producer)
    producer.submit_image(tiny_jpeg(1), source="cam0", frame=0)  # cam0 again, from its start
    assert jobs[0].dropped_before == 0


def test_a_held_frame_every_worker_would_refuse_does_not_end_the_produce(redis_url, client, keys, tmp_path):
    """Every frame over max_message_bytes and the backlog over lag_limit: the frames are dropped unencoded,
    the last one held; sent at its source's end it is too large. That raised out of produce, the next
    file never read; now it is that input's error, as a frame too large is where it is sent."""
    settings = settings_for(redis_url, lag_limit=1, backpressure="drop", max_message_bytes=64 * 1024)
    ensure_group(client, keys)
    for _ in range(5):
        client.rpush(keys.intake, b"x")  # another producer's backlog, no worker yet
    second = tmp_path / "second.mp4"
    shutil.copy(CLIP, second)
    notices: list[str] = []
    producer = Producer(settings, notice=notices.append)
    refs = list(producer.produce([str(CLIP), str(second)], max_frames=4))
    assert refs == [] and producer.stats.sent == 0
    assert [reason for _, reason in producer.stats.failed_inputs] == ["too_large", "too_large"]
    assert any("second.mp4" in n for n in notices), notices


def test_a_file_named_twice_is_two_runs_each_saying_its_own_drops(redis_url, client, keys):
    """`produce clip.mp4 clip.mp4`: one source name, frame numbers from 0 again. The first pass's held
    last frame was sent only as the second pass's first one was not (its drops said by the second run)."""
    settings = settings_for(redis_url, lag_limit=3, backpressure="drop")
    ensure_group(client, keys)
    producer = Producer(settings, notice=lambda m: None)
    jobs = _recording(producer)
    list(producer.produce([str(CLIP), str(CLIP)], max_frames=12))
    frames = [j.frame for j in jobs]
    assert frames.count(11) == 2 and frames[-1] == 11, frames  # each pass ends with its last frame
    end = frames.index(11) + 1
    first, second = jobs[:end], jobs[end:]
    assert sum(j.dropped_before for j in first) == 12 - len(first)
    assert sum(j.dropped_before for j in second) == 12 - len(second)
    assert producer.stats.dropped == 24 - len(jobs)


def test_an_expander_run_ending_early_with_redis_gone_tries_its_held_frame_once(redis_url, client, keys, caplog):
    """A stopped or failed expander run sends its source's held frame, as the normal end does. Redis may
    be why it failed: one try, no backoff (without it, the producer waits out `retry_for_s`, a minute,
    in a shutdown), the unsaid drops named in the log and still counted (the job's meta saves them)."""
    import logging
    from types import SimpleNamespace

    from moodstream.producer.rq_jobs import _end_early
    from moodstream.shared.transport import connect

    settings = settings_for(redis_url, lag_limit=5, backpressure="drop")
    ensure_group(client, keys)
    producer = Producer(settings, notice=lambda m: None, reached=True)
    for i in range(30):
        producer.submit_image(tiny_jpeg(i), source="cam", frame=i)
    dropped = producer.stats.dropped
    assert dropped > 20 and producer.unsaid("cam") == dropped
    producer.client = connect("redis://127.0.0.1:1/0")  # nothing listens there: Redis gone
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="moodstream.producer.rq_jobs"):
        _end_early(SimpleNamespace(id="j1"), producer, "cam")
    assert time.monotonic() - t0 < 10
    assert producer.stats.dropped == dropped and producer.unsaid("cam") == dropped  # still held, still counted
    said = [r.getMessage() for r in caplog.records if r.name == "moodstream.producer.rq_jobs"]
    assert any(f"the last {dropped} dropped frames are not said" in m for m in said), said
    producer.client = client  # Redis back: the next try sends it, saying the others
    assert producer.end_source("cam").frame == 29 and producer.unsaid("cam") == 0
