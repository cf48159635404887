"""``moodstream bench throughput``: frames/s of what ships against the naive
baseline, in one process, on the same decoded frames, with the same threads.

* **baseline**: facenet-pytorch's MTCNN one frame at a time
  (:class:`worker.mtcnn_reference.MTCNNDetector`), then the torch classifier
  on its faces: :class:`worker.pipeline.Pipeline` on the torch backend, one
  frame per call.
* **ours**: exactly the :class:`worker.pipeline.Pipeline` that ``moodstream
  worker`` builds from default settings on that device (``backend=auto``:
  ONNX Runtime on CPU, torch with the batched MTCNN on CUDA), fed
  ``batch_max`` frames per call as the worker batches them. Nothing the
  worker cannot run is measured here.

Both get the same number of threads: ``--threads``, default the worker's own
default (:func:`worker.pipeline.resolve_threads`). Decoding is outside the
timed region (it runs off the critical path in the worker). Per video it
reports frames/s of both and their ratio, the share of baseline boxes ours
reproduces one-to-one at IoU >= 0.95 (:func:`shared.boxes.match_one_to_one`),
top-emotion agreement on those faces, faces/s, latency percentiles and, on
CUDA, peak GPU memory.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import torch

from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.errors import DataError
from moodstream.shared.media import iter_video
from moodstream.shared.settings import Settings
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.mtcnn_reference import MTCNNDetector
from moodstream.worker.pipeline import Pipeline, resolve_threads

log = logging.getLogger(__name__)

VIDEOS = ("street_1080p.mp4", "hamilton_360p.mp4")
MATCH_IOU = 0.95


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


def _cuda(device: str) -> bool:
    return device.startswith("cuda")


def _sync(device: str) -> None:
    if _cuda(device):
        torch.cuda.synchronize(device)


def _reset_peak(device: str) -> None:
    if _cuda(device):
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if _cuda(device) else None


def _from_results(results: list[FrameResult], labels: tuple[str, ...]) -> tuple[list[list[Face]], list[np.ndarray]]:
    faces, probs = [], []
    for r in results:
        # detector parity is about the raw boxes, before any WIDER-style calibration
        faces.append([Face(f.detector_box or f.box, f.score, f.landmarks) for f in r.faces])
        probs.append(np.asarray([[f.probabilities[label] for label in labels] for f in r.faces],
                                dtype=np.float32).reshape(-1, len(labels)))
    return faces, probs


def run(frames: list[np.ndarray], pipeline: Pipeline, batch: int) -> Run:
    """``pipeline.process`` on ``batch`` frames at a time, after a warm-up per batch shape."""
    device, labels = pipeline.device, pipeline.classifier.labels
    batches = [frames[i:i + batch] for i in range(0, len(frames), batch)]
    for b in {len(b): b for b in batches}.values():  # warm-up: allocator, lazy init, ORT arenas
        pipeline.process(b)
    _sync(device)
    _reset_peak(device)
    out = Run()
    for b in batches:
        t0 = time.perf_counter()
        results = pipeline.process(b)
        _sync(device)
        out.seconds.append(time.perf_counter() - t0)
        faces, probs = _from_results(results, labels)
        out.faces += faces
        out.probs += probs
    out.gpu_peak_mib = _peak_mib(device)
    return out


def _percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2)}


def compare(frames: list[np.ndarray], base: Run, ours: Run, device_name: str, batch: int, backend: str,
            threads: int) -> dict:
    ref_boxes = sum(len(f) for f in base.faces)
    matched = agree = 0
    for rf, rp, of, op in zip(base.faces, base.probs, ours.faces, ours.probs):
        pairs = match_one_to_one([f.box for f in rf], [f.box for f in of], MATCH_IOU)
        matched += len(pairs)
        agree += sum(int(rp[i].argmax() == op[j].argmax()) for i, j in pairs)
    n = len(frames)
    h, w = frames[0].shape[:2]
    base_fps, ours_fps = n / base.total_s, n / ours.total_s
    return {
        "device": device_name,
        "backend": backend,
        "threads": threads,
        "frames": n,
        "resolution": f"{w}x{h}",
        "batch": batch,
        "baseline_fps": round(base_fps, 3),
        "ours_fps": round(ours_fps, 3),
        "ratio": round(ours_fps / base_fps, 3),
        "box_match_rate": round(matched / ref_boxes, 4) if ref_boxes else None,
        "baseline_boxes": ref_boxes,
        "ours_boxes": sum(len(f) for f in ours.faces),
        "emotion_agreement": round(agree / matched, 4) if matched else None,
        "baseline_faces_per_s": round(ref_boxes / base.total_s, 2),
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
        "# Throughput: what ships vs facenet-pytorch one frame at a time",
        "",
        f"Device: **{first['device']}**; ours: the default worker pipeline, backend **{first['backend']}**, "
        f"batch {first['batch']} frames; **{first['threads']} thread(s)** for both sides.",
        "",
        f"Command: `{command}`",
        "",
        "| video | size | frames | baseline fps | ours fps | ratio | box match (IoU>=0.95) | same emotion "
        "| latency ms base p50/p99 (frame) | ours p50/p99 (batch) | GPU peak MiB base / ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        bl, ol = r["baseline_latency_ms_per_frame"], r["ours_latency_ms_per_batch"]
        match = "n/a" if r["box_match_rate"] is None else f"{r['box_match_rate']:.2%} of {r['baseline_boxes']}"
        agree = "n/a" if r["emotion_agreement"] is None else f"{r['emotion_agreement']:.2%}"
        lines.append(
            f"| {name} | {r['resolution']} | {r['frames']} | {r['baseline_fps']:.2f} | {r['ours_fps']:.2f} "
            f"| {r['ratio']:.2f}x | {match} | {agree} | {bl['p50']:.0f} / {bl['p99']:.0f} "
            f"| {ol['p50']:.0f} / {ol['p99']:.0f} | {r['baseline_gpu_peak_mib'] or '-'} / {r['ours_gpu_peak_mib'] or '-'} |")
    lines += [""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


NOTES = [
    "Same process, same decoded frames; decoding is not timed. Warm-up runs before timing; "
    "CUDA is synchronised around every timed unit.",
    "baseline: worker.pipeline.Pipeline on the torch backend with facenet-pytorch's MTCNN, one frame per call. "
    "ours: the Pipeline `moodstream worker` builds from default settings on this device, batch_max frames per call.",
    "box match: share of baseline boxes (score >= face_score_min) with a box of ours at IoU >= 0.95, one-to-one; "
    "same emotion: top emotion equal on those faces.",
    "Through Redis (frames in the stream to results in the stream, one worker): `moodstream bench stream`.",
]


@click.command("throughput")
@click.option("--videos", "videos_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding street_1080p.mp4 and hamilton_360p.mp4 (../shared/data/videos).")
@click.option("--video", "names", multiple=True, default=VIDEOS, show_default=True,
              help="Video file name(s) in --videos to run.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--frames", "frame_specs", multiple=True,
              help="Frames per video from the start: N for all, or NAME=N (repeatable) [default: all].")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads for both sides (default: a worker's default, half the cores up to 4).")
@click.option("--note", "extra_notes", multiple=True, help="A line for the markdown's notes (e.g. machine load).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the table.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON here.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a markdown table (it names the device) here.")
def throughput_cmd(videos_dir, names, device, frame_specs, threads, extra_notes, as_json, out, md_path):
    """Frames/s of the default worker pipeline against facenet-pytorch one frame
    at a time, both in this process on the same frames and threads, per video."""
    shipped = Settings.from_env(env={}, device=device)  # the defaults users get, on this device
    threads = threads or resolve_threads(shipped, worker=True)
    ours = Pipeline(shipped.replace(threads=threads), worker=True)
    baseline_settings = shipped.replace(backend="torch", mtcnn_impl="reference", threads=threads)
    baseline = Pipeline(baseline_settings, detector=MTCNNDetector(baseline_settings))
    device_name = torch.cuda.get_device_name(ours.device) if _cuda(ours.device) else "cpu"
    batch = shipped.batch_max
    counts = parse_frames(frame_specs, names)
    results = {}
    for name in names:
        path = videos_dir / name
        if not path.is_file():
            raise DataError(f"{path} not found: --videos must hold {', '.join(names)}")
        frames = [item.decoded(shipped.max_pixels) for item in iter_video(str(path), max_frames=counts[name])]
        if not frames:
            raise DataError(f"{path}: no decodable frames")
        log.info("throughput: %s, %d frames of %dx%d on %s, %d threads", name, len(frames), frames[0].shape[1],
                 frames[0].shape[0], device_name, threads)
        base = run(frames, baseline, 1)
        mine = run(frames, ours, batch)
        results[name] = compare(frames, base, mine, device_name, batch, ours.backend, threads)

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
