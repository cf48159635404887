"""``moodstream bench throughput``: frames/s of what ships against the naive
baseline, in one process, on the same decoded frames, with the same threads.

* **baseline**: facenet-pytorch's MTCNN one frame at a time
  (:class:`worker.detectors.mtcnn_reference.MTCNNDetector`), then the torch classifier
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
top-emotion agreement on those faces (and the match at IoU >= 0.5), faces/s,
latency percentiles, on CUDA peak GPU memory, and on CPU the CPU's model and ISA
flags (AVX2, AVX-512, VNNI, AVX512-BF16, AMX: :func:`worker.runtime.cpu_info`),
the precision ours ran in, and the decode ceiling: frames/s of reading the
video alone (:func:`trainer.bench.profile.decode_fps`), with ours as a share of it.
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

from moodstream.options import DEVICE, OutputFile
from moodstream.trainer.bench import distinct_outputs, table_text, write_output
from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.settings import BACKENDS, Precision, Settings, choices
from moodstream.shared.record import Face, FrameResult
from moodstream.trainer.bench.profile import decode_fps, load_frames
from moodstream.worker.detectors.mtcnn_reference import MTCNNDetector
from moodstream.worker.detectors.onnx_mtcnn import area_kernels
from moodstream.worker.onnx_session import RUNTIMES as CPU_RUNTIMES
from moodstream.worker.pipeline import Pipeline, resolve_threads
from moodstream.worker.runtime import cpu_info

log = logging.getLogger(__name__)

VIDEOS = ("street_1080p.mp4", "hamilton_360p.mp4")
MATCH_IOU = 0.95
LOOSE_IOU = 0.5  # box_match_rate_50: the same faces found, however tight
# On a GPU, facenet-pytorch's MTCNN does not give its own CPU answers (an H200: 16 of 24 fixture boxes
# at IoU 0.95, with TF32 off, cuDNN deterministic or off alike), while ours gives the CPU's to 1e-4 px.
# So on CUDA both sides are also matched against facenet on the CPU, on the first this many frames.
CPU_REFERENCE_FRAMES = 16


@dataclass
class Run:
    """One path over all frames: per-unit wall times (a frame for the
    baseline, a batch for ours), faces and emotion probabilities per frame."""

    seconds: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # process CPU time over the timed units (robust to other processes' load at 1 thread)
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
        c0, t0 = time.process_time(), time.perf_counter()
        results = pipeline.process(b)
        _sync(device)
        out.seconds.append(time.perf_counter() - t0)
        out.cpu_s += time.process_time() - c0
        faces, probs = _from_results(results, labels)
        out.faces += faces
        out.probs += probs
    out.gpu_peak_mib = _peak_mib(device)
    return out


def _percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2)}


def match_rates(ref: list[list[Face]], cand: list[list[Face]]) -> dict:
    """Share of ``ref``'s boxes with a ``cand`` box at IoU >= 0.95 and >= 0.5, one-to-one, frame by frame."""
    total = sum(len(f) for f in ref)
    strict = sum(len(match_one_to_one([f.box for f in r], [f.box for f in c], MATCH_IOU)) for r, c in zip(ref, cand))
    loose = sum(len(match_one_to_one([f.box for f in r], [f.box for f in c], LOOSE_IOU)) for r, c in zip(ref, cand))
    return {"boxes": total, "iou95": round(strict / total, 4) if total else None,
            "iou50": round(loose / total, 4) if total else None}


def cpu_reference(frames: list[np.ndarray], settings: Settings, base: Run, ours: Run) -> dict:
    """facenet-pytorch's MTCNN on the CPU over the first :data:`CPU_REFERENCE_FRAMES` frames, and how
    far each side's boxes (run on the GPU) agree with it: the reference answer a GPU should give."""
    n = min(len(frames), CPU_REFERENCE_FRAMES)
    detector = MTCNNDetector(settings.replace(device="cpu"), "cpu")
    ref = [detector.detect([frame])[0] for frame in frames[:n]]
    ours_rates, base_rates = match_rates(ref, ours.faces[:n]), match_rates(ref, base.faces[:n])
    return {"cpu_reference_frames": n, "cpu_reference_boxes": ours_rates["boxes"],
            "box_match_rate_cpu_reference": ours_rates["iou95"],
            "box_match_rate_50_cpu_reference": ours_rates["iou50"],
            "baseline_box_match_rate_cpu_reference": base_rates["iou95"]}


def compare(frames: list[np.ndarray], base: Run, ours: Run, device_name: str, batch: int, backend: str,
            threads: int, precision: str = "fp32", cpu: dict | None = None, decode: float | None = None,
            repeats: int = 1, reference: dict | None = None) -> dict:
    """The report of one video: speeds, their ratio, and how far ours agrees
    with the baseline (boxes one-to-one at IoU 0.95 and 0.5, top emotions on
    the 0.95 matches); ``cpu`` (:meth:`CpuInfo.to_dict`) and ``decode`` (the
    decode ceiling, frames/s) where measured."""
    ref_boxes = sum(len(f) for f in base.faces)
    matched = agree = loose = 0
    for rf, rp, of, op in zip(base.faces, base.probs, ours.faces, ours.probs):
        pairs = match_one_to_one([f.box for f in rf], [f.box for f in of], MATCH_IOU)
        matched += len(pairs)
        agree += sum(int(rp[i].argmax() == op[j].argmax()) for i, j in pairs)
        loose += len(match_one_to_one([f.box for f in rf], [f.box for f in of], LOOSE_IOU))
    n = len(frames)
    h, w = frames[0].shape[:2]
    base_fps, ours_fps = n / base.total_s, n / ours.total_s
    cpu = cpu or {}
    return {
        "device": device_name,
        "backend": backend,
        "precision": precision,
        "cpu": cpu.get("model"),
        "cpu_isa": {k: v for k, v in cpu.items() if k != "model"} or None,
        "threads": threads,
        "frames": n,
        "resolution": f"{w}x{h}",
        "batch": batch,
        "repeats": repeats,
        "baseline_fps": round(base_fps, 3),
        "ours_fps": round(ours_fps, 3),
        "ratio": round(ours_fps / base_fps, 3),
        "ratio_cpu_time": round(base.cpu_s / ours.cpu_s, 3) if ours.cpu_s > 0 else None,
        "box_match_rate": round(matched / ref_boxes, 4) if ref_boxes else None,
        "box_match_rate_50": round(loose / ref_boxes, 4) if ref_boxes else None,
        "baseline_boxes": ref_boxes,
        "ours_boxes": sum(len(f) for f in ours.faces),
        "emotion_agreement": round(agree / matched, 4) if matched else None,
        "baseline_faces_per_s": round(ref_boxes / base.total_s, 2),
        "ours_faces_per_s": round(sum(len(f) for f in ours.faces) / ours.total_s, 2),
        "baseline_latency_ms_per_frame": _percentiles_ms(base.seconds),
        "ours_latency_ms_per_batch": _percentiles_ms(ours.seconds),
        "baseline_gpu_peak_mib": base.gpu_peak_mib,
        "ours_gpu_peak_mib": ours.gpu_peak_mib,
        "decode_fps": decode,
        "ours_share_of_decode": round(ours_fps / decode, 4) if decode else None,
        **(reference or {}),
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
    unknown = sorted(set(per) - set(names))
    if unknown:  # silently ignored before: every frame of the video ran
        raise click.BadParameter(f"{', '.join(unknown)} is not among the videos run ({', '.join(names)})",
                                 param_hint="--frames")
    return {v: per.get(v, default) for v in names}


def markdown(results: dict, command: str, notes: list[str]) -> str:
    first = next(iter(results.values()))
    isa = ", ".join(k for k, v in (first.get("cpu_isa") or {}).items() if v) or "-"
    cpu = f" ({first['cpu']}; {isa})" if first.get("cpu") else ""
    lines = [
        "# Throughput: what ships vs facenet-pytorch one frame at a time",
        "",
        f"Device: **{first['device']}**{cpu}; ours: the worker pipeline, backend **{first['backend']}** "
        f"({first.get('precision', 'fp32')}), batch {first['batch']} frames; **{first['threads']} thread(s)** for "
        "both sides.",
        "",
        f"Command: `{command}`",
        "",
        "| video | size | frames | baseline fps | ours fps | ratio | box match (IoU>=0.95) | IoU>=0.5 "
        "| same emotion | decode fps (ours' share) | latency ms base p50/p99 (frame) | ours p50/p99 (batch) "
        "| GPU peak MiB base / ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        bl, ol = r["baseline_latency_ms_per_frame"], r["ours_latency_ms_per_batch"]
        match = "n/a" if r["box_match_rate"] is None else f"{r['box_match_rate']:.2%} of {r['baseline_boxes']}"
        agree = "n/a" if r["emotion_agreement"] is None else f"{r['emotion_agreement']:.2%}"
        loose = "n/a" if r.get("box_match_rate_50") is None else f"{r['box_match_rate_50']:.2%}"
        decode = "-" if not r.get("decode_fps") else f"{r['decode_fps']:.0f} ({r['ours_share_of_decode']:.1%})"
        lines.append(
            f"| {name} | {r['resolution']} | {r['frames']} | {r['baseline_fps']:.2f} | {r['ours_fps']:.2f} "
            f"| {r['ratio']:.2f}x | {match} | {loose} | {agree} | {decode} | {bl['p50']:.0f} / {bl['p99']:.0f} "
            f"| {ol['p50']:.0f} / {ol['p99']:.0f} "
            f"| {r['baseline_gpu_peak_mib'] or '-'} / {r['ours_gpu_peak_mib'] or '-'} |")
    cpu_ref = {name: r for name, r in results.items() if r.get("box_match_rate_cpu_reference") is not None}
    if cpu_ref:
        lines += ["", "Against facenet-pytorch's MTCNN on the CPU (box match at IoU>=0.95; its first frames):", ""]
        lines += [f"- {name}: ours {r['box_match_rate_cpu_reference']:.2%}, the baseline (facenet on the GPU) "
                  f"{r['baseline_box_match_rate_cpu_reference']:.2%}, of {r['cpu_reference_boxes']} boxes in "
                  f"{r['cpu_reference_frames']} frames" for name, r in cpu_ref.items()]
    lines += [""] + [f"- {n}" for n in notes] + [""]
    return table_text(lines)


NOTES = [
    "Same process, same decoded frames; decoding is not timed. Warm-up runs before timing; "
    "CUDA is synchronised around every timed unit. With --repeats N both sides are timed N times, alternating, "
    "and each keeps its fastest pass; ratio_cpu_time (JSON) is the ratio of process CPU times, which other "
    "processes' load moves less than wall time.",
    "baseline: worker.pipeline.Pipeline on the torch backend with facenet-pytorch's MTCNN, one frame per call. "
    "ours: the Pipeline `moodstream worker` builds from default settings on this device, batch_max frames per call.",
    "box match: share of baseline boxes (score >= face_score_min) with a box of ours at IoU >= 0.95 (and >= 0.5), "
    "one-to-one; same emotion: top emotion equal on the 0.95 matches.",
    "On CUDA (JSON): box_match_rate_cpu_reference, ours against facenet-pytorch's MTCNN on the CPU (the first "
    f"{CPU_REFERENCE_FRAMES} frames), and baseline_box_match_rate_cpu_reference, facenet on the GPU against "
    "itself on the CPU: its GPU path moves boxes, so on a GPU the baseline is not the reference answer.",
    "decode fps: reading the video alone (OpenCV, to RGB), the ceiling of a pipeline fed from the file; "
    "ours' share: ours fps over it.",
    "Through Redis (frames in the stream to results in the stream, one worker): `moodstream bench stream`.",
]


@click.command("throughput")
@click.option("--videos", "videos_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder holding street_1080p.mp4 and hamilton_360p.mp4 (../shared/data/videos).")
@click.option("--video", "names", multiple=True, default=VIDEOS, show_default=True,
              help="Video file name(s) in --videos to run.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
@click.option("--frames", "frame_specs", multiple=True,
              help="Frames per video from the start: N for all, or NAME=N (repeatable) [default: all].")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads for both sides (default: a worker's default, half the cores up to 4).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="Ours' backend (auto: what a worker picks on this machine).")
@click.option("--precision", type=click.Choice(choices(Precision)), default="auto", show_default=True,
              help="Ours' precision (auto: per net; on openvino the emotion net in fp32, int8 or bf16 as measured "
                   "fastest on this CPU, an int8 or bf16 one with its close calls in fp32, ONet in "
                   "bf16 and PNet / RNet screened in bf16 where the CPU has native bf16; fp32 on onnx).")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Time both sides this many times, alternating (baseline, ours, baseline, ...), and keep each "
                   "side's fastest pass: on a loaded machine both then see the same load.")
@click.option("--decode-frames", type=click.IntRange(min=0), default=120, show_default=True,
              help="Frames read per video to measure the decode ceiling (0: skip).")
@click.option("--note", "extra_notes", multiple=True, help="A line for the markdown's notes (e.g. machine load).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the table.")
@click.option("--out", type=OutputFile(), help="Also write the JSON here.")
@click.option("--markdown", "md_path", type=OutputFile(),
              help="Also write a markdown table (it names the device) here.")
def throughput_cmd(videos_dir, names, device, frame_specs, threads, backend, precision, repeats, decode_frames,
                   extra_notes, as_json, out, md_path):
    """Frames/s of the default worker pipeline against facenet-pytorch one frame
    at a time, both in this process on the same frames and threads, per video."""
    distinct_outputs(out, md_path)
    counts = parse_frames(frame_specs, names)  # before the models load
    shipped = Settings.from_env(env={}, device=device)  # the defaults users get, on this device
    threads = threads or resolve_threads(shipped, worker=True)
    ours = Pipeline(shipped.replace(threads=threads, backend=backend, precision=precision), worker=True)
    baseline_settings = shipped.replace(backend="torch", mtcnn_impl="reference", threads=threads)
    baseline = Pipeline(baseline_settings, detector=MTCNNDetector(baseline_settings, ours.device))
    device_name = torch.cuda.get_device_name(ours.device) if _cuda(ours.device) else "cpu"
    cpu = cpu_info().to_dict()
    batch = shipped.batch_max
    results = {}
    for name in names:
        path = videos_dir / name
        frames = load_frames(path, counts[name], shipped.max_pixels)
        log.info("throughput: %s, %d frames of %dx%d on %s, %d threads", name, len(frames), frames[0].shape[1],
                 frames[0].shape[0], device_name, threads)
        passes = [(run(frames, baseline, 1), run(frames, ours, batch)) for _ in range(repeats)]
        base = min((p[0] for p in passes), key=lambda r: r.total_s)
        mine = min((p[1] for p in passes), key=lambda r: r.total_s)
        decode = decode_fps(path, decode_frames, shipped.max_pixels) if decode_frames else None
        reference = cpu_reference(frames, baseline_settings, base, mine) if _cuda(ours.device) else None
        results[name] = compare(frames, base, mine, device_name, batch, ours.backend, threads, ours.precision, cpu,
                                decode, repeats, reference)
        if ours.backend in CPU_RUNTIMES:  # the pyramid and crops compiled or in numpy (setup.py)
            results[name]["area_kernels"] = area_kernels()
            # the MTCNN nets whose first layers ran compiled before OpenVINO (worker/detectors/first_layers.py)
            results[name]["first_layers_compiled"] = list(ours.compiled_first)

    command = "moodstream " + shlex.join(sys.argv[1:])
    if out:
        write_output(out, json.dumps(results, indent=1) + "\n")
    if md_path:
        write_output(md_path, markdown(results, command, NOTES + list(extra_notes)))
    if as_json:
        click.echo(json.dumps(results))
    else:
        click.echo(markdown(results, command, NOTES + list(extra_notes)))
