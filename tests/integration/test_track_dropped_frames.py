"""A run's dropped frames are said, not lost silently: under ``--backpressure drop`` a producer does not
send frames while the backlog is over ``lag_limit`` (a live camera must not fall behind). Only its own
counter and a notice knew: the run's summary had no word of them, so a reader of ``moodstream tracks``
saw a person split in two at the gap, or an episode cut short, with nothing to say why.

Now the first frame a producer sends of a source after dropping some carries ``dropped_before`` (how
many it dropped of that source since the frame it sent before); the worker copies it into the result,
and the track stage adds it to the run's ``dropped_frames``, which ``tracks``, ``up --summary`` and the
dashboard say (quiet at 0). A real producer, worker and track stage on a real redis-server."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner
from tests.support.streamkit import all_results, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import SHED_CHECK_S, Producer
from moodstream.shared.record import FrameJob
from moodstream.shared.table import missing_frames_note
from moodstream.shared.transport import ensure_group
from moodstream.shared.wire import FIELD, decode_frame, encode_frame
from moodstream.worker.tracking.stage import TrackStage

REPO = Path(__file__).resolve().parents[2]


def _summaries(client, keys) -> dict[str, dict]:
    return {s["source"]: s for s in (json.loads(f[FIELD]) for _, f in client.xrange(keys.summaries))}


def test_a_run_s_summary_says_the_frames_its_producer_dropped(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url, lag_limit=20, backpressure="drop")
    ensure_group(client, keys)
    producer = Producer(settings, notice=lambda m: None)
    frame = iter(range(1000))

    def send(n: int, source: str = "cam") -> list:
        refs = []
        for _ in range(n):
            i = next(frame)
            refs.append(producer.submit_image(tiny_jpeg(i % 7), source=source, frame=i, timestamp_s=i / 10))
        return refs

    first = send(60)  # no worker yet: the backlog passes lag_limit and the rest is dropped
    dropped = [r.frame for r in first if r.dropped]
    assert 30 < len(dropped) < 40 and dropped == list(range(dropped[0], 60))
    worker = start_worker(settings, checkpoint, "w1")
    try:
        sent = sum(not r.dropped for r in first)
        wait_for(lambda: client.xlen(keys.results) >= sent, 60, what="the first frames' results")
        second = send(10)  # the backlog is down: sent again, the first one saying what was dropped before it
        assert not any(r.dropped for r in second)
        wait_for(lambda: client.xlen(keys.results) >= sent + 10, 60, what="the last frames' results")
    finally:
        worker.stop()

    by_frame = {r.frame: r for r in all_results(client, keys)}
    assert by_frame[60].dropped_before == len(dropped)  # the worker copied it from the job
    assert by_frame[60].to_json()["dropped_before"] == len(dropped)
    assert all(r.dropped_before is None and "dropped_before" not in r.to_json() for f, r in by_frame.items()
               if f != 60)  # a result's keys are the ones they were where nothing was dropped

    stage = TrackStage(settings, name="tracker", reorder_wait_ms=300, block_ms=1, pictures=False)
    stage._ensure_group()
    for k in range(5):  # a step reads a page of results: the stage reads them all
        stage.step(now_s=100.0 + k)
    stage.flush()
    cam = _summaries(client, keys)["cam"]
    assert (cam["frames"], cam["dropped_frames"], cam["late_frames"]) == (sent + 10, len(dropped), 0)

    env = {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    from moodstream.worker.tracking.reader import tracks

    out = CliRunner().invoke(tracks, ["--from-start"], env=env)
    assert out.exit_code == 0, out.output
    said = f"{len(dropped)} frames dropped by the producer (backlog over lag_limit or stream_max_mb)"
    assert said in out.stdout, out.stdout
    as_json = CliRunner().invoke(tracks, ["--from-start", "--json"], env=env)
    assert json.loads(as_json.stdout.splitlines()[0])["dropped_frames"] == len(dropped)


def test_drops_are_counted_per_source_and_said_once(redis_url, client, keys):
    """Frames of two sources dropped in turn: each source's next frame carries its own count, and a
    count is sent once (the frame after it carries none)."""
    settings = settings_for(redis_url, lag_limit=20, backpressure="drop")
    ensure_group(client, keys)
    producer = Producer(settings, notice=lambda m: None)
    for i in range(40):
        producer.submit_image(tiny_jpeg(i), source=("a", "b")[i % 2], frame=i // 2)
    assert producer.stats.dropped > 10
    client.delete(keys.intake)  # a worker took everything: the backlog is down
    time.sleep(SHED_CHECK_S)  # while dropping, the backlog is checked SHED_CHECK_S apart: the next check is due
    jobs = []
    real_push = producer._push
    producer._push = lambda payload: (jobs.append(decode_frame(payload)), real_push(payload))
    for i in range(40, 44):
        producer.submit_image(tiny_jpeg(i), source=("a", "b")[i % 2], frame=i // 2)
    got = [(j.source, j.frame, j.dropped_before) for j in jobs]
    dropped = producer.stats.dropped
    assert got[0][2] + got[1][2] == dropped and got[0][2] > 0 and got[1][2] > 0
    assert [g[2] for g in got[2:]] == [0, 0]


def test_an_older_worker_s_message_without_the_field_reads_as_none_dropped():
    job = FrameJob("j", "cam", 3, image=b"x")
    assert decode_frame(encode_frame(job)).dropped_before == 0


def test_the_note_a_reader_sees():
    assert missing_frames_note({"late_frames": 0, "dropped_frames": 0}) == ""
    assert missing_frames_note({}) == ""  # a summary of before the keys
    assert missing_frames_note({"late_frames": 2, "dropped_frames": 1}) == (
        "2 late frames not tracked (over reorder_wait_ms); "
        "1 frame dropped by the producer (backlog over lag_limit or stream_max_mb)")
    assert missing_frames_note({"late_frames": "x", "dropped_frames": True}) == ""  # another program's JSON


def test_a_video_s_last_frame_is_sent_to_say_the_drops_before_it(redis_url, client, keys, checkpoint):
    """Frames dropped after the last frame sent of a source had no frame to say them: `up` of the
    bundled clip with lag_limit 5 said 33 dropped where 41 were (60 frames, 19 answered). A producer
    reading a source (produce, up, the expander) now sends the last frame of a source it dropped frames
    at the end of, whatever the backlog: its run's dropped_frames are all of them, and its span ends
    where the video ends."""
    settings = settings_for(redis_url, lag_limit=5, backpressure="drop")
    ensure_group(client, keys)
    producer = Producer(settings, notice=lambda m: None)
    clip = str(REPO / "samples" / "hamilton_clip.mp4")
    refs = list(producer.produce([clip]))  # no worker yet: the backlog passes lag_limit at once
    assert refs[-1].frame == 59 and producer.stats.dropped == 60 - len(refs) > 40
    worker = start_worker(settings, checkpoint, "w1")
    try:
        wait_for(lambda: client.xlen(keys.results) >= len(refs), 60, what="the frames' results")
    finally:
        worker.stop()
    last = max(all_results(client, keys), key=lambda r: r.frame)
    assert (last.frame, last.dropped_before) == (59, 59 - refs[-2].frame - 1)
    stage = TrackStage(settings, name="tracker", reorder_wait_ms=300, block_ms=1, pictures=False)
    stage._ensure_group()
    for k in range(5):
        stage.step(now_s=100.0 + k)
    stage.flush()
    run = _summaries(client, keys)[clip]
    assert (run["frames"], run["dropped_frames"]) == (len(refs), producer.stats.dropped)
    assert run["frames"] + run["dropped_frames"] == 60


def test_the_expander_sends_a_video_s_last_frame_to_say_the_drops_before_it(redis_url, client, keys):
    """The rq expander reads a whole video through the same producer: under --backpressure drop the
    video's last frame goes whatever the backlog, saying the frames dropped before it."""
    from rq.job import Job
    from rq.serializers import JSONSerializer
    from tests.support.streamkit import queued_jobs

    from moodstream.producer.rq_jobs import enqueue_source

    job = enqueue_source(settings_for(redis_url), client, "hamilton_clip.mp4")
    _expand_dropping(redis_url, keys, REPO / "samples")
    jobs = queued_jobs(client, keys)
    done = Job.fetch(job.id, connection=client, serializer=JSONSerializer).return_value()
    assert (done["frames"], done["dropped"]) == (len(jobs), 60 - len(jobs)) and done["dropped"] > 40
    assert (jobs[-1].frame, jobs[-1].dropped_before) == (59, 59 - jobs[-2].frame - 1)
    assert done["last_job_id"] == jobs[-1].job_id


def test_the_expander_ends_each_video_of_a_folder_saying_its_drops(redis_url, client, keys, tmp_path):
    """A folder of two videos as one rq job: only the last video's held frame was sent at the job's end,
    so the frames the first one dropped after its last frame sent were said nowhere (a.mp4: 6 sent, 0
    said of 54 dropped). Each video's end sends its held frame, as `produce` does for each input."""
    import shutil

    from tests.support.streamkit import queued_jobs

    from moodstream.producer.rq_jobs import enqueue_source

    (tmp_path / "dir").mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(REPO / "samples" / "hamilton_clip.mp4", tmp_path / "dir" / name)
    enqueue_source(settings_for(redis_url), client, "dir")
    _expand_dropping(redis_url, keys, tmp_path)
    jobs = queued_jobs(client, keys)
    for name in ("a.mp4", "b.mp4"):
        mine = [j for j in jobs if j.source.endswith(name)]
        said = sum(j.dropped_before for j in mine)
        assert (len(mine) + said, mine[-1].frame) == (60, 59), (name, len(mine), said)


def _expand_dropping(redis_url: str, keys, media_root: Path) -> None:
    """`moodstream expander --burst` under --backpressure drop, lag_limit 5 (no worker: most frames dropped)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX=keys.prefix, MOODSTREAM_BACKPRESSURE="drop",
               MOODSTREAM_LAG_LIMIT="5")
    out = subprocess.run([sys.executable, "-m", "moodstream", "expander", "--burst", "--media-root",
                          str(media_root)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
