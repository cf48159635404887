"""A Dahua recorder (DVR / NVR, and the many brands built on it) exports its clips as `.dav`: DHAV
packets (a 24-byte header, extensions naming the codec, size and rate, the H.264 / H.265 bytes, a `dhav`
trailer). OpenCV's FFmpeg reads them (its dhav demuxer, each frame at its own time), but a `.dav` named
was "unreadable: not an image", and in a folder left out. It is a video now, by its name and by its
first bytes (stdin, a bare name).

The file is built here packet by packet around HEVC that libheif's x265 wrote (tests/support/heif.py),
the way FFmpeg's libavformat/dhav.c reads it."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

import moodstream
from moodstream.producer.sources import media_files
from moodstream.shared.containers import sniff_video
from moodstream.shared.media import expand_paths, iter_frames, piped_items
from tests.support.heif import annex_b, hevc_picture

pytest.importorskip("pillow_heif", reason="pillow-heif (its x265 encoder writes the HEVC here)")

SIZE = (960, 544)  # a multiple of 8: a DHAV header's 0x80 extension gives it in eights


def dhav(frames: int, fps: int = 25) -> bytes:
    """A `.dav` of ``frames`` key frames (type 0xfd) of HEVC (codec 0x0c), ``fps`` a second, timed in ms."""
    picture = annex_b(*hevc_picture(SIZE, quality=80))
    when = (26 << 26) | (12 << 22) | (7 << 17) | (10 << 12)  # 2026-12-07 10:00:00, the recorder's clock
    out = b""
    for i in range(frames):
        ext = bytes([0x80, 0, SIZE[0] // 8, SIZE[1] // 8, 0x81, 0, 0x0C, fps])
        length = 24 + len(ext) + len(picture) + 8
        head = b"DHAV" + bytes([0xFD, 0, 0, 0]) + struct.pack("<IIIHBB", i, length, when, i * 1000 // fps, len(ext), 0)
        out += head + ext + picture + b"dhav" + struct.pack("<I", length)
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dahua")
    (folder / "ch01_20261207100000.dav").write_bytes(dhav(10))
    (folder / "player.exe.txt").write_text("the recorder's own player, as exports come with")
    return folder


def test_a_dav_export_is_a_video_with_its_frames_times(export):
    items = list(iter_frames([str(export / "ch01_20261207100000.dav")]))
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(10)], items[-1].error
    assert [i.timestamp_s for i in items] == pytest.approx([k * 0.04 for k in range(10)])
    assert all(i.image.shape == (SIZE[1], SIZE[0], 3) for i in items)


def test_a_folder_of_exports_lists_it(export):
    listed = [Path(p).name for p in expand_paths([str(export)])]
    assert listed == ["ch01_20261207100000.dav"]
    root = str(export.parent.resolve())
    assert [Path(p).name for p, _ in media_files(str(export), root)] == listed  # the expander's


def test_a_dav_on_stdin_or_with_no_name_is_told_by_its_bytes(export, tmp_path):
    data = (export / "ch01_20261207100000.dav").read_bytes()
    assert sniff_video(data[:16]) == ".dav" and sniff_video(b"DAHUA" + bytes(11)) == ".dav"
    assert sniff_video(b"DHAV" + bytes(12)) is None  # a packet type FFmpeg does not start on
    assert [i.error for i in piped_items("-", io.BytesIO(data))] == [None] * 10
    (tmp_path / "download").write_bytes(data)
    assert [i.error for i in iter_frames(list(expand_paths([str(tmp_path)])))] == [None] * 10


def test_its_faces_are_found(export):
    from moodstream.shared.settings import Settings

    records = list(moodstream.analyze(export / "ch01_20261207100000.dav", Settings.from_env(env={}, device="cpu")))
    assert len(records) == 10 and all(r.error is None for r in records)
    assert min(len(r.faces) for r in records) >= 3  # the sample photo's faces, in every frame
