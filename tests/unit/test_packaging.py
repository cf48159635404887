"""The built wheel carries what runs need without a checkout: the shipped
emotion weights, the box calibration and the sample clip `moodstream up` plays."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_weights_calibration_and_samples(tmp_path):
    try:
        import setuptools  # noqa: F401  (the build backend, used without isolation: no download)
    except ImportError:
        pytest.skip("setuptools is not installed in this environment")
    # build from a clean copy: an in-tree build/ folder would hide files that no longer get packaged
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "runs", "out", ".whl", "*.egg-info", "tests", "docs", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("moodstream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("shared/weights/emotion.pt", "worker/data/box_calibration.json",
                   "moodstream/samples/hamilton_clip.mp4", "moodstream/samples/ATTRIBUTION.md"):
        assert needed in names, f"{needed} missing from {wheel.name}"
    assert not any(n.startswith("tests/") for n in names)
