"""Motion-JPEG saved to a file or piped: JPEGs one after the other, as `rpicam-vid --codec mjpeg -o
cam.mjpeg`, `v4l2-ctl --stream-to`, `ffmpeg -f mjpeg` and an ESP32 camera write them, or an IP camera's
multipart stream saved by `curl -o cam.mjpg`. The first is a JPEG by its first bytes, so it was read as
one photo: a 10-frame recording gave one record and not a word about the other nine (and on stdin, the
same). The multipart dump was "not an image"; both names were left out of folders. They are videos now
(OpenCV's FFmpeg reads both, at its 25 frames/s: they carry no times), told by their bytes and names.

A JPEG that carries pictures of its own after its end stays a photo: a multi-picture JPEG (a 3D
camera's MPO, an Ultra HDR photo's gain map: an APP2 "MPF" segment lists them) and a Motion Photo (an
MP4 after the JPEG)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.containers import sniff_video
from moodstream.shared.media import expand_paths, iter_frames, piped_items
from tests.support.mjpeg import part, street_jpegs

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"


def multipart(jpegs: list[bytes]) -> bytes:
    return b"".join(part(j) for j in jpegs)


def read(paths: list[str]) -> list:
    return [i for p in expand_paths(paths) for i in iter_frames([p])]


def check_ten(items: list) -> None:
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(10)], items[-1:]
    assert [i.timestamp_s for i in items] == pytest.approx([k * 0.04 for k in range(10)])  # FFmpeg's 25 fps
    assert all(i.image.shape == (540, 960, 3) for i in items)
    assert len({i.image[::97, ::97].tobytes() for i in items}) == 10  # ten pictures, not one ten times


def test_a_motion_jpeg_recording_is_a_video(tmp_path):
    (tmp_path / "cam.mjpeg").write_bytes(b"".join(street_jpegs(10)))
    check_ten(read([str(tmp_path / "cam.mjpeg")]))


@pytest.mark.parametrize("name", ["cam.mjpg", "3f2a9c"])
def test_it_is_told_by_its_bytes_where_its_name_is_no_photos(tmp_path, name):
    (tmp_path / name).write_bytes(b"".join(street_jpegs(10)))
    check_ten(read([str(tmp_path)]))  # in a folder: listed (a bare name by its bytes), read as a video


def test_one_named_as_a_photo_is_its_first_picture(tmp_path):
    """FFmpeg reads a file named .jpg as one picture whatever follows, so it stays a photo, as before."""
    (tmp_path / "cam.jpg").write_bytes(b"".join(street_jpegs(10)))
    items = read([str(tmp_path / "cam.jpg")])
    assert [(i.frame, i.page, i.timestamp_s, i.error) for i in items] == [(0, 1, None, None)]


def test_a_motion_jpeg_pipe_is_a_video():
    """`rpicam-vid --codec mjpeg -o - | moodstream analyze -`."""
    items = list(piped_items("-", io.BytesIO(b"".join(street_jpegs(10)))))
    check_ten(items)
    assert {i.source for i in items} == {"-"}


def test_an_ip_cameras_multipart_stream_saved_to_a_file_is_a_video(tmp_path):
    data = multipart(street_jpegs(10))
    assert sniff_video(data[:4096]) == ".mjpg" and sniff_video(b"\r\n" + data[:4096]) == ".mjpg"
    (tmp_path / "cam.mjpg").write_bytes(data)
    check_ten(read([str(tmp_path / "cam.mjpg")]))
    check_ten(list(piped_items("-", io.BytesIO(data))))


def test_analyze_gives_every_frame_of_it(tmp_path):
    (tmp_path / "cam.mjpeg").write_bytes(b"".join(street_jpegs(10)))
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path / "cam.mjpeg")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["frame"] for r in records] == list(range(10)) and min(len(r["faces"]) for r in records) >= 3


def with_mpf(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP2 MPF segment after its SOI, as a multi-picture JPEG's first picture has
    (its index of the pictures after it; the entries' contents do not matter here)."""
    body = b"MPF\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + bytes(16)
    return jpeg[:2] + b"\xff\xe2" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


@pytest.mark.parametrize("after", ["mpf", "motion_photo"])
def test_a_photo_with_pictures_of_its_own_after_it_stays_one_photo(tmp_path, after):
    first, second = street_jpegs(2)
    data = with_mpf(first) + second if after == "mpf" else first + CLIP.read_bytes()
    (tmp_path / "PXL_20261207.jpg").write_bytes(data)
    items = read([str(tmp_path / "PXL_20261207.jpg")])
    assert [(i.frame, i.page, i.error) for i in items] == [(0, 1, None)]
    assert items[0].decoded(50_000_000).shape == (540, 960, 3)
    assert [(i.frame, i.error) for i in piped_items("-", io.BytesIO(data))] == [(0, None)]


def test_the_expander_reads_them_as_analyze_does(tmp_path):
    """The expander opens each file inside its media root and reads it through its descriptor
    (/proc/self/fd/N, a path with no extension): the file's own name decides, not that path's."""
    import os

    from moodstream.producer.sources import file_items

    (tmp_path / "cam.mjpeg").write_bytes(b"".join(street_jpegs(10)))
    (tmp_path / "cam.jpg").write_bytes(b"".join(street_jpegs(10)))
    by_name: dict[str, list] = {}
    for item in file_items(str(tmp_path), os.path.realpath(tmp_path)):
        by_name.setdefault(Path(item.source).name, []).append(item)
    check_ten(by_name["cam.mjpeg"])
    assert [(i.frame, i.page, i.error) for i in by_name["cam.jpg"]] == [(0, 1, None)]
