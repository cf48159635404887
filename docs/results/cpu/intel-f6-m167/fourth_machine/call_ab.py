"""Same process, alternating, seven rounds: OpenVINO runs through ``request.infer({0: x})``
(its input and result dispatch, as before) and with the input tensor set and the outputs read
by hand (``worker.openvino_net.OpenVinoNet.run`` now); the pipeline's faces asserted equal.
From the repository root:

    .venv/bin/python docs/results/cpu/intel-f6-m167/fourth_machine/call_ab.py \
        > docs/results/cpu/intel-f6-m167/fourth_machine/call_ab.txt
"""
from pathlib import Path

from alternate import alternate  # beside this script
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
    alternate(p, name, clip, passes, {"dispatched": lambda: setattr(OpenVinoNet, "run", dispatched),
                                      "by hand": lambda: setattr(OpenVinoNet, "run", by_hand)})
OpenVinoNet.run = by_hand
