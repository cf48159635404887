"""A folder's files without any extension (a web app's downloads named by hash, `3f2a9c`; a camera's
`IMG0001`): named directly they are read by their first bytes (an image or a video, whatever the
name), but in a folder they were left out by their names, said only at -v: "1 frame, 0 errors" for a
folder of three photos and a clip. Now such a file is told by its first bytes there too; one that is
neither (notes, a README) stays out, as a `.txt` does."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from moodstream.producer.sources import media_files
from moodstream.shared.media import expand_paths, iter_frames

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "samples" / "audience.jpg"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"


def folder_of(tmp_path: Path) -> Path:
    shutil.copy(PHOTO, tmp_path / "a.jpg")
    shutil.copy(PHOTO, tmp_path / "3f2a9c")
    shutil.copy(CLIP, tmp_path / "clip0")
    (tmp_path / "README").write_text("photos of the event\n")
    (tmp_path / "notes.txt").write_text("more\n")
    return tmp_path


def test_files_without_an_extension_are_told_by_their_bytes(tmp_path, caplog):
    folder = folder_of(tmp_path)
    with caplog.at_level(logging.INFO, logger="moodstream.shared.media"):
        found = list(expand_paths([str(folder)]))
    assert found == [str(folder / n) for n in ("3f2a9c", "a.jpg", "clip0")]
    assert "2 files left out" in caplog.text and "README" in caplog.text, caplog.text
    items = list(iter_frames([str(folder)], max_frames=2))
    assert [(Path(i.source).name, i.error) for i in items] == [
        ("3f2a9c", None), ("a.jpg", None), ("clip0", None), ("clip0", None)]


def test_the_expander_lists_them_too(tmp_path):
    folder = folder_of(tmp_path)
    assert [Path(p).name for p, _ in media_files(str(folder), str(folder))] == ["3f2a9c", "a.jpg", "clip0"]


def test_the_expander_does_not_read_a_link_that_leads_out_to_tell_it(tmp_path, monkeypatch):
    """A folder job's link to a file outside the media root is refused unopened (open_inside); telling a
    bare name by its bytes must not read it first."""
    import moodstream.shared.media as media

    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    shutil.copy(PHOTO, outside / "secret")
    shutil.copy(PHOTO, root / "inside")
    (root / "link").symlink_to(outside / "secret")
    (root / "clip.ts").symlink_to(outside / "secret")
    read: list[str] = []
    told = media.told_by_bytes
    monkeypatch.setattr(media, "told_by_bytes", lambda p: read.append(Path(p).name) or told(p))
    listed = [(Path(p).name, e) for p, e in media_files(str(root), str(root))]
    assert read == ["inside"]
    assert listed == [("clip.ts", None), ("inside", None)]  # the .ts by its name: refused when opened
