"""The int8 emotion net (issue 26): ``moodstream export int8`` writes it from
emotion.onnx reproducibly, it runs on OpenVINO beside the fp32 file, and
``moodstream bench int8`` measures it; on the real FER+ Test (shared data) it
stays within the bounds precision=auto relies on (worker.runtime.AUTO_INT8)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.shared.errors import ModelError
from moodstream.trainer.bench.int8 import int8_cmd
from moodstream.trainer.export import export
from moodstream.worker.onnx_classify import OnnxEmotionClassifier
from moodstream.worker.onnx_session import EMOTION_FILE, ONNX_DIR

pytest.importorskip("openvino", reason="needs the openvino extra (pip install -e '.[dev]')")


@pytest.fixture
def model_dir(tmp_path):
    shutil.copy(ONNX_DIR / EMOTION_FILE, tmp_path / EMOTION_FILE)
    return tmp_path


def test_export_int8_is_reproducible_and_runs_beside_the_fp32_file(model_dir, fixtures_dir):
    args = ["int8", "--ferplus", str(fixtures_dir / "ferplus"), "--out", str(model_dir), "--images", "32"]
    res = CliRunner().invoke(export, args)
    assert res.exit_code == 0, res.output
    path = model_dir / "openvino" / "emotion_int8.onnx"
    first = path.read_bytes()
    assert CliRunner().invoke(export, args).exit_code == 0
    assert path.read_bytes() == first  # same faces, same ranges, same bytes

    int8 = OnnxEmotionClassifier(model_dir / EMOTION_FILE, runtime="openvino", precision="int8")
    fp32 = OnnxEmotionClassifier(model_dir / EMOTION_FILE, runtime="openvino")
    meta = int8.net.metadata
    assert meta["source_sha256"] == hashlib.sha256((model_dir / EMOTION_FILE).read_bytes()).hexdigest()
    assert json.loads(meta["quantization"])["calibration"].startswith("32 FER+ Train faces")
    assert json.loads(meta["quantization"])["fp32"][0].endswith("features.0/Conv")  # first conv stays fp32
    faces = np.random.default_rng(0).uniform(0, 1, (12, 1, 48, 48)).astype(np.float32)
    want, got = fp32.predict_crops(faces), int8.predict_crops(faces)
    assert got.shape == want.shape and np.allclose(got.sum(1), 1, atol=1e-5)
    assert np.abs(got - want).max() < 0.2 and not np.array_equal(got, want)


def test_export_int8_errors_are_one_line(model_dir, fixtures_dir, tmp_path):
    res = CliRunner().invoke(export, ["int8", "--ferplus", str(fixtures_dir / "ferplus"), "--out", str(model_dir),
                                      "--images", "100000"])
    assert res.exit_code != 0 and "fewer than --images 100000" in str(res.exception)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="export int8 --ferplus"):  # the int8 file missing: which command writes it
        OnnxEmotionClassifier(empty / EMOTION_FILE, runtime="openvino", precision="int8")
    res = CliRunner().invoke(export, ["int8", "--ferplus", str(fixtures_dir / "ferplus"), "--out", str(empty)])
    assert res.exit_code != 0 and "emotion.onnx not found" in str(res.exception)


def test_bench_int8_reports_parity_and_speed(fixtures_dir, tmp_path):
    (tmp_path / "ferplus").symlink_to(fixtures_dir / "ferplus")
    out = tmp_path / "int8.json"
    res = CliRunner().invoke(int8_cmd, ["--data", str(tmp_path), "--wider", "0", "--repeats", "2", "--batch", "4",
                                        "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    emotion = report["emotion"]
    assert emotion["faces"] > 0 and 0 <= emotion["accuracy_int8"] <= 1 and 0 <= emotion["top_emotion_agreement"] <= 1
    assert report["wider"] is None and report["speed"]["speedup"] > 0
    assert 0 <= emotion["confirmed_share"] <= 1 and report["emotion_int8_alone"]["faces"] == emotion["faces"]
    # int8 as served (its close calls in fp32) agrees at least as well as int8 alone
    assert emotion["top_emotion_agreement"] >= report["emotion_int8_alone"]["top_emotion_agreement"]
    # bf16 as served beside them where the CPU computes it natively (what auto runs with AMX)
    native = {"bf16"} if report["cpu"]["avx512_bf16"] or report["cpu"]["amx"] else set()
    assert set(report["served"]["ms_per_face"]) == {"fp32", "int8", "int8 alone"} | native
    assert ("speedup_over_bf16" in report["served"]) == bool(native)
    assert report["auto_int8"] == ["emotion"] and report["quantization"]["format"] == "QDQ"
    # what auto measured here for the emotion net, and the choice it made from it
    measured = report["auto_emotion"]
    assert measured["precision"] in measured["ms"] and measured["how"] in ("measured", "cached")
    assert set(measured["served_ms"]) == set(measured["ms"]) >= {"fp32", "int8"}
    assert f"emotion {measured['precision']}" in report["auto_here"] or report["auto_here"].startswith("fp32")
    assert "candidates" not in report
    # the rerun margin against the largest move of two emotions' difference, int8 alone (no WIDER here)
    margin = report["margin"]
    assert set(margin["largest_pair_change"]) == {"ferplus_valid", "ferplus_test"}
    assert margin["largest_pair_change"]["ferplus_test"] == report["emotion_int8_alone"]["largest_pair_change"] > 0
    assert margin["holds"] == (max(margin["largest_pair_change"].values()) < margin["confirm_margin"])
    res = CliRunner().invoke(int8_cmd, ["--data", str(tmp_path / "nowhere")])
    assert res.exit_code != 0 and "does not exist" in res.output
    (tmp_path / "other").mkdir()
    res = CliRunner().invoke(int8_cmd, ["--data", str(tmp_path / "other")])
    assert res.exit_code != 0 and "ferplus" in str(res.exception)


@pytest.mark.slow
def test_int8_is_within_the_bounds_on_ferplus_test(int8_bench):
    # `bench int8 --data <shared> --wider 0 --repeats 3 --served-faces 64` (integration/conftest.py)
    assert int8_bench["exit_code"] == 0, int8_bench["output"]
    report = int8_bench["report"]
    assert report["served"]["faces"] == 64
    emotion = report["emotion"]
    assert emotion["faces"] > 3000
    assert emotion["within_bounds"], emotion  # top emotion >= 98%, accuracy within 0.3 points
    assert report["margin"]["holds"]  # FER+ Valid and Test


def test_bench_int8_candidates_compare_every_form(fixtures_dir, tmp_path):
    from moodstream.trainer.export import INT8_KEEP_FP32

    (tmp_path / "ferplus").symlink_to(fixtures_dir / "ferplus")
    out = tmp_path / "int8.json"
    res = CliRunner().invoke(int8_cmd, ["--data", str(tmp_path), "--wider", "0", "--repeats", "1", "--batch", "2",
                                        "--candidates", "--images", "16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    forms = json.loads(out.read_text())["candidates"]
    assert list(forms) == list(INT8_KEEP_FP32)
    for form in forms.values():
        assert 0 <= form["valid_top_emotion_agreement"] <= 1 and form["speedup"] > 0 and form["wider"] is None


def test_an_unknown_fp32_form_is_refused_before_anything_is_read(tmp_path):
    from moodstream.shared.errors import ConfigError
    from moodstream.trainer.export import export_int8

    # tmp_path holds no emotion.onnx and no FER+: the form is checked first
    with pytest.raises(ConfigError, match="keep_fp32 must be one of"):
        export_int8(tmp_path, tmp_path, keep_fp32="dense+first")


def _near_ties(fixtures_dir, fp32) -> np.ndarray:
    """Real FER+ faces blended pairwise (faces whose fp32 top emotions differ) in 41 steps: on
    the way from one face's emotion to the other's, each blend path crosses a near tie."""
    import cv2

    paths = sorted((fixtures_dir / "ferplus" / "FER2013Test").glob("*.png"))
    faces = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]).astype(np.float32)[:, None] / 255
    top = fp32.predict_crops(faces).argmax(1)
    pairs = [(i, j) for i in range(len(faces)) for j in range(i + 1, len(faces)) if top[i] != top[j]]
    pairs = [pairs[k] for k in np.random.default_rng(0).choice(len(pairs), 24, replace=False)]
    a = np.linspace(0, 1, 41, dtype=np.float32)[:, None, None, None]
    return np.concatenate([(1 - a) * faces[i] + a * faces[j] for i, j in pairs])


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_reruns_its_close_calls_in_fp32_so_its_top_emotion_is_fp32s(fixtures_dir, precision):
    """The defect (a 2-core Zen 5 EPYC, issue 26): the int8 net flipped 2 of the 56 top emotions
    of bench throughput's 1080p frames (faces at 0.387 / 0.379), below the 98% bound. bf16 (auto's
    choice with AMX) flipped 5 of the 510 faces MTCNN finds in 200 WIDER images on a 2-core Xeon
    (AMX), and 5 of these 984 near ties. Both now rerun every face whose top two probabilities are
    within CONFIRM_MARGINS[precision] in fp32: the close calls get fp32's answer, the rest keep
    their own."""
    from moodstream.worker.onnx_classify import CONFIRM_MARGINS
    from moodstream.worker.runtime import cpu_info

    if precision == "bf16" and not cpu_info().native_bf16:
        pytest.skip("bf16 is real only on a CPU with native bf16 (AMX or AVX512-BF16)")
    fp32 = OnnxEmotionClassifier(runtime="openvino")
    crops = _near_ties(fixtures_dir, fp32)
    want = fp32.predict_crops(crops)
    raw = OnnxEmotionClassifier(runtime="openvino", precision=precision, confirm_margin=0).predict_crops(crops)
    # alone, it flips near ties (int8: 8 of 984 on a Zen 5 and a Xeon; bf16: 5 on a Xeon with AMX)
    assert (raw.argmax(1) != want.argmax(1)).sum() >= 2

    served = OnnxEmotionClassifier(runtime="openvino", precision=precision)
    got = served.predict_crops(crops)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    top2 = np.sort(raw, axis=1)[:, -2:]
    close = top2[:, 1] - top2[:, 0] < CONFIRM_MARGINS[precision]
    assert 0 < close.mean() < 0.5  # a share of these deliberate near ties, not all of them
    assert np.array_equal(got[close], want[close])  # fp32's answer, value for value
    assert np.array_equal(got[~close], raw[~close])  # its own where it is clear
    assert (served.faces_seen, served.faces_confirmed) == (len(crops), int(close.sum()))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_each_rerun_margin_exceeds_the_largest_change_between_two_emotions_on_ferplus_valid(request, precision):
    """The defect (a 2-core Zen 4 EPYC, 2026-12-04): bf16's margin, 0.05, was twice the largest
    error seen on FER+ Test and the WIDER faces, but one dark FER+ Valid face moved by 0.054 in
    bf16 and the gap between its top two emotions by 0.10: a face as far from a tie as that could
    keep a top emotion fp32 does not give. What decides a flip is how far the difference of two
    emotions' probabilities moves (``largest_pair_change``): each margin must exceed it on FER+
    Valid, where the margins are chosen (Test and WIDER check them: bench int8, bench bf16).

    The change is the one the precision's bench measures on FER+ Valid (``margin_check``: fp32 and the
    net alone, on OpenVINO, every Valid face), run once for this test and the bench's own
    (``int8_bench``, ``bf16_bench`` in integration/conftest.py): computing it again here cost 17 s."""
    from moodstream.worker.onnx_classify import CONFIRM_MARGINS
    from moodstream.worker.runtime import cpu_info

    if precision == "bf16" and not cpu_info().native_bf16:
        pytest.skip("bf16 is real only on a CPU with native bf16 (AMX or AVX512-BF16)")
    bench = request.getfixturevalue(f"{precision}_bench")
    assert bench["exit_code"] == 0, bench["output"]
    change = bench["report"]["margin"]["largest_pair_change"]["ferplus_valid"]
    assert 0 < change < CONFIRM_MARGINS[precision], (precision, change)


@pytest.mark.parametrize("arch, size", [("vgg", 32), ("resnet", 64)])
def test_export_int8_calibrates_a_model_of_another_input_size_at_its_size(tmp_path, fixtures_dir, arch, size):
    """`train --input-size 32` (16..512 taken) then `export onnx` and `export int8`: the calibration
    faces were read at 48 px whatever the model's input, and ONNX Runtime's traceback ended the
    command ('Got invalid dimensions for input ... Got: 48 Expected: 32'). Now they are read at the
    model's size and the int8 file serves faces of it."""
    import torch

    from moodstream.shared.models import ModelConfig, build_model, save_checkpoint

    cfg = ModelConfig(arch=arch, widths=(8, 16), hidden=16, input_size=size)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "small.pt", build_model(cfg).eval(), cfg, mean=0.5, std=0.25)
    out = tmp_path / "onnx"
    res = CliRunner().invoke(export, ["onnx", "--checkpoint", str(tmp_path / "small.pt"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(export, ["int8", "--ferplus", str(fixtures_dir / "ferplus"), "--out", str(out),
                                      "--images", "16"])
    assert res.exit_code == 0, (res.output, res.exception)
    int8 = OnnxEmotionClassifier(out / EMOTION_FILE, runtime="openvino", precision="int8")
    faces = np.random.default_rng(0).uniform(0, 1, (4, 1, size, size)).astype(np.float32)
    assert np.allclose(int8.predict_crops(faces).sum(1), 1, atol=1e-5)
