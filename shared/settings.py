"""One settings object, built once at the CLI and passed explicitly.

Every field can be set from the environment as ``MOODSTREAM_<FIELD>`` (for
example ``MOODSTREAM_REDIS_URL``, ``MOODSTREAM_BATCH_MAX``); flags override the
environment. Nothing outside :func:`Settings.from_env` reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields

from shared.errors import ConfigError

ENV_PREFIX = "MOODSTREAM_"


@dataclass(frozen=True)
class Settings:
    # --- transport -----------------------------------------------------------
    redis_url: str | None = None  # None: in-process, or an embedded server for `up`
    prefix: str = "moodstream"  # every Redis key starts with this
    stream_maxlen: int = 10_000  # approximate MAXLEN of the frame stream
    results_maxlen: int = 100_000  # approximate MAXLEN of the results stream
    lag_limit: int = 2_000  # producer waits (or drops) above this consumer lag
    backpressure: str = "wait"  # "wait" or "drop" (drop oldest; for live sources)
    # --- worker --------------------------------------------------------------
    batch_max: int = 16  # frames per batch at most
    batch_wait_ms: int = 20  # oldest frame waits at most this long for a fuller batch
    reclaim_idle_ms: int = 30_000  # pending longer than this: another worker reclaims
    max_deliveries: int = 3  # then dead-letter
    heartbeat_ttl_s: int = 15
    decode_threads: int = 4
    # --- observability -------------------------------------------------------
    metrics_port: int | None = None  # Prometheus /metrics, /healthz, /readyz on this port (0: a free one); None: off
    metrics_host: str = "0.0.0.0"  # all interfaces: Prometheus and kubelet probes reach a pod from outside it
    stats_interval_s: float = 60.0  # the worker logs one line of figures (frames/s, batch, queue wait); 0: off
    # --- models --------------------------------------------------------------
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    detector: str = "mtcnn"  # "mtcnn" or "haar"
    mtcnn_impl: str = "reference"  # "reference" (facenet-pytorch's loop) or "batched" (ours, GPU-resident)
    checkpoint: str | None = None  # None: the emotion model shipped in the package
    min_face_px: int = 20  # smallest face side the detector looks for
    face_score_min: float = 0.90  # drop MTCNN detections scoring below this (Haar: min_neighbors filters)
    calibrate_boxes: bool = True  # report WIDER-style boxes (worker/data/box_calibration.json; helps on held-out folds)
    detect_every: int = 1  # videos: full face detection on every N-th analysed frame, optical flow between
    # --- input guards ----------------------------------------------------------
    max_pixels: int = 50_000_000  # decompression-bomb guard for one image (also OpenCV's own limit)
    max_message_bytes: int = 32 * 1024 * 1024  # a frames-stream message above this is dead-lettered unread
    # --- rq expander (`produce --rq`): what a job may name, decided by the expander's operator --
    media_root: str | None = None  # local files and folders only under this directory; None: no local paths
    allowed_url_hosts: str = ""  # comma-separated hosts for rtsp/http(s) sources; empty: no URLs

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then ``MOODSTREAM_*`` variables, then non-None ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, hints[f.name], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        settings = cls(**values)
        settings.validate()
        return settings

    def __repr__(self) -> str:  # the URL may carry a password: never print it
        from shared.transport import redact

        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["redis_url"] = redact(self.redis_url) if self.redis_url else None
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def replace(self, **changes) -> Settings:
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        positive = ("stream_maxlen", "results_maxlen", "lag_limit", "batch_max",
                    "max_deliveries", "heartbeat_ttl_s", "decode_threads", "max_pixels", "max_message_bytes",
                    "detect_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch_wait_ms", "reclaim_idle_ms", "min_face_px"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be in [0, 65535] (0: a free port), got {self.metrics_port}")
        if not self.metrics_host:
            raise ConfigError("metrics_host must not be empty (0.0.0.0: all interfaces)")
        if self.stats_interval_s < 0:
            raise ConfigError(f"stats_interval_s must be >= 0 (0: off), got {self.stats_interval_s}")
        if self.lag_limit >= self.stream_maxlen:
            # MAXLEN would trim frames no worker has read, before the producer ever waits
            raise ConfigError(f"lag_limit ({self.lag_limit}) must be below stream_maxlen ({self.stream_maxlen}): "
                              "otherwise the stream trims frames no worker has read, and they are lost unseen")
        if self.backpressure not in ("wait", "drop"):
            raise ConfigError(f"backpressure must be 'wait' or 'drop', got {self.backpressure!r}")
        if self.detector not in ("mtcnn", "haar"):
            raise ConfigError(f"detector must be 'mtcnn' or 'haar', got {self.detector!r}")
        if self.mtcnn_impl not in ("reference", "batched"):
            raise ConfigError(f"mtcnn_impl must be 'reference' or 'batched', got {self.mtcnn_impl!r}")
        if not 0.0 <= self.face_score_min <= 1.0:
            raise ConfigError(f"face_score_min must be in [0, 1], got {self.face_score_min}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


def _coerce(name: str, hint: object, raw: str) -> object:
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
