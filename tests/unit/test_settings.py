import pytest

from moodstream.shared.errors import ConfigError
from moodstream.shared.labels import LABELS, canonical
from moodstream.shared.settings import Settings


def test_labels_fixed_order():
    assert LABELS == ("anger", "contempt", "disgust", "fear", "happiness", "neutrality", "sadness", "surprise")
    assert canonical("Happy") == "happiness"
    assert canonical(" neutral ") == "neutrality"
    assert canonical("bored") is None


def test_env_then_overrides():
    env = {"MOODSTREAM_BATCH_MAX": "8", "MOODSTREAM_CALIBRATE_BOXES": "yes",
           "MOODSTREAM_REDIS_URL": "redis://h:1/0", "OTHER": "x"}
    s = Settings.from_env(env, batch_wait_ms=5, device=None)
    assert s.batch_max == 8 and s.calibrate_boxes is True and s.redis_url == "redis://h:1/0"
    assert s.batch_wait_ms == 5 and s.device == "auto"


@pytest.mark.parametrize("env, match", [
    ({"MOODSTREAM_BATCH_MAX": "many"}, "MOODSTREAM_BATCH_MAX"),
    ({"MOODSTREAM_BATCH_MAX": "0"}, "batch_max"),
    ({"MOODSTREAM_CALIBRATE_BOXES": "maybe"}, "CALIBRATE_BOXES"),
    ({"MOODSTREAM_DETECTOR": "yolo"}, "detector"),
    ({"MOODSTREAM_DEVICE": "tpu"}, "device"),
    # no upper bound once: OpenVINO refused 2**31 threads in a multi-line error, threadpoolctl
    # overflowed on 10**20 with a traceback
    ({"MOODSTREAM_THREADS": "100000000000000000000"}, r"threads must be in \[0, 1024\]"),
    ({"MOODSTREAM_THREADS": "2147483648"}, r"threads must be in \[0, 1024\]"),
    ({"MOODSTREAM_DECODE_THREADS": "100000"}, r"decode_threads must be in \[1, 1024\]"),
    # the CLI took 12 or more, the environment anything: 1 took 16.6 s and 1.18 GB on one street photo
    ({"MOODSTREAM_MIN_FACE_PX": "1"}, r"min_face_px must be >= 12"),
])
def test_bad_values_name_the_setting(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)


def test_unknown_override_rejected():
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.from_env({}, batchmax=3)


def test_lag_limit_may_exceed_stream_maxlen():
    # issue 12 item 7 refused lag_limit >= stream_maxlen (MAXLEN trimmed unread frames); issue 22 item 9:
    # the workers' movers trim only acknowledged entries (producers only push), so any pair is safe (tests/chaos/test_backpressure_trim.py)
    assert Settings.from_env({}, lag_limit=10_000, stream_maxlen=10_000).lag_limit == 10_000
    assert Settings.from_env({}, lag_limit=400, stream_maxlen=200).stream_maxlen == 200


def test_repr_hides_the_redis_password():
    s = Settings.from_env({}, redis_url="redis://:s3cret@host:6379/0")
    assert "s3cret" not in repr(s) and "host:6379" in repr(s)


@pytest.mark.parametrize("name, value, match", [
    # a string for a number: a TypeError from inside validate ("'<=' not supported between 'str' and 'int'")
    ("batch_max", "16", r"batch_max must be a whole number, got '16' \(str\)"),
    ("threads", "4", "threads must be a whole number"),
    ("face_score_min", "0.9", r"face_score_min must be a number, got '0.9' \(str\)"),
    ("redis_wait_s", "10", "redis_wait_s must be a number"),
    # taken, and wrong later: a string "false" is true, 2.5 frames between detections, True threads
    ("calibrate_boxes", "false", r"calibrate_boxes must be True or False, got 'false' \(str\)"),
    ("track_shot_cuts", 0, "track_shot_cuts must be True or False"),
    ("detect_every", 2.5, "detect_every must be a whole number, got 2.5"),
    ("batch_max", True, "batch_max must be a whole number, got True"),
    ("max_pixels", 1e7, "max_pixels must be a whole number"),
    ("face_score_min", True, "face_score_min must be a number"),
    ("redis_url", 123, r"redis_url must be a string or None, got 123 \(int\)"),
    ("prefix", 5, "prefix must be a string"),
    ("device", 0, "device must be a string"),  # an AttributeError ('int' object has no attribute 'startswith')
])
def test_an_override_of_the_wrong_type_names_the_setting(name, value, match):
    """Settings.from_env(**overrides) and Settings(...) are the Python API's: a value of the wrong
    type was a TypeError or AttributeError from inside validate, or taken as it was (a string "false"
    for True, 2.5 for detect_every) and wrong later."""
    with pytest.raises(ConfigError, match=match):
        Settings.from_env({}, **{name: value})
    with pytest.raises(ConfigError, match=match):
        Settings(**{name: value})


def test_settings_made_directly_are_checked_as_from_env_checks_them():
    """Settings(batch_max=0) was taken (only from_env and replace checked); the API's examples make
    Settings(device="cpu") directly."""
    with pytest.raises(ConfigError, match="batch_max must be > 0"):
        Settings(batch_max=0)
    with pytest.raises(ConfigError, match="device must be"):
        Settings(device="tpu")
    import numpy as np

    s = Settings(batch_max=np.int64(8), redis_wait_s=2, face_score_min=np.float32(0.5), metrics_port=None)
    assert s.batch_max == 8 and s.redis_wait_s == 2


def test_an_env_that_is_no_mapping_says_settings_go_as_keywords():
    """Settings.from_env("redis://host:6379/0") (the URL where the environment goes) was an AttributeError:
    'str' object has no attribute 'get'."""
    with pytest.raises(TypeError, match=r"from_env\(redis_url=\.\.\.\)"):
        Settings.from_env("redis://host:6379/0")
    with pytest.raises(TypeError, match="env must be a mapping"):
        Settings.from_env([("MOODSTREAM_BATCH_MAX", "8")])
