"""A folder tree deeper than Python's recursion limit (1,000): `moodstream analyze deep/` ended in a
RecursionError traceback from os.walk (recursive on Python 3.11), and so did the expander's walk of
a folder job (`producer.sources.media_files`, its own recursive generator) and `train --data` on a
folder dataset. A user's archive is seldom that deep, but a folder job is anyone's upload. Each walk
is a loop over a stack now: the image at the bottom is found, and the order is as before; and
`--annotate OUT`, which keeps a folder's sub-folders, makes them a folder at a time (pathlib's
mkdir(parents=True) recursed too)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from moodstream.producer.sources import media_files
from moodstream.shared.media import expand_paths, walk_once

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "samples" / "audience.jpg"
DEPTH = 400  # past the recursion limit the fixture sets: HEADROOM frames more than the test's own
HEADROOM = 250  # (a tree past the default 1,000 is the same failure, 1,100 levels as tried by hand, but
# each walk asks every folder's real path: quadratic in the depth, 10 s a walk at 1,100 levels)


@pytest.fixture
def deep(tmp_path) -> Iterator[tuple[Path, Path]]:
    """tmp_path/deep/a/a/.../a/x.jpg, DEPTH folders down, under a recursion limit HEADROOM frames above
    the test's; made and removed a folder at a time (Path.mkdir(parents=True) and shutil.rmtree
    recurse too)."""
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + HEADROOM)
    top = tmp_path / "deep"
    folders = [top]
    for _ in range(DEPTH):
        folders.append(folders[-1] / "a")
    for folder in folders:
        folder.mkdir()
    shutil.copy(PHOTO, folders[-1] / "x.jpg")
    shutil.copy(PHOTO, top / "first.jpg")
    yield top, folders[-1] / "x.jpg"
    (folders[-1] / "x.jpg").unlink()
    (top / "first.jpg").unlink()
    for folder in reversed(folders):
        folder.rmdir()
    sys.setrecursionlimit(limit)


def test_analyze_finds_the_photo_at_the_bottom(deep):
    top, photo = deep
    assert list(expand_paths([str(top)])) == [str(photo), str(top / "first.jpg")]


def test_the_expander_finds_the_photo_at_the_bottom(deep):
    top, photo = deep
    assert [(p, e) for p, e in media_files(str(top), str(top))] == [(str(photo), None), (str(top / "first.jpg"), None)]


def test_a_folder_dataset_finds_the_face_at_the_bottom(deep):
    from moodstream.trainer.data import _image_files

    top, photo = deep
    assert _image_files(top) == sorted([photo, top / "first.jpg"])


def remove_tree(top: Path) -> None:
    """shutil.rmtree, a folder at a time (it recurses on Python 3.11 too)."""
    folders, todo = [], [str(top)]
    while todo:
        folders.append(todo.pop())
        with os.scandir(folders[-1]) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                else:
                    os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


def test_the_annotated_copy_keeps_its_sub_folders_however_deep(deep, tmp_path):
    from click.testing import CliRunner

    from moodstream.worker.analyze import analyze_cmd

    top, photo = deep
    out = tmp_path / "ann"
    try:
        result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", "--detector", "none", str(top),
                                                  "--annotate", str(out)])
        assert result.exit_code == 0, (result.output, result.exception)
        assert (out / photo.relative_to(top)).is_file() and (out / "first.jpg").is_file()
    finally:
        if out.exists():
            remove_tree(out)


def test_walk_once_keeps_os_walk_s_order_and_its_pruning(tmp_path):
    """Top-down, each folder before the folders in it, in the order os.walk gives them; a folder
    reached twice through links is walked once."""
    for d in ("b/c", "b/d/e", "f"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "b" / "d" / "e" / "g.jpg").write_bytes(b"x")
    (tmp_path / "f" / "again").symlink_to(tmp_path / "b")
    ours = [(root, sorted(files)) for root, files in walk_once(tmp_path)]
    theirs, seen = [], set()
    for root, dirs, files in os.walk(tmp_path, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        theirs.append((root, sorted(files)))
    assert ours == theirs
    assert len(ours) == 6  # tmp_path, b, b/c, b/d, b/d/e, f: f/again is b again


def test_a_folder_that_cannot_be_listed_is_told_as_os_walk_tells_it(tmp_path):
    told: list[OSError] = []
    missing = tmp_path / "gone"
    assert list(walk_once(missing, onerror=told.append)) == []
    assert len(told) == 1 and told[0].filename == str(missing)
