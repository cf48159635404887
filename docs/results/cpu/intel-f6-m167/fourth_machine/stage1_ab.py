"""Same process, alternating, seven rounds: PNet's outputs read scale by scale (``pnet_outputs``
on each scale of each frame, as before) and for all of a frame's scales at once (the cells that
can pass found per scale, then one softmax, threshold and box arithmetic a frame: ``_stage1``
now); the detector's faces asserted equal, and each frame's candidates asserted bit-identical.
From the repository root:

    .venv/bin/python docs/results/cpu/intel-f6-m167/fourth_machine/stage1_ab.py \
        > docs/results/cpu/intel-f6-m167/fourth_machine/stage1_ab.txt
"""
from pathlib import Path

import numpy as np

from alternate import alternate  # beside this script
from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames
from moodstream.worker.detectors import onnx_mtcnn as om
from moodstream.worker.pipeline import Pipeline
from moodstream.worker.runtime import cpu_info

per_frame = om.OnnxMTCNNDetector._stage1


def per_scale(self, tables, h, w):  # _stage1 as it was (c2897c4)
    cands = [[] for _ in tables]
    regs = [[] for _ in tables]
    levels = [[] for _ in tables]
    scales = om.pyramid_scales(h, w, self.min_face_px, self.factor)
    reruns = {}
    heads = [self._pnet_frames(tables, h, w, scale, reruns) for scale in scales]
    self._rerun(reruns)
    for level, (scale, frames) in enumerate(zip(scales, heads)):
        scale32 = np.float32(scale)
        for k, frame_heads in enumerate(frames):
            y, x, prob = om.pnet_outputs(frame_heads, self.thresholds[0])
            cell = np.stack([x, y], axis=1).astype(np.float32)
            q1 = np.floor((om.PNET_STRIDE * cell + 1) / scale32)
            q2 = np.floor((om.PNET_STRIDE * cell + om.PNET_CELL - 1 + 1) / scale32)
            cands[k].append(np.concatenate([q1, q2, prob[:, None]], axis=1))
            regs[k].append(frame_heads[2:, y, x].T)
            levels[k].append(np.full(len(y), level))
    return [self._candidates(np.concatenate(c), np.concatenate(r), np.concatenate(v))
            for c, r, v in zip(cands, regs, levels)]


info = cpu_info()
print(info.model, sorted(info.flags & {'avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8'}))
s = Settings.from_env(env={}, device="cpu")
p = Pipeline(s.replace(backend="openvino", threads=1), worker=True)
print(p.backend, p.precision)
det = p.detector
for name, passes in (("street_1080p.mp4", 2), ("hamilton_360p.mp4", 10)):
    clip = load_frames(Path("../shared/data/videos") / name, 8, s.max_pixels)
    tables = [om.integral_image(f) for f in clip]
    h, w = clip[0].shape[:2]
    old, new = per_scale(det, tables, h, w), per_frame(det, tables, h, w)
    assert len(old) == len(new) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(old, new))
    print(f"{name}: candidates of {len(clip)} frames bit-identical ({sum(len(a) for a in old)} boxes)")
    alternate(p, name, clip, passes, {"per scale": lambda: setattr(om.OnnxMTCNNDetector, "_stage1", per_scale),
                                      "per frame": lambda: setattr(om.OnnxMTCNNDetector, "_stage1", per_frame)})
om.OnnxMTCNNDetector._stage1 = per_frame
