"""PNet on OpenVINO with its first layers compiled (``_pnet.c``): the 3x3 convolution of the three
input channels, its PReLU and the 2x2 max pool run in C (AVX2 and FMA), the rest of the net
(``conv2`` onward, cut from the same ONNX file) on OpenVINO.

Why: OpenVINO runs PNet's first convolution far below the rate of its other layers (three input
channels, ten output channels): on a Zen 4 EPYC capped to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``, how
an AVX2-only EPYC runs) it took 1.77 of 5.35 ms of a 217x385 scale for 13% of the multiply-adds,
where the compiled layers take about 0.7 ms. It matters where PNet runs in fp32 over the whole
pyramid: CPUs without native bf16, whose PNet is not screened (:func:`worker.runtime.screened_nets`).

The values are fp32's, not OpenVINO's bit for bit (the 27 products of an output are summed in
another order): PNet's outputs differ from the whole net's by at most a few 1e-6 (tests). Whether
a CPU runs it is measured there (:func:`worker.runtime.choose_pnet_head`), once per CPU kind, as
the emotion net's precision is: every process on a machine runs the same PNet.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from moodstream.shared.errors import ModelError

log = logging.getLogger(__name__)

try:  # built by setup.py where a C compiler is (optional, like _area)
    import moodstream.worker.detectors._pnet as _pnet
except ImportError:  # pragma: no cover - depends on the install
    _pnet = None

HEAD_CHANNELS = 10  # PNet's first convolution's output channels (_pnet.c's CHANNELS)


def available() -> bool:
    """Whether the compiled layers are built and this CPU runs them (AVX2 and FMA)."""
    return _pnet is not None and bool(_pnet.available())


def head_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The first layers' output shape for PNet inputs of ``shape`` (n, 3, h, w): the valid 3x3
    convolution, then the 2x2 max pool of stride 2 in ceil mode."""
    n, _, h, w = shape
    return n, HEAD_CHANNELS, (h - 1) // 2, (w - 1) // 2


def head_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """The first layers in numpy (float64 sums, then float32): what ``_pnet.head`` computes, to
    test it against."""
    n, c, h, w = x.shape
    ho, wo = h - 2, w - 2
    xd = x.astype(np.float64)
    conv = np.zeros((n, weight.shape[0], ho, wo))
    for ci in range(c):
        for ky in range(3):
            for kx in range(3):
                conv += weight[None, :, ci, ky, kx, None, None] * xd[:, None, ci, ky:ky + ho, kx:kx + wo]
    conv += bias[None, :, None, None]
    conv = np.where(conv < 0, conv * slope[None, :, None, None], conv).astype(np.float32)
    hp, wp = (ho + 1) // 2, (wo + 1) // 2
    padded = np.full((n, weight.shape[0], 2 * hp, 2 * wp), -np.inf, np.float32)  # ceil mode: a last odd row / column alone
    padded[:, :, :ho, :wo] = conv
    return padded.reshape(n, -1, hp, 2, wp, 2).max(axis=(3, 5))


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


def split(model) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    """An OpenVINO PNet model (as read from its ONNX file) -> its tail (a model taking the first
    max pool's output) and the first convolution's weight (10, 3, 3, 3), bias (10,) and PReLU
    slope (10,). A model not of that form raises ModelError."""
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
        pool = _only_user(prelu, "MaxPool")
        conv_at, pool_at = conv.get_attributes(), pool.get_attributes()
        assert list(conv_at["strides"]) == [1, 1] and list(conv_at["dilations"]) == [1, 1], "a strided convolution"
        assert list(conv_at["pads_begin"]) == list(conv_at["pads_end"]) == [0, 0], "a padded convolution"
        assert list(pool_at["kernel"]) == list(pool_at["strides"]) == [2, 2], "another pool"
        assert list(pool_at["pads_begin"]) == list(pool_at["pads_end"]) == [0, 0], "a padded pool"
        assert str(pool_at["rounding_type"]).lower() == "ceil", "a pool in floor mode"
        assert weight.shape == (HEAD_CHANNELS, 3, 3, 3) and bias.shape == slope.shape == (HEAD_CHANNELS,), \
            f"weights {weight.shape}"
    except (AssertionError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelError(f"not a PNet whose first layers the compiled kernel runs ({exc or 'another form'})") from exc
    pooled = ops.parameter(PartialShape([-1, HEAD_CHANNELS, -1, -1]), Type.f32, name="pooled")
    for target in list(pool.output(0).get_target_inputs()):
        target.replace_source_output(pooled.output(0))
    return Model(model.get_results(), [pooled], "pnet_tail"), weight, bias, slope


class SplitPNet:
    """:class:`worker.onnx_session.Net` for PNet: the first layers compiled (``_pnet.head``),
    the rest on OpenVINO in fp32 (:class:`worker.openvino_net.OpenVinoNet`). ``run`` is
    thread-safe as OpenVinoNet's."""

    runtime = "openvino"
    precision = "fp32"

    def __init__(self, path: str | Path, threads: int = 1):
        from moodstream.worker.openvino_net import OpenVinoNet, core

        if not available():
            raise ModelError("PNet's compiled first layers need the _pnet module and a CPU with AVX2 and FMA")
        try:
            model = core().read_model(str(path))
        except RuntimeError as exc:
            raise ModelError(f"ONNX model {path} cannot be loaded: {exc}") from exc
        tail, self.weight, self.bias, self.slope = split(model)
        self.tail = OpenVinoNet(path, threads, "fp32", model=tail)
        self.metadata = self.tail.metadata

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, np.float32)
        pooled = np.empty(head_shape(x.shape), np.float32)
        _pnet.head(x, self.weight, self.bias, self.slope, pooled)
        return self.tail.run(pooled)
