"""A photo over ``max_pixels`` (a 61 MP camera's JPEG, a 108 MP phone photo, over the 50 M default) was an
error record, "too_large", in `analyze` and through the service alike. Now a camera's JPEG is read at 1/2,
1/4 or 1/8 of its size (libjpeg's own reduced decode: only those pixels held), its faces found there, and
the record says so: ``scale`` 0.5 (its size, boxes and landmarks in the pixels it was read at; divided by
the scale, the photo's). The test scales the limit down with the photo: a 3840 x 2160 street scene under a
limit of 3,000,000 pixels stands for a 108 MP photo under 50,000,000."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import moodstream
from moodstream.cli import cli
from moodstream.shared.boxes import box_iou
from moodstream.shared.settings import Settings
from tests.support.streamkit import settings_for, start_worker

STREET = Path(moodstream.__file__).resolve().parent / "samples" / "street.jpg"
LIMIT = 3_000_000


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory) -> Path:
    """samples/street.jpg (960 x 540) enlarged 4 times: 8.3 M pixels, a camera's baseline JPEG."""
    bgr = cv2.imread(str(STREET))
    big = cv2.resize(bgr, (3840, 2160), interpolation=cv2.INTER_CUBIC)
    path = tmp_path_factory.mktemp("photos") / "big_street.jpg"
    path.write_bytes(cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    return path


def test_analyze_reads_it_at_half_size_and_says_so(big_photo):
    settings = Settings.from_env(env={}, device="cpu", max_pixels=LIMIT)
    (record,) = list(moodstream.analyze(big_photo, settings))
    assert record.error is None, record.error
    assert record.size == (1920, 1080) and record.scale == 0.5
    assert record.to_json(service=False)["scale"] == 0.5
    assert len(record.faces) >= 3
    for face in record.faces:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= 1920 and 0 <= y1 < y2 <= 1080

    # read whole (a limit it fits), its faces are the same ones, at twice the coordinates
    whole = Settings.from_env(env={}, device="cpu", max_pixels=10_000_000)
    (full,) = list(moodstream.analyze(big_photo, whole))
    assert full.size == (3840, 2160) and full.scale is None and "scale" not in full.to_json(service=False)
    halved = [[v * 0.5 for v in f.box] for f in full.faces]
    matched = [max((box_iou(np.array([f.box]), np.array([h]))[0, 0] for h in halved), default=0)
               for f in record.faces]
    assert sum(m >= 0.6 for m in matched) >= 0.8 * len(record.faces), matched


def test_the_command_prints_the_scale(big_photo):
    result = CliRunner().invoke(cli, ["analyze", str(big_photo), "--device", "cpu"],
                                env={"MOODSTREAM_MAX_PIXELS": str(LIMIT)})
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert "error" not in record and record["size"] == [1920, 1080] and record["scale"] == 0.5
    result = CliRunner().invoke(cli, ["analyze", str(big_photo), "--device", "cpu", "--format", "table"],
                                env={"MOODSTREAM_MAX_PIXELS": str(LIMIT)})
    assert result.exit_code == 0 and "1920x1080 (1/2)" in result.stdout, result.output
    result = CliRunner().invoke(cli, ["analyze", str(big_photo), "--device", "cpu", "--format", "csv"],
                                env={"MOODSTREAM_MAX_PIXELS": str(LIMIT)})
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.exit_code == 0 and len(rows) >= 3, result.output
    assert {(r["width"], r["height"], r["scale"]) for r in rows} == {("1920", "1080", "0.5")}


def test_the_service_reads_it_at_half_size_and_says_so(redis_url, checkpoint, big_photo):
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader

    settings = settings_for(redis_url, max_pixels=LIMIT)
    job = Producer(settings).submit_image(big_photo.read_bytes(), source="big_street.jpg", page=1)
    w = start_worker(settings, checkpoint, "w-big")
    try:
        (got,) = list(ResultReader(settings).read(start=FROM_START, count=1, timeout_s=60))
    finally:
        w.stop()
    assert got.job_id == job.job_id and got.error is None, got.error
    assert got.size == (1920, 1080) and got.scale == 0.5 and got.to_json()["scale"] == 0.5


@pytest.mark.parametrize("stage_limit", [10_000_000, LIMIT, 1_000_000])
def test_the_track_stage_crops_its_pictures_from_the_frame_at_the_results_size(client, keys, big_photo, stage_limit):
    """The track stage reads a frame back for a face picture and crops it at the result's boxes: a stage
    whose max_pixels is not the worker's (the worker's manifest sets its own) read the photo at another
    size than the worker did, and cropped its pictures from the wrong place. The frame is now brought to the
    result's size first."""
    from moodstream.shared.record import FrameJob, FrameResult
    from moodstream.shared.wire import FIELD, encode_frame
    from moodstream.worker.tracking.pictures import FramePictures

    entry = client.xadd(keys.frames, {FIELD: encode_frame(FrameJob("j-big", "big_street.jpg", 0,
                                                                   image=big_photo.read_bytes()))}).decode()
    r = FrameResult(job_id="j-big", source="big_street.jpg", frame_entry=entry, size=(1920, 1080), scale=0.5)
    image = FramePictures(client, keys.frames, stage_limit).frame(r)
    assert image.shape == (1080, 1920, 3)
    worker_read = cv2.cvtColor(cv2.imread(str(big_photo), cv2.IMREAD_REDUCED_COLOR_2), cv2.COLOR_BGR2RGB)
    assert np.abs(image.astype(np.int16) - worker_read.astype(np.int16)).mean() < 4


def test_the_summary_says_its_boxes_are_of_the_photo_read_smaller(big_photo, tmp_path):
    """`--summary`'s tracks give each face's `box` "in frame pixels": of a photo read at half its size, those
    of the reduced picture, which the summary did not say (its records did). Each of its tracks, and its
    entry under `videos`, now has the `scale`; a photo read whole has none."""
    out = tmp_path / "people.json"
    result = CliRunner().invoke(cli, ["analyze", str(big_photo), "--device", "cpu", "--summary", str(out)],
                                env={"MOODSTREAM_MAX_PIXELS": str(LIMIT)})
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["tracks"] and all(t["scale"] == 0.5 for t in summary["tracks"])
    assert all(t["box"][2] <= 1920 and t["box"][3] <= 1080 for t in summary["tracks"])
    assert [v.get("scale") for v in summary["videos"]] == [0.5]
    whole = tmp_path / "whole.json"
    CliRunner().invoke(cli, ["analyze", str(big_photo), "--device", "cpu", "--summary", str(whole)],
                       env={"MOODSTREAM_MAX_PIXELS": "10000000"})
    summary = json.loads(whole.read_text())
    assert summary["tracks"] and not any("scale" in t for t in summary["tracks"] + summary["videos"])


def test_the_service_summary_says_it_too(big_photo):
    """The track stage's summary message of a photo's run (what `tracks --json` prints) has it as well."""
    from moodstream.shared.record import Face, FrameResult
    from moodstream.worker.tracking.summary import SourceSummary

    face = Face((100.0, 100.0, 200.0, 220.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0},
                track_id=0)
    run = SourceSummary("big_street.jpg", page=1)
    run.add(FrameResult(source="big_street.jpg", page=1, size=(1920, 1080), scale=0.5, faces=[face]))
    (entry,) = run.entries()
    assert entry["scale"] == 0.5
