"""Photos under the other names their makers give them. Chrome and Edge on Windows save a web page's
JPEG as ``.jfif`` ("Save image as"), older Windows software as ``.jpe`` / ``.jif`` / ``.jfi``; a
Canon, Sony or Fujifilm camera saves its HEIF photos as ``.HIF``. In a folder each was left out without
a word (at -v only: "not images or videos by their names"); a folder of them was "no images or videos".
A JPEG XL photo (``.jxl``) named directly was "not an image", which it is: it is refused as JPEG XL."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.errors import BadInputError
from moodstream.shared.formats import sniff_format
from moodstream.shared.media import decode_image, expand_paths, iter_frames

STREET = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"
LIMIT = 50_000_000
JPEG_NAMES = ["a.jfif", "b.JPE", "c.jif", "d.jfi"]


def test_a_folder_of_jfif_and_jpe_photos_is_read(tmp_path):
    for name in JPEG_NAMES:
        (tmp_path / name).write_bytes(STREET.read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    listed = [Path(p).name for p in expand_paths([str(tmp_path)])]
    assert listed == JPEG_NAMES
    items = [i for i in iter_frames([str(tmp_path / n) for n in listed])]
    assert [i.error for i in items] == [None] * 4 and all(i.decoded(LIMIT).shape == (540, 960, 3) for i in items)


def test_analyze_finds_the_faces_of_a_jfif_in_a_folder(tmp_path):
    (tmp_path / "saved from chrome.jfif").write_bytes(STREET.read_bytes())
    (tmp_path / "street.jpg").write_bytes(STREET.read_bytes())
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [Path(r["source"]).name for r in records] == ["saved from chrome.jfif", "street.jpg"]
    assert len(records[0]["faces"]) == len(records[1]["faces"]) >= 3


def test_a_cameras_hif_is_read_as_heif(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif (the cpu and worker installs' HEIF decoder)")
    from PIL import Image

    out = io.BytesIO()
    pillow_heif.from_pillow(Image.open(STREET).convert("RGB")).save(out, format="HEIF", quality=90)
    (tmp_path / "IMG_0001.HIF").write_bytes(out.getvalue())
    listed = list(expand_paths([str(tmp_path)]))
    assert [Path(p).name for p in listed] == ["IMG_0001.HIF"]
    item = next(iter_frames(listed))
    assert item.error is None and item.decoded(LIMIT).shape == (540, 960, 3)


JXL_CODESTREAM = b"\xff\x0a" + bytes(62)
JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00\x00\x00\x14ftypjxl \x00\x00\x00\x00jxl " + bytes(32)


@pytest.mark.parametrize("data", [JXL_CODESTREAM, JXL_CONTAINER], ids=["codestream", "container"])
def test_a_jpeg_xl_photo_is_refused_as_jpeg_xl(data):
    assert sniff_format(data) == "jxl"
    with pytest.raises(BadInputError) as caught:
        decode_image(data, LIMIT)
    assert caught.value.reason == "unsupported" and "JPEG XL" in str(caught.value)
    assert "not an image" not in str(caught.value)
