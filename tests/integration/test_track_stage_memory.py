"""A live camera's run never ends: the track stage must not hold every track it ever saw.

Before, each run kept every track's running state (its median sample, its episode finder) and its
best face picture as pixels until the run ended, and published nothing before that: a camera
that saw people all day grew the stage without end (about 33 KB a track here, 90x105 crops),
then put every track in one message. Now a track that ended (the tracker let it go) is kept as
its final entry and a JPEG, and every ``PART_TRACKS`` ended tracks go out as a part of the run's
summary. The number of runs held and of source names remembered is bounded too.
"""

from __future__ import annotations

import json

import numpy as np
from tests.support.memory import Kept
from tests.support.streamkit import move_intake, settings_for, stream_job

from moodstream.producer.client import Producer
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.wire import FIELD, encode_result, new_job_id
from moodstream.worker.tracking import runs as runs_mod
from moodstream.worker.tracking import stage as stage_mod
from moodstream.worker.tracking.stage import TrackStage
from moodstream.worker.tracking.summary import SourceSummary
from moodstream.worker.tracking.tracker import TrackState

TRACK_FRAMES = 8  # a face for 8 frames (0.7 s at 10 fps: a person) ...
PERIOD = 20  # ... then 12 frames without one (1.2 s: the tracker lets it go)
PROBS = {label: (0.65 if label == "sadness" else 0.05) for label in LABELS}


def faces_of(frame: int) -> list[Face]:
    """Track k is a face in frames k*PERIOD .. k*PERIOD+7."""
    if frame % PERIOD >= TRACK_FRAMES:
        return []
    return [Face((40.0, 20.0, 100.0, 90.0), 0.99, emotion="sadness", probabilities=PROBS)]


class LiveSource:
    """One source whose frames never end (:func:`faces_of`); the first frame of each track is in the
    frames stream (for its picture)."""

    def __init__(self, client, keys, settings, name: str = "camera"):
        self.client, self.keys, self.name = client, keys, name
        self.producer = Producer(settings, encoding="png")
        self.rng = np.random.default_rng(0)
        self.frame = 0

    def tracks(self, n: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for _ in range(n * PERIOD):
            f = self.frame
            self.frame += 1
            job_id, enqueued = new_job_id(), None
            if f % PERIOD == 0:
                ref = self.producer.submit_array(self.rng.integers(0, 255, (120, 160, 3), dtype=np.uint8),
                                                 source=self.name, frame=f)
                move_intake(self.producer.settings)  # a worker's mover puts it in the stream
                job_id, enqueued = ref.job_id, stream_job(self.client, self.keys, ref.job_id)[1].enqueued_at_ms
            pipe.xadd(self.keys.results, {FIELD: encode_result(FrameResult(
                job_id=job_id, source=self.name, frame=f, timestamp_s=f / 10, worker="w", faces=faces_of(f),
                size=(160, 120), enqueued_at_ms=enqueued))})
        pipe.execute()


def drain(stage: TrackStage, client, keys) -> None:
    """Step the stage until it has read everything in the results stream."""
    for _ in range(10_000):
        stage.step(now_s=1e9)  # every wait is over: frames go out as they come
        if not client.xpending(keys.results, keys.track_group)["pending"] and stage.read >= client.xlen(keys.results):
            return
    raise AssertionError("the stage did not catch up")


def started(redis_url, client, keys, tracks: int) -> tuple[TrackStage, LiveSource]:
    """A stage that has tracked the first ``tracks`` tracks of a live source."""
    settings = settings_for(redis_url)
    stage = TrackStage(settings, name="tracker", block_ms=1)
    stage._ensure_group()
    live = LiveSource(client, keys, settings)
    live.tracks(tracks)
    drain(stage, client, keys)
    return stage, live


def summaries(client, keys) -> list[dict]:
    return [json.loads(f[FIELD]) for _, f in client.xrange(keys.summaries)]


def test_a_live_run_holds_its_ended_tracks_compactly_and_publishes_them_in_parts(redis_url, client, keys,
                                                                               monkeypatch):
    monkeypatch.setattr(stage_mod, "PART_TRACKS", 50)
    monkeypatch.setattr(runs_mod, "RECENT_JOBS", 100)  # bounded apart (20,000 job ids a run): not measured here
    stage, live = started(redis_url, client, keys, tracks=100)
    with Kept() as kept:
        live.tracks(300)
        drain(stage, client, keys)
    # before: ~33 KB a track (10 MB for these 300); now the ended tracks left with their parts
    assert kept.grown < 1_500_000, f"{kept.grown / 300 / 1024:.1f} KiB a track; {kept.where()}"
    assert len(stage.runs) == 1 and len(stage.runs["camera"].summary.tracks) <= 2  # only what is on screen

    parts = summaries(client, keys)
    assert len(parts) >= 7 and [p["part"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["run"] == 1 and not p["last_part"] and len(p["tracks"]) == 50 for p in parts)
    stage.flush()
    parts = summaries(client, keys)
    assert parts[-1]["last_part"] and parts[-1]["part"] == len(parts)
    # every track once, as the run's whole summary would have had it, each with its picture
    whole = SourceSummary("camera", stage.summary_config, series=False)
    state = TrackState(stage.tracker_config)
    for f in range(live.frame):
        r = FrameResult(job_id="j", source="camera", frame=f, timestamp_s=f / 10, worker="w", faces=faces_of(f))
        r.faces = state.update(r.frame, r.timestamp_s, r.faces)
        whole.add(r)
    got = [t for p in parts for t in p["tracks"]]
    assert [t["track_id"] for t in got] == list(range(400))
    assert got == whole.entries()
    assert all(t["person"] for t in got)
    assert all(str(t["track_id"]) in p["thumbnails"] for p in parts for t in p["tracks"])
    assert not stage.runs


def test_a_short_run_is_one_summary_as_before(redis_url, client, keys):
    stage, live = started(redis_url, client, keys, tracks=3)
    stage.flush()
    [summary] = summaries(client, keys)
    assert summary["part"] == 1 and summary["last_part"] and [t["track_id"] for t in summary["tracks"]] == [0, 1, 2]
    assert sorted(summary["thumbnails"]) == ["0", "1", "2"]


def test_the_runs_held_at_once_are_bounded(redis_url, client, keys, monkeypatch):
    """A producer naming a new source in every message (each run lived source_idle_s, 300 s) grew
    the stage without bound; past MAX_RUNS the least recently seen run ends (its summary goes out)."""
    monkeypatch.setattr(stage_mod, "MAX_RUNS", 10)
    monkeypatch.setattr(stage_mod, "RUN_NUMBERS_KEPT", 15)
    settings = settings_for(redis_url)
    stage = TrackStage(settings, name="tracker", block_ms=1, pictures=False)
    stage._ensure_group()
    face = Face((40.0, 20.0, 100.0, 90.0), 0.99, emotion="sadness", probabilities=PROBS)
    for s in range(25):
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(
            job_id=new_job_id(), source=f"src-{s}", frame=0, timestamp_s=0.0, worker="w", faces=[face]))})
    client.xadd(keys.results, {FIELD: encode_result(FrameResult(  # src-20 again: now the most recent
        job_id=new_job_id(), source="src-20", frame=1, timestamp_s=0.1, worker="w", faces=[face]))})
    for s in range(25, 30):
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(
            job_id=new_job_id(), source=f"src-{s}", frame=0, timestamp_s=0.0, worker="w", faces=[face]))})
    drain(stage, client, keys)
    assert len(stage.runs) <= 10 and "src-20" in stage.runs
    assert len(stage._run_numbers) <= 15
    ended = summaries(client, keys)
    assert len(ended) == 20 and all("sources at once" in s["ended"] for s in ended)
    assert {s["source"] for s in ended} == {f"src-{s}" for s in range(30)} - set(stage.runs)
    assert client.xlen(keys.tracked) == 31  # every result published


def test_a_part_that_cannot_be_made_takes_no_number(redis_url, client, keys, monkeypatch):
    """Parts were numbered before they were made: one that failed left a gap (2, 3 and no 1)."""
    monkeypatch.setattr(stage_mod, "PART_TRACKS", 50)
    real, calls = stage_mod.summary_message, []

    def first_fails(*args, **kwargs):
        calls.append(1)
        message = real(*args, **kwargs)
        if len(calls) == 1:
            message["frames"] = float("nan")  # json.dumps(allow_nan=False) refuses it: not made
        return message

    monkeypatch.setattr(stage_mod, "summary_message", first_fails)
    started(redis_url, client, keys, tracks=152)
    assert [p["part"] for p in summaries(client, keys)] == [1, 2]


def test_a_source_still_sending_keeps_its_run_number(redis_url, client, keys, monkeypatch):
    """Run numbers were remembered for the RUN_NUMBERS_KEPT sources that started a run most
    recently: a camera that started long ago and never stopped was forgotten behind sources that
    came and went, and its next run was numbered 1 again. Now a result keeps its source's number."""
    monkeypatch.setattr(stage_mod, "RUN_NUMBERS_KEPT", 3)
    stage = TrackStage(settings_for(redis_url), name="tracker", block_ms=1, pictures=False)
    stage._ensure_group()
    face = Face((40.0, 20.0, 100.0, 90.0), 0.99, emotion="sadness", probabilities=PROBS)

    def send(source: str, frame: int) -> None:
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(
            job_id=new_job_id(), source=source, frame=frame, timestamp_s=frame / 10, worker="w", faces=[face]))})

    send("cam", 0)
    for s in range(6):  # passers-by, each one run, while the camera goes on
        send(f"other-{s}", 0)
        send("cam", s + 1)
    send("cam", 0)  # the camera's frame numbers start again: its run 2
    drain(stage, client, keys)
    stage.flush()
    cam = [s["run"] for s in summaries(client, keys) if s["source"] == "cam"]
    assert cam == [1, 2], cam


def test_run_numbers_kept_in_redis_are_bounded_and_a_live_source_keeps_its_own(redis_url, client, keys,
                                                                               monkeypatch):
    """<prefix>:track:runs, the run numbers a restarted stage goes on from, must not grow with every
    source name a producer sends (a folder of photos: each one a run): past RUN_NUMBERS_KEPT / 2
    sources it becomes the generation before, the one before that dropped. A camera whose one run
    goes on all that time is written again at each turn: a stage restarted then (the one before
    killed, its memory gone) numbers the camera's next run 2, not 1 again."""
    monkeypatch.setattr(stage_mod, "RUN_NUMBERS_KEPT", 10)
    settings = settings_for(redis_url)
    stage = TrackStage(settings, name="tracker", block_ms=1, pictures=False)
    stage._ensure_group()
    face = Face((40.0, 20.0, 100.0, 90.0), 0.99, emotion="sadness", probabilities=PROBS)

    def send(source: str, frame: int, page: int | None = None) -> None:
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(
            job_id=new_job_id(), source=source, frame=frame, timestamp_s=frame / 10, worker="w", faces=[face],
            page=page))})

    send("cam", 0)
    for s in range(40):  # photos, each a run of its own, while the camera goes on
        send(f"photo-{s}.jpg", 0, page=1)
        send("cam", s + 1)
        drain(stage, client, keys)
        assert client.hlen(keys.track_runs) <= 5 and client.hlen(keys.track_runs_old) <= 5
    restarted = TrackStage(settings, name="tracker", block_ms=1, pictures=False)
    send("cam", 0)  # the camera's next pass, after the restart
    for _ in range(10):
        if restarted.read:
            break
        restarted.step(now_s=1e9)
    restarted.flush()
    cam = [s["run"] for s in summaries(client, keys) if s["source"] == "cam"]
    assert cam == [2], cam
    photos = {s["source"]: s["run"] for s in summaries(client, keys) if s["source"] != "cam"}
    assert len(photos) == 40 and set(photos.values()) == {1}
