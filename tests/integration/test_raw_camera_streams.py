"""A security camera's recorder (DVR / NVR) exports a clip as a raw H.264 or H.265 stream, no container:
`cam1.h265`, `ch01.264`, `clip.hevc`. Named, each was "unreadable: not an image (no known image signature)";
in a folder, left out. OpenCV's FFmpeg reads them (at its 25 frames/s for a stream that says no rate), so they
are videos by those names now.

The stream is made here from HEVC that libheif's x265 encoder wrote for a HEIC of the sample photo (its
parameter sets and its one picture, as Annex B), the picture repeated: a stream of ten frames."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import moodstream
from moodstream.producer.sources import media_files
from moodstream.shared.containers import sniff_video
from moodstream.shared.media import expand_paths, iter_frames, piped_items
from tests.support.heif import annex_b, hevc_picture

pytest.importorskip("pillow_heif", reason="pillow-heif (its x265 encoder writes the HEVC here)")


@pytest.fixture(scope="module")
def recorder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nvr")
    stream = annex_b(*hevc_picture((960, 540), quality=80)) * 10  # its one picture, ten times
    for name in ("cam1.h265", "ch02.hevc", "ch03.265"):
        (folder / name).write_bytes(stream)
    (folder / "index.txt").write_text("channel list\n")
    return folder


def test_a_recorders_raw_streams_are_videos(recorder):
    for name in ("cam1.h265", "ch02.hevc", "ch03.265"):
        items = list(iter_frames([str(recorder / name)]))
        assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(10)], (name, items[-1].error)
        assert [i.timestamp_s for i in items] == pytest.approx([k / 25 for k in range(10)])  # FFmpeg's 25 fps
        assert all(i.image.shape == (540, 960, 3) for i in items)


def test_a_recorders_folder_lists_them(recorder, tmp_path):
    listed = sorted(Path(p).name for p in expand_paths([str(recorder)]))
    assert listed == ["cam1.h265", "ch02.hevc", "ch03.265"]
    root = str(recorder.parent.resolve())
    assert sorted(Path(p).name for p, _ in media_files(str(recorder), root)) == listed  # the expander's


def test_their_faces_are_found(recorder):
    from moodstream.shared.settings import Settings

    records = list(moodstream.analyze(recorder / "cam1.h265", Settings.from_env(env={}, device="cpu")))
    assert len(records) == 10 and all(r.error is None for r in records)
    assert min(len(r.faces) for r in records) >= 3  # the sample photo's faces, in every frame


def test_a_raw_stream_on_stdin_is_a_video(recorder):
    """`ssh nvr cat ch01.h265 | moodstream analyze -`: stdin has no name, and its bytes were told by
    container signatures alone: a raw stream was "unreadable: not an image". It is told by its first
    NAL unit now (a start code, then an H.265 VPS / SPS / PPS / AUD / SEI or an H.264 SPS / AUD / SEI)."""
    data = (recorder / "cam1.h265").read_bytes()
    items = list(piped_items("-", io.BytesIO(data)))
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(10)], items[-1].error
    assert all(i.source == "-" and i.image.shape == (540, 960, 3) for i in items)


def test_a_raw_stream_saved_without_a_name_is_a_video(recorder, tmp_path):
    """A recorder's web export saved by hash, no extension: told by its bytes as a container is."""
    (tmp_path / "3f2a9c").write_bytes((recorder / "ch02.hevc").read_bytes())
    listed = list(expand_paths([str(tmp_path)]))
    assert [Path(p).name for p in listed] == ["3f2a9c"]
    assert [i.error for i in iter_frames(listed)] == [None] * 10


H264_SPS = bytes.fromhex("00000001 6764001f acd9405005bb0110 0000030010000003 03c8f183 19a0".replace(" ", ""))


@pytest.mark.parametrize("head, kind", [
    (H264_SPS, ".h264"),  # High profile SPS first, as an encoder writes it
    (bytes.fromhex("0000000109f0") + H264_SPS, ".h264"),  # an access unit delimiter first, as a DVR's
    (bytes.fromhex("000001") + H264_SPS[4:], ".h264"),  # a three-byte start code
    (bytes.fromhex("00000001 06 05 10".replace(" ", "")) + bytes(16), ".h264"),  # an SEI first (user data)
    (bytes.fromhex("000000014001 0c01ffff").replace(b" ", b"") + bytes(16), ".hevc"),  # a VPS
    (bytes.fromhex("00000001 4601 50".replace(" ", "")) + bytes(16), ".hevc"),  # an AUD
    (bytes.fromhex("00000001 0000 0000".replace(" ", "")) + bytes(16), None),  # a start code, then no NAL unit
    (bytes.fromhex("00000001 6700 1f".replace(" ", "")) + bytes(16), None),  # an "SPS" of no profile there is
    (bytes.fromhex("00000001 8764 001f".replace(" ", "")) + bytes(16), None),  # the forbidden bit set
    (bytes.fromhex("000001ba") + bytes(16), ".mpg"),  # an MPEG program stream's pack header stays one
    (bytes.fromhex("000001b3") + bytes(16), None),  # MPEG-2 video is not taken for H.264
], ids=["h264-sps", "h264-aud", "h264-short-start", "h264-sei", "hevc-vps", "hevc-aud", "no-nal", "no-profile",
        "forbidden-bit", "mpeg-ps", "mpeg2-video"])
def test_raw_streams_are_told_by_their_first_nal_unit(head, kind):
    assert sniff_video(head) == kind
