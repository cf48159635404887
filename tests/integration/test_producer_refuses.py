"""The producer refuses a frame job that every worker would refuse (bad_field), before sending it:
sent, it was dead-lettered and the caller told nothing."""
import io
from pathlib import Path

import numpy as np
import pytest
from tests.support.streamkit import settings_for

from moodstream.producer.client import Producer
from moodstream.shared.errors import BadInputError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("field, value", [("frame", -1), ("timestamp_s", float("nan")), ("source", "s" * 5000),
                                          ("job_id", ""), ("reply_to", "r" * 5000)])
def test_any_field_no_worker_takes_is_refused_before_it_is_sent(redis_url, client, keys, image_path, field, value):
    """As with a page: a frame job whose frame is -1, whose time is NaN, whose source or reply_to is
    over 4,096 characters or whose job id is empty was sent, and every worker dead-lettered it
    (bad_field), the caller told nothing. The producer now checks a job as a worker reads it."""
    from moodstream.shared.record import FrameJob

    producer = Producer(settings_for(redis_url))
    job = FrameJob("job-1", "photo.jpg", 0, image=image_path("single").read_bytes())
    setattr(job, field, value)
    with pytest.raises(ValueError, match=field):
        producer.submit(job)
    assert not client.exists(keys.intake) and not client.exists(keys.frames)  # nothing sent


def test_a_source_no_worker_takes_is_one_input_s_error_for_produce(redis_url, client, keys, image_path):
    """What `produce` and the expander send goes through submit_item: a refused job is that input's
    error, said and counted, and the next input is sent (not a ValueError ending the run)."""
    from moodstream.shared.media import FrameItem

    said = []
    producer = Producer(settings_for(redis_url), notice=said.append)
    data = image_path("single").read_bytes()
    assert producer.submit_item(FrameItem("s" * 5000, 0, data=data, page=1)) is None
    assert not producer.submit_item(FrameItem("photo.jpg", 0, data=data, page=1)).dropped
    assert producer.stats.failed_inputs == [("s" * 5000, "bad_field")] and client.llen(keys.intake) == 1
    assert len(said) == 1 and "not sent" in said[0], said


@pytest.mark.parametrize("data, error, match", [
    # each was sent: a frame's bytes (or 5 zero bytes for the int 5, [1, 2, 3] as 3 bytes) as an image;
    # every worker answered 'unreadable: not an image', the mistake never named
    (np.zeros((48, 48, 3), np.uint8), TypeError, "an RGB array goes to submit_array"),
    (5, TypeError, "got int"),
    ([1, 2, 3], TypeError, "got list"),
    # Python's own words, not what to pass: 'string argument without an encoding', "cannot convert
    # 'NoneType' object to bytes", "'bytes' object cannot be interpreted as an integer"
    ("photo.jpg", TypeError, r"produce\(\[path\]\)"),
    (None, TypeError, "got NoneType"),
    (io.BytesIO(b"\xff\xd8"), TypeError, r"\.read\(\)"),
])
def test_submit_image_takes_only_the_bytes_of_an_image(redis_url, client, keys, data, error, match):
    producer = Producer(settings_for(redis_url))
    with pytest.raises(error, match=match):
        producer.submit_image(data, source="upload")
    assert not client.exists(keys.intake)  # nothing sent


@pytest.mark.parametrize("encoding", ["png", "raw"])
@pytest.mark.parametrize("rgb, error, match", [
    # png: OpenCV's cv2.error from cvtColor; raw: float 0..1 cast to uint8 (a black frame) and sent
    ([[1, 2, 3]], TypeError, "got list"),
    (None, TypeError, "got NoneType"),
    (np.zeros((0, 0, 3), np.uint8), BadInputError, "empty"),
    (np.full((48, 48, 3), 0.5, np.float32), BadInputError, "RGB uint8"),
    (np.zeros((48, 48, 4), np.uint8), BadInputError, "RGB uint8"),
])
def test_submit_array_refuses_what_is_no_rgb_frame(redis_url, client, keys, encoding, rgb, error, match):
    producer = Producer(settings_for(redis_url), encoding=encoding)
    with pytest.raises(error, match=match):
        producer.submit_array(rgb, source="camera")
    assert not client.exists(keys.intake)  # nothing sent
    view = np.zeros((64, 48, 3), np.uint8).transpose(1, 0, 2)  # a view is a frame like any other
    assert not producer.submit_array(view, source="camera").dropped and client.llen(keys.intake) == 1


@pytest.mark.parametrize("options", [{"x": object()}, {"n": 2 ** 70}])
def test_options_that_cannot_be_encoded_are_refused_by_name(redis_url, client, keys, image_path, options):
    """msgspec's NotImplementedError ('cannot encode object') or OverflowError came out of submit."""
    producer = Producer(settings_for(redis_url))
    with pytest.raises(ValueError, match="options") as info:
        producer.submit_image(image_path("single").read_bytes(), options=options)
    assert isinstance(info.value, BadInputError) and info.value.reason == "bad_field"
    assert not client.exists(keys.intake)


def test_produce_counts_in_the_singular_and_escapes_names_from_a_folder(redis_url, client, keys, tmp_path):
    """`produce one.jpg` said "produced 1 jobs"; a file in a folder named with a terminal escape
    (``bad\\x1b[2J.jpg``, over max_message_bytes) had the escape written raw to stderr twice (the skipped line
    and the closing error), clearing the user's screen; an empty folder's name too ("no images or
    videos in ..."). Now "1 job", "1 input failed", and control characters escaped, as table rows are."""
    from click.testing import CliRunner

    from moodstream.cli import cli

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "one.jpg").write_bytes((REPO / "samples" / "street.jpg").read_bytes())
    (photos / "bad\x1b[2J.jpg").write_bytes(b"\xff\xd8" + b"\x00" * 300_000)
    empty = tmp_path / "e\x1b[31mmpty"
    empty.mkdir()
    flags = ["--redis-url", redis_url, "--prefix", "t"]
    env = {"MOODSTREAM_MAX_MESSAGE_BYTES": "250000"}  # street.jpg (100 kB) is sent, the other is too large
    ran = CliRunner(env=env).invoke(cli, ["produce", str(photos / "one.jpg"), *flags])
    assert ran.exit_code == 0 and "produced 1 job\n" in ran.stderr, ran.output
    ran = CliRunner(env=env).invoke(cli, ["produce", str(photos), *flags])
    assert ran.exit_code == 1 and "produced 1 job\n" in ran.stderr, ran.output
    assert "\x1b" not in ran.stderr and "bad\\x1b[2J.jpg" in ran.stderr, ran.stderr
    assert "Error: 1 input failed: " in ran.stderr, ran.stderr
    ran = CliRunner().invoke(cli, ["produce", str(empty), *flags])
    assert ran.exit_code == 1 and "\x1b" not in ran.stderr and "e\\x1b[31mmpty" in ran.stderr, ran.stderr
