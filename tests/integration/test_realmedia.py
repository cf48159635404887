"""RealMedia (`.rm`, `.rmvb`): the video files of the 2000s that archives and old downloads still hold.
OpenCV's FFmpeg reads them, but a `.rm` named was "unreadable: not an image", in a folder left out, and on
stdin not told. A video now, by its names and by its `.RMF` header. The file is written here by OpenCV's
FFmpeg (RealVideo 2)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import pytest

from moodstream.shared.containers import sniff_video
from moodstream.shared.media import expand_paths, iter_frames, piped_items

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    cap = cv2.VideoCapture(str(CLIP))
    writer = cv2.VideoWriter(str(folder / "made.rm"), cv2.VideoWriter_fourcc(*"RV20"), 25.0, (640, 360))
    if not writer.isOpened():
        pytest.skip("this OpenCV's FFmpeg writes no RealVideo 2")
    for _ in range(10):
        writer.write(cap.read()[1])
    writer.release()
    data = (folder / "made.rm").read_bytes()
    (folder / "made.rm").unlink()
    (folder / "episode01.rm").write_bytes(data)
    (folder / "episode02.RMVB").write_bytes(data)
    return folder


def test_a_folder_of_realmedia_is_read(archive):
    listed = list(expand_paths([str(archive)]))
    assert [Path(p).name for p in listed] == ["episode01.rm", "episode02.RMVB"]
    for path in listed:
        items = list(iter_frames([path]))
        assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(10)], items[-1].error
        assert [i.timestamp_s for i in items] == pytest.approx([k * 0.04 for k in range(10)])


def test_realmedia_on_stdin_is_told_by_its_header(archive):
    data = (archive / "episode01.rm").read_bytes()
    assert sniff_video(data[:16]) == ".rm"
    assert [i.error for i in piped_items("-", io.BytesIO(data))] == [None] * 10
