"""GPU probe 2: which CUDA setting makes facenet's MTCNN, ours and the emotion net give the CPU's answers?"""
import contextlib, copy, json, sys, time
from pathlib import Path
import cv2, numpy as np, torch
from moodstream.shared import devices
from moodstream.shared.settings import Settings
from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.media import iter_video
from moodstream.shared.models import predict_proba
from moodstream.worker.crop import crop_faces
from moodstream.worker.detectors.mtcnn_reference import MTCNNDetector
from moodstream.worker.detectors.mtcnn_batched import BatchedMTCNNDetector
from moodstream.worker.pipeline import Pipeline

GPU = sys.argv[3] if len(sys.argv) > 3 else "cuda"
sync = torch.cuda.synchronize if GPU == "cuda" else (lambda: None)
fx = Path("tests/fixtures")
rgb = lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
frames = [rgb(p) for p in sorted((fx / "images").glob("*.jpg"))] + [i.image for i in iter_video(str(fx / "clip_360p.mp4"), max_frames=12)]
street = rgb(fx / "images" / "street_640x360.jpg")
big = [i.image for i in iter_video(sys.argv[1] + "/street_1080p.mp4", max_frames=16)]
devices.strict_fp32 = contextlib.nullcontext  # each mode's global flags hold
out = {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}

def compare(a, b):
    tot, m95, dmax = sum(len(x) for x in a), 0, 0.0
    for x, y in zip(a, b):
        bx, by = np.array([f.box for f in x]).reshape(-1, 4), np.array([f.box for f in y]).reshape(-1, 4)
        m95 += len(match_one_to_one(bx, by, 0.95))
        for i, j in match_one_to_one(bx, by, 0.5):
            dmax = max(dmax, float(np.abs(bx[i] - by[j]).max()))
    return {"iou95": f"{m95}/{tot}", "counts_equal": [len(x) for x in a] == [len(y) for y in b], "max_px": round(dmax, 4)}

s_cpu, s_gpu = Settings.from_env(env={}, device="cpu"), Settings.from_env(env={}, device=GPU)
ref_cpu = [f for fr in frames for f in MTCNNDetector(s_cpu, "cpu").detect([fr])]
bat_cpu = BatchedMTCNNDetector(s_cpu, "cpu").detect(frames)
cpu_pipe = Pipeline(Settings.from_env(env={}, device="cpu", backend="torch"))
[p_cpu] = cpu_pipe.process([street])
ck = cpu_pipe.classifier.checkpoint
crops = crop_faces([street], [np.array([f.box for f in p_cpu.faces], np.float32)], cpu_pipe.classifier.framing, 48, torch.device("cpu"))
prob_cpu = predict_proba(ck, crops).numpy()
ck_gpu = copy.deepcopy(ck); ck_gpu.model.to(GPU)
modes = {"tf32": (True, False, True), "fp32": (False, False, True), "fp32_deterministic": (False, True, True), "no_cudnn": (False, False, False)}
for mode, (tf32, det, enabled) in modes.items():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.deterministic, torch.backends.cudnn.enabled = det, enabled
    ref, bat = MTCNNDetector(s_gpu, GPU), BatchedMTCNNDetector(s_gpu, GPU)
    r = [f for fr in frames for f in ref.detect([fr])]
    b = [f for i in range(0, len(frames), 8) for f in bat.detect(frames[i:i + 8])]
    with torch.inference_mode():
        prob_gpu = predict_proba(ck_gpu, crops.to(GPU)).cpu().numpy()
    pipe = Pipeline(Settings.from_env(env={}, device=GPU, backend="torch"))
    [p_gpu] = pipe.process([street])
    dprob = max(abs(np.array(list(a.probabilities.values())) - np.array(list(c.probabilities.values()))).max()
                for a, c in zip(p_gpu.faces, p_cpu.faces))
    dbox = max(abs(np.array(a.box) - np.array(c.box)).max() for a, c in zip(p_gpu.faces, p_cpu.faces))
    pipe.process(big); sync(); best = 1e9
    for _ in range(3):
        t0 = time.perf_counter(); pipe.process(big); sync(); best = min(best, time.perf_counter() - t0)
    out[mode] = {"facenet_gpu_vs_cpu": compare(ref_cpu, r), "ours_gpu_vs_cpu": compare(bat_cpu, b),
                 "ours_gpu_vs_facenet_cpu": compare(ref_cpu, b), "ours_gpu_vs_facenet_gpu": compare(r, b),
                 "emotion_net_same_crops_max_prob_diff": float(np.abs(prob_gpu - prob_cpu).max()),
                 "pipeline_street_max_prob_diff": round(float(dprob), 5), "pipeline_street_max_box_px": round(float(dbox), 4),
                 "pipeline_16x1080p_ms": round(best * 1e3, 1)}
    print(mode, json.dumps(out[mode]), flush=True)
Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
