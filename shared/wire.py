"""The message schema and its codec: msgpack maps with a schema version, never pickle.

A stream entry holds one field, :data:`FIELD` (``msg``), whose value is one
msgpack map. Two kinds travel:

Frame job (producer -> ``<prefix>:frames``)::

    {"v": 1, "kind": "frame",
     "job_id": str, "source": str, "frame": int,
     "timestamp_s": float | nil,        # position in the video, nil for still images
     "enqueued_at_ms": int,             # producer wall clock, Unix epoch milliseconds
     "reply_to": str | nil,             # extra stream the result is also added to
     "options": map,                    # free-form, echoed nowhere, for future use
     # exactly one of:
     "image": bin,                      # encoded JPEG / PNG / WebP (anything OpenCV decodes)
     "raw": {"shape": [H, W] | [H, W, 3], "dtype": "uint8", "data": bin}}   # RGB or gray

Result (worker -> ``<prefix>:results``, and ``reply_to`` if set)::

    {"v": 1, "kind": "result",
     "job_id": str, "source": str, "frame": int, "timestamp_s": float | nil,
     "faces": [{"box": [x1, y1, x2, y2], "score": float,
                "landmarks": [[x, y] x 5] | nil, "emotion": str,
                "probabilities": {label: float}}],
     "size": [W, H] | nil,              # frame size in pixels, nil on error
     "model_version": str | nil,
     "timings_ms": {"queue_wait": f, "decode": f, "detect": f, "classify": f},
     "worker": str,
     "enqueued_at_ms": int | nil, "published_at_ms": int,
     "error": nil | {"reason": str, "detail": str}}   # faces is [] when error is set

Decoding validates and raises :class:`shared.errors.MessageError` whose
``reason`` is one of :data:`REASONS`. This module needs msgpack and numpy only.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from moodstream.shared.errors import MessageError

SCHEMA_VERSION = 1
FIELD = b"msg"  # the one field of a frames / results stream entry
REASONS = ("not_msgpack", "schema_version", "missing_field", "bad_field")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # msgpack refuses longer containers than this
MAX_RAW_SIDE = 1 << 16  # a raw frame side above this is refused before any arithmetic on it
MAX_TEXT_CHARS = 4096  # job_id, source, reply_to: longer is a bad field, not a 256 MB string echoed back
DEAD_LETTER_PAYLOAD_BYTES = 4096  # a dead letter keeps this much of the message (and its full size)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class FrameJob:
    job_id: str
    source: str
    frame: int
    image: bytes | None = None  # encoded image; or
    array: np.ndarray | None = None  # raw RGB (H, W, 3) or gray (H, W) uint8
    timestamp_s: float | None = None
    reply_to: str | None = None
    options: dict = field(default_factory=dict)
    enqueued_at_ms: int = 0


@dataclass
class ErrorInfo:
    reason: str
    detail: str = ""


@dataclass
class Result:
    job_id: str
    source: str
    frame: int
    worker: str
    faces: list[dict] = field(default_factory=list)
    timestamp_s: float | None = None
    size: tuple[int, int] | None = None  # (W, H)
    model_version: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    enqueued_at_ms: int | None = None
    published_at_ms: int = 0
    error: ErrorInfo | None = None
    entry_id: str | None = None  # results-stream entry id once read back; not on the wire

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        """A JSON-ready dict: the wire map without ``v`` / ``kind``, plus ``id`` (the
        results-stream entry id, for ``--from-id``) when it was read from Redis."""
        d = _finite(_result_map(self))
        del d["v"], d["kind"]
        if self.entry_id is not None:
            d = {"id": self.entry_id, **d}
        return d


# --- encoding ---------------------------------------------------------------------


def encode_frame(job: FrameJob) -> bytes:
    if (job.image is None) == (job.array is None):
        raise ValueError("a FrameJob carries exactly one of image bytes or a raw array")
    m: dict[str, Any] = {
        "v": SCHEMA_VERSION, "kind": "frame", "job_id": job.job_id, "source": job.source,
        "frame": int(job.frame), "timestamp_s": job.timestamp_s,
        "enqueued_at_ms": int(job.enqueued_at_ms or now_ms()), "reply_to": job.reply_to,
        "options": dict(job.options),
    }
    if job.image is not None:
        m["image"] = bytes(job.image)
    else:
        arr = np.ascontiguousarray(job.array)
        if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
            raise ValueError(f"raw frames are uint8 (H, W) or (H, W, 3), got {arr.dtype} {arr.shape}")
        m["raw"] = {"shape": list(arr.shape), "dtype": "uint8", "data": arr.tobytes()}
    return msgpack.packb(m, use_bin_type=True)


def _result_map(r: Result) -> dict:
    return {
        "v": SCHEMA_VERSION, "kind": "result", "job_id": r.job_id, "source": r.source,
        "frame": int(r.frame), "timestamp_s": r.timestamp_s, "faces": r.faces,
        "size": list(r.size) if r.size is not None else None, "model_version": r.model_version,
        "timings_ms": {k: round(float(v), 3) for k, v in r.timings_ms.items()}, "worker": r.worker,
        "enqueued_at_ms": r.enqueued_at_ms, "published_at_ms": int(r.published_at_ms or now_ms()),
        "error": None if r.error is None else {"reason": r.error.reason, "detail": r.error.detail},
    }


def encode_result(r: Result) -> bytes:
    return msgpack.packb(_result_map(r), use_bin_type=True)


# --- decoding ---------------------------------------------------------------------


def _unpack(raw: object, kind: str) -> dict:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise MessageError("not_msgpack", f"expected bytes, got {type(raw).__name__}")
    try:
        m = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE_BYTES,
                            max_str_len=MAX_MESSAGE_BYTES)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise MessageError("not_msgpack", f"{type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(m, dict):
        raise MessageError("not_msgpack", f"top level is a {type(m).__name__}, not a map")
    if "v" not in m:
        raise MessageError("schema_version", "no schema version field 'v'")
    if m["v"] != SCHEMA_VERSION:
        raise MessageError("schema_version", f"schema version {m['v']!r}, this code reads {SCHEMA_VERSION}")
    if m.get("kind") != kind:
        raise MessageError("bad_field", f"kind is {m.get('kind')!r}, expected {kind!r}")
    return m


_MISSING = object()


def _get(m: dict, name: str, types: type | tuple[type, ...], optional: bool = False) -> Any:
    value = m.get(name, _MISSING)
    if value is _MISSING:
        if optional:
            return None
        raise MessageError("missing_field", f"no field {name!r}")
    if value is None and optional:
        return None
    # bool is an int in Python; a frame index of True is still wrong
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise MessageError("bad_field", f"field {name!r} is a {type(value).__name__}")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def decode_frame(raw: object) -> FrameJob:
    """Bytes from a frames-stream entry -> FrameJob, or MessageError with a reason."""
    m = _unpack(raw, "frame")
    job_id = _get(m, "job_id", str)
    if not job_id:
        raise MessageError("bad_field", "empty job_id")
    for name in ("job_id", "source", "reply_to"):
        if isinstance(m.get(name), str) and len(m[name]) > MAX_TEXT_CHARS:
            raise MessageError("bad_field", f"field {name!r} has {len(m[name])} characters (at most {MAX_TEXT_CHARS})")
    frame = _get(m, "frame", int)
    if frame < 0:
        raise MessageError("bad_field", f"negative frame index {frame}")
    job = FrameJob(
        job_id=job_id, source=_get(m, "source", str), frame=frame,
        timestamp_s=_finite_or_none(m, "timestamp_s"),
        enqueued_at_ms=_get(m, "enqueued_at_ms", int),
        reply_to=_get(m, "reply_to", str, optional=True) or None,
        options=_get(m, "options", dict, optional=True) or {},
    )
    has_image, has_raw = "image" in m, "raw" in m
    if has_image == has_raw:
        raise MessageError("missing_field" if not has_image else "bad_field",
                           "a frame job carries exactly one of 'image' or 'raw'")
    if has_image:
        job.image = _get(m, "image", bytes)
    else:
        job.array = _decode_raw(_get(m, "raw", dict))
    return job


def _decode_raw(r: dict) -> np.ndarray:
    shape = _get(r, "shape", list)
    if _get(r, "dtype", str) != "uint8":
        raise MessageError("bad_field", f"raw dtype {r['dtype']!r}, only 'uint8' is accepted")
    data = _get(r, "data", bytes)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)) or \
            not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_RAW_SIDE for s in shape):
        raise MessageError("bad_field", f"raw shape {str(shape)[:80]} is not [H, W] or [H, W, 3] "
                                        f"with sides in 1..{MAX_RAW_SIDE}")
    # Python ints: np.prod would overflow int64 silently (2**32 * 2**32 == 0) and pass the check
    needed = math.prod(shape)
    if len(data) != needed:
        raise MessageError("bad_field", f"raw data has {len(data)} bytes, shape {shape} needs {needed}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def decode_result(raw: object) -> Result:
    m = _unpack(raw, "result")
    faces = _get(m, "faces", list)
    for face in faces:
        _check_face(face)
    size = _get(m, "size", list, optional=True)
    if size is not None and (len(size) != 2 or not all(isinstance(s, int) for s in size)):
        raise MessageError("bad_field", f"size {size!r} is not [W, H]")
    timings = _get(m, "timings_ms", dict)
    if not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in timings.items()):
        raise MessageError("bad_field", "timings_ms must map names to numbers")
    err = _get(m, "error", dict, optional=True)
    error = None
    if err is not None:
        error = ErrorInfo(_get(err, "reason", str), _get(err, "detail", str, optional=True) or "")
    return Result(
        job_id=_get(m, "job_id", str), source=_get(m, "source", str), frame=_get(m, "frame", int),
        worker=_get(m, "worker", str), faces=faces,
        timestamp_s=_finite_or_none(m, "timestamp_s"),
        size=tuple(size) if size is not None else None,
        model_version=_get(m, "model_version", str, optional=True),
        timings_ms={k: float(v) for k, v in timings.items()},
        enqueued_at_ms=_get(m, "enqueued_at_ms", int, optional=True),
        published_at_ms=_get(m, "published_at_ms", int), error=error,
    )


def _check_face(face: object) -> None:
    if not isinstance(face, dict):
        raise MessageError("bad_field", f"a face is a {type(face).__name__}, not a map")
    box = _get(face, "box", list)
    if len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        raise MessageError("bad_field", f"face box {box!r} is not [x1, y1, x2, y2]")
    _get(face, "score", (int, float))
    _get(face, "emotion", str)
    probs = _get(face, "probabilities", dict)
    if not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in probs.items()):
        raise MessageError("bad_field", "face probabilities must map labels to numbers")
    _get(face, "landmarks", list, optional=True)


def _finite(v):
    """JSON has no NaN or infinity: such floats become null (json.dumps would write NaN)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _finite_or_none(m: dict, name: str) -> float | None:
    """An optional number that must be finite (NaN / inf would reach JSON as invalid tokens)."""
    v = _get(m, name, (int, float), optional=True)
    if v is None:
        return None
    if not math.isfinite(v):
        raise MessageError("bad_field", f"field {name!r} is {v}, not a finite number")
    return float(v)


# --- dead letters -----------------------------------------------------------------


def dead_letter_fields(reason: str, detail: str, entry_id: str, deliveries: int, worker: str,
                       payload: bytes | None, job_id: str | None = None) -> dict[str, bytes | str | int]:
    """Fields of one dead-letter stream entry (plain stream fields, readable with XRANGE).

    ``msg`` keeps the first :data:`DEAD_LETTER_PAYLOAD_BYTES` of the message and
    ``msg_bytes`` its full size: enough to see what it was, without a 50 MB poison
    message doubling itself in the dead-letter stream.
    """
    fields: dict[str, bytes | str | int] = {
        "reason": reason, "detail": detail[:500], "entry_id": entry_id, "deliveries": int(deliveries),
        "worker": worker, "at_ms": now_ms(), "job_id": (job_id or "")[:MAX_TEXT_CHARS],
    }
    if payload is not None:
        fields["msg"] = bytes(payload[:DEAD_LETTER_PAYLOAD_BYTES])
        fields["msg_bytes"] = len(payload)
        fields["msg_truncated"] = int(len(payload) > DEAD_LETTER_PAYLOAD_BYTES)
    return fields
