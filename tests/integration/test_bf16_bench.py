"""``moodstream bench bf16``: real bf16 against fp32 (issue 26); runs only where bf16 is native."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.trainer.bench.bf16 import bf16_cmd
from moodstream.worker import runtime
from moodstream.worker.runtime import CpuInfo, cpu_info

pytest.importorskip("openvino", reason="needs the openvino extra (pip install -e '.[dev]')")


def test_without_native_bf16_it_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "cpu_info", lambda: CpuInfo("AMD EPYC", frozenset({"avx2"})))
    res = CliRunner().invoke(bf16_cmd, ["--data", str(tmp_path)])
    assert res.exit_code != 0 and "native bf16" in str(res.exception) and "AMD EPYC" in str(res.exception)


@pytest.mark.skipif(not cpu_info().native_bf16, reason="real bf16 needs a CPU with native bf16 (AMX or AVX512-BF16)")
def test_no_frames_or_no_ferplus_is_one_line(shared_data, tmp_path):
    res = CliRunner().invoke(bf16_cmd, ["--data", str(shared_data), "--frames", "0", "--wider", "0"])
    assert res.exit_code != 0 and "no face found in the 0 frames" in str(res.exception)
    (tmp_path / "videos").mkdir()
    res = CliRunner().invoke(bf16_cmd, ["--data", str(tmp_path)])
    assert res.exit_code != 0 and "ferplus" in str(res.exception)


@pytest.mark.slow
@pytest.mark.skipif(not cpu_info().native_bf16, reason="real bf16 needs a CPU with native bf16 (AMX or AVX512-BF16)")
def test_what_auto_runs_in_bf16_is_within_the_bounds(bf16_bench):
    # `bench bf16 --data <shared> --frames 4 --wider 12` (integration/conftest.py)
    assert bf16_bench["exit_code"] == 0, bf16_bench["output"]
    report = bf16_bench["report"]
    assert report["frames"]["total"] == 20 and report["frames"]["reference_faces"] > 20
    assert report["mtcnn"]["auto"]["within_bounds"] and report["emotion"]["within_bounds"]
    assert report["mtcnn"]["onet"]["iou95"] >= 0.97  # AUTO_BF16 holds ONet...
    for net in ("pnet", "rnet"):  # ...and the screens drop nothing fp32 passes, well within their margin
        screen = report["screens"][net]
        assert screen["fp32_passes_missed"] == 0 and screen["max_score_difference"] < screen["margin"] / 2, screen
    assert report["screens"]["pnet"]["cells"] > 10_000  # the 1080p frames' two largest scales
    assert report["auto_bf16"] == ["onet", "emotion"] and report["auto_screened"] == ["pnet", "rnet"]
    # the emotion net as served (its close calls in fp32) agrees at least as well as bf16 alone
    emotion, alone, detected = report["emotion"], report["emotion_bf16_alone"], report["emotion_detected"]
    assert emotion["top_emotion_agreement"] >= alone["top_emotion_agreement"] and 0 < emotion["confirmed_share"] < 0.5
    assert detected["faces"] == report["frames"]["reference_faces"]
    assert detected["top_emotion_agreement"] >= detected["bf16_alone"]["top_emotion_agreement"] >= 0.98
    # bf16's rerun margin exceeds the largest move of two emotions' difference, bf16 alone
    margin = report["margin"]
    assert set(margin["largest_pair_change"]) == {"ferplus_valid", "ferplus_test", "detected"}
    assert margin["largest_pair_change"]["ferplus_test"] == alone["largest_pair_change"]
    assert margin["holds"], margin
