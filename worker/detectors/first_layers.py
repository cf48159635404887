"""The MTCNN nets on OpenVINO with their first layers compiled (``_first.c``): the 3x3
convolution of the three input channels, its PReLU and the max pool after it (2x2 in PNet, 3x3
in RNet and ONet) run in C (AVX2 and FMA), the rest of each net (``conv2`` onward, cut from the
same ONNX file) on OpenVINO.

Why: OpenVINO runs those first convolutions far below the rate of the nets' other layers (three
input channels): on a Zen 4 EPYC capped to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``, how an AVX2-only
EPYC runs) PNet's took 1.77 of 5.35 ms on a 217x385 scale for 13% of the multiply-adds, where the
compiled layers take about 0.7 ms; on a Zen 3 RNet's convolution and pool took 3.9 of its 7.5 ms.
It matters where the nets run in fp32: CPUs without native bf16, whose nets are not screened
(:func:`worker.runtime.screened_nets`).

The values are fp32's, not OpenVINO's bit for bit (the 27 products of an output are summed in
another order): a net's outputs differ from the whole net's by a few 1e-6 (tests). Which nets
run it on a CPU is measured there (:func:`worker.runtime.choose_first_layers`), once per CPU
kind, as the emotion net's precision is: every process on a machine runs the same nets.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from moodstream.shared.errors import ModelError
from moodstream.worker import net_input

try:  # built by setup.py where a C compiler is (optional, like _area)
    import moodstream.worker.detectors._first as _first
except ImportError:  # pragma: no cover - depends on the install
    _first = None

NETS = ("pnet", "rnet", "onet")
POOLS = {"pnet": 2, "rnet": 3, "onet": 3}  # each net's first max pool, stride 2 in ceil mode


@functools.cache
def build() -> str:
    """The compiled module's build: a digest of its file, so that a choice measured on another
    build of it (:func:`worker.runtime.choose_first_layers`) is measured again ("-": not built).
    Read once a process (the key is asked at every pipeline's start)."""
    if _first is None:
        return "-"
    return hashlib.sha1(Path(_first.__file__).read_bytes()).hexdigest()[:10]


def eligible(runtime: str, precisions: dict[str, str], screened: tuple[str, ...]) -> tuple[str, ...]:
    """The nets whose first layers may run compiled on ``runtime``: on OpenVINO, those in fp32
    (``precisions``, per net; fp32 where missing) that no bf16 screen runs first (``screened``)."""
    if runtime != "openvino":
        return ()
    return tuple(n for n in NETS if precisions.get(n, "fp32") == "fp32" and n not in screened)


def available() -> bool:
    """Whether the compiled layers are built and this CPU runs them (AVX2 and FMA)."""
    return _first is not None and bool(_first.available())


def head_shape(shape: tuple[int, ...], channels: int, pool: int) -> tuple[int, int, int, int]:
    """The first layers' output shape for inputs of ``shape`` (n, 3, h, w): the valid 3x3
    convolution to ``channels``, then the ``pool`` x ``pool`` max pool of stride 2 in ceil mode."""
    n, _, h, w = shape
    return n, channels, (h - 2 - pool + 1) // 2 + 1, (w - 2 - pool + 1) // 2 + 1


def _const(node) -> np.ndarray:
    """A constant's values, through the Reshape that OpenVINO's ONNX reader puts on a bias."""
    while node.get_type_name() == "Reshape":
        node = node.input_value(0).get_node()
    assert node.get_type_name() == "Constant", f"{node.get_type_name()} where a constant was expected"
    return np.asarray(node.get_data(), np.float32)


def _only_user(node, kind: str):
    """The one node of type ``kind`` that reads ``node``'s output (shape queries aside)."""
    users = [t.get_node() for t in node.output(0).get_target_inputs()]
    found = [u for u in users if u.get_type_name() != "ShapeOf"]
    assert len(found) == 1 and found[0].get_type_name() == kind, \
        f"{node.get_friendly_name()} feeds {[u.get_type_name() for u in found]}, not one {kind}"
    return found[0]


def split(model, pool: int) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    """An OpenVINO MTCNN model (as read from its ONNX file) -> its tail (a model taking the first
    max pool's output) and the first convolution's weight (c, 3, 3, 3), bias (c,) and PReLU
    slope (c,). A model not of that form (a 3x3 convolution of the input, PReLU, a ``pool`` x
    ``pool`` max pool of stride 2 in ceil mode) raises ModelError."""
    from openvino import Model, PartialShape, Type
    from openvino import opset13 as ops

    params = model.get_parameters()
    try:
        assert len(params) == 1, "more than one input"
        conv = _only_user(params[0], "Convolution")
        weight = _const(conv.input_value(1).get_node())
        add = _only_user(conv, "Add")
        bias = _const(add.input_value(1).get_node()).reshape(-1)
        prelu = _only_user(add, "PRelu")
        slope = _const(prelu.input_value(1).get_node()).reshape(-1)
        maxpool = _only_user(prelu, "MaxPool")
        conv_at, pool_at = conv.get_attributes(), maxpool.get_attributes()
        assert list(conv_at["strides"]) == [1, 1] and list(conv_at["dilations"]) == [1, 1], "a strided convolution"
        assert list(conv_at["pads_begin"]) == list(conv_at["pads_end"]) == [0, 0], "a padded convolution"
        assert list(pool_at["kernel"]) == [pool, pool] and list(pool_at["strides"]) == [2, 2], \
            f"a {list(pool_at['kernel'])} pool, not {pool}x{pool} of stride 2"
        assert list(pool_at["pads_begin"]) == list(pool_at["pads_end"]) == [0, 0], "a padded pool"
        assert str(pool_at["rounding_type"]).lower() == "ceil", "a pool in floor mode"
        channels = weight.shape[0]
        assert weight.shape == (channels, 3, 3, 3) and 1 <= channels <= 64, f"weights {weight.shape}"
        assert bias.shape == slope.shape == (channels,), f"bias {bias.shape}, slope {slope.shape}"
    except (AssertionError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelError(f"not a net whose first layers the compiled kernel runs ({exc or 'another form'})") from exc
    pooled = ops.parameter(PartialShape([-1, channels, -1, -1]), Type.f32, name="pooled")
    for target in list(maxpool.output(0).get_target_inputs()):
        target.replace_source_output(pooled.output(0))
    return Model(model.get_results(), [pooled], "tail"), weight, bias, slope


class SplitNet:
    """:class:`worker.onnx_session.Net` for an MTCNN net (``net``: "pnet", "rnet" or "onet"):
    its first layers compiled (``_first.head``), the rest on OpenVINO in fp32
    (:class:`worker.openvino_net.OpenVinoNet`). ``run`` is thread-safe as OpenVinoNet's."""

    runtime = "openvino"
    precision = "fp32"

    def __init__(self, path: str | Path, net: str, threads: int = 1):
        from moodstream.worker.openvino_net import OpenVinoNet, input_limits, read_model

        if net not in POOLS:
            raise ModelError(f"only {', '.join(NETS)} have first layers to compile, not {net!r}")
        if not available():
            raise ModelError("the compiled first layers need the _first module and a CPU with AVX2 and FMA")
        self.pool = POOLS[net]
        model = read_model(path)
        self.name = Path(path).name
        self.dims, self.smallest = input_limits(model)  # what the whole net takes, read before it is cut
        tail, self.weight, self.bias, self.slope = split(model, self.pool)
        self.tail = OpenVinoNet(path, threads, "fp32", model=tail)
        self.metadata = self.tail.metadata

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, np.float32)
        net_input.check(x, self.dims, self.name, self.smallest)
        pooled = np.empty(head_shape(x.shape, len(self.weight), self.pool), np.float32)
        _first.head(x, self.weight, self.bias, self.slope, self.pool, pooled)
        return self.tail.run(pooled)
