"""Every format OpenCV decodes, as a decompression bomb: refused before any pixel
is allocated (issue 12, item 3). No Redis here; the chaos suite sends the same
corpus through real workers."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.support.corpus import bombs, messages

from moodstream.shared.errors import BadInputError, MessageError
from moodstream.shared.formats import ACCEPTED_FORMATS, image_size, sniff_format
from moodstream.shared.media import decode_image
from moodstream.shared.settings import MAX_PIXELS_CEILING
from moodstream.shared.wire import decode_frame

LIMIT = 50_000_000
REFUSED = {"pfm": "pfm", "hdr": "hdr", "sunraster": "sunraster", "jpeg2000": "jpeg2000", "openexr": "openexr"}


def test_the_corpus_covers_every_format_opencv_decodes():
    info = cv2.getBuildInformation()
    kinds = {sniff_format(data) for data in bombs().values()}
    assert set(ACCEPTED_FORMATS) <= kinds
    for name, kind in [("GIF", "gif"), ("HDR", "hdr"), ("SUNRASTER", "sunraster"), ("PFM", "pfm"),
                       ("JPEG 2000", "jpeg2000"), ("OpenEXR", "openexr"), ("AVIF", "avif")]:
        if f"{name}:" in info:
            assert kind in kinds, f"OpenCV here decodes {name}; the corpus has no {kind} bomb"


@pytest.mark.parametrize("name", sorted(bombs()))
def test_bomb_is_refused_without_decoding(name, monkeypatch):
    data = bombs()[name]

    def no_decode(*args, **kwargs):
        raise AssertionError(f"{name}: decoded despite its header")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadInputError) as err:
        decode_image(data, LIMIT)
    assert err.value.reason == ("unsupported" if name in REFUSED else "too_large"), err.value
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB: nothing allocated


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".pgm", ".ppm", ".webp"])
def test_accepted_formats_still_decode_and_report_their_size(ext):
    img = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    if ext == ".pgm":
        img = img[:, :, 0]
    data = cv2.imencode(ext, img)[1].tobytes()
    assert sniff_format(data) in ACCEPTED_FORMATS
    assert image_size(data) == (53, 37)
    assert decode_image(data, LIMIT).shape == (37, 53, 3)


def test_multi_page_tiff_is_judged_by_the_page_decoded(monkeypatch):
    """A job's TIFF bytes decode their first page: that page's size is checked, a larger later page
    is never decoded (it was judged by its largest page, refusing a first page analyze reads), and a
    first page over the limit is refused unread. image_size still gives the largest."""
    ok, data = cv2.imencodemulti(".tiff", [np.zeros((8, 8, 3), np.uint8), np.zeros((300, 200, 3), np.uint8)])
    assert ok and image_size(data.tobytes()) == (200, 300)
    assert decode_image(data.tobytes(), 300 * 200 - 1).shape == (8, 8, 3)
    ok, data = cv2.imencodemulti(".tiff", [np.zeros((300, 200, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)])
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    with pytest.raises(BadInputError, match="too_large"):
        decode_image(data.tobytes(), 300 * 200 - 1)


@pytest.mark.parametrize("env", [{}, {"MOODSTREAM_MAX_PIXELS": "10000"}])
def test_opencv_limit_backs_up_the_header_check(env):
    # A fresh process: OpenCV's own limit is set once, before cv2 loads, to the ceiling
    # of max_pixels (shared/media.py), so a cv2 decode that skips our header check
    # still refuses a bomb (30000 x 30000) instead of allocating it.
    expect = str(MAX_PIXELS_CEILING)
    script = ("import os, sys, numpy as np\n"
              "from moodstream.shared.media import decode_image\n"
              "import cv2\n"
              "from tests.support.corpus import bombs\n"
              "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])\n"
              "try:\n"
              "    cv2.imdecode(np.frombuffer(bombs()['png'], np.uint8), cv2.IMREAD_UNCHANGED)\n"
              "    print('decoded')\n"
              "except cv2.error as e:\n"
              "    print('refused' if 'MAX_IMAGE_PIXELS' in str(e) else 'other')\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MOODSTREAM_", "OPENCV_IO_"))}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent, env={**clean, **env,
                         "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.stdout.split() == [expect, "refused"], out.stderr[-2000:]


@pytest.mark.parametrize("name,data,reason", [m for m in messages() if not m[0].startswith("bomb-")],
                         ids=[m[0] for m in messages() if not m[0].startswith("bomb-")])
def test_every_malformed_message_is_a_message_error(name, data, reason):
    with pytest.raises(MessageError) as err:
        decode_frame(data)
    assert err.value.reason == reason
