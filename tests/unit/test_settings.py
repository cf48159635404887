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
