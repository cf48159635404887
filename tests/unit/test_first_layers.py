"""The MTCNN nets' first layers compiled (worker/detectors/_first.c, worker/detectors/first_layers.py):
the convolution, PReLU and ceil-mode pool (2x2 in PNet, 3x3 in RNet and ONet) against numpy on
every path of the kernel (blocks of eight columns in pairs of rows, the overlapping last block, a
last row computed twice, narrow rows one column at a time, channel groups of 1 to 6, pooled rows in
blocks of eight with the last overlapping, windows cut short at the last row or column, the 3x3
pool's shared rows), bad input refused with ValueError, and each net cut in two on OpenVINO against
the whole net."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from moodstream.shared import devices
from moodstream.shared.errors import ConfigError, ModelError
from moodstream.worker import runtime
from moodstream.worker.detectors import first_layers
from moodstream.worker.detectors.first_layers import POOLS, head_shape

OPENVINO = pytest.mark.skipif(not devices.installed("openvino"),
                              reason="needs openvino (pip install -e '.[dev]' or '.[openvino]')")
RUNS = pytest.mark.skipif(not first_layers.available(),
                          reason="the compiled first layers need the built module and a CPU with AVX2 and FMA")


def test_a_developer_install_builds_the_compiled_first_layers():
    # setup.py builds them where a C compiler is (the README's setup, CI)
    assert first_layers._first is not None, "worker/detectors/_first.c is not built: pip install -e . with a C compiler"


def head_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, slope: np.ndarray, pool: int) -> np.ndarray:
    """The first layers in numpy (float64 sums, then float32): what ``_first.head`` computes."""
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
    _, _, hp, wp = head_shape(x.shape, weight.shape[0], pool)
    out = np.empty((n, weight.shape[0], hp, wp), np.float32)
    for py in range(hp):  # a window cut short at the last row or column takes what it covers
        for px in range(wp):
            out[:, :, py, px] = conv[:, :, 2 * py:2 * py + pool, 2 * px:2 * px + pool].max(axis=(2, 3))
    return out


def weights(channels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.3, (channels, 3, 3, 3)).astype(np.float32), rng.normal(0, 0.1, channels).astype(np.float32),
            rng.uniform(0, 0.5, channels).astype(np.float32))


def head(x, w, b, s, pool):
    out = np.full(head_shape(x.shape, len(w), pool), np.nan, np.float32)
    first_layers._first.head(x, w, b, s, pool, out)
    return out


CASES = [  # channels, pool, input shape
    (10, 2, (1, 3, 217, 385)), (10, 2, (2, 3, 12, 12)), (10, 2, (3, 3, 13, 17)), (10, 2, (1, 3, 4, 4)),
    (10, 2, (1, 3, 12, 25)), (10, 2, (1, 3, 4, 10)), (10, 2, (2, 3, 5, 9)), (10, 2, (1, 3, 19, 18)),
    (10, 2, (1, 3, 102, 1153)), (28, 3, (64, 3, 24, 24)), (32, 3, (16, 3, 48, 48)), (28, 3, (1, 3, 5, 5)),
    (32, 3, (2, 3, 7, 30)), (7, 3, (1, 3, 9, 11)), (6, 2, (1, 3, 20, 33)), (64, 3, (1, 3, 6, 19)),
    # pooled rows of 8 or more whose last eight overlap, with a last window cut short (2x2 and 3x3)
    (10, 2, (1, 3, 40, 41)), (28, 3, (1, 3, 40, 42)), (28, 3, (2, 3, 41, 41)), (10, 2, (1, 3, 13, 20)),
]


@RUNS
@pytest.mark.parametrize("channels,pool,shape", CASES)
def test_the_compiled_layers_are_numpys(channels, pool, shape):
    rng = np.random.default_rng(sum(shape) + channels)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    w, b, s = weights(channels)
    got, want = head(x, w, b, s, pool), head_reference(x, w, b, s, pool)
    assert got.shape == want.shape == head_shape(shape, channels, pool)
    assert not np.isnan(got).any()  # every output written
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)  # fp32 sums of 27 products, another order
    if got.size > 1000:  # the PReLU's both sides reached (a few pooled maxima may all be positive)
        assert (got < 0).any() and (got > 0).any()


@RUNS
@pytest.mark.parametrize("channels,pool", [(10, 2), (28, 3)])
def test_each_image_of_a_batch_is_computed_alone(channels, pool):
    x = np.random.default_rng(3).uniform(-1, 1, (5, 3, 31, 47)).astype(np.float32)
    w, b, s = weights(channels, 1)
    together = head(x, w, b, s, pool)
    for i in range(len(x)):
        np.testing.assert_array_equal(together[i:i + 1], head(x[i:i + 1].copy(), w, b, s, pool))


@RUNS
def test_bad_input_is_refused():
    x = np.zeros((1, 3, 12, 12), np.float32)
    w, b, s = weights(10)
    out = np.empty(head_shape(x.shape, 10, 2), np.float32)
    bad = [((x.astype(np.float64), w, b, s, 2, out), "float32"),
           ((x[:, :, :, ::2], w, b, s, 2, np.empty(head_shape((1, 3, 12, 6), 10, 2), np.float32)), "C-contiguous"),
           ((np.zeros((1, 4, 12, 12), np.float32), w, b, s, 2, out), r"\(n, 3, h, w\)"),
           ((np.zeros((1, 3, 3, 12), np.float32), w, b, s, 2, out), r"h, w >= 4"),
           ((np.zeros((1, 3, 12, 4), np.float32), w, b, s, 3, out), r"h, w >= 5"),
           ((x, w, b, s, 4, out), "the pool must be 2 or 3"),
           ((x, np.zeros((65, 3, 3, 3), np.float32), b, s, 2, out), r"\(c, 3, 3, 3\) with 1 <= c <= 64"),
           ((x, w[:, :2].copy(), b, s, 2, out), r"\(c, 3, 3, 3\)"),
           ((x, w, b[:9].copy(), s, 2, out), "one value a channel"),
           ((x, w, b, s, 2, np.empty((1, 10, 5, 6), np.float32)), r"out must be \(1, 10, 5, 5\)")]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            first_layers._first.head(*args)
    frozen = out.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        first_layers._first.head(x, w, b, s, 2, frozen)


@RUNS
def test_a_pool_size_beyond_a_c_int_is_refused_as_any_other():
    x = np.zeros((1, 3, 12, 12), np.float32)
    w, b, s = weights(10)
    for pool in (2**40, -(2**70), 2.0, "2"):
        with pytest.raises((ValueError, TypeError), match="pool"):
            first_layers._first.head(x, w, b, s, pool, np.empty(head_shape(x.shape, 10, 2), np.float32))


@RUNS
def test_an_empty_batch_of_any_width_computes_nothing():
    """An empty batch once sized its scratch rows by its width: 5 * 64 * (w - 2 + 8) floats wrapped
    around size_t at this width, and the -inf pads were written far past the 1 KiB allocated
    (a segfault). Run apart, so that a crash fails this test and not the run."""
    code = """
import numpy as np
from moodstream.worker.detectors import first_layers as fl
from moodstream.worker.detectors.first_layers import head_shape
w = (2**56 + 4) // 5 - 6
for width in (w, 2**40, 10**9, 12):
    x = np.empty((0, 3, 5, width), np.float32)
    out = np.empty(head_shape(x.shape, 64, 2), np.float32)
    fl._first.head(x, np.ones((64, 3, 3, 3), np.float32), np.zeros(64, np.float32), np.ones(64, np.float32), 2, out)
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (res.returncode, res.stdout.strip()) == (0, "ok"), res.stderr[-2000:]


@RUNS
def test_the_pool_size_decides_the_output_shape():
    x = np.zeros((1, 3, 13, 13), np.float32)  # 11 convolution rows: 6 pooled 2x2, 5 pooled 3x3
    w, b, s = weights(10)
    with pytest.raises(ValueError, match=r"out must be \(1, 10, 5, 5\)"):
        first_layers._first.head(x, w, b, s, 3, np.empty((1, 10, 6, 6), np.float32))
    assert head(x, w, b, s, 2).shape == (1, 10, 6, 6) and head(x, w, b, s, 3).shape == (1, 10, 5, 5)


# --- each net cut in two on OpenVINO -----------------------------------------------------------


@OPENVINO
@RUNS
@pytest.mark.parametrize("net,shapes", [("pnet", [(1, 3, 217, 385), (5, 3, 109, 194), (64, 3, 12, 12), (2, 3, 12, 40)]),
                                        ("rnet", [(64, 3, 24, 24), (3, 3, 24, 24)]),
                                        ("onet", [(32, 3, 48, 48), (1, 3, 48, 48)])])
def test_a_net_cut_in_two_is_the_whole_net_within_fp32_rounding(net, shapes):
    from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, net_file, open_net

    path = net_file(ONNX_DIR, MTCNN_FILES[net], "openvino")
    whole, split = open_net(path, runtime="openvino"), first_layers.SplitNet(path, net)
    assert split.metadata == whole.metadata and split.pool == POOLS[net]
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        want, got = whole.run(x), split.run(x)
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=2e-5)
        # a strided input (a view) gives what its copy gives
        view = np.concatenate([x, x], axis=3)[..., :shape[3]]
        for g, v in zip(got, split.run(view)):
            np.testing.assert_array_equal(v, g)


@OPENVINO
def test_a_net_of_another_form_is_not_cut():
    from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, net_file
    from moodstream.worker.openvino_net import core

    rnet = core().read_model(str(net_file(ONNX_DIR, MTCNN_FILES["rnet"], "openvino")))
    with pytest.raises(ModelError, match=r"not a net whose first layers .*\[3, 3\] pool, not 2x2"):
        first_layers.split(rnet, 2)
    with pytest.raises(ModelError, match="only pnet, rnet, onet"):
        first_layers.SplitNet(net_file(ONNX_DIR, MTCNN_FILES["rnet"], "openvino"), "emotion")


@OPENVINO
def test_compiled_first_layers_only_run_nets_unscreened_in_fp32_on_openvino():
    from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector

    for kwargs in ({"runtime": "onnx"}, {"runtime": "openvino", "screened": ("pnet",)},
                   {"runtime": "openvino", "precision": {"pnet": "bf16"}}):
        with pytest.raises(ConfigError, match="compiled first layers run pnet in fp32 on OpenVINO, unscreened"):
            OnnxMTCNNDetector(compiled_first=("pnet",), **kwargs)
    with pytest.raises(ConfigError, match="only pnet, rnet and onet"):
        OnnxMTCNNDetector(runtime="openvino", compiled_first=("emotion",))
    assert OnnxMTCNNDetector(runtime="openvino").compiled_first == ()  # the whole nets, by default


# --- the choice, measured once per CPU kind ----------------------------------------------------


def test_first_layers_here_asks_only_where_nets_run_unscreened_in_fp32_on_openvino(monkeypatch):
    asked = []
    monkeypatch.setattr(runtime, "choose_first_layers", lambda cache, cpu: asked.append(1) or runtime.FirstLayersChoice(
        ("pnet", "rnet", "onet"), "measured"))
    fp32 = {"pnet": "fp32", "rnet": "fp32", "onet": "fp32", "emotion": "int8"}
    assert runtime.first_layers_here("onnx", fp32, ()) == ()
    assert runtime.first_layers_here("openvino", {**fp32, "onet": "bf16"}, ("pnet", "rnet")) == ()  # Zen 4, Xeon
    assert asked == []
    assert runtime.first_layers_here("openvino", fp32, ()) == ("pnet", "rnet", "onet")  # an AVX2-only CPU
    assert runtime.first_layers_here("openvino", {**fp32, "onet": "bf16"}, ("rnet",)) == ("pnet",)
    assert asked == [1, 1]


def test_without_the_compiled_layers_the_whole_nets_run(monkeypatch):
    monkeypatch.setattr(first_layers, "available", lambda: False)
    assert runtime.choose_first_layers("off") == runtime.FirstLayersChoice((), "unavailable")


@OPENVINO
@RUNS
def test_the_choice_is_measured_once_per_cpu_kind_and_kept(tmp_path):
    cache = tmp_path / "runtime.json"
    cpu = runtime.cpu_info()
    runtime._first_choices.clear()
    first = runtime.choose_first_layers(str(cache), cpu=cpu, budget_s=0.1)
    assert first.how == "measured" and set(first.ms) == {"pnet", "rnet", "onet"}
    assert all(set(m) == {"openvino", "compiled"} and min(m.values()) > 0 for m in first.ms.values())
    assert first.nets == tuple(n for n, m in first.ms.items() if m["compiled"] <= runtime.FIRST_GAIN * m["openvino"])
    kept = json.loads(cache.read_text())["choices"][runtime.first_layers_cache_key(cpu)]
    assert (tuple(kept["nets"]), kept["ms"]) == (first.nets, first.ms)
    assert runtime.choose_first_layers(str(cache), cpu=cpu) is first  # once per process
    runtime._first_choices.clear()
    again = runtime.choose_first_layers(str(cache), cpu=cpu)
    assert (again.how, again.nets, again.ms) == ("cached", first.nets, first.ms)
    runtime._first_choices.clear()


def test_a_choice_measured_on_another_build_of_the_kernels_is_measured_again(monkeypatch):
    cpu = runtime.CpuInfo("Some CPU", frozenset({"avx2", "fma"}))
    before = runtime.first_layers_cache_key(cpu)
    monkeypatch.setattr(first_layers, "build", lambda: "another")
    assert runtime.first_layers_cache_key(cpu) != before and runtime.first_layers_cache_key(cpu).endswith("another")


@OPENVINO
@RUNS
@pytest.mark.parametrize("kept", [["pnet", "rnet", "onet"], ["rnet"], []])
def test_the_pipeline_runs_the_nets_measured_here(tmp_path, kept):
    from moodstream.shared.settings import Settings
    from moodstream.worker.pipeline import Pipeline

    cache = tmp_path / "runtime.json"
    key = runtime.first_layers_cache_key(runtime.cpu_info())
    cache.write_text(json.dumps({"format": runtime.CACHE_FORMAT, "choices": {key: {"nets": kept, "ms": {}}}}))
    runtime._first_choices.clear()
    p = Pipeline(Settings.from_env(env={}, device="cpu", backend="openvino", precision="fp32",
                                   runtime_cache=str(cache)))
    assert p.compiled_first == p.detector.compiled_first == tuple(kept)
    for net in ("pnet", "rnet", "onet"):
        assert isinstance(getattr(p.detector, net), first_layers.SplitNet) == (net in kept)
    runtime._first_choices.clear()


@OPENVINO
@RUNS
def test_backend_auto_times_openvino_as_it_would_run(tmp_path, monkeypatch):
    """backend=auto's measurement runs OpenVINO's nets with the first layers compiled where they
    would be (an AVX2-only CPU: all nets fp32, unscreened), ONNX Runtime's whole."""
    if not devices.installed("onnxruntime"):
        pytest.skip("needs onnxruntime beside openvino (pip install -e '.[dev]')")
    epyc = runtime.CpuInfo("AMD EPYC", frozenset("fpu sse4_2 avx avx2 fma".split()))
    cache = tmp_path / "runtime.json"
    key = runtime.first_layers_cache_key(epyc)
    cache.write_text(json.dumps({"format": runtime.CACHE_FORMAT, "choices": {key: {"nets": ["pnet", "rnet"], "ms": {}}}}))
    monkeypatch.setattr(runtime, "_first_choices", {})
    monkeypatch.setattr(runtime, "_backend_choices", {})
    built = []

    class Counted(first_layers.SplitNet):
        def __init__(self, path, net, threads):
            built.append(net)
            super().__init__(path, net, threads)

    monkeypatch.setattr(first_layers, "SplitNet", Counted)
    choice = runtime.choose("auto", str(cache), cpu=epyc, budget_s=0.05)
    assert choice.how == "measured" and set(choice.ms) == {"onnx", "openvino"}
    assert built == ["pnet", "rnet"]  # OpenVINO's PNet and RNet split, its ONet and ONNX Runtime's nets whole
