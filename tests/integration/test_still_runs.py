"""The track stage tells a still image from a frame of a video, as ``analyze`` does: files sent
by the real ``Producer``, answered by a real worker (MTCNN + the shipped emotion model), tracked
by the stage on a real Redis. A photo's summary was published only after ``--source-idle-s``
(300 s by default); a multi-page TIFF's pages were one run of frames 1/30 s apart, its face
linked across pages as one track. Untimed frames of an API user (``submit_array`` without
``timestamp_s`` or ``page``) stay one run, tracked across frames, as before."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from tests.support.streamkit import settings_for, start_worker, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.wire import FIELD, decode_result
from moodstream.worker.tracking.stage import TrackStage

IDLE_S = 3600.0  # no run ends by idling during a test: a summary published is one the stage ended itself


def serve_and_track(settings, checkpoint, client, keys, n: int) -> TrackStage:
    """A real worker answers the ``n`` frames produced; then the stage reads and releases them."""
    from moodstream.worker.detectors import build_detector

    worker = start_worker(settings, checkpoint, "w1", detector=build_detector(settings))
    try:
        wait_for(lambda: client.exists(keys.results) and client.xlen(keys.results) >= n, 180, poll_s=0.2,
                 what=f"{n} results")
    finally:
        worker.stop()
    stage = TrackStage(settings, name="tracker", reorder_wait_ms=60_000, block_ms=20, source_idle_s=IDLE_S)
    stage._ensure_group()
    for _ in range(3):
        stage.step()
    assert stage.published == n and stage.late == 0 and stage.duplicates == 0
    return stage


def summaries(client, keys) -> list[dict]:
    return [json.loads(f[FIELD]) for _, f in client.xrange(keys.summaries)] if client.exists(keys.summaries) else []


def tracked(client, keys):
    return [decode_result(f[FIELD]) for _, f in client.xrange(keys.tracked)]


def test_a_photo_s_summary_is_published_once_its_frame_is_tracked(redis_url, client, keys, checkpoint, image_path,
                                                                   tmp_path):
    """Its one result was held as a run that might go on: the summary came source_idle_s later."""
    settings = settings_for(redis_url)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_path("single").read_bytes())
    assert len(list(Producer(settings).produce([str(photo)]))) == 1
    stage = serve_and_track(settings, checkpoint, client, keys, 1)
    got = summaries(client, keys)
    assert len(got) == 1, got  # at once, not after IDLE_S
    [s] = got
    assert s["source"] == str(photo) and s["page"] == 1 and s["frames"] == 1 and s["last_part"] is True
    [t] = s["tracks"]
    assert (t["page"], t["first_timestamp_s"], t["last_timestamp_s"], t["person"]) == (1, 0.0, 0.0, True), t
    assert s["thumbnails"].keys() == {"0"}  # its face picture, read back from the frames stream
    assert not stage.runs  # nothing held for it
    [r] = tracked(client, keys)
    assert r.page == 1 and r.timestamp_s is None and [f.track_id for f in r.faces] == [0]


def test_a_tiff_s_pages_are_runs_of_their_own_named_by_page(redis_url, client, keys, checkpoint, image_path,
                                                            tmp_path):
    """The same face on three pages was one track over frames 0-2 (0.0667 s), one summary after the
    source went idle; now each page is a run, its summary out once its page is tracked, no track spanning pages."""
    from moodstream.worker.tracking.reader import tracks

    settings = settings_for(redis_url)
    face = cv2.imread(str(image_path("single")))
    scan = tmp_path / "scan.tif"
    assert cv2.imwritemulti(str(scan), [face, face, face])
    assert len(list(Producer(settings).produce([str(scan)]))) == 3
    serve_and_track(settings, checkpoint, client, keys, 3)
    got = summaries(client, keys)
    assert len(got) == 3, got
    assert sorted((s["page"], s["frames"], len(s["tracks"])) for s in got) == [(1, 1, 1), (2, 1, 1), (3, 1, 1)], got
    for s in got:
        [t] = s["tracks"]
        assert (t["page"], t["first_frame"], t["last_frame"], t["frames"]) == (s["page"], s["page"] - 1,
                                                                               s["page"] - 1, 1), t
        assert (t["first_timestamp_s"], t["last_timestamp_s"], t["person"]) == (0.0, 0.0, True)
    assert sorted((r.frame, r.page) for r in tracked(client, keys)) == [(0, 1), (1, 2), (2, 3)]
    env = {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    table = CliRunner().invoke(tracks, ["--from-start"], env=env)
    assert table.exit_code == 0, table.output
    rows = [line for line in table.stdout.splitlines() if " #0 " in line]  # the people, one a summary
    assert len(rows) == 3 and all("still image" in row and "0.0-0.0" not in row for row in rows), table.stdout
    assert {row.split(" #0")[0].strip() for row in rows} == {"scan.tif", "scan.tif page 2", "scan.tif page 3"}
    assert f"{scan} page 3 (run 3, a still image; ended: its one frame was tracked)" in table.stdout, table.stdout
    assert f"{scan} (run 1, a still image; ended: its one frame was tracked)" in table.stdout, table.stdout


def test_untimed_api_frames_stay_one_run_tracked_across_frames(redis_url, client, keys, checkpoint, image):
    """submit_array without timestamp_s or page: frames of one sequence, as before (no summary until
    the run ends; then one, its face one track over the three frames)."""
    settings = settings_for(redis_url)
    producer = Producer(settings)
    for k in range(3):
        producer.submit_array(image("single"), source="api", frame=k)
    stage = serve_and_track(settings, checkpoint, client, keys, 3)
    rs = tracked(client, keys)
    assert [(r.frame, r.page, [f.track_id for f in r.faces]) for r in rs] == [(0, None, [0]), (1, None, [0]),
                                                                              (2, None, [0])]
    assert summaries(client, keys) == [] and list(stage.runs) == ["api"]  # the run may go on
    stage.flush()
    [s] = summaries(client, keys)
    assert "page" not in s
    [t] = s["tracks"]
    assert "page" not in t and (t["first_frame"], t["last_frame"], t["frames"]) == (0, 2, 3)
    assert t["last_timestamp_s"] == pytest.approx(2 / 30, abs=1e-4)


def test_up_summary_of_still_images_is_analyze_s(tmp_path, monkeypatch, image_path):
    """``up --summary`` made a TIFF's pages one run (the face on pages 1 and 2 one track of two
    frames, 0.0333 s), where ``analyze --summary`` makes each page a run of its own: now the same
    tracks, pages and picture names, and its table says "still image" and names the pages."""
    from moodstream.up import up
    from moodstream.worker.analyze import analyze_cmd

    face = cv2.imread(str(image_path("single")))
    scan, photo = tmp_path / "scan.tif", tmp_path / "photo.jpg"
    assert cv2.imwritemulti(str(scan), [face, face, face[::-1].copy()])
    photo.write_bytes(image_path("single").read_bytes())
    monkeypatch.delenv("MOODSTREAM_REDIS_URL", raising=False)  # up: an embedded server
    written = {}
    for name, command, extra in (("analyze", analyze_cmd, []), ("up", up, ["--no-dashboard"])):
        ran = CliRunner().invoke(command, [str(scan), str(photo), "--device", "cpu", "--format", "jsonl", *extra,
                                           "--summary", str(tmp_path / name / "s.json")])
        assert ran.exit_code == 0, ran.output
        assert sorted(json.loads(line).get("page") for line in ran.stdout.splitlines()) == [1, 1, 2, 3]
        rows = [line for line in ran.stderr.splitlines() if " #" in line and "still image" in line]
        assert {row.split(" #")[0].strip() for row in rows} == {"scan.tif page 1", "scan.tif page 2", "photo.jpg"}, \
            ran.stderr
        written[name] = json.loads((tmp_path / name / "s.json").read_text())

    def tracks(summary: dict) -> list[tuple]:
        return sorted((Path(t["source"]).name, t["page"], t["track_id"], t["first_frame"], t["frames"], t["person"],
                       t["first_timestamp_s"], t["last_timestamp_s"], t["thumbnail"]) for t in summary["tracks"])

    def runs(summary: dict) -> list[tuple]:
        return sorted((Path(v["source"]).name, v["page"], v["frames"], v["tracks"]) for v in summary["videos"])

    assert tracks(written["up"]) == tracks(written["analyze"]), (written["up"]["tracks"], written["analyze"]["tracks"])
    assert runs(written["up"]) == runs(written["analyze"])
    assert [t[:2] for t in tracks(written["up"]) if t[5]] == [("photo.jpg", 1), ("scan.tif", 1), ("scan.tif", 2)]
    assert all((tmp_path / "up" / t["thumbnail"]).is_file() for t in written["up"]["tracks"])


def test_a_still_s_second_answer_is_dropped_and_its_source_s_sequence_goes_on(redis_url, client, keys):
    """No worker: results written straight to the stream. A sequence of the source's name (no page)
    goes on beside the still's run; the still's job answered twice (a reclaimed frame served again)
    and a third time by a worker of the release before (no page) is one run, one summary: the
    other answers are dropped, as for a video's."""
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result

    face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 0.8, "neutrality": 0.2})
    for job, frame, page in (("s0", 0, None), ("s1", 1, None), ("p1", 0, 1), ("p1", 0, 1), ("p1", 0, None)):
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=job, source="doc", frame=frame, page=page,
                                                                    worker="w", faces=[face]))})
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=60_000, block_ms=20,
                       source_idle_s=IDLE_S, pictures=False)
    stage._ensure_group()
    stage.step(now_s=100.0)
    assert [(s["run"], s.get("page"), s["frames"], s["ended"]) for s in summaries(client, keys)] == [
        (2, 1, 1, "its one frame was tracked")]
    assert (stage.published, stage.duplicates, list(stage.runs)) == (3, 2, ["doc"])
    assert client.xpending(keys.results, keys.track_group)["pending"] == 0
    stage.flush()
    assert [(s["run"], s.get("page"), s["frames"]) for s in summaries(client, keys)] == [(2, 1, 1), (1, None, 2)]


def test_a_still_of_a_camera_s_name_leaves_its_sequence_running(redis_url, client, keys):
    """An API user sends a live camera's frames as ``cam`` and a snapshot of it (``page`` 1) under
    the same name; workers answer out of order (frame 2 after the snapshot). The snapshot ended the
    camera's run: its summary out early, frames 2-5 a run of their own (ids from 0 again, the
    person two), and frame 2, enqueued before the snapshot, no straggler of the run it belongs to.
    As analyze's Summarizer does, a still is a run beside the sequence: the camera's goes on."""
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result

    face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 0.8, "neutrality": 0.2})
    enqueued = {0: 1000, 1: 1001, 2: 1002, "snap": 1003, 3: 1004, 4: 1005, 5: 1006}
    for frame in (0, 1, 3, "snap", 2, 4, 5):
        still = frame == "snap"
        r = FrameResult(job_id=f"j{frame}", source="cam", frame=0 if still else frame, page=1 if still else None,
                        timestamp_s=None if still else frame / 10, enqueued_at_ms=enqueued[frame], worker="w",
                        faces=[face])
        client.xadd(keys.results, {FIELD: encode_result(r)})
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=60_000, block_ms=20,
                       source_idle_s=IDLE_S, pictures=False)
    stage._ensure_group()
    stage.step(now_s=100.0)
    assert [(s["run"], s.get("page"), s["frames"]) for s in summaries(client, keys)] == [(2, 1, 1)]
    assert list(stage.runs) == ["cam"] and stage.late == 0
    stage.flush()
    got = summaries(client, keys)
    assert [(s["run"], s.get("page"), s["frames"], s["ended"]) for s in got] == [
        (2, 1, 1, "its one frame was tracked"), (1, None, 6, "the track stage stopped")], got
    [t] = got[1]["tracks"]
    assert (t["first_frame"], t["last_frame"], t["frames"]) == (0, 5, 6), t
    video = [r for r in tracked(client, keys) if r.page is None]
    assert sorted((r.frame, r.faces[0].track_id) for r in video) == [(k, 0) for k in range(6)]
    assert client.xpending(keys.results, keys.track_group)["pending"] == 0


def test_a_still_that_failed_is_published_without_a_run(redis_url, client, keys):
    """A still image the worker could not read (an error result with its page): the stage made it a
    run of its own and published an empty summary "ended: its one frame was tracked" (0 frames, no
    tracks; ``tracks`` printed an empty table for it), where analyze makes no run of an error. Now
    it passes through, as a video's error does, and its second answer is still dropped."""
    from moodstream.shared.record import ErrorInfo, FrameResult
    from moodstream.shared.wire import encode_result

    for _ in range(2):  # the job answered twice
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id="e1", source="bad.jpg", frame=0, page=1,
                                                                    worker="w", error=ErrorInfo("bad_image", "x")))})
    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=60_000, block_ms=20,
                       source_idle_s=IDLE_S, pictures=False)
    stage._ensure_group()
    stage.step(now_s=100.0)
    stage.flush()
    assert summaries(client, keys) == []
    [r] = tracked(client, keys)
    assert (r.page, r.error.reason, stage.published, stage.duplicates, dict(stage.runs)) == (1, "bad_image", 1, 1, {})
    assert client.xpending(keys.results, keys.track_group)["pending"] == 0


@pytest.mark.parametrize("page", [0, -1, True, "2", 1.5])
def test_a_page_no_worker_takes_is_refused_before_it_is_sent(redis_url, client, keys, image_path, page):
    """``Producer.submit_image(..., page=0)`` (or -1, True, "2", 1.5) was sent: every worker refuses
    the message (bad_field) and dead-letters it, the photo lost to the caller who was told nothing.
    Now one clear error at the call, nothing sent."""
    producer = Producer(settings_for(redis_url))
    with pytest.raises(ValueError, match="page"):
        producer.submit_image(image_path("single").read_bytes(), source="photo.jpg", page=page)
    with pytest.raises(ValueError, match="page"):
        producer.submit_array(cv2.imread(str(image_path("single")))[:, :, ::-1], source="photo.jpg", page=page)
    assert not client.exists(keys.intake) and not client.exists(keys.frames)  # nothing sent
    assert not producer.submit_image(image_path("single").read_bytes(), source="photo.jpg", page=2**63).dropped
    assert client.llen(keys.intake) == 1



def test_a_frame_added_long_after_its_enqueue_time_still_gets_its_picture(redis_url, client, keys, checkpoint,
                                                                          image_path):
    """The stage looked for a result's frame by its enqueue time (within 250 ms). A job that reached
    the frames stream minutes after the producer stamped it (moved there after an outage, or queued
    behind a stopped fleet) got no face picture; the worker now names the frames entry it answered."""
    from moodstream.shared.record import FrameJob
    from moodstream.shared.wire import encode_frame, new_job_id, now_ms

    settings = settings_for(redis_url)
    job = FrameJob(new_job_id(), "late.jpg", 0, image=image_path("single").read_bytes(), page=1)
    job.enqueued_at_ms = now_ms() - 600_000  # stamped ten minutes before it reached the stream
    entry_id = client.xadd(keys.frames, {FIELD: encode_frame(job)}).decode()
    serve_and_track(settings, checkpoint, client, keys, 1)
    [r] = tracked(client, keys)
    assert r.frame_entry == entry_id
    [s] = summaries(client, keys)
    assert s["tracks"] and s["thumbnails"].keys() == {"0"}, s["tracks"]
