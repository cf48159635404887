"""One path for a batch of frames: detect faces, crop, classify emotions.

The in-process ``analyze`` command, the Redis worker and the benchmarks all run
this object; only how frames arrive and where results go differs.
"""

from __future__ import annotations

import logging
import math
import time
import os
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from moodstream.shared import devices
from moodstream.shared.errors import BadInputError, ConfigError, ModelError
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.pixels import check_rgb
from moodstream.shared.settings import Settings, is_number
from moodstream.worker import runtime
from moodstream.worker.calibration import BoxCalibration, load_calibration
from moodstream.worker.detectors import Detector, build_detector
from moodstream.worker.framing import framing_for
from moodstream.worker.onnx_session import RUNTIMES

if TYPE_CHECKING:
    from moodstream.shared.models import Checkpoint
    from moodstream.worker.crop import Resident

log = logging.getLogger(__name__)


def resolve_backend(settings: Settings, device: str, custom_model: bool) -> str:
    """The backend to run. ``auto``: on CPU whichever installed runtime of the
    shipped ONNX files (ONNX Runtime, OpenVINO) measures faster on this CPU
    (:func:`worker.runtime.choose`, once per CPU kind whatever the threads; 3.3x
    facenet-pytorch or more, same boxes and emotions, see docs/results), torch on
    CUDA; a checkpoint other than the shipped one runs on torch (the ONNX files
    are the shipped model's)."""
    backend = settings.backend
    if backend == "auto":
        if device == "cpu" and not custom_model and runtime.installed_runtimes():
            return runtime.choose(settings.precision, settings.runtime_cache).backend
        backend = "torch"
    if backend in RUNTIMES:
        if device != "cpu":
            raise ConfigError(f"backend {backend} runs on the CPU; device is {device!r} (use backend torch or auto)")
        if custom_model:
            raise ConfigError(f"backend {backend} runs the shipped emotion model; for another checkpoint use "
                              "backend torch (or export it: moodstream export onnx --checkpoint FILE)")
        runtime.require(backend)
    elif not devices.installed("torch") or not devices.installed("facenet_pytorch"):
        raise ConfigError("backend torch needs torch: pip install 'moodstream[worker]' (on CPU, backend onnx "
                          "with 'moodstream[cpu]' needs no torch)")
    return backend


def resolve_threads(settings: Settings, worker: bool) -> int:
    """``threads`` or, at 0, all cores for one in-process run, and half the cores (at
    most 4) for a worker: workers share a machine, and each torch / ONNX Runtime
    process otherwise takes every core and slows the others."""
    if settings.threads:
        return settings.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2)) if worker else cores


class Pipeline:
    """Detector + emotion classifier, built once and reused for every batch.

    The backend (``settings.backend``, :func:`resolve_backend`) decides what runs:
    the shipped ONNX files on ONNX Runtime or OpenVINO (torch-free:
    :mod:`worker.detectors.onnx_mtcnn`, :mod:`worker.onnx_classify`, :mod:`worker.runtime`) or
    torch (facenet-pytorch's or our batched MTCNN, :mod:`worker.classify`).
    ``detector`` defaults to :func:`worker.detectors.build_detector`; ``checkpoint``
    (torch only) to ``load_checkpoint(settings.checkpoint)``. ``worker`` picks the
    thread default of a worker process (:func:`resolve_threads`). The device is
    resolved here, once (:func:`shared.devices.resolve_device`), and handed to the
    detector and the classifier.
    """

    def __init__(self, settings: Settings, detector: Detector | None = None,
                 checkpoint: Checkpoint | None = None, *, worker: bool = False):
        if not isinstance(settings, Settings):
            raise TypeError(f"Pipeline takes Settings (Pipeline(Settings(device=\"cpu\")) or "
                            f"Pipeline(Settings.from_env())), got {_named(settings)}")
        self.settings = settings
        self.device: str = devices.resolve_device(settings.device)  # the one resolution; passed down
        self.threads: int = resolve_threads(settings, worker)
        custom_model = bool(settings.checkpoint or checkpoint)
        self.backend: str = resolve_backend(settings, self.device, custom_model)
        # per net "fp32", "bf16" or "int8" (worker.runtime: bf16 only on openvino, on a CPU with native
        # bf16; under auto the emotion net's measured on this CPU, once per CPU kind)
        cpu = runtime.cpu_info()
        self.precisions: dict[str, str] = runtime.precisions_here(settings.precision, self.backend,
                                                                  settings.runtime_cache, cpu)
        # nets screened in bf16 first, their answers still fp32's (worker.runtime.AUTO_SCREENED)
        self.screened: tuple[str, ...] = runtime.screened_nets(settings.precision, self.backend, cpu)
        # "fp32", or e.g. "pnet+rnet fp32, onet+emotion bf16; rnet screened in bf16"
        self.precision: str = runtime.describe(self.precisions, self.screened)
        # the MTCNN nets whose first layers run in C before OpenVINO (measured once per CPU kind)
        self.compiled_first: tuple[str, ...] = (
            runtime.first_layers_here(self.backend, self.precisions, self.screened, settings.runtime_cache, cpu)
            if detector is None and settings.detector == "mtcnn" else ())
        # numpy's BLAS (the emotion crops' products) would otherwise run on every core: a worker's
        # threads bound all its arithmetic, as torch's below (process-wide, like torch's)
        threadpool_limits(self.threads, user_api="blas")
        if self.backend == "torch":
            import torch

            torch.set_num_threads(self.threads)
        self.detector = detector if detector is not None else build_detector(
            settings, self.backend, self.threads, self.device, precisions=self.precisions, screened=self.screened,
            compiled_first=self.compiled_first)
        framing = framing_for(self.detector.name)
        if self.backend in RUNTIMES:
            from moodstream.worker.onnx_classify import OnnxEmotionClassifier

            self.classifier = OnnxEmotionClassifier(framing=framing, threads=self.threads, runtime=self.backend,
                                                    precision=self.precisions["emotion"])
            self.model_version: str = self.classifier.version
        else:
            import torch

            from moodstream.shared.models import load_checkpoint
            from moodstream.worker.classify import EmotionClassifier

            checkpoint = checkpoint if checkpoint is not None else load_checkpoint(settings.checkpoint)
            self.model_version = checkpoint.version
            self.classifier = EmotionClassifier(checkpoint, torch.device(self.device), framing)
        # Calibration changes only the reported box (WIDER-style); crops keep the raw
        # detector box, which is what the crop framing was measured on.
        self.calibration: BoxCalibration | None = None
        if settings.calibrate_boxes and self.detector.name != "none":  # the whole image: nothing to calibrate
            try:
                self.calibration = load_calibration(self.detector.name)
            except ModelError as exc:
                log.warning("pipeline: reporting uncalibrated boxes: %s", exc)
        log.info("pipeline: %s backend (%s%s), detector %s, model %s on %s, %d thread%s", self.backend,
                 self.precision, f"; {'+'.join(self.compiled_first)} first layers compiled" if self.compiled_first else "",
                 self.detector.name, self.model_version, self.device, self.threads, "" if self.threads == 1 else "s")

    def process(self, frames: list[np.ndarray]) -> list[FrameResult]:
        """RGB uint8 frames ``(H, W, 3)``, any sizes -> one result per frame, in order:
        ``size``, ``faces``, ``model_version`` and ``timings_ms`` (``detect`` and
        ``classify``, for the whole batch the frame was in) filled; the caller sets
        ``source``, ``frame`` and ``timestamp_s``.

        Frames of equal size are detected as one batch; all faces of all frames
        are classified in one call: :meth:`detect`, then :meth:`classify`.
        """
        t0 = time.perf_counter()
        detections, resident = self._detect(frames)
        detect_ms = round((time.perf_counter() - t0) * 1e3, 2)
        return self.classify(frames, detections, timings={"detect": detect_ms}, resident=resident)

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """The detector's faces per frame (raw detector boxes, before calibration)."""
        return self._detect(frames)[0]

    def _detect(self, frames: list[np.ndarray]) -> tuple[list[list[Face]], Resident | None]:
        """:meth:`detect`, and the frames the detector left on the torch classifier's device
        (the batched MTCNN's upload, :data:`worker.crop.Resident`), else None."""
        check_frames(frames, self.settings.max_pixels)
        if not frames:
            return [], None
        if self.backend == "torch" and hasattr(self.detector, "detect_resident"):
            return self.detector.detect_resident(frames)
        return self.detector.detect(frames), None

    def classify(self, frames: list[np.ndarray], faces_per_frame: list[list[Face]],
                 timings: dict | None = None, resident: Resident | None = None) -> list[FrameResult]:
        """Faces already found on ``frames`` (by :meth:`detect`, or followed from an
        earlier frame: ``faces_per_frame[i]`` are :class:`Face` on ``frames[i]`` in
        raw detector coordinates) -> one result per frame: the records
        :meth:`process` gives for those faces. ``timings`` (ms) are merged into
        each result's ``timings_ms`` before ``classify``. ``resident``: frames
        already on the torch classifier's device (:data:`worker.crop.Resident`)."""
        check_frames(frames, self.settings.max_pixels)
        check_faces(frames, faces_per_frame)
        if not frames:
            return []
        t1 = time.perf_counter()
        boxes = [np.asarray([f.box for f in faces], dtype=np.float32).reshape(-1, 4) for faces in faces_per_frame]
        extra = {"resident": resident} if resident is not None else {}
        probs = self.classifier.predict(frames, boxes, **extra)  # (N, 8), N = all faces of all frames; synced on .cpu()
        t2 = time.perf_counter()
        timings = {**(timings or {}), "classify": round((t2 - t1) * 1e3, 2)}
        results, k = [], 0
        for frame, faces in zip(frames, faces_per_frame):
            h, w = frame.shape[:2]
            records = []
            reported = self.calibration.apply(faces) if self.calibration is not None else faces
            for face, shown in zip(faces, reported):
                records.append(self.record(face, shown, probs[k], w, h))
                k += 1
            results.append(FrameResult(size=(w, h), faces=records, model_version=self.model_version,
                                       timings_ms=dict(timings)))
        return results

    def record(self, face: Face, shown: Face, probs: np.ndarray, w: int, h: int) -> Face:
        """The classified face: ``shown`` (calibrated) box clipped to the frame, plain rounded
        numbers, ``emotion`` and ``probabilities``; ``detector_box`` when calibration moved it.
        The crop used the raw, unclipped ``face.box``."""
        labels = self.classifier.labels
        return Face(
            box=_clip(shown.box, w, h), score=round(float(shown.score), 4),
            landmarks=None if shown.landmarks is None
            else [(round(float(x), 2), round(float(y), 2)) for x, y in shown.landmarks],
            emotion=labels[int(probs.argmax())],
            probabilities={label: round(float(p), 4) for label, p in zip(labels, probs)},
            detector_box=_clip(face.box, w, h) if shown is not face else None)


def check_frames(frames: list[np.ndarray], max_pixels: int | None = None) -> None:
    """What :class:`Pipeline` takes: a list of RGB uint8 ``(H, W, 3)`` arrays with pixels (any layout in
    memory: a slice or a transposed view is fine), each of at most ``max_pixels`` (the bound on every image
    the service and ``analyze`` decode; an array a program passed in was never held to it: 64 MP took 9 s
    and 2 GB in the detector). A TypeError for a program's mistake (one frame where a list is wanted,
    something that is no array), :class:`BadInputError` for a frame it cannot use (``unsupported``: gray,
    RGBA, float, uint16...; ``empty``: no pixels; ``too_large``), said before any of them runs."""
    if not isinstance(frames, (list, tuple)):
        if isinstance(frames, np.ndarray):
            raise TypeError(f"a Pipeline takes a list of frames, got one array ({frames.dtype} {frames.shape}): for "
                            "one frame, [frame]; for a stacked batch, list(batch)")
        raise TypeError(f"a Pipeline takes a list of frames (RGB uint8 arrays, H x W x 3): for one frame, [frame]; "
                        f"got {type(frames).__name__}")
    for k, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"frames[{k}] must be a numpy array (RGB uint8, H x W x 3), got {type(frame).__name__}")
        check_rgb(frame, f"frames[{k}]")
        if max_pixels is not None and frame.shape[0] * frame.shape[1] > max_pixels:
            raise BadInputError("too_large", f"frames[{k}] is {frame.shape[1]} x {frame.shape[0]} pixels, over "
                                             f"max_pixels ({max_pixels:,}): scale it down, or raise max_pixels")


def check_faces(frames: list[np.ndarray], faces_per_frame: list[list[Face]]) -> None:
    """What :meth:`Pipeline.classify` takes besides the frames: a list of :class:`Face` lists, one per frame,
    each box finite, of some width and height, and at least partly on its frame (a TypeError or ValueError
    naming the first that is not)."""
    if not isinstance(faces_per_frame, (list, tuple)):
        raise TypeError(f"faces_per_frame must be a list with a list of Face per frame, got {_named(faces_per_frame)}")
    if len(faces_per_frame) != len(frames):
        raise ValueError(f"faces_per_frame has {len(faces_per_frame)} list{'s' * (len(faces_per_frame) != 1)} of "
                         f"faces for {len(frames)} frame{'s' * (len(frames) != 1)}: one list a frame (empty for none)")
    for i, (frame, faces) in enumerate(zip(frames, faces_per_frame)):
        if not isinstance(faces, (list, tuple)):
            raise TypeError(f"faces_per_frame[{i}] must be a list of Face, got {_named(faces)}")
        h, w = frame.shape[:2]
        for j, face in enumerate(faces):
            if not isinstance(face, Face):
                raise TypeError(f"faces_per_frame[{i}][{j}] must be a Face(box=(x1, y1, x2, y2), score=...), got "
                                f"{_named(face)}")
            box = face.box
            fine = isinstance(box, (tuple, list)) and len(box) == 4 and all(is_number(v) and math.isfinite(v)
                                                                            for v in box)
            if not fine or not (box[0] < box[2] and box[1] < box[3] and box[2] > 0 and box[3] > 0 and box[0] < w
                                and box[1] < h):
                raise ValueError(f"faces_per_frame[{i}][{j}].box must be (x1, y1, x2, y2) with x1 < x2 and y1 < y2, "
                                 f"finite and at least partly on the {w} x {h} frame, got {face.box!r}")


def _named(value: object) -> str:
    return value.__name__ + " (the class; an instance is wanted)" if isinstance(value, type) else type(value).__name__


def _clip(box, w: int, h: int) -> tuple[float, float, float, float]:
    """A box rounded to 0.01 px and clipped to the frame: reported boxes stay inside it."""
    x1, y1, x2, y2 = (round(float(v), 2) for v in box)
    return (min(max(0.0, x1), float(w)), min(max(0.0, y1), float(h)),
            max(min(float(w), x2), 0.0), max(min(float(h), y2), 0.0))
