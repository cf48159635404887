"""``moodstream track`` through a real Redis: the fixture clip's frames, sent out of order as
PNG (bit-exact frames), served by TWO workers running the real Pipeline (MTCNN + the shipped
emotion model), then put back in frame order and tracked by the track stage. Its ids and
smoothed emotions must be the ones in-process ``analyze`` gives for the same frames."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from tests.support.streamkit import move_intake, settings_for, start_worker, stream_job, wait_for

from moodstream.producer.client import encode_pixels
from moodstream.worker.tracking.stage import TrackStage
from moodstream.shared.media import iter_video
from moodstream.shared.record import FrameJob
from moodstream.shared.wire import FIELD, decode_result, encode_frame, new_job_id, now_ms


def stage_thread(stage: TrackStage) -> tuple[threading.Thread, list]:
    errors: list = []

    def run():
        try:
            stage.run()
        except BaseException as exc:  # reported by the test
            errors.append(repr(exc))
            raise

    t = threading.Thread(target=run, name="track-stage", daemon=True)
    t.start()
    return t, errors


def test_two_workers_out_of_order_give_the_tracks_analyze_gives(redis_url, client, keys, checkpoint,
                                                                 fixtures_dir):
    from moodstream.worker.analyze import analyze_cmd as analyze
    from moodstream.worker.detectors import build_detector

    clip = str(fixtures_dir / "clip_360p.mp4")
    # fp32, as the torch workers below: the stage's ordering is under test, not bf16's last digits
    ran = CliRunner().invoke(analyze, ["--device", "cpu", "--precision", "fp32", clip])
    assert ran.exit_code == 0, ran.output
    expected = [json.loads(line) for line in ran.stdout.splitlines()]

    settings = settings_for(redis_url, batch_max=2, batch_wait_ms=5)
    items = list(iter_video(clip))
    order = np.random.default_rng(3).permutation(len(items)).tolist()
    assert order != sorted(order)
    # frames enter the stream shuffled, so results come out of order whatever the workers do; each job
    # is stamped as a producer enqueues a run (in frame order), which is how the stage tells runs apart
    t0 = now_ms()
    for i in order:
        job = FrameJob(new_job_id(), "clip", items[i].frame, image=encode_pixels(items[i].image, "png"),
                       timestamp_s=items[i].timestamp_s, enqueued_at_ms=t0 + items[i].frame)
        client.xadd(keys.frames, {FIELD: encode_frame(job)})
    workers = [start_worker(settings, checkpoint, f"w{k}", detector=build_detector(settings)) for k in range(2)]
    stage = TrackStage(settings, name="tracker", reorder_wait_ms=60_000, block_ms=50)
    thread, errors = stage_thread(stage)
    try:
        wait_for(lambda: client.xlen(keys.tracked) >= len(items), 240, what="tracked results")
    finally:
        for w in workers:
            w.stop()
        stage.request_stop()
        thread.join(30)
    assert not thread.is_alive() and not errors, errors

    served = [decode_result(f[FIELD]).frame for _, f in client.xrange(keys.results)]
    assert sorted(served) == [it.frame for it in items] and served != sorted(served)  # out of order
    assert all(w.worker.served > 0 for w in workers), [w.worker.served for w in workers]
    tracked = [decode_result(f[FIELD]) for _, f in client.xrange(keys.tracked)]
    assert [r.frame for r in tracked] == [it.frame for it in items]  # back in frame order
    assert client.xpending(keys.results, keys.track_group)["pending"] == 0  # all acked
    assert stage.late == 0 and stage.duplicates == 0

    n_faces = 0
    for got, want in zip(tracked, expected):
        assert got.error is None and len(got.faces) == len(want["faces"]), (got.frame, got.faces)
        for g, w in zip(got.faces, want["faces"]):
            assert g.track_id == w["track_id"]
            assert g.smoothed.emotion == w["smoothed"]["emotion"]
            assert g.emotion == w["emotion"]
            assert list(g.box) == pytest.approx(w["box"], abs=0.05)
            assert list(g.smoothed.probabilities.values()) == pytest.approx(
                list(w["smoothed"]["probabilities"].values()), abs=2e-3)
            n_faces += 1
    assert n_faces >= len(items)
    assert {f.track_id for r in tracked for f in r.faces} == {0, 1}  # the clip: one face, a second briefly


def test_stage_releases_sampled_frames_after_the_wait_and_recovers_unacked(redis_url, client, keys):
    """No workers: results written straight to the stream (every 2nd frame, shuffled). The stage
    waits for frames 1, 3... that never come, then learns the stride; a restarted stage first
    re-reads the entries it had not acked."""
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result

    settings = settings_for(redis_url)

    def add(frame: int) -> None:
        face = Face((10.0 + frame, 10.0, 50.0 + frame, 50.0), 0.99, emotion="happiness",
                    probabilities={"happiness": 0.8, "neutrality": 0.2})
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=f"j{frame}", source="cam", frame=frame,
                                                                    worker="w", faces=[face], timestamp_s=frame / 30))})

    for f in (4, 0, 2):
        add(f)
    stage = TrackStage(settings, name="tracker", reorder_wait_ms=300, block_ms=20)
    stage._ensure_group()
    stage.step(now_s=100.0)
    assert client.xlen(keys.tracked) == 1  # frame 0 at once; 2 and 4 wait for frame 1 / 3
    stage.step(now_s=100.2)
    assert client.xlen(keys.tracked) == 1
    stage.step(now_s=100.31)
    assert client.xlen(keys.tracked) == 3  # waited long enough: 2, then 4

    for f in (8, 6):
        add(f)
    restarted = TrackStage(settings, name="tracker", reorder_wait_ms=300, block_ms=20)
    stage.step(now_s=200.0)  # reads 8 and 6 but cannot release them yet (stride not learned)
    assert client.xlen(keys.tracked) == 3
    del stage  # crashed: 6 and 8 stay pending for "tracker"
    restarted.step(now_s=300.0)  # re-reads its pending entries first
    restarted.step(now_s=300.5)
    frames = [decode_result(f[FIELD]).frame for _, f in client.xrange(keys.tracked)]
    assert frames == [0, 2, 4, 6, 8]
    assert client.xpending(keys.results, keys.track_group)["pending"] == 0
    ids = [decode_result(f[FIELD]).faces[0].track_id for _, f in client.xrange(keys.tracked)]
    assert ids == [0, 0, 0, 0, 0]  # the restarted stage starts afresh: id 0 again for this source


def test_face_pictures_come_from_the_frames_stream_and_none_once_trimmed(redis_url, client, keys):
    """The stage reads a track's frame back from the frames stream by job id; a frame that
    stream_maxlen has trimmed gives no picture (thumbnail null), the summary is otherwise whole."""
    import json

    from moodstream.producer.client import Producer
    from moodstream.shared.labels import LABELS
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result

    settings = settings_for(redis_url)
    producer = Producer(settings, encoding="png")
    rng = np.random.default_rng(0)
    probs = {label: (0.65 if label == "sadness" else 0.05) for label in LABELS}
    for source in ("kept", "trimmed"):
        for f in range(20):
            ref = producer.submit_array(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), source=source, frame=f)
            move_intake(settings)  # a worker's mover puts it in the stream
            _, job = stream_job(client, keys, ref.job_id)
            face = Face((40.0, 20.0, 100.0, 90.0), 0.99, emotion="sadness", probabilities=probs)
            client.xadd(keys.results, {FIELD: encode_result(FrameResult(
                job_id=ref.job_id, source=source, frame=f, timestamp_s=f / 10, worker="w", faces=[face],
                size=(160, 120), enqueued_at_ms=job.enqueued_at_ms))})
        if source == "kept":
            stage = TrackStage(settings, name="tracker", reorder_wait_ms=100, block_ms=20)
            stage._ensure_group()
            for i in range(5):
                stage.step(now_s=float(i))
    client.xtrim(keys.frames, maxlen=0)  # the second source's frames are gone before the stage reads its results
    for i in range(5):
        stage.step(now_s=10.0 + i)
    stage.flush()
    summaries = {s["source"]: s for s in (json.loads(f[FIELD]) for _, f in client.xrange(keys.summaries))}
    assert set(summaries) == {"kept", "trimmed"}
    for name, s in summaries.items():
        [track] = s["tracks"]
        assert track["frames"] == 20 and track["person"] and track["thumbnail"] is None
        assert track["mean_probabilities"]["sadness"] == pytest.approx(0.65, abs=1e-3)
        assert ("0" in s["thumbnails"]) == (name == "kept"), name
    assert stage.pictures.found >= 1 and stage.pictures.reads > stage.pictures.found


def test_stage_skips_results_it_cannot_track_and_carries_on(redis_url, client, keys):
    """A face with no probabilities (argmax of nothing: the stage crashed, again at each restart)
    or with numbers not finite (the run's summary was lost: NaN is not JSON) is skipped, one line."""
    import msgpack

    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result

    settings = settings_for(redis_url)

    def add(frame: int, **face_changes) -> None:
        face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness",
                    probabilities={"happiness": 0.8, "neutrality": 0.2})
        m = msgpack.unpackb(encode_result(FrameResult(job_id=f"j{frame}", source="cam", frame=frame, worker="w",
                                                      faces=[face], timestamp_s=frame / 30)))
        m["faces"][0].update(face_changes)
        client.xadd(keys.results, {FIELD: msgpack.packb(m)})

    add(0)
    add(1, probabilities={})
    add(2, score=float("nan"), probabilities={"happiness": float("inf")})
    add(3)
    # finite but no worker's: the summary overflowed to inf (ValueError at every restart), the
    # face-picture crop hit int(-inf) (OverflowError), smoothed probabilities went to +-inf
    add(4, score=1e308)
    add(5, probabilities={"happiness": 1e300, "neutrality": -1e300})
    add(6, box=[-1e308, -1e308, 1e308, 1e308])
    add(7)
    stage = TrackStage(settings, name="tracker", reorder_wait_ms=0, block_ms=20, source_idle_s=0.5)
    stage._ensure_group()
    for t in (100.0, 100.1, 101.0, 102.0):
        stage.step(now_s=t)
    stage.flush()
    assert stage.skipped == 5
    assert client.xpending(keys.results, keys.track_group)["pending"] == 0
    summaries = [json.loads(f[FIELD]) for _, f in client.xrange(keys.summaries)]
    assert len(summaries) == 1 and summaries[0]["source"] == "cam"
    assert [decode_result(f[FIELD]).frame for _, f in client.xrange(keys.tracked)] == [0, 3, 7]


@pytest.mark.parametrize("entry", [b"[" * 100_000, b'{"source": "x", "tracks": [' + b"[" * 100_000,
                                   b'{"tracks": []}', b'{"source": "x", "tracks": [1]}',
                                   b'{"source": "x", "tracks": [{"track_id": 0}]}', b'{"source": 5, "tracks": []}'])
def test_tracks_skips_a_summary_it_cannot_show(redis_url, client, keys, entry, tmp_path):
    """A malformed summaries entry stopped `moodstream tracks` with a traceback (KeyError, TypeError)
    at every --from-start until it was trimmed; --pictures wrote a 0-byte JPEG for a picture that
    is not base64."""
    from moodstream.worker.tracking.reader import tracks

    good = {"source": "cam", "run": 1, "frames": 3, "ended": "idle", "tracks": [], "thumbnails": {"0": "!!!"}}
    client.xadd(keys.summaries, {FIELD: entry})
    client.xadd(keys.summaries, {FIELD: json.dumps(good)})
    ran = CliRunner().invoke(tracks, ["--from-start", "--json", "--pictures", str(tmp_path / "p"),
                                      "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 0, ran.output
    assert [json.loads(line)["source"] for line in ran.stdout.splitlines()] == ["cam"]
    assert "skipping" in ran.stderr
    assert not list((tmp_path / "p").glob("*.jpg"))  # no 0-byte picture


@pytest.mark.parametrize("changes", [{"run": "1/../../escaped"}, {"track": "0/../../escaped2"}, {"run": 7.5}])
def test_tracks_pictures_stay_in_their_folder(redis_url, client, keys, tmp_path, changes):
    """File names built from a summaries entry's run and track id wrote an attacker's bytes outside
    --pictures (with a matching subfolder there), or crashed on a '/' in them (FileNotFoundError)."""
    import base64

    from moodstream.worker.tracking.reader import tracks

    track_id = changes.get("track", 0)
    summary = {"source": "cam", "run": changes.get("run", 1), "frames": 3, "ended": "idle",
               "tracks": [{"track_id": track_id, "source": "cam", "first_timestamp_s": 0.0, "last_timestamp_s": 1.0,
                           "person": True, "dominant": "happiness", "mean_probabilities": {"happiness": 1.0},
                           "episodes": []}],
               "thumbnails": {str(track_id): base64.b64encode(b"\xff\xd8 attacker bytes").decode()}}
    pics = tmp_path / "deep" / "pics"
    (pics / "cam-run1").mkdir(parents=True)
    (pics / "cam-t0").mkdir(parents=True)
    client.xadd(keys.summaries, {FIELD: json.dumps(summary)})
    ran = CliRunner().invoke(tracks, ["--from-start", "--json", "--pictures", str(pics),
                                      "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 0 and "Traceback" not in ran.output, (ran.output, ran.exception)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.parent == pics for p in written), written
    assert json.loads(ran.stdout.splitlines()[0])["source"] == "cam"  # the summary itself is shown


@pytest.mark.parametrize("key", ["tracked", "summaries"])
def test_a_stage_output_key_of_another_type_loses_no_result(redis_url, client, keys, key):
    """Redis runs the rest of a MULTI when one command fails: with the tracked stream turned into a
    string the stage acked its results without publishing them (lost), then died with a traceback;
    with the summaries stream turned, the same. At start: one line; under a running stage: the acked
    results are made pending again (the same entries, published at the next start), then one line."""
    from moodstream.shared.errors import ConfigError
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result

    settings = settings_for(redis_url)
    target = {"tracked": keys.tracked, "summaries": keys.summaries}[key]

    def add(frame: int) -> None:
        face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0})
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=f"j{frame}", source="cam", frame=frame,
                                                                    worker="w", faces=[face], timestamp_s=frame))})

    client.set(target, "not a stream")
    first, errors = TrackStage(settings, name="tracker", block_ms=20), []

    def run() -> None:
        try:
            first.run()
        except ConfigError as e:
            errors.append(str(e))

    thread = threading.Thread(target=run, daemon=True)  # it read on, never publishing, before
    thread.start()
    thread.join(20)
    first.request_stop()
    assert not thread.is_alive() and errors and "not a stream" in errors[0], errors
    client.delete(target)

    stage = TrackStage(settings, name="tracker", reorder_wait_ms=0, block_ms=20, source_idle_s=0.5)
    stage._ensure_group()
    for f in range(3):
        add(f)
    client.set(target, "not a stream")  # under the running stage
    with pytest.raises(ConfigError, match="not a stream") as exc:
        for t in (100.0, 100.1, 101.0, 102.0):
            stage.step(now_s=t)
        stage.flush()
    if key == "tracked":
        assert "3 results acked without it were put back" in str(exc.value)
        # every result is either published or pending again: the same entries, read at the next start
        assert client.xlen(keys.results) == 3
        assert client.xpending(keys.results, keys.track_group)["pending"] == 3
        client.delete(target)
        again = TrackStage(settings, name="tracker", reorder_wait_ms=0, block_ms=20, source_idle_s=0.5)
        for t in (200.0, 200.1, 201.0, 202.0):
            again.step(now_s=t)
        again.flush()
        assert sorted(decode_result(f[FIELD]).frame for _, f in client.xrange(keys.tracked)) == [0, 1, 2]
        assert client.xpending(keys.results, keys.track_group)["pending"] == 0
    else:  # the results went out; the lost summary is named
        assert client.xlen(keys.tracked) == 3 and "summary lost" in str(exc.value)


def test_a_summary_that_cannot_be_made_costs_the_summary_not_the_stage(redis_url, client, keys, monkeypatch):
    """json.dumps of a summary holding inf raised in the stage, before anything was acked: it died
    at every restart over the same entries, other sources' results held with it."""
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result
    from moodstream.worker.tracking import stage as stage_module

    def broken(run, why):
        raise ValueError("Out of range float values are not JSON compliant")

    monkeypatch.setattr(stage_module, "summary_message", broken)
    for source in ("cam", "other"):
        for f in range(2):
            face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0})
            client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=f"{source}{f}", source=source, frame=f,
                                                                        worker="w", faces=[face], timestamp_s=f))})
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=0, block_ms=20, source_idle_s=0.5)
    stage._ensure_group()
    for t in (100.0, 100.1, 101.0, 102.0):
        stage.step(now_s=t)
    stage.flush()
    assert client.xlen(keys.tracked) == 4 and client.xlen(keys.summaries) == 0
    assert client.xpending(keys.results, keys.track_group)["pending"] == 0


def test_a_picture_read_that_fails_costs_the_picture_not_the_tracks(redis_url, client, keys, monkeypatch):
    """A connection error while reading a face picture back unwound the stage's step after the
    frames had left the reorder buffer: they came back 30 s later by XAUTOCLAIM, published untracked."""
    import redis as redis_module

    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result
    from moodstream.worker.tracking.pictures import FramePictures

    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        raise redis_module.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(FramePictures, "offer", flaky)
    for f in range(3):
        face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0})
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=f"j{f}", source="cam", frame=f, worker="w",
                                                                    faces=[face], timestamp_s=f, enqueued_at_ms=1))})
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=0, block_ms=20, source_idle_s=0.5)
    stage._ensure_group()
    for t in (100.0, 100.1):
        stage.step(now_s=t)
    stage.flush()
    tracked = [decode_result(f[FIELD]) for _, f in client.xrange(keys.tracked)]
    assert calls and [r.frame for r in tracked] == [0, 1, 2]
    assert all(face.track_id is not None for r in tracked for face in r.faces)


def test_tracks_pictures_of_two_sources_with_one_file_name_are_both_kept(redis_url, client, keys, tmp_path):
    """/data/cam1/video.mp4 and /data/cam2/video.mp4 both wrote video-run1-t0.jpg: the second picture
    replaced the first, and both summaries named that one file."""
    from tests.support.streamkit import add_picture_summary

    from moodstream.worker.tracking.reader import tracks

    for i, source in enumerate(("/data/cam1/video.mp4", "/data/cam2/video.mp4")):
        add_picture_summary(client, keys, source, b"\xff\xd8 picture %d" % i)
    ran = CliRunner().invoke(tracks, ["--from-start", "--json", "--pictures", str(tmp_path),
                                      "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 0, ran.output
    names = [json.loads(line)["tracks"][0]["thumbnail"] for line in ran.stdout.splitlines()]
    assert len(set(names)) == 2 and sorted((tmp_path / n).read_bytes() for n in names) == \
        [b"\xff\xd8 picture 0", b"\xff\xd8 picture 1"]


def test_streams_of_its_own_expire_after_their_last_entry(redis_url, client, keys):
    """`up`'s stage writes derived streams beside its private reply stream; the worker gives that
    reply stream a TTL, the stage gave its own streams none: an `up` killed with SIGKILL left them
    on the user's Redis for ever. With ``expire_s`` they expire that long after their last entry."""
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result

    reply = keys.reply("up-test")
    stage = TrackStage(settings_for(redis_url), name="up", results=reply, tracked=f"{reply}:tracked",
                       summaries=f"{reply}:summaries", reorder_wait_ms=0, block_ms=20, source_idle_s=0.5,
                       expire_s=600)
    stage._ensure_group()
    for frame in range(3):
        face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0})
        client.xadd(reply, {FIELD: encode_result(FrameResult(job_id=f"j{frame}", source="cam", frame=frame,
                                                             worker="w", faces=[face], timestamp_s=frame))})
    for t in (100.0, 100.1, 101.0, 102.0):
        stage.step(now_s=t)
    stage.flush()
    assert client.xlen(f"{reply}:tracked") == 3 and client.xlen(f"{reply}:summaries") == 1
    assert 0 < client.ttl(f"{reply}:tracked") <= 600 and 0 < client.ttl(f"{reply}:summaries") <= 600
    deployment = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=0, block_ms=20)
    assert deployment.expire_s is None  # a deployment's streams are trimmed, never expired
