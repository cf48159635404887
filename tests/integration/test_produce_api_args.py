"""`Producer.produce` as a program calls it (README "From Python"): its arguments checked at the call, as
`analyze`'s are. `produce("/path/photo.jpg")` iterated the string: its first character, "/", was walked as a
folder and every image on the machine was sent (2,050 FER+ faces, then the producer waited on backpressure)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tests.support.streamkit import settings_for

from moodstream import Producer

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "samples" / "street.jpg"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"


def test_one_path_as_a_string_or_path_is_one_input(redis_url, client, keys):
    producer = Producer(settings_for(redis_url))
    for one in (str(PHOTO), PHOTO):
        refs = list(producer.produce(one))
        assert [r.source for r in refs] == [str(PHOTO)], refs
    assert client.llen(keys.intake) == 2


@pytest.mark.parametrize("paths, match", [
    (b"/path/photo.jpg", "takes paths"),
    ([None], r"paths\[0\] is NoneType"),
    ([0.5], r"paths\[0\] is float"),
    ([b"/x.jpg"], r"paths\[0\] is bytes"),
    (np.zeros((4, 4, 3), np.uint8), "not a frame"),
])
def test_what_names_no_input_is_a_type_error(redis_url, client, keys, paths, match):
    with pytest.raises(TypeError, match=match):
        Producer(settings_for(redis_url)).produce(paths)
    assert client.llen(keys.intake) == 0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"every_n": 0}, ValueError, "every_n must be a whole number from 1"),
    ({"every_n": -1}, ValueError, "every_n must be a whole number from 1"),
    ({"every_n": 1.5}, ValueError, "every_n must be a whole number from 1"),
    ({"every_n": "2"}, ValueError, "every_n must be a whole number from 1"),
    ({"fps": 0}, ValueError, "fps must be a finite number above 0"),
    ({"fps": math.nan}, ValueError, "fps must be a finite number above 0"),
    ({"fps": math.inf}, ValueError, "fps must be a finite number above 0"),
    ({"fps": "5"}, ValueError, "fps must be a finite number above 0"),
    ({"max_frames": -1}, ValueError, "max_frames must be a whole number from 1"),
    ({"every_n": 2, "fps": 5.0}, ValueError, "either every_n or fps"),
])
def test_sampling_that_means_nothing_is_refused_at_the_call(redis_url, client, keys, kwargs, error, match):
    """every_n 0, -1 or nan sent every frame; 1.5 every third; fps 0, -1, nan, inf every frame; max_frames -1
    none, without a word; "2" and "5" were comparison TypeErrors from inside."""
    with pytest.raises(error, match=match):
        Producer(settings_for(redis_url)).produce([str(CLIP)], **kwargs)
    assert client.llen(keys.intake) == 0


def test_a_job_no_worker_would_take_is_refused_while_the_producer_sheds_too(redis_url, client, keys):
    """backpressure="drop" with the backlog over lag_limit: a job every worker would refuse (a negative
    frame, a NaN time, a job id that is no string) came back `dropped=True` and was counted as a dropped
    frame of its source, taking the place of the frame held for end_source: the run's summary lost its
    last frame and its drop count. It is RefusedJob, as it is when the producer sends."""
    from moodstream.producer.client import RefusedJob

    producer = Producer(settings_for(redis_url, lag_limit=2, backpressure="drop"))
    for i in range(4):
        producer.submit_image(b"x", source="cam", frame=i)
    assert producer.submit_image(b"x", source="cam", frame=4).dropped
    for bad in ({"frame": -1}, {"frame": 5, "timestamp_s": math.nan}, {"frame": 5, "job_id": 7}):
        with pytest.raises(RefusedJob):
            producer.submit_image(b"x", source="cam", **bad)
    ref = producer.end_source("cam")
    assert ref is not None and ref.frame == 4


def test_numpy_numbers_for_frame_and_page_are_plain_in_the_reference(redis_url, client, keys):
    """frame=np.int64(3) was sent but kept in the JobRef (its to_json then failed json.dumps); page=np.int64(2)
    was refused as 'not a whole number from 1'."""
    import json

    producer = Producer(settings_for(redis_url))
    ref = producer.submit_image(b"x", source="cam", frame=np.int64(3))
    assert type(ref.frame) is int and json.dumps(ref.to_json())
    ref = producer.submit_image(b"x", source="doc", page=np.int64(2))
    assert type(ref.frame) is int


def test_what_is_no_settings_or_quality_is_refused_by_name(redis_url):
    """Producer(None) was AttributeError ('NoneType' has no 'encoding'), ResultReader("redis://...")
    AttributeError ('str' has no 'prefix'); jpeg_quality="90" was OpenCV's error from imencode, 500 and -5
    were sent with OpenCV's warning."""
    from moodstream import ResultReader

    for bad in (None, redis_url, {"redis_url": redis_url}):
        with pytest.raises(TypeError, match=r"Producer takes Settings"):
            Producer(bad)
        with pytest.raises(TypeError, match=r"ResultReader takes Settings"):
            ResultReader(bad)
    for quality in ("90", 500, -5, 90.5, True):
        with pytest.raises((TypeError, ValueError), match="jpeg_quality must be a whole number from 0 to 100"):
            Producer(settings_for(redis_url), encoding="jpeg", jpeg_quality=quality)


def test_analyze_s_form_of_a_result_read_from_the_service_has_no_service_fields():
    """FrameResult.to_json(service=False), 'analyze's form: the service fields ... left out', kept job_id,
    worker, enqueued_at_ms, published_at_ms and frame_entry on a result read from Redis (they were left out
    only where None)."""
    from moodstream.shared.record import FrameResult

    r = FrameResult(source="s", frame=3, job_id="j", worker="w", enqueued_at_ms=1, published_at_ms=2,
                    frame_entry="1-0", run=2, page=1)
    d = r.to_json(service=False)
    assert not {"job_id", "worker", "enqueued_at_ms", "published_at_ms", "frame_entry", "run", "id"} & set(d), d
    assert d["page"] == 1 and d["frame"] == 3
    assert r.to_json()["job_id"] == "j"


def test_the_produce_command_s_fps_decides_over_every_and_up_refuses_the_two(redis_url, client, keys):
    """`produce --every 7 --fps 5`: --fps decides, as its --help says (the API refuses the two now, and the
    command passed both on). `up --every 7 --fps 5` sent frames 0, 6, 12, ... dropping --every without a
    word, where analyze refuses the two: up refuses them too."""
    from click.testing import CliRunner

    from moodstream.cli import cli

    for prefix, flags in (("t", ["--every", "7", "--fps", "5"]), ("fps-alone", ["--fps", "5"])):
        ran = CliRunner().invoke(cli, ["produce", str(CLIP), *flags, "--redis-url", redis_url, "--prefix", prefix])
        assert ran.exit_code == 0, (ran.output, ran.exception)
    assert client.llen(keys.intake) == client.llen("fps-alone:intake") > 0
    ran = CliRunner().invoke(cli, ["up", str(CLIP), "--every", "7", "--fps", "5", "--no-dashboard"])
    assert ran.exit_code == 2 and "use either --every or --fps, not both" in ran.output, ran.output
