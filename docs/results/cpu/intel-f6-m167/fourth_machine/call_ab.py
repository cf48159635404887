"""Same process, alternating, seven rounds: OpenVINO runs through ``request.infer({0: x})``
(its input and result dispatch, as before) and with the input tensor set and the outputs read
by hand (``worker.openvino_net.OpenVinoNet.run`` now); the pipeline's faces asserted equal.
From the repository root:

    .venv/bin/python docs/results/cpu/intel-f6-m167/fourth_machine/call_ab.py \
        > docs/results/cpu/intel-f6-m167/fourth_machine/call_ab.txt
"""
import statistics
import time
from pathlib import Path

from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames
from moodstream.worker.openvino_net import OpenVinoNet
from moodstream.worker.pipeline import Pipeline
from moodstream.worker.runtime import cpu_info

by_hand = OpenVinoNet.run


def dispatched(self, x):
    request = getattr(self._local, "request", None)
    if request is None:
        request = self._local.request = self.compiled.create_infer_request()
    result = request.infer({0: x}, share_inputs=True, share_outputs=False)
    return [result[o] for o in self.compiled.outputs]


info = cpu_info()
print(info.model, sorted(info.flags & {'avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8'}))
s = Settings.from_env(env={}, device="cpu")
p = Pipeline(s.replace(backend="openvino", threads=1), worker=True)
print(p.backend, p.precision)
for name, passes in (("street_1080p.mp4", 2), ("hamilton_360p.mp4", 10)):
    clip = load_frames(Path("../shared/data/videos") / name, 8, s.max_pixels)
    ref, times = None, {"dispatched": [], "by hand": []}
    for r in range(7):
        for variant, run in (("dispatched", dispatched), ("by hand", by_hand)):
            OpenVinoNet.run = run
            faces = p.detector.detect(clip)
            ref = ref or faces
            assert faces == ref
            t0 = time.perf_counter()
            for _ in range(passes):
                p.process(clip)
            ms = (time.perf_counter() - t0) * 1e3 / (passes * len(clip))
            times[variant].append(ms)
            print(f"{name} round {r + 1} {variant:10s} {ms:6.2f} ms a frame", flush=True)
    diffs = [a - b for a, b in zip(times["dispatched"], times["by hand"])]
    print(f"{name}: median dispatched {statistics.median(times['dispatched']):.2f}, by hand "
          f"{statistics.median(times['by hand']):.2f} ms a frame; by hand faster in {sum(d > 0 for d in diffs)} "
          f"of 7 rounds, by {statistics.median(diffs):.2f} ms (median of the rounds' differences)", flush=True)
OpenVinoNet.run = by_hand
