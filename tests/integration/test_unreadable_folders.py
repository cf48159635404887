"""A folder that cannot be read (permission denied) was listed as empty: named alone, `analyze` and
`produce` said "no images or videos in X" (as if the user had named the wrong folder); beside other
inputs, or as a subfolder, its files were left out without a word and the run exited 0. Now it is said
as a missing file is, in its place among the inputs: an error record (`analyze`), a skipped input
(`produce`), "cannot read folder X: permission denied", the other inputs processed, exit 1 at the end
(as `find`, `du` and `cp -r` carry on past a folder they may not read and exit 1).

The commands run in a child that file permissions bind (tests/support/unprivileged.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from tests.support.procs import REPO, clean_env
from tests.support.unprivileged import unprivileged_prefix

STREET = REPO / "samples" / "street.jpg"


@pytest.fixture
def folders(tmp_path):
    """photos/ (street.jpg, and locked/ of mode 000 holding another photo), and shut/ of mode 000."""
    photos, shut = tmp_path / "photos", tmp_path / "shut"
    (photos / "locked").mkdir(parents=True)
    shut.mkdir()
    shutil.copy(STREET, photos / "street.jpg")
    shutil.copy(STREET, photos / "locked" / "inside.jpg")
    shutil.copy(STREET, shut / "inside.jpg")
    for folder in (photos / "locked", shut):
        os.chmod(folder, 0)
    yield photos, shut
    for folder in (photos / "locked", shut):
        os.chmod(folder, 0o755)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*unprivileged_prefix(), sys.executable, "-c", "from moodstream.cli import main; main()",
                           *args], cwd=REPO, env=clean_env(MOODSTREAM_DEVICE="cpu", **env), capture_output=True,
                          text=True, timeout=300)


def test_analyze_says_a_folder_it_cannot_read_and_analyses_the_rest(folders):
    photos, shut = folders
    ran = _run("analyze", str(photos), str(shut))
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert ran.returncode == 1, ran.stderr[-2000:]
    assert [r["source"] for r in records] == [str(photos / "locked"), str(photos / "street.jpg"), str(shut)]
    locked, street, shut_record = records
    assert street.get("error") is None and len(street["faces"]) == 5  # the readable photo, analysed
    for record, folder in ((locked, photos / "locked"), (shut_record, shut)):
        assert record["error"] == {"reason": "unreadable", "detail": f"cannot read folder {folder}: permission denied"}
    assert "analyze: 1 frame, 5 faces, 2 errors" in ran.stderr and "no images or videos" not in ran.stderr


def test_analyze_of_one_folder_it_cannot_read_says_so_not_no_images(folders):
    _, shut = folders
    ran = _run("analyze", str(shut), "--format", "table")
    assert ran.returncode == 1, ran.stderr[-2000:]
    assert f"ERROR unreadable: cannot read folder {shut}: permission denied" in ran.stdout, ran.stdout
    assert "no images or videos" not in ran.stderr, ran.stderr


def test_produce_says_a_folder_it_cannot_read_and_sends_the_rest(folders, redis_url):
    photos, shut = folders
    ran = _run("produce", str(photos), str(shut), MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    jobs = [json.loads(line) for line in ran.stdout.splitlines()]
    assert ran.returncode == 1, ran.stderr[-2000:]
    assert [j["source"] for j in jobs] == [str(photos / "street.jpg")]  # the readable photo, sent
    for folder in (photos / "locked", shut):
        assert f"producer: skipped {folder}: unreadable: cannot read folder {folder}: permission denied" \
            in ran.stderr, ran.stderr
    assert ran.stderr.splitlines()[-1] == (f"Error: 2 inputs failed: {photos / 'locked'} (unreadable), "
                                           f"{shut} (unreadable)"), ran.stderr


@pytest.mark.parametrize("lock", ["class", "inside"])
def test_train_refuses_a_dataset_with_a_folder_it_cannot_read(tmp_path, lock):
    """A class folder (or a folder inside one) that could not be listed was taken as holding nothing:
    `train` said "class folder holds no images", or trained on the rest of the class without a word.
    A dataset with a hole is refused, naming the folder (training on part of it is a different model)."""
    data = tmp_path / "data"
    for name in ("happy", "sad"):
        (data / name / "more").mkdir(parents=True)
        for i in range(2):
            shutil.copy(STREET, data / name / f"{i}.jpg")
            shutil.copy(STREET, data / name / "more" / f"{i}.jpg")
    locked = data / "sad" if lock == "class" else data / "sad" / "more"
    os.chmod(locked, 0)
    try:
        ran = _run("train", "--data", str(data), "--out", str(tmp_path / "o"), "--epochs", "1")
    finally:
        os.chmod(locked, 0o755)
    assert ran.returncode != 0 and "Traceback" not in ran.stderr, ran.stderr[-2000:]
    assert f"cannot read folder {locked}: permission denied" in ran.stderr, ran.stderr[-2000:]
    assert not (tmp_path / "o").exists()
