"""Same process, alternating, three rounds: NMS in numpy (a fixed point over the pairs that overlap in x) and
compiled (the greedy loop), the rest as it ships; the detector's faces asserted equal. From the repository root:

    .venv/bin/python docs/results/cpu/intel-f6-m167/third_machine/nms_ab.py > .../nms_ab.txt
"""
from pathlib import Path

from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames, profile
from moodstream.worker.detectors import onnx_mtcnn as om
from moodstream.worker.pipeline import Pipeline

compiled_nms = om.nms


def numpy_nms(*args, **kwargs):
    saved, om._area = om._area, None
    try:
        return compiled_nms(*args, **kwargs)
    finally:
        om._area = saved


s = Settings.from_env(env={}, device="cpu")
p = Pipeline(s.replace(backend="openvino", threads=1), worker=True)
for name in ("street_1080p.mp4", "hamilton_360p.mp4"):
    clip = load_frames(Path("../shared/data/videos") / name, 8, s.max_pixels)
    ref = None
    for r in range(3):
        for variant, fn in (("numpy", numpy_nms), ("compiled", compiled_nms)):
            om.nms = fn
            faces = p.detector.detect(clip)
            ref = ref or faces
            assert faces == ref
            res = profile(clip, p, s.batch_max)  # bench profile times om.nms as the "nms" stage
            st = res["stages_ms_per_frame"]
            print(f"{name} round {r + 1} {variant:8s} frame {res['ms_per_frame']:6.1f} ms  nms {st['nms']:4.2f}  "
                  f"other {st['other']:5.1f}", flush=True)
om.nms = compiled_nms
