"""One path for a batch of frames: detect faces, crop, classify emotions.

The in-process ``analyze`` command, the Redis worker and the benchmarks all run
this object; only how frames arrive and where results go differs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from shared.errors import BadInputError, ConfigError, ModelError
from shared.models import Checkpoint, load_checkpoint, resolve_device
from shared.settings import Settings
from worker.calibration import BoxCalibration, load_calibration
from worker.classify import EmotionClassifier
from worker.crop import framing_for
from worker.detect import Detector, Face, build_detector

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    # each {"box": [x1, y1, x2, y2] px, "score", "landmarks" (5 [x, y] or None),
    #       "detector_box" (the raw detector box, when boxes are calibrated),
    #       "emotion", "probabilities": {label: p}}
    faces: list[dict]
    timings_ms: dict  # {"detect": ..., "classify": ...} for the whole batch this frame was in


class Pipeline:
    """Detector + emotion classifier, built once and reused for every batch.

    ``detector`` defaults to :func:`worker.detect.build_detector` and
    ``checkpoint`` to ``load_checkpoint(settings.checkpoint)`` (the shipped
    model when that is None); the checkpoint's model is moved to
    ``settings.device``.
    """

    def __init__(self, settings: Settings, detector: Detector | None = None,
                 checkpoint: Checkpoint | None = None):
        self.settings = settings
        self.device: torch.device = resolve_device(settings.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {settings.device!r}: no CUDA device is available here; use cpu or auto")
        self.detector = detector if detector is not None else build_detector(settings)
        checkpoint = checkpoint if checkpoint is not None else load_checkpoint(settings.checkpoint)
        self.model_version: str = checkpoint.version
        self.classifier = EmotionClassifier(checkpoint, self.device, framing_for(self.detector.name))
        # Calibration changes only the reported box (WIDER-style); crops keep the raw
        # detector box, which is what the crop framing was measured on.
        self.calibration: BoxCalibration | None = None
        if settings.calibrate_boxes:
            try:
                self.calibration = load_calibration(self.detector.name)
            except ModelError as exc:
                log.warning("pipeline: reporting uncalibrated boxes: %s", exc)
        log.info("pipeline: detector %s, model %s on %s", self.detector.name, self.model_version, self.device)

    @torch.inference_mode()
    def process(self, frames: list[np.ndarray]) -> list[FrameResult]:
        """RGB uint8 frames ``(H, W, 3)``, any sizes -> one result per frame, in order.

        Frames of equal size are detected as one batch; all faces of all frames
        are classified in one call: :meth:`detect`, then :meth:`classify`.
        """
        t0 = time.perf_counter()
        detections = self.detect(frames)
        detect_ms = round((time.perf_counter() - t0) * 1e3, 2)
        return self.classify(frames, detections, timings={"detect": detect_ms})

    @torch.inference_mode()
    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """The detector's faces per frame (raw detector boxes, before calibration)."""
        if not frames:
            return []
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise BadInputError("unsupported", f"a frame must be RGB uint8 (H, W, 3), got {frame.dtype} "
                                                   f"{tuple(frame.shape)}")
        return self.detector.detect(frames)

    @torch.inference_mode()
    def classify(self, frames: list[np.ndarray], faces_per_frame: list[list[Face]],
                 timings: dict | None = None) -> list[FrameResult]:
        """Faces already found on ``frames`` (by :meth:`detect`, or followed from an
        earlier frame: ``faces_per_frame[i]`` are :class:`Face` on ``frames[i]`` in
        raw detector coordinates) -> one result per frame: the records
        :meth:`process` gives for those faces. ``timings`` (ms) are merged into
        each result's ``timings_ms`` before ``classify``."""
        if not frames:
            return []
        t1 = time.perf_counter()
        boxes = [np.asarray([f.box for f in faces], dtype=np.float32).reshape(-1, 4) for faces in faces_per_frame]
        probs = self.classifier.predict(frames, boxes)  # (N, 8), N = all faces of all frames; synced on .cpu()
        t2 = time.perf_counter()
        timings = {**(timings or {}), "classify": round((t2 - t1) * 1e3, 2)}
        results, k = [], 0
        for frame, faces in zip(frames, faces_per_frame):
            h, w = frame.shape[:2]
            records = []
            reported = self.calibration.apply(faces) if self.calibration is not None else faces
            for face, shown in zip(faces, reported):
                record = {**shown.to_dict(), **self.classifier.describe(probs[k])}
                # reported boxes stay inside the frame; the crop used the unclipped box
                record["box"] = _clip(record["box"], w, h)
                if shown is not face:
                    record["detector_box"] = _clip(face.to_dict()["box"], w, h)
                records.append(record)
                k += 1
            results.append(FrameResult(records, dict(timings)))
        return results


def _clip(box: list[float], w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)]
