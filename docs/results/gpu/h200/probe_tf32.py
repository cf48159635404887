"""GPU probe: does TF32 explain CUDA's box / probability differences? Before (TF32, torch's
default) against after (devices.strict_fp32), one process."""
import contextlib, json, sys, time
from pathlib import Path
import cv2, numpy as np, torch
from moodstream.shared import devices
from moodstream.shared.settings import Settings
from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.media import iter_video
from moodstream.worker.detectors.mtcnn_reference import MTCNNDetector
from moodstream.worker.detectors.mtcnn_batched import BatchedMTCNNDetector
from moodstream.worker.pipeline import Pipeline

fx = Path("tests/fixtures")
rgb = lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
frames = [rgb(p) for p in sorted((fx / "images").glob("*.jpg"))] + [i.image for i in iter_video(str(fx / "clip_360p.mp4"), max_frames=12)]
street = rgb(fx / "images" / "street_640x360.jpg")
big = [i.image for i in iter_video(sys.argv[1] + "/street_1080p.mp4", max_frames=16)]
strict = devices.strict_fp32
GPU = sys.argv[3] if len(sys.argv) > 3 else "cuda"
sync = torch.cuda.synchronize if GPU == "cuda" else (lambda: None)
out = {"torch": torch.__version__, "conv_tf32_default": torch.backends.cudnn.allow_tf32}

def match(a, b):
    tot = sum(len(x) for x in a)
    return f"{sum(len(match_one_to_one([f.box for f in x], [f.box for f in y], 0.95)) for x, y in zip(a, b))}/{tot}"

s_cpu, s_gpu = Settings.from_env(env={}, device="cpu"), Settings.from_env(env={}, device=GPU)
ref_cpu = [f for fr in frames for f in MTCNNDetector(s_cpu, "cpu").detect([fr])]
bat_cpu = BatchedMTCNNDetector(s_cpu, "cpu").detect(frames)
cpu_pipe = Pipeline(Settings.from_env(env={}, device="cpu", backend="torch"))
[p_cpu] = cpu_pipe.process([street])
for mode in ("tf32", "strict"):
    devices.strict_fp32 = strict if mode == "strict" else contextlib.nullcontext
    ref, bat = MTCNNDetector(s_gpu, GPU), BatchedMTCNNDetector(s_gpu, GPU)
    r = [f for fr in frames for f in ref.detect([fr])]
    b = [f for i in range(0, len(frames), 8) for f in bat.detect(frames[i:i + 8])]
    pipe = Pipeline(Settings.from_env(env={}, device=GPU, backend="torch"))
    [p_gpu] = pipe.process([street])
    dprob = max(abs(np.array(list(a.probabilities.values())) - np.array(list(c.probabilities.values()))).max()
                for a, c in zip(p_gpu.faces, p_cpu.faces))
    t = {}
    for name, fn in (("batched_16x1080p", lambda: bat.detect(big)), ("pipeline_16x1080p", lambda: pipe.process(big))):
        fn(); sync(); best = 1e9
        for _ in range(5):
            t0 = time.perf_counter(); fn(); sync(); best = min(best, time.perf_counter() - t0)
        t[name + "_ms"] = round(best * 1e3, 1)
    out[mode] = {"ref_gpu_vs_batched_gpu": match(r, b), "ref_gpu_vs_ref_cpu": match(ref_cpu, r),
                 "batched_gpu_vs_batched_cpu": match(bat_cpu, b), "ref_cpu_vs_batched_cpu": match(ref_cpu, bat_cpu),
                 "faces_gpu_cpu": [len(p_gpu.faces), len(p_cpu.faces)], "max_prob_diff_gpu_cpu": round(float(dprob), 5), **t}
    print(mode, out[mode], flush=True)
devices.strict_fp32 = strict
Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
