"""One settings object, built once at the CLI and passed explicitly.

Every field can be set from the environment as ``MOODSTREAM_<FIELD>`` (for
example ``MOODSTREAM_REDIS_URL``, ``MOODSTREAM_BATCH_MAX``); flags override the
environment. Nothing outside :func:`Settings.from_env` reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from moodstream.shared.errors import ConfigError

ENV_PREFIX = "MOODSTREAM_"


Device = str  # "auto", "cpu", "cuda" or "cuda:N" (checked in validate)
Detector = Literal["mtcnn", "haar", "none"]
MtcnnImpl = Literal["auto", "reference", "batched"]
Backend = Literal["auto", "torch", "onnx", "openvino"]
Precision = Literal["auto", "fp32", "bf16"]
Backpressure = Literal["wait", "drop"]
Encoding = Literal["png", "jpeg", "webp", "raw"]

DETECTORS: tuple[str, ...] = typing.get_args(Detector)
FACE_DETECTORS = ("mtcnn", "haar")  # the ones that find faces (none takes the whole image): what the benches measure
BACKENDS: tuple[str, ...] = typing.get_args(Backend)
BACKPRESSURES: tuple[str, ...] = typing.get_args(Backpressure)
ENCODINGS: tuple[str, ...] = typing.get_args(Encoding)
# The largest max_pixels may be (16384 x 16384). OpenCV's own decoder limit is set to it
# once, before cv2 loads (shared/media.py), so any valid max_pixels holds: a library
# user's Settings(max_pixels=...) reaches decoding, checked on the image header.
MAX_PIXELS_CEILING = 16384 * 16384
MIN_FACE_PX = 12  # min_face_px: MTCNN's smallest window (1 took 16.6 s and 1.18 GB on one street photo)
MAX_THREADS = 1024  # threads and decode_threads: more than any machine's cores (OpenVINO takes an int32)
# reclaim_idle_ms at least: an entry is pending (idle, to XAUTOCLAIM) all the time a live worker holds it, its
# batch filling and then inferred, and reclaimed sooner it is served twice. Two workers, 60 small frames, a
# batch of 8 on a 2-core CPU: 0 ms gave 120 results, 100 ms 96, 300 ms and 1 s 60 (bigger frames need more:
# deploy/README.md sizes it from max_pixels)
MIN_RECLAIM_IDLE_MS = 1000
# the largest whole-number setting (2^53 - 1: exact in JSON and in Redis's Lua): each reaches Redis as a count
# (XREADGROUP COUNT, MAXLEN), milliseconds (XAUTOCLAIM) or seconds (EXPIRE, which refuses seconds x 1000 past
# 2^63): MOODSTREAM_HEARTBEAT_TTL_S=1e16 and --batch-max 1e19 were taken and ended the worker, its models
# loaded, in a ResponseError traceback
MAX_WHOLE = 2 ** 53 - 1


def _s(default, help: str):  # noqa: A002 (the word the CLI uses)
    """A setting: its default and the one help text every CLI option that mirrors it shows."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    # --- transport -----------------------------------------------------------
    redis_url: str | None = _s(None, "Redis URL (redis://, rediss:// for TLS, passwords in the URL); unset: "
                                     "`up` starts an embedded server, the service commands (worker, produce, "
                                     "results, status...) need one.")
    prefix: str = _s("moodstream", "Every Redis key starts with this (two deployments can share a server).")
    redis_wait_s: float = _s(10.0, "At start, wait this long for a Redis that refuses connections (it may be "
                                   "starting) before exiting with one line (0: do not wait).")
    stream_maxlen: int = _s(10_000, "Frames stream: the workers' movers trim it to about this many entries, removing only "
                                    "ones workers have acknowledged (never unread ones); also the dead letters' "
                                    "approximate MAXLEN.")
    stream_max_mb: int = _s(1_024, "Frames stream, in MB (2^20 bytes): the movers trim acknowledged frames to about "
                                   "this size too, and producers wait or drop above a backlog of about this size "
                                   "of their own frames: whichever of it and stream_maxlen / lag_limit is fewer "
                                   "frames (a 1080p PNG frame is about 1.6 MB in Redis).")
    results_maxlen: int = _s(100_000, "Approximate MAXLEN of the results stream.")
    lag_limit: int = _s(2_000, "Backlog (frames in the intake list + unread + pending) above which producers "
                                "wait or drop.")
    backpressure: Backpressure = _s("wait", "Above lag-limit: wait for workers, or drop (do not send, and count) "
                                            "new frames until the backlog falls (live cameras).")
    encoding: Encoding = _s("png", "How the producer sends video frames (image files are sent as they are): png is "
                                   "lossless (the service answers as analyze does), jpeg ~5x smaller but lossy, "
                                   "webp, or raw uncompressed.")
    # --- worker --------------------------------------------------------------
    batch_max: int = _s(16, "Frames per batch at most.")
    batch_wait_ms: int = _s(20, "A batch goes when full or when its oldest frame has waited this long.")
    reclaim_idle_ms: int = _s(30_000, "Entries pending longer than this are reclaimed from a dead worker (at least "
                                      "1000, and more than batch_wait_ms: above the time a live worker holds one, its "
                                      "batch filling and inferred, or it is served twice).")
    max_deliveries: int = _s(3, "Dead-letter an entry after it killed this many workers while served alone.")
    heartbeat_ttl_s: int = _s(15, "A worker's heartbeat key expires this long after its last beat.")
    decode_threads: int = _s(4, "Threads decoding images while the previous batch infers.")
    threads: int = _s(0, "Inference threads per process (torch, ONNX Runtime, OpenVINO and numpy's BLAS); 0: "
                         "auto (all cores for analyze and up, half the cores, at most 4, for a worker).")
    # --- observability -------------------------------------------------------
    metrics_port: int | None = _s(None, "Serve Prometheus /metrics, /healthz and /readyz on this port "
                                        "(0: a free one); unset: off.")
    metrics_host: str = _s("127.0.0.1", "Address of the metrics server (loopback; in a container set 0.0.0.0 so "
                                        "Prometheus and kubelet probes reach it, as the k8s manifests do).")
    stats_interval_s: float = _s(60.0, "A worker logs one line of figures this often (0: never).")
    # --- models --------------------------------------------------------------
    device: Device = _s("auto", "auto, cpu, cuda or cuda:N.")
    detector: Detector = _s("mtcnn", "Face detector: mtcnn, haar (OpenCV's cascade), or none (each image is one "
                                     "face, the whole of it: a folder of face crops).")
    backend: Backend = _s("auto", "Inference backend: onnx (ONNX Runtime, CPU), openvino (OpenVINO, CPU; extra "
                                  "moodstream[openvino]), torch, or auto (on CPU whichever of onnx and openvino "
                                  "is installed and measured faster on this CPU; torch on CUDA).")
    precision: Precision = _s("auto", "Arithmetic of the onnx / openvino nets: fp32, bf16 (openvino on a CPU with "
                                      "native bf16: AMX or AVX512-BF16), or auto (on openvino: the emotion net in fp32, "
                                      "int8 or bf16, whichever serves a face fastest as measured on this CPU, an "
                                      "int8 or bf16 one with its close calls again in fp32; with native bf16 "
                                      "ONet in bf16 and PNet and RNet screened in bf16 with fp32's answers; the rest "
                                      "fp32).")
    runtime_cache: str | None = _s(None, "File keeping auto's measured choices (backend, precisions) per CPU model "
                                         "(default: ~/.cache/moodstream/runtime.json; a file that is not one is "
                                         "left as it is); 'off': measure at every start.")
    mtcnn_impl: MtcnnImpl = _s("auto", "torch backend's MTCNN: facenet-pytorch's loop (reference), our batched, "
                                       "GPU-resident one (batched), or auto (batched on CUDA, reference on CPU).")
    checkpoint: str | None = _s(None, "Emotion checkpoint (.pt); unset: the model shipped in the package.")
    min_face_px: int = _s(20, "Smallest face side, in pixels, the detector looks for.")
    face_score_min: float = _s(0.90, "Drop MTCNN detections scoring below this (Haar: min_neighbors filters).")
    calibrate_boxes: bool = _s(True, "Report WIDER-style boxes (worker/data/box_calibration.json); the crop "
                                     "always uses the detector's box.")
    detect_every: int = _s(1, "Videos: full face detection on every N-th analysed frame, optical flow between.")
    min_person_s: float = _s(0.5, "Summaries: a face track shorter than this (video seconds) is not counted as a "
                                  "person (it stays in the summary, marked).")
    # --- tracking (analyze on videos, `track`, `up`) --------------------------------
    reorder_wait_ms: int = _s(2000, "Track stage: a frame whose predecessors have not all arrived is released "
                                    "after waiting this long (its faces untracked if it comes later still).")
    track_iou_min: float = _s(0.3, "Tracking: a face joins a track when its box overlaps the track's predicted "
                                   "box by at least this IoU (then, for the rest, by centre distance and size).")
    track_max_missed: int = _s(5, "Tracking: a track is kept this many analysed frames without its face, or "
                                  "track_max_missed_s, whichever is longer (at least detect_every frames).")
    track_max_missed_s: float = _s(1.0, "Tracking: a track is kept this long (video seconds) without its face, "
                                        "or track_max_missed frames, whichever is longer.")
    track_smoothing_tau_s: float = _s(0.25, "Tracking: time constant (video seconds) of the smoothed emotion "
                                            "along a track; larger is steadier and slower to change.")
    track_shot_cuts: bool = _s(True, "Tracking: end every track at a camera shot cut of an edited video (a face "
                                     "of the next shot is another person; a light switched on is no cut); off for a "
                                     "fixed camera whose whole picture may change at once (something passing just "
                                     "before its lens).")
    # --- input guards ----------------------------------------------------------
    max_pixels: int = _s(50_000_000, "Largest image accepted, in pixels, checked on its header before decoding "
                                     "(decompression-bomb guard); at most 268435456 (16384 x 16384).")
    max_message_bytes: int = _s(32 * 1024 * 1024, "A frames-stream message above this is dead-lettered unread.")
    # --- rq expander (`produce --rq`): what a job may name, decided by the expander's operator --
    media_root: str | None = _s(None, "Expander: jobs may name files and folders under this directory only; "
                                      "unset: no local paths.")
    allowed_url_hosts: str = _s("", "Expander: comma-separated hosts whose rtsp/http(s) URLs jobs may name; "
                                    "empty: none.")
    job_max_frames: int = _s(500_000, "Expander: a job stops after sending this many frames (its result says "
                                      "it was cut short).")
    job_max_bytes: int = _s(8 * 1024 ** 3, "Expander: a job stops after its files or URL gave this many bytes "
                                           "(URLs: counted at the expander's own proxy).")
    # --- live sources (cameras, stream URLs) -----------------------------------
    live_max_reconnects: int = _s(10, "A live source that fails this many reconnects in a row (no frames, or a "
                                      "short connection) ends with an error.")
    live_backoff_cap_s: float = _s(30.0, "Longest wait between a live source's reconnects (exponential from "
                                         "0.5 s, with jitter).")
    reply_ttl_s: int = _s(24 * 3600, "A reply stream (--reply-to) expires this long after the last result "
                                     "added to it.")
    # --- dashboard (`moodstream dashboard`, `up`) ---------------------------------
    dashboard_host: str = _s("127.0.0.1", "Address the dashboard listens on; any other than a loopback one "
                                          "needs dashboard_token.")
    dashboard_port: int = _s(8765, "Port of the dashboard (0: a free one).")
    dashboard_token: str | None = _s(None, "Token the dashboard asks for (open http://HOST:PORT/?token=...); "
                                           "required off loopback, optional on it.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then ``MOODSTREAM_*`` variables, then non-None ``overrides``."""
        env = os.environ if env is None else env
        if not isinstance(env, Mapping):
            raise TypeError(f"env must be a mapping of environment variables (os.environ when None), got "
                            f"{type(env).__name__}: settings go as keywords, from_env(redis_url=...)")
        values: dict[str, object] = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and not isinstance(raw, str):  # False was 'bool' has no attribute 'strip'; 2.7 was 2
                raise TypeError(f"{ENV_PREFIX + f.name.upper()} is {type(raw).__name__}: environment variables are "
                                f"strings (\"2\"); a setting's own value goes as a keyword, "
                                f"from_env({f.name}=...)")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, hints[f.name], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)  # checked by __post_init__

    def __repr__(self) -> str:  # the URL may carry a password: never print it
        from moodstream.shared.transport import redact

        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["redis_url"] = redact(self.redis_url) if self.redis_url else None
        shown["dashboard_token"] = "***" if self.dashboard_token else None
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def __post_init__(self) -> None:
        # Settings(...) is the Python API's too: checked as from_env's are (batch_max=0, a string "false"
        # for calibrate_boxes were taken); a numpy number becomes the plain one (JSON writes those)
        hints = _hints()
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _kind(hints[f.name])
            if kind is int and is_whole(value):
                object.__setattr__(self, f.name, int(value))
            elif kind is float and is_number(value):
                object.__setattr__(self, f.name, float(value))
        self.validate()

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)  # checked by __post_init__

    def validate(self) -> None:
        hints = _hints()
        for f in fields(self):  # the type first: every check below compares numbers
            _check_type(f.name, hints[f.name], getattr(self, f.name))
        positive = ("stream_maxlen", "stream_max_mb", "results_maxlen", "lag_limit", "batch_max",
                    "max_deliveries", "heartbeat_ttl_s", "max_pixels", "max_message_bytes",
                    "detect_every", "job_max_frames", "job_max_bytes", "live_backoff_cap_s", "reply_ttl_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.min_face_px < MIN_FACE_PX:  # the CLI's bound, for the environment too
            raise ConfigError(f"min_face_px must be >= {MIN_FACE_PX} (MTCNN's smallest window), got {self.min_face_px}")
        if self.checkpoint is not None and not self.checkpoint.strip():  # `--checkpoint "$UNSET"`: served the shipped
            raise ConfigError("checkpoint is empty: give the .pt file, or leave it out for the shipped model")  # one
        for name in ("batch_wait_ms", "reclaim_idle_ms", "redis_wait_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.reclaim_idle_ms < MIN_RECLAIM_IDLE_MS or self.reclaim_idle_ms <= self.batch_wait_ms:
            raise ConfigError(f"reclaim_idle_ms must be at least {MIN_RECLAIM_IDLE_MS} and more than batch_wait_ms "
                              f"({self.batch_wait_ms}), got {self.reclaim_idle_ms}: an entry is pending all the time a "
                              "live worker holds it (its batch filling, then inferred), and one reclaimed sooner is "
                              "taken from that worker and served twice (size it above a batch's time: "
                              "deploy/README.md)")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be in [0, 65535] (0: a free port), got {self.metrics_port}")
        if not self.metrics_host:
            raise ConfigError("metrics_host must not be empty (0.0.0.0: all interfaces)")
        if not 0 <= self.dashboard_port <= 65535:
            raise ConfigError(f"dashboard_port must be in [0, 65535] (0: a free port), got {self.dashboard_port}")
        if self.stats_interval_s < 0:
            raise ConfigError(f"stats_interval_s must be >= 0 (0: off), got {self.stats_interval_s}")
        for f in fields(self):  # an env value "nan" or "inf" parses as a float; no setting means one
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
        for f in fields(self):  # Literal-typed settings: the allowed values are in the type
            allowed = choices(hints[f.name])
            if allowed and getattr(self, f.name) not in allowed:
                raise ConfigError(f"{f.name} must be one of {', '.join(allowed)}, got {getattr(self, f.name)!r}")
        if self.live_max_reconnects < 0:
            raise ConfigError(f"live_max_reconnects must be >= 0, got {self.live_max_reconnects}")
        if not 0 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"threads must be in [0, {MAX_THREADS}] (0: auto), got {self.threads}")
        if not 1 <= self.decode_threads <= MAX_THREADS:
            raise ConfigError(f"decode_threads must be in [1, {MAX_THREADS}], got {self.decode_threads}")
        if self.max_pixels > MAX_PIXELS_CEILING:
            raise ConfigError(f"max_pixels must be <= {MAX_PIXELS_CEILING} (16384 x 16384), got {self.max_pixels}")
        for name in ("reorder_wait_ms", "track_max_missed", "track_max_missed_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.track_iou_min <= 1.0:
            raise ConfigError(f"track_iou_min must be in (0, 1], got {self.track_iou_min}")
        if self.track_smoothing_tau_s <= 0:
            raise ConfigError(f"track_smoothing_tau_s must be > 0, got {self.track_smoothing_tau_s}")
        if self.min_person_s < 0:
            raise ConfigError(f"min_person_s must be >= 0, got {self.min_person_s}")
        if not 0.0 <= self.face_score_min <= 1.0:
            raise ConfigError(f"face_score_min must be in [0, 1], got {self.face_score_min}")
        if not is_device_name(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for f in fields(self):  # last: a setting's own bounds above say more (threads in [0, 1024])
            value = getattr(self, f.name)
            if is_whole(value) and value > MAX_WHOLE:
                raise ConfigError(f"{f.name} must be at most {MAX_WHOLE} (2^53 - 1), got {value}")


_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:[0-9]+)?")  # ASCII digits: \d takes any script's


def is_device_name(name: object) -> bool:
    """auto, cpu, cuda or cuda:N: the one rule, for the setting and every --device flag ("cuda:x" passed
    a check of "cuda:..." and failed later)."""
    return isinstance(name, str) and _DEVICE_NAME.fullmatch(name) is not None


def is_whole(value: object) -> bool:
    """An integer (numpy's too), not a bool: what a count, an index or an int setting takes."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number (an int, a float, numpy's), not a bool: what seconds, a rate or a float setting takes."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@functools.cache
def _hints() -> dict[str, object]:
    return typing.get_type_hints(Settings)


def _kind(hint: object) -> type | None:
    """The plain type a setting holds (int, float, bool, str), its None left out; None for a Literal."""
    if choices(hint):
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint  # type: ignore[return-value]


_KIND_WORDS = {int: "a whole number", float: "a number", bool: "True or False", str: "a string"}


def _check_type(name: str, hint: object, value: object) -> None:
    """ConfigError unless ``value`` is of the setting's type (an int for a float; never a bool for a
    number, nor 2.5 frames): said here, not as a TypeError from a comparison or a wrong answer later."""
    kind = _kind(hint)
    if kind is None or (value is None and type(None) in typing.get_args(hint)):
        return
    ok = {int: is_whole(value), float: is_number(value),
          bool: isinstance(value, bool), str: isinstance(value, str)}.get(kind, True)
    if not ok:
        optional = " or None" if type(None) in typing.get_args(hint) else ""
        raise ConfigError(f"{name} must be {_KIND_WORDS[kind]}{optional}, got {value!r} ({type(value).__name__})")


def choices(hint: object) -> tuple[str, ...]:
    """The allowed values of a Literal-typed setting, () for any other type."""
    return tuple(typing.get_args(hint)) if typing.get_origin(hint) is Literal else ()


def help_of(name: str) -> str:
    """The help text of setting ``name`` (for CLI options that mirror it)."""
    return next(f.metadata["help"] for f in fields(Settings) if f.name == name)


def _coerce(name: str, hint: object, raw: str) -> object:
    if choices(hint):
        return raw  # checked against the allowed values in validate()
    args = typing.get_args(hint)
    target = next((a for a in args if a is not type(None)), hint) if args else hint
    try:
        if target is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if target in (int, float):
            return target(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {target.__name__}") from None
