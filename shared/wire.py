"""The wire: records of :mod:`moodstream.shared.record` as msgpack maps, never pickle.

A stream entry holds one field, :data:`FIELD` (``msg``), whose value is one
msgpack map: a :class:`~moodstream.shared.record.FrameJob` (``"kind": "frame"``,
producer -> ``<prefix>:frames``) or a
:class:`~moodstream.shared.record.FrameResult` (``"kind": "result"``, worker ->
``<prefix>:results``, and ``reply_to`` if set), with the schema version in
``"v"``. The maps' keys are the structs' fields; see that module for what each
means.

Decoding bounds memory before it builds anything: a first pass reads the
schema version, the kind and where the pixels are as raw slices of the message
(nothing is built for the other fields), and a frame job whose bytes other than
its pixels exceed :data:`MAX_FIELDS_BYTES` is refused (``too_large``): 4 MiB of
empty msgpack maps in ``options`` would otherwise become 300 MiB of Python
objects. Then it checks the version (:data:`SCHEMA_VERSION`), validates
against the struct definitions, and raises
:class:`~moodstream.shared.errors.MessageError` whose ``reason`` is one of
:data:`REASONS`. This module needs msgspec and numpy only.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

import msgspec
import numpy as np

from moodstream.shared.errors import MessageError
from moodstream.shared.record import MAX_TEXT_CHARS, MAX_TIME_MS, SCHEMA_VERSION, FrameJob, FrameResult, now_ms

__all__ = ["FIELD", "HEAD", "REASONS", "SCHEMA_VERSION", "TOO_LARGE", "dead_letter_fields", "decode_frame",
           "decode_result", "encode_frame", "encode_result", "new_job_id", "now_ms"]
FIELD = b"msg"  # the one field of a frames / results stream entry
# ... but for a mover's stand-in (worker/intake.py) for a message over max_message_bytes that a producer pushed
# to the intake list: its size in bytes (TOO_LARGE) and its first DEAD_LETTER_PAYLOAD_BYTES (HEAD), no FIELD.
# A worker dead-letters it as too_large without ever reading the message whole.
TOO_LARGE = b"too_large"
HEAD = b"head"
REASONS = ("not_msgpack", "schema_version", "missing_field", "bad_field", "too_large")
# A frame job's bytes other than its pixels (``image``, ``raw.data``): ids, source, reply_to (4 KiB
# each at most), options. Decoded msgpack costs up to ~80x its size in Python objects: this bounds it
# to a few MiB per message, whatever the producer sends.
MAX_FIELDS_BYTES = 64 * 1024
_SMALL_BYTES = 64  # a schema version or kind longer than this is not one: reported, never decoded
DEAD_LETTER_PAYLOAD_BYTES = 4096  # a dead letter keeps this much of the message (and its full size)


def new_job_id() -> str:
    return uuid.uuid4().hex


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays that slipped into a record encode as plain numbers / lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_plain)


class _Header(msgspec.Struct):
    """What is read before the body, as slices of the message (nothing decoded, nothing
    built; other fields are skipped): which schema, which kind, where the pixels are."""

    v: msgspec.Raw = msgspec.Raw()
    kind: msgspec.Raw = msgspec.Raw()
    image: msgspec.Raw = msgspec.Raw()
    raw: msgspec.Raw = msgspec.Raw()


class _RawPixels(msgspec.Struct):
    data: msgspec.Raw = msgspec.Raw()


_header = msgspec.msgpack.Decoder(_Header)
_raw_pixels = msgspec.msgpack.Decoder(_RawPixels)
_decoders = {"frame": msgspec.msgpack.Decoder(FrameJob), "result": msgspec.msgpack.Decoder(FrameResult)}
_MISSING = re.compile(r"missing required field `(\w+)`")


# --- encoding ---------------------------------------------------------------------


def encode_frame(job: FrameJob) -> bytes:
    return _encoder.encode(job)


def encode_result(r: FrameResult) -> bytes:
    if not r.published_at_ms:
        r.published_at_ms = now_ms()
    return _encoder.encode(r)


# --- decoding ---------------------------------------------------------------------


def _decode(raw: object, kind: str):
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise MessageError("not_msgpack", f"expected bytes, got {type(raw).__name__}")
    try:
        head = _header.decode(raw)
    except msgspec.ValidationError as exc:  # valid msgpack, but not a map
        raise MessageError("not_msgpack", f"top level is not a map: {exc}"[:200]) from None
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: arrays nested 100,000 deep
        raise MessageError("not_msgpack", f"{exc}"[:200]) from None
    if kind == "frame":
        fields = len(raw) - _pixel_bytes(head)
        if fields > MAX_FIELDS_BYTES:
            raise MessageError("too_large", f"{fields} bytes besides the pixels (image / raw.data) is over "
                                            f"{MAX_FIELDS_BYTES}: refused before decoding")
    v, head_kind = _small(head.v), _small(head.kind)
    if v is msgspec.UNSET:
        raise MessageError("schema_version", "no schema version field 'v'")
    if v != SCHEMA_VERSION or isinstance(v, bool):
        said = f"{v}" if type(v) is int else f"{str(v)[:40]!r} (a {type(v).__name__}; a number is wanted)"  # "2"
        raise MessageError("schema_version", f"schema version {said}, this code reads {SCHEMA_VERSION}")
    if head_kind != kind:
        raise MessageError("bad_field", f"kind is {str(head_kind)[:40]!r}, expected {kind!r}")
    try:
        return _decoders[kind].decode(raw)
    except msgspec.ValidationError as exc:
        missing = _MISSING.search(str(exc))
        if missing:
            raise MessageError("missing_field", f"no field {missing.group(1)!r}") from None
        raise MessageError("bad_field", f"{exc}"[:300]) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise MessageError("not_msgpack", f"{exc}"[:200]) from None


def _pixel_bytes(head: _Header) -> int:
    """Bytes of the message that are pixels: the ``image`` value and ``raw``'s ``data``."""
    n = len(head.image)
    if len(head.raw):
        try:
            n += len(_raw_pixels.decode(head.raw).data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            pass  # not a map: all of it counts as fields (and the full decode says what is wrong)
    return n


def _small(value: msgspec.Raw) -> Any:
    """A header value, decoded only when it is short: UNSET when absent."""
    if not len(value):
        return msgspec.UNSET
    if len(value) > _SMALL_BYTES:
        return f"<{len(value)} bytes>"
    return msgspec.msgpack.decode(value)


def decode_frame(raw: object) -> FrameJob:
    """Bytes from a frames-stream entry -> FrameJob, or MessageError with a reason."""
    return _decode(raw, "frame")


def decode_result(raw: object) -> FrameResult:
    """Bytes from a results-stream entry -> FrameResult, or MessageError with a reason. A face
    with no probabilities, a number that is not finite (box, score, landmarks, probabilities), a
    score or probability outside [0, 1] or a coordinate beyond ``MAX_COORD`` is ``bad_field``: no
    worker writes one, and every reader (the track stage, ``results``, the dashboard) skips it
    rather than crash on it."""
    result = _decode(raw, "result")
    for name in ("enqueued_at_ms", "published_at_ms"):
        value = getattr(result, name)
        if value is not None and not 0 <= value <= MAX_TIME_MS:
            raise MessageError("bad_field", f"{name} {value} is no time in ms")
    for i, face in enumerate(result.faces):
        why = _unusable(face)
        if why:
            raise MessageError("bad_field", f"face {i}: {why}")
    return result


MAX_COORD = 1e6  # a box or landmark coordinate beyond this (pixels) is no detector's
UNIT_SLACK = 1e-3  # a score or probability may pass [0, 1] by rounding, not more


def _unusable(face) -> str | None:
    """Why no worker wrote this face, or None. Finite is not enough: a score of 1e308 or
    probabilities of +-1e300 overflow a reader's sums to inf, a box of +-1e308 its crop arithmetic."""
    if not face.probabilities:
        return "no probabilities"
    coords = [*face.box, *(v for point in face.landmarks or () for v in point), *(face.detector_box or ())]
    units = [face.score, *face.probabilities.values(), *(face.smoothed.probabilities.values() if face.smoothed else ())]
    if not all(math.isfinite(v) for v in (*coords, *units)):
        return "a number that is not finite"
    if not all(abs(v) <= MAX_COORD for v in coords):
        return f"a coordinate beyond +-{MAX_COORD:.0e}"
    if not all(-UNIT_SLACK <= v <= 1 + UNIT_SLACK for v in units):
        return "a score or probability outside [0, 1]"
    return None


# --- dead letters -----------------------------------------------------------------


def dead_letter_fields(reason: str, detail: str, entry_id: str, deliveries: int, worker: str,
                       payload: bytes | None, job_id: str | None = None,
                       payload_bytes: int | None = None) -> dict[str, bytes | str | int]:
    """Fields of one dead-letter stream entry (plain stream fields, readable with XRANGE).

    ``msg`` keeps the first :data:`DEAD_LETTER_PAYLOAD_BYTES` of the message and
    ``msg_bytes`` its full size: enough to see what it was, without a 50 MB poison
    message doubling itself in the dead-letter stream. ``payload_bytes``: that size
    where ``payload`` is only the message's head (a mover's stand-in, :data:`TOO_LARGE`).
    """
    fields: dict[str, bytes | str | int] = {
        "reason": reason, "detail": detail[:500], "entry_id": entry_id, "deliveries": int(deliveries),
        "worker": worker, "at_ms": now_ms(), "job_id": (job_id or "")[:MAX_TEXT_CHARS],
    }
    if payload is not None:
        size = len(payload) if payload_bytes is None else payload_bytes
        fields["msg"] = bytes(payload[:DEAD_LETTER_PAYLOAD_BYTES])
        fields["msg_bytes"] = size
        fields["msg_truncated"] = int(size > len(fields["msg"]))
    return fields
