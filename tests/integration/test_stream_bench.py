"""``moodstream bench stream`` end to end: one real spawned worker (ONNX, CPU) on an
embedded redis-server, a few frames of the sample clip, both phases (the closed
loop reads each result after the previous one's stream id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.trainer.cli import bench

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"


@pytest.mark.slow
def test_one_onnx_worker_both_phases(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "stream.json"
    res = CliRunner().invoke(bench, ["stream", "--video", str(CLIP), "--frames", "6", "--latency-frames", "3",
                                     "--warmup", "1", "--backend", "onnx", "--timeout-s", "120", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["frame_size"] == [640, 360] and list(report["runs"]) == ["onnx"]
    assert report["encoding"] == "png (pre-encoded, not timed)"  # as the producer sends them: what a worker decodes
    run = report["runs"]["onnx"]
    assert run["throughput"]["frames"] == 6 and run["throughput"]["frames_per_s"] > 0
    loop = run["closed_loop"]
    assert loop["frames"] == 3 and loop["round_trip_ms"]["p50"] > 0
    assert {"decode", "detect", "classify"} <= set(run["throughput"]["stage_ms_mean"])
    assert run["worker_peak_rss_mib"] > 0
    assert "onnx" in res.output and "frames/s" in res.output
    md = out.with_suffix(".md").read_text()
    assert "| onnx | throughput | 6 |" in md and "| onnx | closed_loop | 3 |" in md
    assert report["command"].startswith("moodstream ")
