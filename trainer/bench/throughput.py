"""``moodstream bench throughput``: frames/s of our pipeline against the naive
baseline, in one process, on the same decoded frames.

* **baseline**: :class:`worker.pipeline.Pipeline` with facenet-pytorch's
  ``MTCNN`` (:class:`worker.detect.MTCNNDetector`), one frame per call, fp32
  classifier: facenet one frame at a time, then the classifier on its crops.
* **ours** (``--ours-path pipeline``, the default): the same ``Pipeline`` with
  :class:`worker.mtcnn_batched.BatchedMTCNNDetector` (pinned upload on CUDA),
  ``--batch`` frames per call, all faces classified in one call, the
  classifier prepared by :func:`prepare_checkpoint` (bf16 autocast +
  channels_last on CUDA; fp32 on CPU).
* **ours** (``--ours-path direct``): no second upload: the face crops are cut on
  the device from the frames the detector uploaded (``worker.crop``'s framing
  and ``roi_align``, without its replicated border past the frame edge).

Decoding is outside the timed region for both (it runs off the critical path
in the worker). Per video it reports frames/s of both and their ratio, the
share of baseline boxes that ours reproduces (IoU >= 0.95), faces/s, latency
percentiles (baseline per frame, ours per batch), peak GPU memory and the
device.
"""

from __future__ import annotations

import copy
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import numpy as np
import torch
from torch import nn
from torchvision.ops import roi_align

from shared.errors import ConfigError, DataError
from shared.media import iter_video
from shared.models import Checkpoint, load_checkpoint, predict_proba, resolve_device
from shared.settings import Settings
from worker.crop import framing_for, square_boxes, to_gray
from worker.detect import Face, MTCNNDetector
from trainer.bench.iou import box_iou
from worker.mtcnn_batched import BatchedMTCNNDetector, matched_boxes
from worker.pipeline import FrameResult, Pipeline

log = logging.getLogger(__name__)

VIDEOS = ("street_1080p.mp4", "hamilton_360p.mp4")
MATCH_IOU = 0.95
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Run:
    """One path over all frames: per-unit wall times (a frame for the
    baseline, a batch for ours), faces and emotion probabilities per frame."""

    seconds: list[float] = field(default_factory=list)
    faces: list[list[Face]] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)  # (n_faces, 8) per frame
    gpu_peak_mib: float | None = None

    @property
    def total_s(self) -> float:
        return sum(self.seconds)


class AutocastModel(nn.Module):
    """Runs the wrapped classifier in channels_last under autocast, so that
    :func:`shared.models.predict_proba` (which feeds it fp32 and reads back
    ``.float()`` logits) needs no change and the crops stay fp32."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.device_type = device.type
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, S, S) -> (B, 8)
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            return self.model(x.contiguous(memory_format=torch.channels_last))


def prepare_checkpoint(ckpt: Checkpoint, device: torch.device, precision: str = "bf16",
                       compile_model: bool = False) -> Checkpoint:
    """A copy of ``ckpt`` for batched inference on ``device``: channels_last
    weights, autocast in ``precision`` on CUDA (fp32 elsewhere), optionally
    ``torch.compile``d. The given checkpoint is left as it is."""
    dtype = DTYPES[precision] if device.type == "cuda" else torch.float32
    model = copy.deepcopy(ckpt.model).to(device, memory_format=torch.channels_last).eval()
    if compile_model:
        model = torch.compile(model, dynamic=True)
    return replace(ckpt, model=AutocastModel(model, device, dtype).eval())


def precision_of(ckpt: Checkpoint) -> str:
    model = ckpt.model
    if isinstance(model, AutocastModel):
        return {v: k for k, v in DTYPES.items()}[model.dtype]
    return "fp32"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _from_results(results: list[FrameResult], labels: tuple[str, ...]) -> tuple[list[list[Face]], list[np.ndarray]]:
    faces, probs = [], []
    for r in results:
        # detector parity is about the raw boxes, before any WIDER-style calibration
        faces.append([Face(tuple(f.get("detector_box", f["box"])), f["score"], f["landmarks"]) for f in r.faces])
        probs.append(np.asarray([[f["probabilities"][label] for label in labels] for f in r.faces],
                                dtype=np.float32).reshape(-1, len(labels)))
    return faces, probs


class DirectPath:
    """Ours without the pipeline's second upload: detect, crop and classify on
    the frames the detector uploaded; one copy of the detections back."""

    def __init__(self, detector: BatchedMTCNNDetector, ckpt: Checkpoint):
        self.detector, self.ckpt = detector, ckpt
        self.framing = framing_for(detector.name)

    @torch.inference_mode()
    def __call__(self, frames: list[np.ndarray]) -> tuple[list[list[Face]], list[np.ndarray]]:
        x = self.detector.upload(frames)  # (B, H, W, 3) uint8 on the device
        det = self.detector.detect_tensor(x)
        n, size = det.boxes.shape[0], self.ckpt.config.input_size
        if n:
            rois = torch.cat([det.image_idx[:, None].float(), square_boxes(det.boxes, self.framing)], 1)
            crops = roi_align(to_gray(x), rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
            probs = predict_proba(self.ckpt, crops)
        else:
            probs = torch.zeros(0, len(self.ckpt.labels), device=x.device)
        faces = det.to_faces(len(frames))  # waits for everything above
        host = probs.cpu().numpy()
        starts = np.cumsum([0] + [len(f) for f in faces])
        return faces, [host[a:b] for a, b in zip(starts[:-1], starts[1:])]


def run_baseline(frames: list[np.ndarray], pipeline: Pipeline, device: torch.device) -> Run:
    labels = pipeline.classifier.labels
    for _ in range(2):  # warm-up: allocator, cuDNN heuristics, lazy CUDA init
        pipeline.process(frames[:1])
    _sync(device)
    _reset_peak(device)
    run = Run()
    for frame in frames:
        t0 = time.perf_counter()
        results = pipeline.process([frame])
        _sync(device)
        run.seconds.append(time.perf_counter() - t0)
        faces, probs = _from_results(results, labels)
        run.faces += faces
        run.probs += probs
    run.gpu_peak_mib = _peak_mib(device)
    return run


def run_ours(frames: list[np.ndarray], step, batch: int, device: torch.device) -> Run:
    """``step(frames) -> (faces, probs)`` on batches of ``batch`` frames."""
    batches = [frames[i:i + batch] for i in range(0, len(frames), batch)]
    for b in {len(b): b for b in batches}.values():  # warm-up once per batch shape
        step(b)
    _sync(device)
    _reset_peak(device)
    run = Run()
    for b in batches:
        _sync(device)
        t0 = time.perf_counter()
        faces, probs = step(b)
        _sync(device)
        run.seconds.append(time.perf_counter() - t0)
        run.faces += faces
        run.probs += probs
    run.gpu_peak_mib = _peak_mib(device)
    return run


def _percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2)}


def compare(frames: list[np.ndarray], base: Run, ours: Run, device_name: str, batch: int, precision: str,
            ours_path: str) -> dict:
    ref_boxes = sum(len(f) for f in base.faces)
    matched = sum(matched_boxes(r, o, MATCH_IOU) for r, o in zip(base.faces, ours.faces))
    # emotion agreement on the faces both found (same box to IoU >= 0.95)
    agree = total = 0
    for rf, rp, of, op in zip(base.faces, base.probs, ours.faces, ours.probs):
        if not rf or not of:
            continue
        iou = box_iou([f.box for f in rf], [f.box for f in of])  # (R, O)
        for i, j in enumerate(iou.argmax(1)):
            if iou[i, j] >= MATCH_IOU:
                total += 1
                agree += int(rp[i].argmax() == op[j].argmax())
    n = len(frames)
    h, w = frames[0].shape[:2]
    base_fps, ours_fps = n / base.total_s, n / ours.total_s
    return {
        "device": device_name,
        "frames": n,
        "resolution": f"{w}x{h}",
        "batch": batch,
        "precision": precision,
        "ours_path": ours_path,
        "baseline_fps": round(base_fps, 3),
        "ours_fps": round(ours_fps, 3),
        "ratio": round(ours_fps / base_fps, 3),
        "box_match_rate": round(matched / ref_boxes, 4) if ref_boxes else None,
        "baseline_boxes": ref_boxes,
        "ours_boxes": sum(len(f) for f in ours.faces),
        "face_count_within_1": round(float(np.mean([abs(len(r) - len(o)) <= 1
                                                    for r, o in zip(base.faces, ours.faces)])), 4),
        "emotion_agreement": round(agree / total, 4) if total else None,
        "baseline_faces_per_s": round(sum(len(f) for f in base.faces) / base.total_s, 2),
        "ours_faces_per_s": round(sum(len(f) for f in ours.faces) / ours.total_s, 2),
        "baseline_latency_ms_per_frame": _percentiles_ms(base.seconds),
        "ours_latency_ms_per_batch": _percentiles_ms(ours.seconds),
        "baseline_gpu_peak_mib": base.gpu_peak_mib,
        "ours_gpu_peak_mib": ours.gpu_peak_mib,
    }


def parse_frames(specs: tuple[str, ...], names: tuple[str, ...]) -> dict[str, int | None]:
    """``("16", "street_1080p.mp4=8")`` -> frames per video name (None: all)."""
    default: int | None = None
    per: dict[str, int] = {}
    for spec in specs:
        name, _, value = spec.rpartition("=")
        try:
            n = int(value)
        except ValueError:
            raise click.BadParameter(f"expected N or NAME=N, got {spec!r}", param_hint="--frames") from None
        if n < 1:
            raise click.BadParameter(f"frame counts must be >= 1, got {spec!r}", param_hint="--frames")
        if name:
            per[name] = n
        else:
            default = n
    return {v: per.get(v, default) for v in names}


def markdown(results: dict, command: str, notes: list[str]) -> str:
    first = next(iter(results.values()))
    lines = [
        "# Throughput: facenet-pytorch one frame at a time vs batched MTCNN",
        "",
        f"Device: **{first['device']}**; torch {torch.__version__}; batch {first['batch']} frames; "
        f"ours: {first['ours_path']} path, classifier {first['precision']} + channels_last.",
        "",
        f"Command: `{command}`",
        "",
        "| video | size | frames | baseline fps | ours fps | ratio | box match (IoU>=0.95) | faces/s base / ours "
        "| latency ms base p50/p99 (frame) | ours p50/p99 (batch) | GPU peak MiB base / ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        bl, ol = r["baseline_latency_ms_per_frame"], r["ours_latency_ms_per_batch"]
        match = "n/a" if r["box_match_rate"] is None else f"{r['box_match_rate']:.2%} of {r['baseline_boxes']}"
        lines.append(
            f"| {name} | {r['resolution']} | {r['frames']} | {r['baseline_fps']:.2f} | {r['ours_fps']:.2f} "
            f"| {r['ratio']:.2f}x | {match} | {r['baseline_faces_per_s']:.1f} / {r['ours_faces_per_s']:.1f} "
            f"| {bl['p50']:.0f} / {bl['p99']:.0f} | {ol['p50']:.0f} / {ol['p99']:.0f} "
            f"| {r['baseline_gpu_peak_mib'] or '-'} / {r['ours_gpu_peak_mib'] or '-'} |")
    lines += [""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


NOTES = [
    "Same process, same decoded frames; decoding is not timed. Warm-up runs before timing; "
    "CUDA is synchronised around every timed unit.",
    "baseline: worker.pipeline.Pipeline with facenet-pytorch's MTCNN, one frame per call, fp32 classifier. "
    "ours (pipeline path): the same Pipeline with BatchedMTCNNDetector, one call per batch. Both crop with "
    "worker.crop (FER framing, roi_align) and classify with flip TTA.",
    "box match: share of baseline boxes (score >= face_score_min) with a batched box at IoU >= 0.95, one-to-one.",
    "Through Redis (frames in the stream to results in the stream, one worker) is measured by "
    "`moodstream bench stream` with MOODSTREAM_MTCNN_IMPL=reference / batched (deploy/gpu/run_bench.sh runs both).",
]


@click.command("throughput")
@click.option("--videos", "videos_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding street_1080p.mp4 and hamilton_360p.mp4 (../shared/data/videos).")
@click.option("--video", "names", multiple=True, default=VIDEOS, show_default=True,
              help="Video file name(s) in --videos to run.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--frames", "frame_specs", multiple=True,
              help="Frames per video from the start: N for all, or NAME=N (repeatable) [default: all].")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1), help="Frames per batch (ours).")
@click.option("--precision", default="bf16", show_default=True, type=click.Choice(sorted(DTYPES)),
              help="Classifier autocast dtype on CUDA (ours; the detector stays fp32). CPU: fp32.")
@click.option("--ours-path", type=click.Choice(["pipeline", "direct"]), default="pipeline", show_default=True,
              help="pipeline: worker.pipeline.Pipeline with the batched detector; direct: crops cut on the device "
                   "from the detector's upload (no second upload).")
@click.option("--compile", "compile_nets", is_flag=True,
              help="torch.compile the MTCNN nets and the classifier (ours). Off: not measured faster yet.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch (default: torch's choice).")
@click.option("--note", "extra_notes", multiple=True, help="A line for the markdown's notes (e.g. machine load).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the table.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON here.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a markdown table (it names the device) here.")
def throughput_cmd(videos_dir, names, device, frame_specs, batch, precision, ours_path, compile_nets, threads,
                   extra_notes, as_json, out, md_path):
    """Frames/s of the batched GPU pipeline against facenet-pytorch one frame at
    a time, both in this process on the same frames, per video."""
    if threads:
        torch.set_num_threads(threads)
    settings = Settings.from_env(device=device, mtcnn_impl="batched")
    dev = resolve_device(settings.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: no CUDA device is available here; use cpu or auto")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    counts = parse_frames(frame_specs, names)

    baseline = Pipeline(settings.replace(mtcnn_impl="reference"), detector=MTCNNDetector(settings),
                        checkpoint=load_checkpoint(settings.checkpoint))
    detector = BatchedMTCNNDetector(settings, compile_nets=compile_nets)
    ckpt = prepare_checkpoint(load_checkpoint(settings.checkpoint), dev, precision, compile_nets)
    if ours_path == "direct":
        ours_step = DirectPath(detector, ckpt)
    else:
        pipeline = Pipeline(settings, detector=detector, checkpoint=ckpt)

        def ours_step(batch_frames: list[np.ndarray]) -> tuple[list[list[Face]], list[np.ndarray]]:
            return _from_results(pipeline.process(batch_frames), ckpt.labels)

    results = {}
    for name in names:
        path = videos_dir / name
        if not path.is_file():
            raise DataError(f"{path} not found: --videos must hold {', '.join(names)}")
        frames = [item.decoded(settings.max_pixels) for item in iter_video(str(path), max_frames=counts[name])]
        if not frames:
            raise DataError(f"{path}: no decodable frames")
        log.info("throughput: %s, %d frames of %dx%d on %s", name, len(frames), frames[0].shape[1],
                 frames[0].shape[0], device_name)
        base = run_baseline(frames, baseline, dev)
        mine = run_ours(frames, ours_step, batch, dev)
        results[name] = compare(frames, base, mine, device_name, batch, precision_of(ckpt), ours_path)

    command = "moodstream " + shlex.join(sys.argv[1:])
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    if md_path:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(markdown(results, command, NOTES + list(extra_notes)))
    if as_json:
        click.echo(json.dumps(results))
    else:
        click.echo(markdown(results, command, NOTES + list(extra_notes)))
