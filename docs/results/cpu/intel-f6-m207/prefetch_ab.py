"""Same process, alternating, four rounds: the compiled area resizes (worker/detectors/_area.c `block`) without
and with a software prefetch of the next output row's two table rows. Measured on a build with a temporary
switch, not shipped (the shipped code always prefetches): in `block`, `const int pf = getenv("NOPF") == NULL;`
and the next rows passed to `row` only `if pf`. Each round: the 1080p pyramid's resizes alone, strip by strip as
PNet takes them, the caches flushed before each scale (best of 5), then `bench profile`'s timing of the shipped
pipeline on 8 frames of each video (frame, pyramid with the summed-area table, RNet/ONet crops: ms a frame).

    .venv/bin/python docs/results/cpu/intel-f6-m207/prefetch_ab.py > docs/results/cpu/intel-f6-m207/prefetch_ab.txt
"""
import os
import time

import numpy as np
from pathlib import Path
from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames, profile
from moodstream.worker.detectors import onnx_mtcnn as m
from moodstream.worker.pipeline import Pipeline
f = load_frames(Path("../shared/data/videos/street_1080p.mp4"), 1, 10**9)[0]
t = m.integral_image(np.ascontiguousarray(f)); h, w = f.shape[:2]
junk = np.ones(64 * 2**20 // 8)
def cold():
    tot = 0
    for s in m.pyramid_scales(h, w, 20, 0.709):
        oh, ow = int(h*s+1), int(w*s+1)
        per = max(1, (120_000 // ow - 12 + 2) // 2)
        junk.__iadd__(1)
        t0 = time.perf_counter()
        for a, b, _ in m.pnet_strips(oh, per):
            m.area_resize(t, oh, ow, (a, b), normalised=True)
        tot += time.perf_counter() - t0
    return tot * 1e3
s = Settings.from_env(env={}, device="cpu")
p = Pipeline(s.replace(backend="openvino", threads=1), worker=True)
clips = {n: load_frames(Path("../shared/data/videos") / n, 8, s.max_pixels) for n in ("street_1080p.mp4", "hamilton_360p.mp4")}
for r in range(4):
    for v in ("off", "on"):
        if v == "off": os.environ["NOPF"] = "1"
        else: os.environ.pop("NOPF", None)
        c = min(cold() for _ in range(5))
        line = f"round {r+1} prefetch {v:3s} cold pyramid {c:5.2f} ms"
        for n, clip in clips.items():
            st = profile(clip, p, s.batch_max)
            line += f" | {n[:8]} frame {st['ms_per_frame']:6.1f} pyramid {st['stages_ms_per_frame']['pyramid']:5.1f} crops {st['stages_ms_per_frame']['mtcnn_crops']:4.1f}"
        print(line, flush=True)
