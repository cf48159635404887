"""The one record: a face, a frame job and a frame result, as typed structs.

Every part speaks these types (msgspec structs: typed, checked when decoded,
with msgpack and JSON codecs):

* a detector returns :class:`Face` (box, score, landmarks); the pipeline fills
  in ``emotion`` and ``probabilities``; a tracker adds ``track_id`` and
  ``smoothed``;
* :meth:`Pipeline.process <moodstream.worker.pipeline.Pipeline.process>` returns
  one :class:`FrameResult` per frame; ``moodstream analyze`` prints it as JSON
  (:meth:`FrameResult.to_json`), a worker publishes it as msgpack
  (:mod:`moodstream.shared.wire`), ``moodstream results`` and
  :class:`~moodstream.producer.results.ResultReader` read it back, and the
  benchmarks and the track stage take it;
* a producer sends a :class:`FrameJob`.

Adding a field to a face is one line here. The wire codec
(:mod:`moodstream.shared.wire`) validates against these definitions; the
constraints below (text lengths, frame >= 0, page >= 1, finite times, raw sizes)
are the whole of the validation. A field added with a default needs no new
:data:`SCHEMA_VERSION`: the structs skip fields they do not know (no
``forbid_unknown_fields``), so the release before reads a message that has it
(``page`` came so), and a message without it decodes with the default. This
module needs msgspec and numpy only.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

SCHEMA_VERSION = 2  # 2: typed records (faces carry track_id / smoothed; error {reason, detail})
MAX_TEXT_CHARS = 4096  # job_id, source, reply_to: longer is a bad field, not a 256 MB string echoed back
MAX_TIME_MS = (1 << 53) - 1  # a time in ms beyond this is no clock's (and + a skew would pass a stream id's 2**64)
MAX_RAW_SIDE = 1 << 16  # a raw frame side above this is refused before any arithmetic on it
TIME_LIMIT_S = 1e12  # a timestamp beyond this (or NaN / infinity) is a bad field: JSON has no NaN

def now_ms() -> int:
    """Wall clock, Unix epoch milliseconds (the stamps records carry)."""
    return int(time.time() * 1000)


Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
Seconds = Annotated[float, msgspec.Meta(ge=-TIME_LIMIT_S, le=TIME_LIMIT_S)]  # NaN fails both bounds
Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
Side = Annotated[int, msgspec.Meta(gt=0, le=MAX_RAW_SIDE)]
# a still image's page, 1-based (1 for a one-page image; each page of a multi-page TIFF its own);
# None for a frame of a video, a camera, or a sequence sent without it
Page = Annotated[int, msgspec.Meta(ge=1)]
# a video frame's shot: consecutive frames of one camera shot share it (shared.shots); tracks end where it changes
Shot = Annotated[int, msgspec.Meta(ge=0)]
# frames of a source a producer did not send (backpressure "drop") since the one it sent before
Dropped = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
# a JPEG over max_pixels read at 1/2, 1/4 or 1/8 of its size (shared.media.decoded_scale)
Scale = Annotated[float, msgspec.Meta(gt=0, lt=1)]
StreamId = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")]  # a Redis stream entry id, ms-seq


class Smoothed(msgspec.Struct):
    """A face's emotion averaged along its track (see :mod:`moodstream.worker.tracking.tracker`)."""

    emotion: str
    probabilities: dict[str, float]


class Face(msgspec.Struct, omit_defaults=True):
    """One face. Fields left at their default are left out of JSON and msgpack."""

    box: Box  # as reported: calibrated when calibration is on, clipped to the frame
    score: float  # detector confidence in [0, 1]
    landmarks: list[tuple[float, float]] | None = None  # eyes, nose, mouth corners (MTCNN only)
    emotion: str | None = None  # the top label; None on a detector's face, before classification
    probabilities: dict[str, float] | None = None  # label -> p, sums to 1
    detector_box: Box | None = None  # the raw detector box, when the reported one is calibrated
    track_id: int | None = None  # per source, in order of appearance (videos, the track stage)
    smoothed: Smoothed | None = None  # emotion along the track

    @property
    def shown(self) -> Smoothed:
        """What to display: the smoothed emotion when there is one, else this frame's."""
        return self.smoothed or Smoothed(self.emotion or "", self.probabilities or {})


class ErrorInfo(msgspec.Struct):
    reason: str  # a code: unreadable, truncated, too_large, unsupported, schema_version, inference_failed, ...
    detail: str = ""


class FrameResult(msgspec.Struct, kw_only=True, tag_field="kind", tag="result"):
    """One frame's answer: its faces, or an error (then ``faces`` is empty).

    ``analyze`` fills what it knows (``source``, ``frame``, ``timestamp_s``,
    ``page``, ``shot``, ``size``, ``faces``, ``model_version``, ``timings_ms``); a worker
    copies ``page``, ``shot`` and ``dropped_before`` from its job and adds the service fields (``job_id``,
    ``worker``, ``enqueued_at_ms``, ``published_at_ms``, ``frame_entry``). ``id`` is the results-stream entry
    id, set when a result is read back from Redis (nil on the wire); ``frame_entry`` the frames-stream entry
    its worker answered (where the track stage and the dashboard read its frame back); ``run`` the track stage's
    run it was tracked in."""

    v: int = SCHEMA_VERSION
    id: str | None = None
    job_id: str | None = None
    source: Text = ""
    frame: Annotated[int, msgspec.Meta(ge=0)] = 0
    timestamp_s: Seconds | None = None  # position in the video; None for still images
    page: Page | None = None  # a still image's page, copied from the job (in JSON only when set)
    shot: Shot | None = None  # a video frame's camera shot, copied from the job (in JSON only when set)
    size: tuple[int, int] | None = None  # (W, H) pixels; None on error
    # a photo over max_pixels read smaller (a JPEG at 1/2, 1/4 or 1/8): size, boxes and landmarks are in the
    # pixels it was read at, the photo's times ``scale`` (in JSON only when set)
    scale: Scale | None = None
    faces: list[Face] = msgspec.field(default_factory=list)
    model_version: str | None = None
    timings_ms: dict[str, float] = msgspec.field(default_factory=dict)
    worker: str | None = None
    enqueued_at_ms: int | None = None
    published_at_ms: int | None = None
    error: ErrorInfo | None = None
    frame_entry: StreamId | None = None  # the frames-stream entry of its job (a worker's answer; in JSON when set)
    dropped_before: Dropped | None = None  # copied from the job where it dropped some (in JSON only when set)
    # the track stage's run of the source it was tracked in (a tracked result; in JSON only when set): the
    # ``run`` of that run's summary. None on a late result of a run that had ended (in no run)
    run: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def __post_init__(self) -> None:
        for face in self.faces:
            if face.emotion is None or face.probabilities is None:
                raise ValueError("a result's faces are classified: each has an emotion and probabilities")

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self, *, service: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (no NaN: such floats become null). ``service=False`` is
        ``analyze``'s form: the service fields and a null ``error`` are left out. ``page``
        is there only for a still image (a video frame's keys are the ones they were)."""
        d = msgspec.to_builtins(self)
        del d["v"], d["kind"]
        if not service:  # set on a result read from the service too: analyze's form has none of them
            for name in ("job_id", "worker", "enqueued_at_ms", "published_at_ms", "id", "frame_entry",
                         "dropped_before", "run"):
                d.pop(name, None)
        drop = ("id", "page", "shot", "scale", "frame_entry", "dropped_before", "run") if service else (
            "page", "shot", "scale", "error")
        for name in drop:
            if name in d and d[name] is None:
                del d[name]
        return _finite(d)


class Raw(msgspec.Struct):
    """Pixels without encoding: uint8 RGB ``[H, W, 3]`` or gray ``[H, W]``."""

    shape: Annotated[list[Side], msgspec.Meta(min_length=2, max_length=3)]
    data: bytes
    dtype: Literal["uint8"] = "uint8"

    def __post_init__(self) -> None:
        if len(self.shape) == 3 and self.shape[2] != 3:
            raise ValueError(f"raw shape {self.shape} is not [H, W] or [H, W, 3]")
        needed = math.prod(self.shape)  # Python ints: np.prod would overflow int64 silently
        if len(self.data) != needed:
            raise ValueError(f"raw data has {len(self.data)} bytes, shape {self.shape} needs {needed}")

    @classmethod
    def of(cls, array: np.ndarray) -> Raw:
        arr = np.ascontiguousarray(array)
        if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
            raise ValueError(f"raw frames are uint8 (H, W) or (H, W, 3), got {arr.dtype} {arr.shape}")
        return cls(list(arr.shape), arr.tobytes())

    def array(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8).reshape(self.shape)


class FrameJob(msgspec.Struct, tag_field="kind", tag="frame"):
    """One frame to analyse: encoded ``image`` bytes (JPEG, PNG, WebP, ...) or ``raw`` pixels."""

    job_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
    source: Text
    frame: Annotated[int, msgspec.Meta(ge=0)]
    timestamp_s: Seconds | None = None  # position in the video; None for still images
    # a still image's page: the track stage makes it a run of its own; None: a frame of a sequence
    page: Page | None = None
    # a video frame's camera shot (0, 1, ...: shared.shots, numbered by the reader on every decoded
    # frame); the track stage ends a source's tracks where it changes. None: not known (no cut seen)
    shot: Shot | None = None
    # producer wall clock, Unix epoch ms (the producer stamps it as it sends; a message
    # without it counts from when the worker read it)
    enqueued_at_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)] = msgspec.field(default_factory=now_ms)
    reply_to: Text | None = None  # another stream the result is also added to
    # frames of this source the producer dropped (backpressure "drop", the backlog over its limit) since
    # the one it sent before: the track stage adds them to the run's ``dropped_frames``. A message of an
    # older producer has none (0)
    dropped_before: Dropped = 0
    options: dict[str, Any] = msgspec.field(default_factory=dict)  # free-form, echoed nowhere, for future use
    image: bytes | None = None
    raw: Raw | None = None
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if (self.image is None) == (self.raw is None):
            raise ValueError("a frame job carries exactly one of 'image' or 'raw'")
        self.reply_to = self.reply_to or None  # "" names no stream

    @property
    def array(self) -> np.ndarray | None:
        return None if self.raw is None else self.raw.array()


def _finite(v):
    """JSON has no NaN or infinity: such floats become null (json.dumps would write NaN);
    tuples become lists, as JSON reads them back."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v
