"""The rule that leaves a command's own outputs out of the folders it reads (worker/own_outputs.py):
exactly the names its writers give, not a user's file that merely starts like one, and one
resolution per file for a folder of thousands."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from moodstream.worker.analyze import this_run_writes
from moodstream.worker.own_outputs import Output, expand_inputs

from test_many_inputs import LineCount


def make(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def names(specs: list[str], folder: Path) -> list[str]:
    return sorted(str(Path(s).relative_to(folder)) for s in specs)


def test_the_outputs_written_beside_a_summary_and_a_report_are_left_out_and_a_user_s_look_alikes_kept(tmp_path):
    users = ["street.jpg", "clip.mp4", "scan.tif", "a-b.jpg", "people-beach.jpg", "people-street-edit.jpg",
             "people-street.JPG", "people-street-t0.jpeg", "page-photos.jpg", "sub/people-street.png",
             "people-photos/1.jpg"]
    ours = ["people-street-t0.jpg", "people-street.png", "people-street-2-t3.jpg", "people-street-2.png",
            "people-scan-page2-t1.jpg", "people-scan-page2-3.png", "people-a-b-t0.jpg", "page-clip.webm",
            "page-clip-2.webm", "page-photos/street.jpg", "page-photos/sub/x.png", "ann/street.jpg",
            "people-people-street-t0-t0.jpg"]  # a picture of a picture, by a run before this rule
    make(tmp_path, *users, *ours)
    outputs = this_run_writes(tmp_path / "ann", tmp_path / "people.json", tmp_path / "page.html")
    kept = expand_inputs([str(tmp_path)], outputs, "analyze")
    assert names(kept, tmp_path) == sorted(users)
    # named directly, they are read: a file, a folder inside an output folder
    direct = [str(tmp_path / "people-street.png"), str(tmp_path / "page-photos")]
    assert names(expand_inputs(direct, outputs, "analyze"), tmp_path) == [
        "page-photos/street.jpg", "page-photos/sub/x.png", "people-street.png"]
    # only the folder's names count: without clip.mp4 among the inputs its clip is a video like any other
    assert names(expand_inputs([str(tmp_path / "page-clip.webm")], outputs, "analyze"), tmp_path) == [
        "page-clip.webm"]


def test_without_outputs_nothing_is_left_out_and_a_summary_named_as_an_input_stays_one(tmp_path):
    make(tmp_path, "street.jpg", "people-street.png", "people.jpg")
    assert len(expand_inputs([str(tmp_path)], [], "analyze")) == 3
    # --summary people.jpg: still an input, so refused as an output (the photo is not written over)
    kept = expand_inputs([str(tmp_path)], [Output("--summary", tmp_path / "people.jpg")], "analyze")
    assert names(kept, tmp_path) == ["people.jpg", "street.jpg"]


def test_pictures_beside_a_linked_summary_are_found_beside_the_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    photos = tmp_path / "photos"
    make(elsewhere, "s.json")
    make(photos, "street.jpg", "people-street.png")
    os.symlink(elsewhere / "s.json", photos / "people.json")
    kept = expand_inputs([str(photos)], [Output("--summary", photos / "people.json")], "up")
    assert names(kept, photos) == ["street.jpg"]


def test_what_was_left_out_is_said_once(tmp_path, caplog):
    make(tmp_path, "street.jpg", "people-street.png", "people-street-t0.jpg", "ann/street.jpg", "sub/x.jpg")
    caplog.set_level(logging.INFO, logger="moodstream.worker.own_outputs")
    expand_inputs([str(tmp_path), str(tmp_path / "sub")],
                  this_run_writes(tmp_path / "ann", tmp_path / "people.json", None), "analyze")
    said = [r.getMessage() for r in caplog.records if "outputs" in r.getMessage()]
    assert said == ["analyze: left out 3 files of the input folders (this command's outputs: --annotate 1, "
                    "--summary 2); named directly, they are read"], said


def test_each_file_of_a_large_folder_is_resolved_once_at_a_cost_that_does_not_grow(tmp_path, monkeypatch):
    def folder(n: int) -> Path:
        top = tmp_path / f"f{n}"
        top.mkdir()
        for i in range(n):  # every photo's picture and timeline beside the summary: the rule's slowest path
            make(top, f"p{i:05d}-x.jpg", f"s-p{i:05d}-x-t0.jpg", f"s-p{i:05d}-x.png")
        return top

    resolved = []
    realpath = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, **kw: resolved.append(p) or realpath(p, **kw))

    def lines_per_file(top: Path, n: int) -> float:
        resolved.clear()
        with LineCount() as count:
            kept = expand_inputs([str(top)], this_run_writes(top / "ann", top / "s.json", top / "r.html"), "analyze")
        assert len(kept) == n
        assert len(resolved) <= 3 * n + 10, len(resolved)  # each file once; the folder and the outputs: a few
        return count.lines / (3 * n)

    small, large = lines_per_file(folder(200), 200), lines_per_file(folder(2000), 2000)
    assert large < 1.5 * small, (small, large)
