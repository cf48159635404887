"""Frame-level A/B of the Winograd experiment (winograd_experiment.patch applied; not shipped):
on this Xeon capped to AVX2 (deploy/cpu/as_avx2.py), one process, the four detector configurations
alternating, each keeping its fastest pass of 8 frames; ms a frame. Run from the repository root:
    git apply docs/results/cpu/intel-f6-m167/ninth_machine/winograd_experiment.patch
    .venv/bin/python docs/results/cpu/intel-f6-m167/ninth_machine/winograd_ab.py 8
"""
import sys, time
src = open('deploy/cpu/as_avx2.py').read()
exec(src.split('\nUSAGE')[0])
patch()
from pathlib import Path
from moodstream.worker import runtime
from moodstream.worker.detectors import first_layers
from moodstream.worker.pipeline import Pipeline
from moodstream.shared.settings import Settings
from moodstream.trainer.bench.throughput import load_frames, run
from moodstream.worker.pipeline import resolve_threads
NEW = dict(first_layers.STAGES)
configs = {
  "A head-only pnet+rnet": ({"pnet": (), "rnet": (), "onet": ()}, ("pnet", "rnet")),
  "B stages all": (NEW, ("pnet", "rnet", "onet")),
  "C stages pnet+onet, rnet head": ({**NEW, "rnet": ()}, ("pnet", "rnet", "onet")),
  "D whole": (NEW, ()),
}
shipped = Settings.from_env(env={}, device="cpu")
threads = resolve_threads(shipped, worker=True)
pipes = {}
real = runtime.first_layers_here
for name, (stages, nets) in configs.items():
    first_layers.STAGES.clear(); first_layers.STAGES.update(stages)
    runtime.first_layers_here = lambda *a, nets=nets, **k: nets
    pipes[name] = Pipeline(shipped.replace(threads=threads), worker=True)
    print(name, pipes[name].compiled_first, flush=True)
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
for video in ("street_1080p.mp4", "hamilton_360p.mp4"):
    frames = load_frames(Path('../shared/data/videos') / video, 8, shipped.max_pixels)
    best = {k: 1e9 for k in pipes}
    for _ in range(rounds):
        for k, p in pipes.items():
            r = run(frames, p, shipped.batch_max); best[k] = min(best[k], r.total_s)
    print(video, {k: round(v / len(frames) * 1e3, 2) for k, v in best.items()}, flush=True)
