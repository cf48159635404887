"""deploy/gpu/ferplus_pack.py: FER+ in carryable parts and back, image for image."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "gpu" / "ferplus_pack.py"
FIXTURE = ROOT / "tests" / "fixtures" / "ferplus"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parts")
    res = run("pack", str(FIXTURE), str(out), "--parts", "2")
    assert res.returncode == 0, res.stderr
    return out


def test_pack_unpack_gives_the_same_images_and_labels(parts, tmp_path):
    assert sorted(p.name for p in parts.iterdir()) == ["ferplus_part1of2.xz", "ferplus_part2of2.xz"]
    res = run("unpack", str(parts), str(tmp_path / "fer"))
    assert res.returncode == 0, res.stderr
    check = run("check", str(FIXTURE), str(tmp_path / "fer"))
    assert check.returncode == 0 and "identical" in check.stdout, check.stdout + check.stderr


def test_a_missing_part_is_one_line_not_a_half_dataset(parts, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "ferplus_part1of2.xz").write_bytes((parts / "ferplus_part1of2.xz").read_bytes())
    res = run("unpack", str(one), str(tmp_path / "fer"))
    assert res.returncode == 1 and "1 of 2 parts" in res.stderr
    assert not (tmp_path / "fer").exists()


def test_check_finds_a_changed_image(parts, tmp_path):
    import cv2

    run("unpack", str(parts), str(tmp_path / "fer"))
    victim = next((tmp_path / "fer" / "FER2013Test").glob("*.png"))
    img = cv2.imread(str(victim), cv2.IMREAD_GRAYSCALE)
    img[0, 0] ^= 1
    cv2.imwrite(str(victim), img)
    res = run("check", str(FIXTURE), str(tmp_path / "fer"))
    assert res.returncode == 1 and "differing or missing: 1 file(s)" in res.stdout


def test_a_file_that_is_no_part_is_refused(tmp_path):
    import lzma

    with lzma.open(tmp_path / "ferplus_part1of1.xz", "wb") as f:
        f.write(b"something else")
    res = run("unpack", str(tmp_path), str(tmp_path / "fer"))
    assert res.returncode == 1 and "not a FER+ part" in res.stderr
