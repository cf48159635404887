"""Same process, alternating, three rounds: PNet's rerun-line bookkeeping as at bfb0446 (the windows
gathered in numpy, the lines joined and padded in two copies) and now (compiled row copies, one copy into the
padded line); the detector's faces asserted equal. From the repository root:

    .venv/bin/python docs/results/cpu/intel-f6-m167/third_machine/line_ab.py > .../line_ab.txt
"""
import sys, types
from pathlib import Path
import numpy as np
from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames, profile
from moodstream.worker.detectors import onnx_mtcnn as om
from moodstream.worker.pipeline import Pipeline

new_line, new_rerun = om.pnet_line, om.OnnxMTCNNDetector._rerun_line
def old_line(pixels, y, x, gap=om.PNET_LINE_GAP):
    saved, om._area = om._area, None
    try: return new_line(pixels, y, x, gap)
    finally: om._area = saved
def old_rerun(self, groups):
    P = om
    line = np.concatenate([g[3] for g in groups], axis=2)
    widths = np.array([g[3].shape[2] for g in groups])
    at = np.concatenate([g[4] + offset for g, offset in zip(groups, np.cumsum(widths) - widths)])
    step = P.PNET_LINE_WIDTH - (P.PNET_CELL - P.PNET_STRIDE)
    pieces = -(-line.shape[2] // step)
    padded = np.zeros((*line.shape[:2], (pieces - 1) * step + P.PNET_LINE_WIDTH), np.float32)
    padded[:, :, :line.shape[2]] = line
    view = np.lib.stride_tricks.sliding_window_view(padded, P.PNET_LINE_WIDTH, axis=2)[:, :, ::step]
    batch_max = P.PNET_LINE_BATCHES[-1]
    outs = []
    for i in range(0, pieces, batch_max):
        n = min(batch_max, pieces - i)
        size = next(b for b in P.PNET_LINE_BATCHES if b >= n)
        batch = np.zeros((size, line.shape[0], P.PNET_CELL, P.PNET_LINE_WIDTH), np.float32)
        batch[:n] = view[:, :, i:i + n].transpose(2, 0, 1, 3)
        outs.append(self.pnet.run(batch)[0][:n, :, 0])
    out = np.concatenate(outs)
    piece = at // step
    return out[piece, :, (at - piece * step) // P.PNET_STRIDE]

s = Settings.from_env(env={}, device="cpu")
p = Pipeline(s.replace(backend="openvino", threads=1), worker=True)
det = p.detector
for name in ("street_1080p.mp4", "hamilton_360p.mp4"):
    clip = load_frames(Path("../shared/data/videos") / name, 8, s.max_pixels)
    ref = None
    for r in range(3):
        for variant in ("before", "now"):
            om.pnet_line = old_line if variant == "before" else new_line
            det._rerun_line = types.MethodType(old_rerun if variant == "before" else new_rerun, det)
            faces = det.detect(clip)
            ref = ref or faces
            assert faces == ref
            res = profile(clip, p, s.batch_max)
            st = res["stages_ms_per_frame"]
            print(f"{name} round {r+1} {variant:6s} frame {res['ms_per_frame']:6.1f} ms  pnet {st['pnet']:5.1f}  "
                  f"other {st['other']:5.1f}", flush=True)
om.pnet_line = new_line
