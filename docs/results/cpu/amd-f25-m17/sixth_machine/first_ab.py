"""Same process, alternating: the shipped OpenVINO pipeline with the MTCNN nets whole on OpenVINO
and with their first layers compiled (worker/detectors/first_layers.py), for the nets given in
FIRST (default: all three), three profiles each on 8 frames of each video (bench profile's timing),
after checking that both find the same faces. PRECISION=fp32 (default) runs every net in fp32,
unscreened, as on a CPU without native bf16. AS_AVX2=1, with ONEDNN_MAX_CPU_ISA=AVX2 in the
environment (set before Python starts: oneDNN reads it once), runs OpenVINO's AVX2 kernels and
tells moodstream the CPU has AVX2 and FMA only (no
AVX-512, VNNI or bf16; deploy/cpu/as_avx2.py): a Zen 4 standing in for an AVX2-only EPYC.

    ONEDNN_MAX_CPU_ISA=AVX2 AS_AVX2=1 PRECISION=auto .venv/bin/python docs/results/cpu/amd-f25-m17/sixth_machine/first_ab.py
"""
import os
import sys
from pathlib import Path

import numpy as np

from moodstream.worker import runtime

if os.environ.get("AS_AVX2"):
    sys.path.insert(0, "deploy/cpu")
    import as_avx2  # noqa: E402  (sets ONEDNN_MAX_CPU_ISA=AVX2 where the caller has not)

    assert os.environ["ONEDNN_MAX_CPU_ISA"].upper() == "AVX2"
    as_avx2.patch()

from moodstream.shared.settings import Settings  # noqa: E402
from moodstream.trainer.bench.profile import load_frames, profile  # noqa: E402
from moodstream.worker.detectors.registry import build_detector  # noqa: E402
from moodstream.worker.pipeline import Pipeline  # noqa: E402

shipped = Settings.from_env(env={}, device="cpu").replace(
    backend="openvino", threads=1, precision=os.environ.get("PRECISION", "fp32"), runtime_cache="off")
base = Pipeline(shipped, worker=True)
first = tuple(os.environ.get("FIRST", "pnet,rnet,onet").split(","))
print(f"cpu: {runtime.cpu_info().model}; precision: {base.precision}; auto would compile: "
      f"{'+'.join(base.compiled_first) or 'none'}; compared: none against {'+'.join(first)}")
pipes = {}
for label, nets in (("whole", ()), ("compiled", first)):
    det = build_detector(shipped, "openvino", 1, "cpu", precisions=base.precisions, screened=base.screened,
                         compiled_first=nets)
    pipes[label] = Pipeline(shipped, detector=det, worker=True)
rounds = int(os.environ.get("ROUNDS", 3))
for name in ("street_1080p.mp4", "hamilton_360p.mp4"):
    clip = load_frames(Path("../shared/data/videos") / name, 8, shipped.max_pixels)
    want, got = pipes["whole"].detect(clip), pipes["compiled"].detect(clip)
    moved = 0.0
    for a, b in zip(want, got):
        assert len(a) == len(b), (name, len(a), len(b))
        for fa, fb in zip(a, b):
            moved = max(moved, float(np.abs(np.subtract(fa.box, fb.box)).max()) / (fa.box[2] - fa.box[0]))
    print(f"{name}: {sum(map(len, want))} faces both ways; box edges moved by at most {moved:.1e} of a face's width")
    for r in range(rounds):
        for label in (("whole", "compiled") if r % 2 == 0 else ("compiled", "whole")):
            res = profile(clip, pipes[label], shipped.batch_max)
            s = res["stages_ms_per_frame"]
            print(f"{name} round {r + 1} {label:8s} frame {res['ms_per_frame']:6.1f} ms  pnet {s['pnet']:5.1f}  "
                  f"rnet {s['rnet']:5.1f}  onet {s['onet']:5.1f}", flush=True)
