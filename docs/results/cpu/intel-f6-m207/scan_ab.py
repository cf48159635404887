"""Same process, alternating, five rounds: PNet's threshold scans (the cells a bf16 screen leaves near
the threshold, and pnet_outputs' cells that can pass) in numpy (``l1 - l0``, compare, ``nonzero``) and
compiled (``_area.above``: one pass, no temporaries); the detector's faces asserted equal. From the
repository root:

    .venv/bin/python docs/results/cpu/intel-f6-m207/scan_ab.py > docs/results/cpu/intel-f6-m207/scan_ab.txt
"""
from pathlib import Path

import numpy as np

from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames, profile
from moodstream.worker.detectors import onnx_mtcnn as om
from moodstream.worker.pipeline import Pipeline
from moodstream.worker.runtime import cpu_info

compiled = om.cells_above


def numpy_scan(l0, l1, threshold, strict):
    margin, t = l1 - l0, np.float32(threshold)
    return np.nonzero(margin > t if strict else margin >= t)


info = cpu_info()
print(info.model, sorted(info.flags & {'avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8'}))
s = Settings.from_env(env={}, device="cpu")
p = Pipeline(s.replace(backend="openvino", threads=1), worker=True)
for name in ("street_1080p.mp4", "hamilton_360p.mp4"):
    clip = load_frames(Path("../shared/data/videos") / name, 8, s.max_pixels)
    ref = None
    for r in range(5):
        for variant in ("numpy", "compiled"):
            om.cells_above = numpy_scan if variant == "numpy" else compiled
            faces = p.detector.detect(clip)
            ref = ref or faces
            assert faces == ref
            res = profile(clip, p, s.batch_max)
            st = res["stages_ms_per_frame"]
            print(f"{name} round {r + 1} {variant:8s} frame {res['ms_per_frame']:6.1f} ms  pnet {st['pnet']:5.1f}  "
                  f"other {st['other']:5.1f}", flush=True)
om.cells_above = compiled
