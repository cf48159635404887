"""A link in a folder that leads nowhere: `b.jpg -> /mnt/old/b.jpg` (the disk unmounted, the photo
moved), or a chain of links past the kernel's 40. `moodstream analyze photos/` (and `produce`, `up`)
left such a photo out without a word: "1 frame, 0 errors", the user told every photo was read. It is
an error record in its place now, saying where the link leads. The expander, which opens what its
folder job lists, asked the real path of a chain of 1,100 links first: Python 3.11's realpath
recurses a link a level, a RecursionError out of the job; now the file is refused in its place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from moodstream.producer.sources import file_items
from moodstream.shared.media import expand_paths, iter_frames
from moodstream.worker.analyze import analyze_cmd

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "samples" / "audience.jpg"


def chain(folder: Path, name: str, length: int) -> Path:
    """``name`` -> link1 -> ... -> a photo: ``length`` links."""
    shutil.copy(PHOTO, folder / "real.jpg")
    previous = "real.jpg"
    for i in range(1, length):
        os.symlink(previous, folder / f".link{i:04d}")
        previous = f".link{i:04d}"
    os.symlink(previous, folder / name)
    return folder / name


def test_a_link_to_nothing_is_an_error_in_its_place(tmp_path):
    shutil.copy(PHOTO, tmp_path / "a.jpg")
    os.symlink("/mnt/old/b.jpg", tmp_path / "b.jpg")
    shutil.copy(PHOTO, tmp_path / "c.jpg")
    assert list(expand_paths([str(tmp_path)])) == [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    items = list(iter_frames([str(tmp_path)]))
    assert [i.source for i in items] == [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert items[0].error is None and items[2].error is None
    error = items[1].error
    assert error is not None and error.reason == "not_found"
    assert error.detail == f"{tmp_path / 'b.jpg'} is a link to /mnt/old/b.jpg, which does not exist"


def test_a_chain_of_links_past_the_kernel_s_limit_is_an_error_in_its_place(tmp_path):
    chain(tmp_path, "b.jpg", 50)
    items = [i for i in iter_frames([str(tmp_path)]) if i.source.endswith("b.jpg")]
    assert len(items) == 1 and items[0].error is not None
    assert items[0].error.reason == "unreadable" and "too many levels of symbolic links" in items[0].error.detail


def test_analyze_counts_the_photo_it_could_not_read(tmp_path):
    shutil.copy(PHOTO, tmp_path / "a.jpg")
    os.symlink("/mnt/old/b.jpg", tmp_path / "b.jpg")
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", "--detector", "none", str(tmp_path)])
    assert result.exit_code == 1, (result.output, result.exception)
    assert "1 frame, 1 face, 1 error" in result.stderr, result.stderr
    assert "is a link to /mnt/old/b.jpg, which does not exist" in result.stdout


def test_a_fifo_in_a_folder_is_still_left_out_unread(tmp_path):
    """(A FIFO named like a photo would block the run forever if opened.)"""
    shutil.copy(PHOTO, tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "b.jpg")
    assert list(expand_paths([str(tmp_path)])) == [str(tmp_path / "a.jpg")]


def test_the_expander_refuses_a_chain_of_1100_links_in_its_place(tmp_path):
    chain(tmp_path, "b.jpg", 1100)
    root = os.path.realpath(tmp_path)
    items = {Path(i.source).name: i for i in file_items(root, root)}
    assert items["real.jpg"].error is None
    assert items["b.jpg"].error is not None and items["b.jpg"].error.reason == "unreadable", items["b.jpg"].error
    assert "too many levels of symbolic links" in items["b.jpg"].error.detail
