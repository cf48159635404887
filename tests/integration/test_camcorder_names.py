"""Home videos and TV recordings under the names their devices give them: a JVC Everio camcorder's
`.MOD` (MPEG program stream) and `.TOD` (MPEG transport stream), an HDV camcorder's `.m2t`, a set-top box's
or a DVB card's `.trp` / `.tp` (transport streams). Named directly each was read (by its bytes), but a
folder of them left every one out without a word (at -v only). They are listed now where their first bytes
are what the name says: a `.mod` is also an Amiga music module, and a `.tp` a template; those stay out,
as a TypeScript `.ts` does."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from moodstream.producer.sources import media_files
from moodstream.shared.media import expand_paths, iter_frames

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"
VIDEOS = ["MOV001.MOD", "MOV002.TOD", "REC0001.m2t", "news.trp", "film.tp"]


def write(path: Path, fourcc: str, suffix: str, frames: list) -> None:
    """The clip's ``frames`` written by OpenCV's FFmpeg in the container ``suffix`` names, saved as ``path``."""
    made = path.with_name(path.stem + "_made" + suffix)
    writer = cv2.VideoWriter(str(made), cv2.VideoWriter_fourcc(*fourcc), 30.0, (640, 360))
    for frame in frames:
        writer.write(frame)
    writer.release()
    made.rename(path)


@pytest.fixture(scope="module")
def camcorder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("everio")
    cap = cv2.VideoCapture(str(CLIP))
    frames = [cap.read()[1] for _ in range(20)]
    write(folder / "MOV001.MOD", "PIM1", ".mpg", frames)  # MPEG-1 in a program stream
    for name in VIDEOS[1:]:
        write(folder / name, "mp4v", ".ts", frames)  # MPEG-4 in a transport stream
    (folder / "song.mod").write_bytes(b"space debris".ljust(20, b"\0") + bytes(1060) + b"M.K." + bytes(64))
    (folder / "page.tp").write_text("<html>{{ title }}</html>\n")
    return folder


def test_a_camcorders_folder_lists_its_videos_and_not_the_namesakes(camcorder):
    listed = [Path(p).name for p in expand_paths([str(camcorder)])]
    assert listed == sorted(VIDEOS)
    root = str(camcorder.parent.resolve())
    assert sorted(Path(p).name for p, _ in media_files(str(camcorder), root)) == sorted(VIDEOS)  # the expander's


@pytest.mark.parametrize("name", VIDEOS)
def test_each_is_read_as_a_video(camcorder, name):
    items = list(iter_frames([str(camcorder / name)]))
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(20)], items[-1].error
    assert all(i.image.shape == (360, 640, 3) for i in items)
