"""The wire: records of :mod:`moodstream.shared.record` as msgpack maps, never pickle.

A stream entry holds one field, :data:`FIELD` (``msg``), whose value is one
msgpack map: a :class:`~moodstream.shared.record.FrameJob` (``"kind": "frame"``,
producer -> ``<prefix>:frames``) or a
:class:`~moodstream.shared.record.FrameResult` (``"kind": "result"``, worker ->
``<prefix>:results``, and ``reply_to`` if set), with the schema version in
``"v"``. The maps' keys are the structs' fields; see that module for what each
means.

Decoding checks the version first (:data:`SCHEMA_VERSION`), then validates
against the struct definitions, and raises
:class:`~moodstream.shared.errors.MessageError` whose ``reason`` is one of
:data:`REASONS`. This module needs msgspec and numpy only.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
import numpy as np

from moodstream.shared.errors import MessageError
from moodstream.shared.record import MAX_TEXT_CHARS, SCHEMA_VERSION, FrameJob, FrameResult, now_ms

__all__ = ["FIELD", "REASONS", "SCHEMA_VERSION", "dead_letter_fields", "decode_frame", "decode_result",
           "encode_frame", "encode_result", "new_job_id", "now_ms"]
FIELD = b"msg"  # the one field of a frames / results stream entry
REASONS = ("not_msgpack", "schema_version", "missing_field", "bad_field")
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
    """What is read before the body: which schema and which kind of record."""

    v: Any = msgspec.UNSET
    kind: Any = None


_header = msgspec.msgpack.Decoder(_Header)
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
    if head.v is msgspec.UNSET:
        raise MessageError("schema_version", "no schema version field 'v'")
    if head.v != SCHEMA_VERSION or isinstance(head.v, bool):
        raise MessageError("schema_version", f"schema version {str(head.v)[:40]}, this code reads {SCHEMA_VERSION}")
    if head.kind != kind:
        raise MessageError("bad_field", f"kind is {str(head.kind)[:40]!r}, expected {kind!r}")
    try:
        return _decoders[kind].decode(raw)
    except msgspec.ValidationError as exc:
        missing = _MISSING.search(str(exc))
        if missing:
            raise MessageError("missing_field", f"no field {missing.group(1)!r}") from None
        raise MessageError("bad_field", f"{exc}"[:300]) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise MessageError("not_msgpack", f"{exc}"[:200]) from None


def decode_frame(raw: object) -> FrameJob:
    """Bytes from a frames-stream entry -> FrameJob, or MessageError with a reason."""
    return _decode(raw, "frame")


def decode_result(raw: object) -> FrameResult:
    """Bytes from a results-stream entry -> FrameResult, or MessageError with a reason."""
    return _decode(raw, "result")


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
