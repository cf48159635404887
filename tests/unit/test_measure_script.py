"""deploy/cpu/measure.sh, issue 26's measurements in one call: its help, and bad arguments
refused with one line and exit 2 before anything is written or timed (the measuring itself
is minutes of benches: it runs by hand on each new CPU kind)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "cpu" / "measure.sh"


def run(*args: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(out)})


def test_help_names_every_file_it_writes(tmp_path):
    res = run("--help", out=tmp_path / "out")
    assert res.returncode == 0
    for name in ("throughput_run1..3.json", "throughput_repeats9.json", "int8_parity.json", "bf16_parity.json",
                 "profile.json", "parity_tests.log", "summary.md", "--frames 8 --json"):
        assert name in res.stdout
    assert not (tmp_path / "out").exists()


def test_a_folder_without_the_data_is_one_line_and_nothing_is_written(tmp_path):
    (tmp_path / "videos").mkdir()
    res = run(str(tmp_path), out=tmp_path / "out")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "street_1080p.mp4 not found: give the shared data folder" in res.stderr
    assert not (tmp_path / "out").exists()
    res = run(str(tmp_path), "extra", out=tmp_path / "out")
    assert res.returncode == 2 and "one argument at most" in res.stderr


def _summary_step() -> str:
    """The Python of measure.sh's summary step (its here-document), as the script runs it."""
    text = SCRIPT.read_text()
    start = text.index('"$PY" - "$OUT" "$kind" <<\'EOF\'')
    body = text[text.index("\n", start) + 1:]
    return body[:body.index("\nEOF\n")]


def test_the_summary_says_whether_each_rerun_margin_holds_on_this_cpu(tmp_path):
    import json
    import sys

    video = {"cpu": "Some CPU", "backend": "openvino", "precision": "auto", "threads": 1, "ratio": 4.2,
             "box_match_rate": 1.0, "box_match_rate_50": 1.0, "emotion_agreement": 1.0, "area_kernels": "numpy"}
    (tmp_path / "throughput_run1.json").write_text(json.dumps({"a.mp4": video}))
    moves = {"ferplus_valid": 0.09, "ferplus_test": 0.05}
    (tmp_path / "int8_parity.json").write_text(json.dumps(
        {"margin": {"confirm_margin": 0.08, "largest_pair_change": moves, "holds": False}}))
    (tmp_path / "bf16_parity.json").write_text(json.dumps({"emotion": {}}))  # an older bench: no margin
    script = tmp_path / "summary.py"
    script.write_text(_summary_step())
    res = subprocess.run([sys.executable, str(script), str(tmp_path), "kind"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "| a.mp4 | 4.20x | **4.20x** | - | 100% / 100% | 100.0% | met |" in summary
    assert "pyramid and crops numpy (the compiled module not built: reinstall where gcc is); " \
           "first layers compiled: none." in summary
    assert "int8 rerun margin 0.08: DOES NOT HOLD (largest move of two emotions' difference: ferplus_valid 0.09, " \
           "ferplus_test 0.05)" in summary
    assert "bf16 rerun margin" not in summary
