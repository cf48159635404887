"""The rule behind test_summary_pictures_clash.py (worker/own_outputs.py): a file named as one of this
command's outputs beside its summary or page is its own only where it says so: moodstream's mark in a
picture or timeline (a JPEG's comment, a PNG's text: the image itself unchanged), a clip its page
lists, or nothing to lose (no file, an empty one). Anything else stays an input and is never written over."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodstream.worker.analyze import this_run_writes
from moodstream.worker.annotate import OWN_MARK, with_mark, write_image
from moodstream.worker.own_outputs import expand_inputs, ours
from moodstream.worker.report import clips_on_page, render


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_the_mark_is_in_the_file_s_first_bytes_and_leaves_the_image_as_it_was(tmp_path, ext):
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    ok, plain = cv2.imencode(ext, image)
    marked = with_mark(plain.tobytes())
    assert OWN_MARK in marked[:200] and OWN_MARK not in plain.tobytes()
    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731
    assert (decode(marked) == decode(plain.tobytes())).all()
    assert write_image(tmp_path / f"a{ext}", image, mark=True) is None and ours(tmp_path / f"a{ext}")
    assert write_image(tmp_path / f"b{ext}", image) is None and not ours(tmp_path / f"b{ext}")


def test_a_file_is_ours_only_where_it_says_so(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    write_image(tmp_path / "mine.jpg", image)  # as a user's photo: no mark
    write_image(tmp_path / "marked.jpg", image, mark=True)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()
    os.symlink(tmp_path / "mine.jpg", tmp_path / "link.jpg")
    assert ours(tmp_path / "none.jpg") and ours(tmp_path / "empty.jpg") and ours(tmp_path / "marked.jpg")
    assert not ours(tmp_path / "mine.jpg") and not ours(tmp_path / "folder.jpg") and not ours(tmp_path / "link.jpg")
    # a link is never ours, whatever it leads to: one that leads nowhere was "nothing there", and the picture
    # was written through it, where the link pointed (outside the folder)
    os.symlink(tmp_path / "elsewhere" / "x.jpg", tmp_path / "dangling.jpg")
    os.symlink(tmp_path / "marked.jpg", tmp_path / "to-marked.jpg")
    assert not ours(tmp_path / "dangling.jpg") and not ours(tmp_path / "to-marked.jpg")
    (tmp_path / "page-clip.webm").write_bytes(b"\x1a\x45\xdf\xa3 a video")
    assert not ours(tmp_path / "page-clip.webm") and ours(tmp_path / "page-clip.webm", frozenset({"page-clip.webm"}))


def test_clips_on_page_are_the_ones_the_page_lists(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(render({"videos": [{"video": "page-clip.webm"}, {"video": "page-clip-2.webm"}], "photos": []},
                           title="t"))
    assert clips_on_page(page) == {"page-clip.webm", "page-clip-2.webm"}
    for other in (b"", b"<html>another page</html>", b"\xff\xd8 a photo"):
        page.write_bytes(other)
        assert clips_on_page(page) == frozenset()
    assert clips_on_page(tmp_path / "none.html") == frozenset()


def test_look_alikes_beside_the_outputs_are_left_out_only_where_they_are_ours(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("street.jpg", "people-street-t1.jpg", "people-street.png"):  # the user's: no mark
        write_image(tmp_path / name, image)
    for name in ("people-street-2-t0.jpg", "people-street-2.png"):  # a run before's: marked
        write_image(tmp_path / name, image, mark=True)
    (tmp_path / "people-street-t0.jpg").write_bytes(b"")  # nothing to lose
    for name in ("clip.mp4", "page-clip.webm", "page-clip-2.webm"):
        (tmp_path / name).write_bytes(b"\x1a\x45\xdf\xa3 a video")
    (tmp_path / "page.html").write_text(render({"videos": [{"video": "page-clip-2.webm"}], "photos": []}, title="t"))
    kept = expand_inputs([str(tmp_path)], this_run_writes(None, tmp_path / "people.json", tmp_path / "page.html"),
                         "analyze")
    assert sorted(Path(k).name for k in kept) == ["clip.mp4", "page-clip.webm", "people-street-t1.jpg",
                                                  "people-street.png", "street.jpg"]


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_pictures_an_earlier_version_wrote_are_ours_where_its_summary_lists_them(tmp_path, kind):
    # pictures written before the mark (an earlier moodstream) were read as photos on a rerun: faces of
    # faces, counted as people; the summary beside them names them, which says they are the command's
    image = np.zeros((8, 8, 3), np.uint8)
    write_image(tmp_path / "street.jpg", image)
    for name in ("s-street-t0.jpg", "s-street-t1.jpg", "s-street.png"):  # no mark: an earlier version's
        write_image(tmp_path / name, image)
    tracks = [{"source": str(tmp_path / "street.jpg"), "track_id": 0, "thumbnail": "s-street-t0.jpg"}]
    if kind == "json":
        (tmp_path / "s.json").write_text(json.dumps({"videos": [{"timeline": "s-street.png"}], "tracks": tracks}))
        expected = ["s-street-t1.jpg", "street.jpg"]  # t1 is named by no track: a user's
    else:
        (tmp_path / "s.csv").write_text("source,track_id,thumbnail\n" + f"{tracks[0]['source']},0,s-street-t0.jpg\n")
        expected = ["s-street-t1.jpg", "s-street.png", "street.jpg"]  # a CSV names no timeline
    kept = expand_inputs([str(tmp_path)], this_run_writes(None, tmp_path / f"s.{kind}", None), "analyze")
    assert sorted(Path(k).name for k in kept) == expected
