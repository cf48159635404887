"""The message codec: round trips, and every malformed message named by its reason."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from moodstream.shared.errors import MessageError
from moodstream.shared.wire import (SCHEMA_VERSION, ErrorInfo, FrameJob, Result, dead_letter_fields, decode_frame,
                         decode_result, encode_frame, encode_result)


def _frame_map(**changes) -> dict:
    m = {"v": SCHEMA_VERSION, "kind": "frame", "job_id": "j1", "source": "cam0", "frame": 7,
         "timestamp_s": 0.25, "enqueued_at_ms": 1_700_000_000_000, "reply_to": None, "options": {},
         "image": b"\xff\xd8fake\xff\xd9"}
    m.update(changes)
    return {k: v for k, v in m.items() if v is not _DROP}


_DROP = object()


def _face() -> dict:
    return {"box": [1.0, 2.0, 30.5, 40.0], "score": 0.99, "landmarks": [[5.0, 6.0]] * 5,
            "emotion": "happiness", "probabilities": {"happiness": 0.9, "neutrality": 0.1}}


def test_frame_roundtrip_image_bytes():
    job = FrameJob("j1", "a.jpg", 3, image=b"\xff\xd8abc\xff\xd9", timestamp_s=1.5, reply_to="moodstream:reply:x",
                   options={"k": 1}, enqueued_at_ms=123)
    back = decode_frame(encode_frame(job))
    assert back == FrameJob("j1", "a.jpg", 3, image=b"\xff\xd8abc\xff\xd9", timestamp_s=1.5,
                            reply_to="moodstream:reply:x", options={"k": 1}, enqueued_at_ms=123)


@pytest.mark.parametrize("shape", [(4, 5, 3), (4, 5)])
def test_frame_roundtrip_raw_array(shape):
    arr = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    back = decode_frame(encode_frame(FrameJob("j", "s", 0, array=arr)))
    assert back.image is None and back.array.shape == shape and np.array_equal(back.array, arr)
    assert back.enqueued_at_ms > 0  # stamped at encode time when unset


def test_encode_rejects_both_or_neither_payload_and_bad_arrays():
    with pytest.raises(ValueError):
        encode_frame(FrameJob("j", "s", 0))
    with pytest.raises(ValueError):
        encode_frame(FrameJob("j", "s", 0, image=b"x", array=np.zeros((2, 2), np.uint8)))
    with pytest.raises(ValueError):
        encode_frame(FrameJob("j", "s", 0, array=np.zeros((2, 2, 4), np.uint8)))


def test_never_pickle():
    import pickle

    with pytest.raises(MessageError) as exc:
        decode_frame(pickle.dumps({"v": 1}))
    assert exc.value.reason == "not_msgpack"


@pytest.mark.parametrize("raw, reason", [
    (b"", "not_msgpack"),
    (b"\xc1", "not_msgpack"),
    (b"\xff\xd8\xff\xe0 a jpeg, not a message", "not_msgpack"),
    (msgpack.packb([1, 2]), "not_msgpack"),
    ("a str", "not_msgpack"),
    (msgpack.packb(_frame_map(v=_DROP)), "schema_version"),
    (msgpack.packb(_frame_map(v=2)), "schema_version"),
    (msgpack.packb(_frame_map(kind="result")), "bad_field"),
    (msgpack.packb(_frame_map(job_id=_DROP)), "missing_field"),
    (msgpack.packb(_frame_map(source=_DROP)), "missing_field"),
    (msgpack.packb(_frame_map(enqueued_at_ms=_DROP)), "missing_field"),
    (msgpack.packb(_frame_map(image=_DROP)), "missing_field"),
    (msgpack.packb(_frame_map(job_id="")), "bad_field"),
    (msgpack.packb(_frame_map(frame="7")), "bad_field"),
    (msgpack.packb(_frame_map(frame=True)), "bad_field"),
    (msgpack.packb(_frame_map(frame=-1)), "bad_field"),
    (msgpack.packb(_frame_map(image="text, not bin")), "bad_field"),
    (msgpack.packb(_frame_map(raw={"shape": [1, 1, 3], "dtype": "uint8", "data": b"abc"})), "bad_field"),
    (msgpack.packb(_frame_map(image=_DROP, raw={"shape": [2, 2, 3], "dtype": "uint8", "data": b"ab"})), "bad_field"),
    (msgpack.packb(_frame_map(image=_DROP, raw={"shape": [1, 1, 3], "dtype": "float32", "data": b"abc"})),
     "bad_field"),
    (msgpack.packb(_frame_map(image=_DROP, raw={"shape": [1, 1, 4], "dtype": "uint8", "data": b"abcd"})),
     "bad_field"),
    (msgpack.packb(_frame_map(image=_DROP, raw={"shape": [1, 3], "data": b"abc"})), "missing_field"),
])
def test_decode_frame_reasons(raw, reason):
    with pytest.raises(MessageError) as exc:
        decode_frame(raw)
    assert exc.value.reason == reason


def test_result_roundtrip_and_json():
    r = Result("j1", "a.jpg", 0, "w1", faces=[_face()], size=(64, 48), model_version="m1",
               timings_ms={"queue_wait": 3, "decode": 1.25, "detect": 10.0, "classify": 2.0},
               enqueued_at_ms=100, published_at_ms=150)
    back = decode_result(encode_result(r))
    assert back == r
    d = back.to_json()
    assert d["job_id"] == "j1" and d["faces"][0]["emotion"] == "happiness" and d["error"] is None
    assert "v" not in d and "id" not in d
    back.entry_id = "1-0"
    assert back.to_json()["id"] == "1-0"


def test_error_result_roundtrip():
    r = Result("j2", "b.jpg", 0, "w1", error=ErrorInfo("truncated", "ends early"), published_at_ms=5)
    back = decode_result(encode_result(r))
    assert not back.ok and back.error == ErrorInfo("truncated", "ends early") and back.faces == []


@pytest.mark.parametrize("face", [
    {"box": [1, 2, 3], "score": 1.0, "emotion": "x", "probabilities": {}},
    {"box": [1, 2, 3, 4], "score": "high", "emotion": "x", "probabilities": {}},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "x", "probabilities": [0.5]},
    "not a map",
])
def test_decode_result_rejects_bad_faces(face):
    m = msgpack.unpackb(encode_result(Result("j", "s", 0, "w", published_at_ms=1)))
    m["faces"] = [face]
    with pytest.raises(MessageError) as exc:
        decode_result(msgpack.packb(m))
    assert exc.value.reason == "bad_field"


def test_frame_is_not_a_result():
    with pytest.raises(MessageError) as exc:
        decode_result(encode_frame(FrameJob("j", "s", 0, image=b"x")))
    assert exc.value.reason == "bad_field"


def test_dead_letter_fields_are_plain():
    f = dead_letter_fields("too_large", "x" * 1000, "1-0", 2, "w1", b"payload", "j1")
    assert f["reason"] == "too_large" and len(f["detail"]) == 500 and f["msg"] == b"payload"
    assert "msg" not in dead_letter_fields("trimmed", "", "1-0", 0, "w1", None)


# --- defects found by attacking the service (issue 12) ------------------------------------


@pytest.mark.parametrize("shape", [[2**32, 2**32], [2**32, 2**32, 3], [2**62, 4], [-1, 5], [0, 5], [2**17, 1],
                                   [5, 5, 4], [5, "5"], [5, 5.0], [True, 5], [], [1, 2, 3, 4]])
def test_raw_shape_that_overflows_or_lies_is_a_bad_field(shape):
    # [2**32, 2**32] with empty data: np.prod overflowed to 0, the length check passed and reshape raised
    m = _frame_map(image=_DROP, raw={"shape": shape, "dtype": "uint8", "data": b""})
    with pytest.raises(MessageError) as exc:
        decode_frame(msgpack.packb(m))
    assert exc.value.reason == "bad_field"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_timestamp_is_a_bad_field(value):
    with pytest.raises(MessageError) as exc:
        decode_frame(msgpack.packb(_frame_map(timestamp_s=value)))
    assert exc.value.reason == "bad_field"


@pytest.mark.parametrize("field", ["job_id", "source", "reply_to"])
def test_huge_text_fields_are_refused(field):
    with pytest.raises(MessageError) as exc:
        decode_frame(msgpack.packb(_frame_map(**{field: "x" * 100_000})))
    assert exc.value.reason == "bad_field"


def test_dead_letter_keeps_a_bounded_prefix_and_the_size():
    payload = b"p" * 5_000_000
    f = dead_letter_fields("too_large", "d", "1-0", 1, "w1", payload, "j1")
    assert len(f["msg"]) == 4096 and f["msg"] == payload[:4096]
    assert f["msg_bytes"] == 5_000_000 and f["msg_truncated"] == 1
    small = dead_letter_fields("bad_field", "d", "1-0", 1, "w1", b"abc")
    assert small["msg"] == b"abc" and small["msg_bytes"] == 3 and small["msg_truncated"] == 0
