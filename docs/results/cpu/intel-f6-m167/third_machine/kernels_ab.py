"""Same machine, same process, alternating: the shipped OpenVINO pipeline's ms a frame with the
pyramid and crops compiled (worker/detectors/_area.c) and in numpy (the fallback where it is not
built), three profiles each, on 8 frames of each video (bench profile's timing).

    .venv/bin/python docs/results/cpu/intel-f6-m167/third_machine/kernels_ab.py > kernels_ab.txt
"""
from pathlib import Path

from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames, profile
from moodstream.worker.detectors import onnx_mtcnn
from moodstream.worker.pipeline import Pipeline

compiled = onnx_mtcnn._area
assert compiled is not None, "build the compiled kernels first (pip install -e .)"
shipped = Settings.from_env(env={}, device="cpu")
pipeline = Pipeline(shipped.replace(backend="openvino", threads=1), worker=True)
print(f"precision: {pipeline.precision}")
for name in ("street_1080p.mp4", "hamilton_360p.mp4"):
    clip = load_frames(Path("../shared/data/videos") / name, 8, shipped.max_pixels)
    for round_ in range(3):
        for kernels in ("numpy", "compiled"):
            onnx_mtcnn._area = compiled if kernels == "compiled" else None
            r = profile(clip, pipeline, shipped.batch_max)
            s = r["stages_ms_per_frame"]
            print(f"{name} round {round_ + 1} {kernels:8s} frame {r['ms_per_frame']:6.1f} ms  "
                  f"pyramid {s['pyramid']:5.1f}  crops {s['mtcnn_crops']:5.1f}  pnet {s['pnet']:5.1f}  "
                  f"other {s['other']:5.1f}", flush=True)
onnx_mtcnn._area = compiled
