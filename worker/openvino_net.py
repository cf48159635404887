"""The shipped ONNX files on OpenVINO (the ``openvino`` backend, extra
``moodstream[openvino]``): the same files and pre- and post-processing as the
ONNX Runtime backend, another runtime under them (:func:`worker.onnx_session.open_net`).

OpenVINO reads the ONNX files directly (no conversion step, nothing written to
disk). Each net is compiled for the CPU with ``threads`` inference threads, one
stream and no core pinning (several workers share a machine), at the precision
asked: ``INFERENCE_PRECISION_HINT`` is always set, because OpenVINO's own
default on a CPU with native bf16 (AMX, AVX512-BF16) is bf16, and ``fp32``
must mean fp32. An int8 file (:data:`worker.onnx_session.INT8_FILES`) runs its
quantized layers in int8 with the hint at f32.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from moodstream.shared.errors import ConfigError, ModelError
from moodstream.worker import net_input

MISSING = "backend openvino needs OpenVINO: pip install 'moodstream[openvino]'"
# our precision names -> INFERENCE_PRECISION_HINT; int8 is a quantized file (QDQ), whose
# quantized convolutions OpenVINO runs in int8 and everything else in f32
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


@functools.cache
def core():
    """One ``openvino.Core`` per process (it holds the plugins and their caches)."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ConfigError(MISSING) from exc
    return ov.Core()


def read_model(path: str | Path):
    """The ONNX file at ``path`` as an ``openvino.Model``; one OpenVINO cannot read raises ModelError."""
    try:
        return core().read_model(str(path))
    except RuntimeError as exc:  # OpenVINO raises RuntimeError (or subclasses) for a bad file
        raise ModelError(f"ONNX model {path} cannot be loaded: {exc}") from exc


def fits(model, expected: net_input.Dims, h: int, w: int) -> bool:
    """Whether ``model`` takes a (1, c, h, w) input, by OpenVINO's shape inference on a copy."""
    copy = model.clone()
    try:
        copy.reshape([1, expected[1] or 1, h, w])
    except RuntimeError:  # a layer's window larger than its input
        return False
    return all(d > 0 for out in copy.outputs for d in out.get_shape())


def input_limits(model) -> tuple[net_input.Dims, tuple[int, int] | None]:
    """What ``model`` takes (:mod:`worker.net_input`): its input's dims, and the least height and
    width where they are free, found by OpenVINO's shape inference (:func:`fits`). OpenVINO runs
    an input too small for a net without a word: the outputs are the last call's, and a later
    run can crash."""
    dims = net_input.dims([d.get_length() if d.is_static else None for d in model.input(0).get_partial_shape()])
    return dims, net_input.smallest(dims, functools.partial(fits, model, dims))


class OpenVinoNet:
    """:class:`worker.onnx_session.Net` on OpenVINO's CPU plugin. ``run`` is
    thread-safe: each calling thread gets its own infer request."""

    runtime = "openvino"

    def __init__(self, path: str | Path, threads: int = 1, precision: str = "fp32", model=None):
        """``model``: an ``openvino.Model`` to compile instead of reading ``path`` (which then only
        names it in errors), e.g. a net cut short (:mod:`worker.detectors.first_layers`)."""
        if precision not in HINTS:
            raise ConfigError(f"precision must be one of {', '.join(HINTS)} here, got {precision!r}")
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        path = Path(path)  # checked to exist by open_net, which builds this
        if model is None:
            model = read_model(path)
        try:
            self.compiled = core().compile_model(model, "CPU", {
                "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": HINTS[precision]})
        except RuntimeError as exc:  # a net OpenVINO reads but cannot compile
            raise ModelError(f"ONNX model {path} cannot be loaded: {exc}") from exc
        self.precision = precision
        info = model.get_rt_info()
        # the ONNX metadata_props arrive as the model's rt_info["framework"]
        self.metadata: dict[str, str] = ({k: v.astype(str) for k, v in info["framework"].items()}
                                         if "framework" in info else {})
        self._n_outputs = len(self.compiled.outputs)
        self.name = path.name
        self.dims, self.smallest = input_limits(model)
        from openvino import Tensor  # core() has imported it

        self._tensor = Tensor
        self._local = threading.local()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        # The input is read in place and the outputs are copied out (the next run reuses their
        # buffers). Set and read by hand rather than through ``request.infer(inputs)``, whose
        # dispatch (a dict of inputs, a dict of results) took 15-30 us a call more on a Xeon,
        # about 1% of a frame at 35 runs a 1080p frame.
        data = np.ascontiguousarray(x, np.float32)  # shared memory needs a C-contiguous array
        net_input.check(data, self.dims, self.name, self.smallest)
        if len(data) == 0:  # OpenVINO answers an empty batch with the last call's outputs
            return net_input.empty_outputs(self.run, data)
        request.set_input_tensor(self._tensor(data, shared_memory=True))
        request.infer()
        return [request.get_output_tensor(i).data.copy() for i in range(self._n_outputs)]
