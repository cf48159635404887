"""Where a CUDA worker's batch goes: host or GPU. For deploy/gpu/run_bench.sh.

The H200 run (docs/results/gpu/h200/README.md) found ours at a quarter of the decode ceiling
with the GPU mostly idle, so this times the Pipeline a CUDA worker builds (default settings)
on one batch of each video under torch.profiler and writes, per video: the wall time of a
batch, the GPU's busy time in it (the sum of its kernels' times), and the ops that take the
most host and GPU time.

    python3 deploy/gpu/profile_pipeline.py VIDEOS_DIR OUT.txt [DEVICE]

DEVICE defaults to cuda; ``cpu`` dry-runs the wiring on a machine without a GPU (torch backend;
PROFILE_FRAMES=2 keeps that short).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames
from moodstream.worker.pipeline import Pipeline

FRAMES = int(os.environ.get("PROFILE_FRAMES", "16"))  # a batch: the worker's batch_max on CUDA
VIDEOS = {"street_1080p.mp4": FRAMES, "hamilton_360p.mp4": FRAMES}
PASSES = 3
COUNTS = 48  # face counts tried by new_shapes


def main(videos: Path, out: Path, device: str) -> None:
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    # the CUDA default is torch with the batched MTCNN; on the CPU (a dry run) torch too, not OpenVINO
    settings = Settings.from_env(env={}, device=device, **({} if cuda else {"backend": "torch", "mtcnn_impl": "batched"}))
    pipeline = Pipeline(settings, worker=True)
    lines = [f"Pipeline on {device}: backend {pipeline.backend}, {pipeline.threads} thread(s), "
             f"{torch.cuda.get_device_name() if cuda else 'no GPU'}; torch {torch.__version__}", ""]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for name, n in VIDEOS.items():
        frames = load_frames(videos / name, n, settings.max_pixels)
        for _ in range(2):  # warm-up: allocator, cuDNN plans, grids
            pipeline.process(frames)
        sync()
        walls, stages = [], []
        for _ in range(PASSES):
            t0 = time.perf_counter()
            results = pipeline.process(frames)
            sync()
            walls.append(time.perf_counter() - t0)
            stages.append(results[0].timings_ms)  # the batch's detect and classify, ms
        with profile(activities=activities) as prof:
            for _ in range(PASSES):
                pipeline.process(frames)
            sync()
        events = prof.key_averages()
        gpu_us = sum(e.self_device_time_total for e in events) / PASSES if cuda else 0.0
        wall_ms = min(walls) * 1e3
        split = ", ".join("{detect:.1f} / {classify:.1f}".format(**t) for t in stages)
        lines += [f"## {name}: {len(frames)} frames a batch",
                  f"wall {wall_ms:.1f} ms a batch (fastest of {PASSES}, without the profiler), "
                  f"{wall_ms / len(frames):.2f} ms a frame; GPU kernels {gpu_us / 1e3:.1f} ms a batch "
                  f"({gpu_us / 1e3 / wall_ms:.0%} of the wall time); detect / classify ms a batch: {split}; "
                  f"{sum(len(r.faces) for r in results)} faces", ""]
        lines += ["### by host time (self)", events.table(sort_by="self_cpu_time_total", row_limit=20), ""]
        # the Python side: which of our functions hold the host (a GPU sync shows as time in the call that waits)
        cprof = cProfile.Profile()
        cprof.enable()
        for _ in range(PASSES):
            pipeline.process(frames)
        sync()
        cprof.disable()
        text = io.StringIO()
        pstats.Stats(cprof, stream=text).sort_stats("tottime").print_stats(25)
        lines += [f"### cProfile, {PASSES} batches, by own time", text.getvalue(), ""]
        if cuda:
            lines += ["### by GPU time (self)", events.table(sort_by="self_device_time_total", row_limit=15), ""]
    lines += new_shapes(pipeline, frames, sync)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(line for line in lines if not line.startswith(("-", " ", "Name", "Self"))))


def new_shapes(pipeline: Pipeline, frames: list, sync) -> list[str]:
    """Does a face count the emotion net has not seen cost more? A worker's batches bring a new
    count almost every time (through Redis the classify stage took 22-24 ms a batch on an H200,
    far more than here with one count repeated): the classifier on 1..COUNTS boxes of the last
    frames, each count timed on its first call and again."""
    h, w = frames[0].shape[:2]
    box = np.array([[w * 0.4, h * 0.3, w * 0.6, h * 0.7]], np.float32)
    first, again = [], []
    for n in range(1, COUNTS + 1):  # counts the warm-up above did not use, mostly
        boxes = [np.repeat(box, n, axis=0)] + [box[:0]] * (len(frames) - 1)
        for out in (first, again):
            sync()
            t0 = time.perf_counter()
            pipeline.classifier.predict(frames, boxes)
            sync()
            out.append((time.perf_counter() - t0) * 1e3)
    return ["## the emotion net on new face counts (the last video's frames)",
            f"1..{COUNTS} faces, each count twice: first call {np.mean(first):.2f} ms on average "
            f"(max {np.max(first):.2f}), again {np.mean(again):.2f} ms (max {np.max(again):.2f})", ""]


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else "cuda")
