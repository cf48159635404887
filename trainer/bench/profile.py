"""``moodstream bench profile``: where the CPU pipeline's time goes, per stage
and per net, at each video size, on each installed CPU runtime.

It runs the :class:`worker.pipeline.Pipeline` that ``moodstream worker`` builds
(backend ``onnx`` and/or ``openvino``, the worker's default threads), fed
``batch_max`` frames per call as the worker feeds it, and times, without
changing what runs:

* ``decode``: reading the video alone (OpenCV, to RGB): the ceiling
  (frames/s) that a pipeline fed from that file cannot pass;
* ``pyramid``: the summed-area table and the pyramid's area resizes;
* ``pnet``, ``rnet``, ``onet``, ``emotion_net``: the four nets (each net's
  calls, input shapes and ms per call too; a net's bf16 screen,
  :data:`worker.runtime.AUTO_SCREENED`, counts as that net, and so do the int8
  or bf16 emotion net's fp32 reruns of its close calls);
* each net's *parts* besides: a screened net's bf16 screen (``"bf16 screen"``)
  apart from its runs at its own precision on what the screen left near the
  threshold (``"fp32"``), the int8 or bf16 emotion net (``"int8"``) apart from
  its close calls' fp32 reruns (``"fp32 reruns"``), each with its calls and
  inputs (the batch dimension: crops, PNet strips or line pieces) a frame;
* ``nms``: every NMS of the three MTCNN stages;
* ``mtcnn_crops``: the 24x24 / 48x48 crops for RNet / ONet;
* ``emotion_crops``: the FER-framed grey crops for the emotion net;
* ``other``: the rest (normalisation, box arithmetic, records).

Timing wraps the module functions and the nets of one pipeline in this
process only (the wrappers cost about a microsecond a call).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from moodstream.options import OutputFile
from moodstream.trainer.bench import distinct_outputs, table_text, write_output
from moodstream.shared.errors import ConfigError, DataError
from moodstream.shared.media import iter_video
from moodstream.shared.settings import Settings
from moodstream.worker import onnx_classify
from moodstream.worker.detectors import onnx_mtcnn
from moodstream.worker.onnx_session import RUNTIMES
from moodstream.worker.pipeline import Pipeline, resolve_threads
from moodstream.worker.runtime import cpu_info, installed_runtimes

log = logging.getLogger(__name__)

VIDEOS = ("street_1080p.mp4", "hamilton_360p.mp4")
STAGES = ("pyramid", "pnet", "nms", "mtcnn_crops", "rnet", "onet", "emotion_crops", "emotion_net", "other")
NETS = ("pnet", "rnet", "onet", "emotion_net")
# module functions timed as a stage: (module, function name, stage)
TIMED_FUNCTIONS = (
    (onnx_mtcnn, "integral_image", "pyramid"),
    (onnx_mtcnn, "area_resize", "pyramid"),
    (onnx_mtcnn, "nms", "nms"),
    (onnx_mtcnn, "area_crops", "mtcnn_crops"),
    (onnx_classify, "crop_faces", "emotion_crops"),
)


@dataclass
class Part:
    """One part of a net's time (:attr:`Clock.parts`): seconds, runs and inputs (the batch dimension)."""

    seconds: float = 0.0
    calls: int = 0
    items: int = 0


class Clock:
    """Seconds and calls per stage, the input shapes each net saw, and each net's parts."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self.shapes: dict[str, Counter] = defaultdict(Counter)
        self.parts: dict[tuple[str, str], Part] = defaultdict(Part)  # (net, part) -> its share

    def record(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds
        self.calls[stage] += 1

    def timed(self, fn, stage: str):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.record(stage, time.perf_counter() - t0)
        return wrapper


class TimedNet:
    """A :class:`worker.onnx_session.Net` whose runs are counted on a :class:`Clock`, as
    stage ``stage`` and as that net's ``part`` (its precision, and what it runs for)."""

    def __init__(self, net, stage: str, clock: Clock, part: str | None = None):
        self.net, self.stage, self.clock = net, stage, clock
        self.part = part or net.precision
        self.runtime, self.precision, self.metadata = net.runtime, net.precision, net.metadata

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.clock.shapes[self.stage]["x".join(map(str, x.shape))] += 1
        t0 = time.perf_counter()
        try:
            return self.net.run(x)
        finally:
            seconds = time.perf_counter() - t0
            self.clock.record(self.stage, seconds)
            part = self.clock.parts[(self.stage, self.part)]
            part.seconds += seconds
            part.calls += 1
            part.items += len(x)


@contextmanager
def instrumented(pipeline: Pipeline, clock: Clock):
    """``pipeline`` (an onnx / openvino one) with its stages timed on ``clock``, restored after."""
    det, clf = pipeline.detector, pipeline.classifier
    if not hasattr(det, "pnet") or not hasattr(clf, "net"):
        raise ConfigError(f"bench profile times the onnx / openvino MTCNN pipeline, not {pipeline.backend} "
                          f"with detector {det.name}")
    saved_functions = [(module, name, getattr(module, name)) for module, name, _ in TIMED_FUNCTIONS]
    saved_nets = (det.pnet, det.rnet, det.onet, clf.net, clf.confirm)
    saved_screens = dict(det.screens)
    try:
        for module, name, stage in TIMED_FUNCTIONS:
            setattr(module, name, clock.timed(getattr(module, name), stage))
        det.pnet, det.rnet, det.onet = (TimedNet(n, s, clock) for n, s in zip(saved_nets[:3], NETS))
        # a bf16 screen (worker.runtime.AUTO_SCREENED) is part of its net's time
        det.screens = {k: None if n is None else TimedNet(n, k, clock, f"{n.precision} screen")
                       for k, n in saved_screens.items()}
        clf.net = TimedNet(clf.net, "emotion_net", clock)
        if clf.confirm is not None:  # int8's or bf16's close calls again in fp32 (onnx_classify.CONFIRM_MARGINS)
            clf.confirm = TimedNet(clf.confirm, "emotion_net", clock, f"{clf.confirm.precision} reruns")
        yield
    finally:
        for module, name, fn in saved_functions:
            setattr(module, name, fn)
        det.pnet, det.rnet, det.onet, clf.net, clf.confirm = saved_nets
        det.screens = saved_screens


def decode_fps(path: Path, frames: int, max_pixels: int) -> float:
    """Frames/s of reading ``path`` alone: ``frames`` frames from the start,
    decoded to RGB as the pipeline receives them (opening the file included)."""
    t0 = time.perf_counter()
    n = sum(1 for item in iter_video(str(path), max_frames=frames) if item.decoded(max_pixels) is not None)
    if not n:
        raise DataError(f"{path}: no decodable frames")
    return round(n / (time.perf_counter() - t0), 2)


def load_frames(path: Path, frames: int | None, max_pixels: int) -> list[np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path} not found")
    out = [item.decoded(max_pixels) for item in iter_video(str(path), max_frames=frames)]
    if not out:
        raise DataError(f"{path}: no decodable frames")
    return out


def profile(frames: list[np.ndarray], pipeline: Pipeline, batch: int) -> dict:
    """Per-stage and per-net times of ``pipeline.process`` over ``frames``, ``batch`` at a time (after a warm-up)."""
    batches = [frames[i:i + batch] for i in range(0, len(frames), batch)]
    for b in {len(b): b for b in batches}.values():
        pipeline.process(b)
    clock = Clock()
    with instrumented(pipeline, clock):
        t0 = time.perf_counter()
        for b in batches:
            pipeline.process(b)
        total = time.perf_counter() - t0
    n = len(frames)
    stages = {s: clock.seconds.get(s, 0.0) for s in STAGES if s != "other"}
    stages["other"] = max(0.0, total - sum(stages.values()))
    nets = {}
    for net in NETS:
        calls = clock.calls[net]
        nets[net] = {"calls_per_frame": round(calls / n, 2),
                     "ms_per_frame": round(clock.seconds[net] * 1e3 / n, 2),
                     "ms_per_call": round(clock.seconds[net] * 1e3 / calls, 3) if calls else None,
                     "shapes": dict(clock.shapes[net].most_common(4)),
                     "parts": {part: {"calls_per_frame": round(q.calls / n, 2),
                                      "ms_per_frame": round(q.seconds * 1e3 / n, 2),
                                      "items_per_frame": round(q.items / n, 2)}
                               for (stage, part), q in clock.parts.items() if stage == net}}
    return {"backend": pipeline.backend, "precision": pipeline.precision, "threads": pipeline.threads,
            "first_layers_compiled": list(pipeline.compiled_first),
            "fps": round(n / total, 3), "ms_per_frame": round(total * 1e3 / n, 2),
            "stages_ms_per_frame": {s: round(v * 1e3 / n, 2) for s, v in stages.items()},
            "stages_share": {s: round(v / total, 4) for s, v in stages.items()},
            "nets": nets}


def first_layers_compiled(report: dict) -> str:
    """The nets whose first layers ran compiled (worker/detectors/first_layers.py), per backend where they differ."""
    seen = {b: "+".join(r.get("first_layers_compiled", [])) or "none"
            for v in report["videos"].values() for b, r in v["backends"].items()}
    if len(set(seen.values())) <= 1:
        return next(iter(seen.values()), "none")
    return ", ".join(f"{v} ({b})" for b, v in seen.items())


def markdown(report: dict, command: str, notes: list[str]) -> str:
    cpu = report["cpu"]
    isa = ", ".join(k for k in ("avx2", "avx512", "vnni", "avx512_bf16", "amx") if cpu[k]) or "none of those"
    lines = ["# Profile: where the CPU pipeline's time goes", "",
             f"CPU: **{cpu['model']}** ({isa}); {report['threads']} thread(s), batch {report['batch']} frames; "
             f"pyramid and crops {report.get('area_kernels', 'numpy')}; first layers compiled: "
             f"{first_layers_compiled(report)}.", "",
             f"Command: `{command}`", "",
             "ms per frame by stage (share of the pipeline's time); decode is reading the video alone, "
             "outside the pipeline.", "",
             "| video | backend | fps | decode fps (ceiling) | " + " | ".join(STAGES) + " |",
             "|---|---|---:|---:|" + "---:|" * len(STAGES)]
    for name, v in report["videos"].items():
        for b, r in v["backends"].items():
            cells = [f"{r['stages_ms_per_frame'][s]:.1f} ({r['stages_share'][s]:.0%})" for s in STAGES]
            lines.append(f"| {name} ({v['resolution']}) | {b} {r['precision']} | {r['fps']:.2f} "
                         f"| {v['decode_fps']:.1f} ({r['fps'] / v['decode_fps']:.0%}) | " + " | ".join(cells) + " |")
    lines += ["", "Per net: calls per frame, ms per frame, ms per call, commonest input shapes.", "",
              "| video | backend | net | calls/frame | ms/frame | ms/call | shapes (count) |",
              "|---|---|---|---:|---:|---:|---|"]
    for name, v in report["videos"].items():
        for b, r in v["backends"].items():
            for net, q in r["nets"].items():
                shapes = ", ".join(f"{s} ({c})" for s, c in q["shapes"].items())
                per_call = "-" if q["ms_per_call"] is None else f"{q['ms_per_call']:.2f}"
                lines.append(f"| {name} | {b} | {net} | {q['calls_per_frame']} | {q['ms_per_frame']:.2f} "
                             f"| {per_call} | {shapes} |")
    lines += ["", "Per net and part: a screened net's bf16 screen apart from its own runs on what the screen "
              "left near the threshold; the int8 / bf16 emotion net apart from its close calls' fp32 reruns. "
              "Inputs: the batch dimension (crops; PNet's strips or line pieces).", "",
              "| video | backend | net | part | calls/frame | inputs/frame | ms/frame |",
              "|---|---|---|---|---:|---:|---:|"]
    for name, v in report["videos"].items():
        for b, r in v["backends"].items():
            for net, q in r["nets"].items():
                for part, p in q["parts"].items():
                    lines.append(f"| {name} | {b} | {net} | {part} | {p['calls_per_frame']} "
                                 f"| {p['items_per_frame']} | {p['ms_per_frame']:.2f} |")
    lines += [""] + [f"- {n}" for n in notes] + [""]
    return table_text(lines)


@click.command("profile")
@click.option("--videos", "videos_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder holding the videos (../shared/data/videos).")
@click.option("--video", "names", multiple=True, default=VIDEOS, show_default=True,
              help="Video file name(s) in --videos to profile.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu"]),
              help="Only the CPU pipeline (onnx / openvino backends) is profiled.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(RUNTIMES),
              help="Backend(s) to profile, repeatable [default: every installed one of onnx, openvino].")
@click.option("--frames", type=click.IntRange(min=1), default=8, show_default=True,
              help="Frames per video from the start, profiled in batches of batch_max.")
@click.option("--decode-frames", type=click.IntRange(min=1), default=120, show_default=True,
              help="Frames read to measure the decode ceiling.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Inference threads (default: a worker's default, half the cores up to 4).")
@click.option("--note", "extra_notes", multiple=True, help="A line for the markdown's notes (e.g. machine load).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the table.")
@click.option("--out", type=OutputFile(), help="Also write the JSON here.")
@click.option("--markdown", "md_path", type=OutputFile(),
              help="Also write the markdown tables here.")
def profile_cmd(videos_dir, names, device, backends, frames, decode_frames, threads, extra_notes, as_json, out,
                md_path):
    """Where the time goes: per stage (decode, pyramid, PNet, NMS, RNet, ONet,
    crops, emotion net) and per net, at each video size, for each CPU backend."""
    distinct_outputs(out, md_path)
    shipped = Settings.from_env(env={}, device=device)
    threads = threads or resolve_threads(shipped, worker=True)
    backends = backends or tuple(installed_runtimes())
    if not backends:
        raise ConfigError("no CPU runtime is installed: pip install 'moodstream[cpu]'")
    pipelines = {b: Pipeline(shipped.replace(backend=b, threads=threads), worker=True) for b in backends}
    report = {"cpu": cpu_info().to_dict(), "threads": threads, "batch": shipped.batch_max,
              "area_kernels": onnx_mtcnn.area_kernels(), "videos": {}}
    for name in names:
        path = videos_dir / name
        clip = load_frames(path, frames, shipped.max_pixels)
        h, w = clip[0].shape[:2]
        log.info("profile: %s, %d frames of %dx%d, %d thread(s)", name, len(clip), w, h, threads)
        entry = {"resolution": f"{w}x{h}", "frames": len(clip),
                 "decode_fps": decode_fps(path, decode_frames, shipped.max_pixels), "backends": {}}
        for b, pipeline in pipelines.items():
            r = profile(clip, pipeline, shipped.batch_max)
            r["share_of_decode_ceiling"] = round(r["fps"] / entry["decode_fps"], 4)
            entry["backends"][b] = r
        report["videos"][name] = entry
    command = "moodstream " + shlex.join(sys.argv[1:])
    notes = ["Decode: frames/s of reading the video alone (OpenCV, to RGB, opening included); the share is "
             "ours over it."] + list(extra_notes)
    report["command"] = command
    if out:
        write_output(out, json.dumps(report, indent=1) + "\n")
    if md_path:
        write_output(md_path, markdown(report, command, notes))
    click.echo(json.dumps(report) if as_json else markdown(report, command, notes))
