"""The records and their wire codec: round trips, the JSON forms, and every malformed
message named by its reason."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from moodstream.shared.errors import MessageError
from moodstream.shared.record import ErrorInfo, Face, FrameJob, FrameResult, Raw, Smoothed
from moodstream.shared.wire import (SCHEMA_VERSION, dead_letter_fields, now_ms, decode_frame, decode_result, encode_frame,
                                    encode_result)


def _frame_map(**changes) -> dict:
    m = {"v": SCHEMA_VERSION, "kind": "frame", "job_id": "j1", "source": "cam0", "frame": 7,
         "timestamp_s": 0.25, "enqueued_at_ms": 1_700_000_000_000, "reply_to": None, "options": {},
         "image": b"\xff\xd8fake\xff\xd9"}
    m.update(changes)
    return {k: v for k, v in m.items() if v is not _DROP}


_DROP = object()


def _face(**kw) -> Face:
    return Face((1.0, 2.0, 30.5, 40.0), 0.99, [(5.0, 6.0)] * 5, emotion="happiness",
                probabilities={"happiness": 0.9, "neutrality": 0.1}, **kw)


def test_frame_roundtrip_image_bytes():
    job = FrameJob("j1", "a.jpg", 3, image=b"\xff\xd8abc\xff\xd9", timestamp_s=1.5, reply_to="moodstream:reply:x",
                   options={"k": 1}, enqueued_at_ms=123)
    back = decode_frame(encode_frame(job))
    assert back == FrameJob("j1", "a.jpg", 3, image=b"\xff\xd8abc\xff\xd9", timestamp_s=1.5,
                            reply_to="moodstream:reply:x", options={"k": 1}, enqueued_at_ms=123)


@pytest.mark.parametrize("shape", [(4, 5, 3), (4, 5)])
def test_frame_roundtrip_raw_array(shape):
    arr = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    back = decode_frame(encode_frame(FrameJob("j", "s", 0, raw=Raw.of(arr))))
    assert back.image is None and back.array.shape == shape and np.array_equal(back.array, arr)
    assert back.enqueued_at_ms > 0  # stamped when the job was made


def test_a_job_carries_exactly_one_payload_and_raw_arrays_are_checked():
    with pytest.raises(ValueError):
        FrameJob("j", "s", 0)
    with pytest.raises(ValueError):
        FrameJob("j", "s", 0, image=b"x", raw=Raw.of(np.zeros((2, 2), np.uint8)))
    with pytest.raises(ValueError):
        Raw.of(np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(ValueError):
        Raw.of(np.zeros((2, 2), np.float32))


def test_missing_enqueue_time_counts_from_decoding():
    job = decode_frame(msgpack.packb(_frame_map(enqueued_at_ms=_DROP)))
    assert abs(job.enqueued_at_ms - now_ms()) < 5_000


def test_empty_reply_to_names_no_stream():
    assert decode_frame(msgpack.packb(_frame_map(reply_to=""))).reply_to is None


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
    (msgpack.packb(_frame_map(v=1)), "schema_version"),  # the untyped maps before records
    (msgpack.packb(_frame_map(v=True)), "schema_version"),
    (msgpack.packb(_frame_map(kind="result")), "bad_field"),
    (msgpack.packb(_frame_map(job_id=_DROP)), "missing_field"),
    (msgpack.packb(_frame_map(source=_DROP)), "missing_field"),
    (msgpack.packb(_frame_map(enqueued_at_ms=-5)), "bad_field"),
    (msgpack.packb(_frame_map(options=[1])), "bad_field"),
    (msgpack.packb(_frame_map(image=_DROP)), "bad_field"),  # neither image nor raw
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
    (msgpack.packb(_frame_map(image=_DROP, raw={"shape": [1, 3], "dtype": "uint8"})), "missing_field"),
])
def test_decode_frame_reasons(raw, reason):
    with pytest.raises(MessageError) as exc:
        decode_frame(raw)
    assert exc.value.reason == reason


def _result(**kw) -> FrameResult:
    base = dict(job_id="j1", source="a.jpg", frame=0, worker="w1", faces=[_face()], size=(64, 48),
                model_version="m1", timings_ms={"queue_wait": 3.0, "decode": 1.25, "detect": 10.0, "classify": 2.0},
                enqueued_at_ms=100, published_at_ms=150)
    return FrameResult(**{**base, **kw})


def test_result_roundtrip_and_json():
    r = _result(faces=[_face(track_id=3, smoothed=Smoothed("happiness", {"happiness": 0.8, "neutrality": 0.2})),
                       _face(detector_box=(0.0, 1.0, 2.0, 3.0))])
    back = decode_result(encode_result(r))
    assert back == r
    d = back.to_json()
    assert d["job_id"] == "j1" and d["faces"][0]["emotion"] == "happiness" and d["error"] is None
    assert d["faces"][0]["track_id"] == 3 and d["faces"][0]["smoothed"]["emotion"] == "happiness"
    assert "detector_box" not in d["faces"][0] and d["faces"][1]["detector_box"] == [0.0, 1.0, 2.0, 3.0]
    assert "v" not in d and "kind" not in d and "id" not in d
    back.id = "1-0"
    assert list(back.to_json())[0] == "id" and back.to_json()["id"] == "1-0"


def test_analyze_form_leaves_out_the_service_fields():
    """`analyze` prints the same record without what only the service knows; `error`
    appears only on failure, as the analyze contract says."""
    d = FrameResult(source="a.jpg", frame=2, size=(64, 48), faces=[_face()], model_version="m1").to_json(service=False)
    assert set(d) == {"source", "frame", "timestamp_s", "size", "faces", "model_version", "timings_ms"}
    failed = FrameResult(source="b.jpg", error=ErrorInfo("unreadable", "not an image")).to_json(service=False)
    assert failed["error"] == {"reason": "unreadable", "detail": "not an image"} and failed["faces"] == []


def test_error_result_roundtrip():
    r = _result(faces=[], size=None, error=ErrorInfo("truncated", "ends early"), published_at_ms=5)
    back = decode_result(encode_result(r))
    assert not back.ok and back.error == ErrorInfo("truncated", "ends early") and back.faces == []


def test_numpy_numbers_in_a_record_encode_as_plain_numbers():
    r = _result(faces=[Face(tuple(np.float32([1, 2, 3, 4])), np.float32(0.5), emotion="anger",
                            probabilities={"anger": np.float64(1.0)})], size=(np.int64(4), np.int64(3)))
    back = decode_result(encode_result(r))
    assert back.faces[0].box == (1.0, 2.0, 3.0, 4.0) and back.size == (4, 3)


def test_a_result_face_must_be_classified():
    with pytest.raises(ValueError):
        _result(faces=[Face((1.0, 2.0, 3.0, 4.0), 0.9)])


@pytest.mark.parametrize("face", [
    {"box": [1, 2, 3], "score": 1.0, "emotion": "x", "probabilities": {}},
    {"box": [1, 2, 3, 4], "score": "high", "emotion": "x", "probabilities": {}},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "x", "probabilities": [0.5]},
    {"box": [1, 2, 3, 4], "score": 1.0},  # a detector's face, never classified
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "x", "probabilities": {}, "track_id": "7"},
    "not a map",
])
def test_decode_result_rejects_bad_faces(face):
    m = msgpack.unpackb(encode_result(_result(faces=[])))
    m["faces"] = [face]
    with pytest.raises(MessageError) as exc:
        decode_result(msgpack.packb(m))
    assert exc.value.reason == "bad_field"


@pytest.mark.parametrize("face", [
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "anger", "probabilities": {}},  # no probabilities
    {"box": [1, 2, 3, 4], "score": float("nan"), "emotion": "anger", "probabilities": {"anger": 1.0}},
    {"box": [1, 2, float("inf"), 4], "score": 1.0, "emotion": "anger", "probabilities": {"anger": 1.0}},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "anger", "probabilities": {"anger": float("inf")}},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "anger", "probabilities": {"anger": 1.0},
     "landmarks": [[1.0, float("nan")]]},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "anger", "probabilities": {"anger": 1.0},
     "smoothed": {"emotion": "anger", "probabilities": {"anger": float("nan")}}},
])
def test_a_result_face_with_no_probabilities_or_a_number_not_finite_is_refused(face):
    """Such a result crashed the track stage at every restart (argmax of no probabilities) or lost
    its run's summary (NaN is not JSON); every reader of results now skips it as bad_field."""
    m = msgpack.unpackb(encode_result(_result(faces=[])))
    m["faces"] = [face]
    with pytest.raises(MessageError) as exc:
        decode_result(msgpack.packb(m))
    assert exc.value.reason == "bad_field"


@pytest.mark.parametrize("face", [
    {"box": [1, 2, 3, 4], "score": 1e308, "emotion": "anger", "probabilities": {"anger": 1.0}},
    {"box": [1, 2, 3, 4], "score": -0.5, "emotion": "anger", "probabilities": {"anger": 1.0}},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "anger", "probabilities": {"anger": 1e300, "fear": -1e300}},
    {"box": [-1e308, -1e308, 1e308, 1e308], "score": 1.0, "emotion": "anger", "probabilities": {"anger": 1.0}},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "anger", "probabilities": {"anger": 1.0},
     "landmarks": [[1.0, 1e300]]},
    {"box": [1, 2, 3, 4], "score": 1.0, "emotion": "anger", "probabilities": {"anger": 1.0},
     "smoothed": {"emotion": "anger", "probabilities": {"anger": 7.0}}},
])
def test_a_result_face_with_numbers_no_worker_writes_is_refused(face):
    """Finite but absurd numbers passed: a score of 1e308 or probabilities of +-1e300 made the track
    stage's summary overflow to inf and crash on it at every restart; a box of +-1e308 crashed its
    face-picture crop (int(-inf)). Scores and probabilities are in [0, 1], coordinates within
    +-MAX_COORD."""
    m = msgpack.unpackb(encode_result(_result(faces=[])))
    m["faces"] = [face]
    with pytest.raises(MessageError) as exc:
        decode_result(msgpack.packb(m))
    assert exc.value.reason == "bad_field"


def test_a_result_face_as_workers_write_it_passes():
    probs = {k: 1 / 8 for k in ("anger", "contempt", "disgust", "fear", "happiness", "neutrality", "sadness", "surprise")}
    m = msgpack.unpackb(encode_result(_result(faces=[])))
    m["faces"] = [{"box": [-12.5, -3.0, 2000.0, 1100.0], "score": 1.0, "emotion": "anger", "probabilities": probs,
                   "smoothed": {"emotion": "anger", "probabilities": probs}}]
    assert decode_result(msgpack.packb(m)).faces[0].box == (-12.5, -3.0, 2000.0, 1100.0)


def test_frame_is_not_a_result():
    with pytest.raises(MessageError) as exc:
        decode_result(encode_frame(FrameJob("j", "s", 0, image=b"x")))
    assert exc.value.reason == "bad_field"


def test_msgpack_nested_too_deep_is_not_msgpack():
    """Arrays nested 200,000 deep in a free-form field: msgspec raises RecursionError,
    which must become a reason, not escape."""
    body = msgpack.packb(_frame_map())
    deep = b"\x81" + msgpack.packb("x") + b"\x91" * 200_000 + b"\xc0"
    raw = bytes([body[0] + 1]) + body[1:] + msgpack.packb("deep") + deep  # one more key in the top map
    with pytest.raises(MessageError) as exc:
        decode_frame(raw)
    assert exc.value.reason == "not_msgpack"


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
        decode_frame(msgpack.packb(_frame_map(**{field: "x" * 10_000})))
    assert exc.value.reason == "bad_field"


@pytest.mark.parametrize("field", ["job_id", "options"])
def test_fields_over_the_cap_are_refused_before_decoding(field):
    # over MAX_FIELDS_BYTES besides the pixels: too_large, whatever the field holds
    value = "x" * 100_000 if field == "job_id" else {"a": [{}] * 100_000}
    with pytest.raises(MessageError) as exc:
        decode_frame(msgpack.packb(_frame_map(**{field: value})))
    assert exc.value.reason == "too_large"
    big_image = msgpack.packb(_frame_map(image=b"\xff\xd8" + b"\0" * 1_000_000, options={"k": 1}))
    assert decode_frame(big_image).options == {"k": 1}  # pixels do not count


def test_dead_letter_keeps_a_bounded_prefix_and_the_size():
    payload = b"p" * 5_000_000
    f = dead_letter_fields("too_large", "d", "1-0", 1, "w1", payload, "j1")
    assert len(f["msg"]) == 4096 and f["msg"] == payload[:4096]
    assert f["msg_bytes"] == 5_000_000 and f["msg_truncated"] == 1
    small = dead_letter_fields("bad_field", "d", "1-0", 1, "w1", b"abc")
    assert small["msg"] == b"abc" and small["msg_bytes"] == 3 and small["msg_truncated"] == 0


@pytest.mark.parametrize("kind", ["frame", "result"])
def test_an_enqueue_time_past_any_clock_is_refused(kind):
    """A job's enqueued_at_ms of 2**64-1 was copied into its result; the track stage read face pictures
    back with it as a stream id (its + the skew: past 2**64) and died, at every restart."""
    from moodstream.shared.record import FrameJob, FrameResult

    raw = (encode_frame(FrameJob("j", "s", 0, image=b"\xff\xd8x")) if kind == "frame"
           else encode_result(FrameResult(job_id="j", source="s", frame=0, faces=[])))
    m = msgpack.unpackb(raw)
    m["enqueued_at_ms"] = 2**64 - 1
    with pytest.raises(MessageError) as exc:
        (decode_frame if kind == "frame" else decode_result)(msgpack.packb(m))
    assert exc.value.reason == "bad_field"


@pytest.mark.parametrize("kind", ["frame", "result"])
def test_page_is_optional_on_the_wire_without_a_version_bump(kind):
    """A still image's ``page`` (1-based) came without a schema version bump: a message of the
    release before (no page) decodes with page None, one with a page decodes with it, and the
    decoders skip a field they do not know (so the release before reads a page as nothing)."""
    if kind == "frame":
        encode, decode = encode_frame, decode_frame
        message = encode_frame(FrameJob("j", "scan.tif", 1, image=b"\xff\xd8x", page=2))
    else:
        encode, decode = encode_result, decode_result
        message = encode_result(FrameResult(job_id="j", source="scan.tif", frame=1, page=2))
    m = msgpack.unpackb(message)
    assert m["v"] == SCHEMA_VERSION == 2 and m["page"] == 2
    assert decode(message).page == 2
    old = {k: v for k, v in m.items() if k != "page"}
    assert decode(msgpack.packb(old)).page is None
    assert decode(msgpack.packb({**old, "a_later_field": {"x": [1, 2]}})) == decode(msgpack.packb(old))
    assert decode(encode(decode(msgpack.packb(old)))).page is None
    for bad in (0, -1, "2", 1.5):
        with pytest.raises(MessageError) as exc:
            decode(msgpack.packb({**m, "page": bad}))
        assert exc.value.reason == "bad_field", bad


def test_a_page_is_in_the_json_forms_only_where_there_is_one():
    """A still image's result names its page in both JSON forms; a video frame's has no page key
    (the keys it printed before are the keys it prints)."""
    still = FrameResult(source="scan.tif", frame=1, size=(64, 48), faces=[_face()], page=2)
    assert still.to_json(service=False)["page"] == 2 and still.to_json()["page"] == 2
    frame = FrameResult(source="v.mp4", frame=1, timestamp_s=0.04, faces=[_face()])
    assert "page" not in frame.to_json(service=False) and "page" not in frame.to_json()


def test_frame_entry_is_optional_on_the_wire_and_only_in_the_service_s_json():
    """A worker names the frames-stream entry it answered (``frame_entry``) without a schema bump: a
    result of the release before decodes with None; a bad id is a bad field; a JSON form has the key
    only where it is set (``analyze`` never sets it)."""
    message = encode_result(FrameResult(job_id="j", source="v.mp4", frame=1, frame_entry="1733400000000-3"))
    m = msgpack.unpackb(message)
    assert m["v"] == SCHEMA_VERSION and decode_result(message).frame_entry == "1733400000000-3"
    assert decode_result(msgpack.packb({k: v for k, v in m.items() if k != "frame_entry"})).frame_entry is None
    for bad in ("", "12", "a-1", "1-2-3", 17):
        with pytest.raises(MessageError) as exc:
            decode_result(msgpack.packb({**m, "frame_entry": bad}))
        assert exc.value.reason == "bad_field", bad
    served = FrameResult(job_id="j", source="v.mp4", frame=1, faces=[_face()], frame_entry="5-0")
    assert served.to_json()["frame_entry"] == "5-0"
    unserved = FrameResult(source="v.mp4", frame=1, faces=[_face()])
    assert "frame_entry" not in unserved.to_json() and "frame_entry" not in unserved.to_json(service=False)


def test_a_schema_version_of_another_type_says_what_it_is():
    """A job with "v": "2" (a string) was dead-lettered 'schema version '2', this code reads 2': the
    same-looking numbers, no word of the type."""
    with pytest.raises(MessageError, match=r"schema version '2' \(a str; a number is wanted\), this code reads 2"):
        decode_frame(msgpack.packb(_frame_map(v="2")))
    with pytest.raises(MessageError, match=r"schema version 1, this code reads 2"):
        decode_frame(msgpack.packb(_frame_map(v=1)))
