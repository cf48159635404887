"""PNet's rerun line as at da880fe (the lines copied into one padded line, then each run's pieces copied out of
it) and now (the lines written straight into the runs' pieces, each piece's overlap copied from the next one).
Per video (8 frames): one detect with both versions on the same lines, their outputs asserted equal; then the
bookkeeping alone, alternating, 30 rounds, on the lines of that detect, the net replaced by a stand-in that
returns zeros (a frame's pipeline time moved by more than the difference on this machine: see the notes).
From the repository root:

    .venv/bin/python docs/results/cpu/intel-f6-m207/pieces_ab.py > docs/results/cpu/intel-f6-m207/pieces_ab.txt
"""
import time
import types
from pathlib import Path

import numpy as np

from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames
from moodstream.worker.detectors import onnx_mtcnn as om
from moodstream.worker.pipeline import Pipeline
from moodstream.worker.runtime import cpu_info

new_rerun = om.OnnxMTCNNDetector._rerun_line


def old_rerun(self, groups):
    widths = np.array([g[3].shape[2] for g in groups])
    offsets = np.cumsum(widths) - widths
    at = np.concatenate([g[4] + offset for g, offset in zip(groups, offsets)])
    step = om.PNET_LINE_WIDTH - (om.PNET_CELL - om.PNET_STRIDE)
    total = int(widths.sum())
    pieces = -(-total // step)
    padded = np.empty((*groups[0][3].shape[:2], (pieces - 1) * step + om.PNET_LINE_WIDTH), np.float32)
    for g, offset, width in zip(groups, offsets.tolist(), widths.tolist()):
        padded[:, :, offset:offset + width] = g[3]
    padded[:, :, total:] = 0
    view = np.lib.stride_tricks.sliding_window_view(padded, om.PNET_LINE_WIDTH, axis=2)[:, :, ::step]
    batch_max = om.PNET_LINE_BATCHES[-1]
    outs = []
    for i in range(0, pieces, batch_max):
        n = min(batch_max, pieces - i)
        size = next(b for b in om.PNET_LINE_BATCHES if b >= n)
        batch = np.empty((size, padded.shape[0], om.PNET_CELL, om.PNET_LINE_WIDTH), np.float32)
        batch[:n] = view[:, :, i:i + n].transpose(2, 0, 1, 3)
        batch[n:] = 0
        outs.append(self.pnet.run(batch)[0][:n, :, 0])
    out = np.concatenate(outs)
    piece = at // step
    return out[piece, :, (at - piece * step) // om.PNET_STRIDE]


def both(self, groups):  # the first detect of each video: both versions on the same groups, outputs equal
    a, b = old_rerun(self, groups), new_rerun(self, groups)
    assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    both.checked += len(a)
    return b


both.checked = 0


class ZeroNet:  # PNet's output shape for a batch of pieces, no arithmetic: the bookkeeping alone
    def run(self, x):
        return [np.zeros((x.shape[0], 6, 1, (x.shape[3] - om.PNET_CELL) // om.PNET_STRIDE + 1), np.float32)]


info = cpu_info()
print(info.model, sorted(info.flags & {'avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8'}))
s = Settings.from_env(env={}, device="cpu")
p = Pipeline(s.replace(backend="openvino", threads=1), worker=True)
det = p.detector
for name in ("street_1080p.mp4", "hamilton_360p.mp4"):
    clip = load_frames(Path("../shared/data/videos") / name, 8, s.max_pixels)
    captured = []

    def capture(self, groups):
        captured.append(groups)
        return both(self, groups)

    det._rerun_line = types.MethodType(capture, det)
    det.detect(clip)
    print(f"{name}: {both.checked} rerun cells so far, the same outputs from both; "
          f"{sum(len(g) for g in captured)} lines in {len(captured)} calls")
    stand_in = types.SimpleNamespace(pnet=ZeroNet())
    ms = {"before": [], "now": []}
    for _ in range(30):
        for variant, fn in (("before", old_rerun), ("now", new_rerun)):
            t0 = time.perf_counter()
            for groups in captured:
                fn(stand_in, groups)
            ms[variant].append((time.perf_counter() - t0) * 1e3 / len(clip))
    for variant, v in ms.items():
        v.sort()
        print(f"{name} {variant:6s} bookkeeping ms a frame: median {v[15]:.3f}, fastest {v[0]:.3f}, slowest {v[-1]:.3f}")
