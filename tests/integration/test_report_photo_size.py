"""The report page labelled a photo read at reduced size (a JPEG over ``max_pixels``, read at 1/2 by
libjpeg) with its record's ``size``, the pixels it was read at: a 12000 x 6750 photo said "6000x3375"
on its card. Now the page's ``size`` is the photo's own, its entry has the record's ``scale`` and the
size it was read at (``read_size``: its faces' boxes are in those pixels), as its record says.

The limit is scaled down with the photo, as tests/integration/test_big_photo.py does: samples/street.jpg
(960 x 540, 518,400 pixels) under a max_pixels of 200,000 is read at 1/2 (480 x 270)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import moodstream
from moodstream.cli import cli
from tests.support.orientation import exif, jpeg_with, stored

STREET = Path(moodstream.__file__).resolve().parent / "samples" / "street.jpg"
LIMIT = "200000"


def page_data(page: Path) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page.read_text(encoding="utf-8"), re.S).group(1))


@pytest.fixture
def photos(tmp_path) -> Path:
    """street.jpg as it is (960 x 540); enlarged by a pixel each way (961 x 541: libjpeg reads an odd
    side at 1/2 rounded up, 481 x 271, which doubled is not the photo's size); and that one turned upright
    as a phone's portrait (541 x 961), stored on its side with EXIF orientation 6."""
    folder = tmp_path / "photos"
    folder.mkdir()
    bgr = cv2.imread(str(STREET))
    (folder / "a_even.jpg").write_bytes(STREET.read_bytes())
    odd = cv2.resize(bgr, (961, 541), interpolation=cv2.INTER_CUBIC)
    (folder / "b_odd.jpg").write_bytes(cv2.imencode(".jpg", odd, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    portrait = np.ascontiguousarray(np.rot90(odd))  # (961, 541): upright, taller than wide
    on_side = cv2.imencode(".jpg", stored(portrait, 6), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    (folder / "c_turned.jpg").write_bytes(jpeg_with(on_side, exif(6)))
    return folder


def test_the_page_states_the_size_of_a_photo_read_at_half_size(photos, tmp_path):
    page = tmp_path / "r.html"
    ran = CliRunner().invoke(cli, ["analyze", str(photos), "--device", "cpu", "--report", str(page)],
                             env={"MOODSTREAM_MAX_PIXELS": LIMIT})
    assert ran.exit_code == 0, ran.output
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [(r["size"], r["scale"]) for r in records] == [([480, 270], 0.5), ([481, 271], 0.5), ([271, 481], 0.5)]
    shown = page_data(page)["photos"]
    assert [Path(p["source"]).name for p in shown] == ["a_even.jpg", "b_odd.jpg", "c_turned.jpg"]
    assert [p["size"] for p in shown] == [[960, 540], [961, 541], [541, 961]]  # the photos', not the pixels read
    for photo, record in zip(shown, records):
        assert photo["scale"] == record["scale"] == 0.5 and photo["read_size"] == record["size"]
        assert [f["box"] for f in photo["faces"]] == [pytest.approx(f["box"], abs=0.06) for f in record["faces"]]


def test_a_photo_read_whole_has_no_scale_on_the_page(tmp_path):
    page = tmp_path / "r.html"
    ran = CliRunner().invoke(cli, ["analyze", str(STREET), "--device", "cpu", "--report", str(page)],
                             env={"MOODSTREAM_MAX_PIXELS": None})
    assert ran.exit_code == 0, ran.output
    (photo,) = page_data(page)["photos"]
    assert photo["size"] == [960, 540] and "scale" not in photo and "read_size" not in photo
