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
