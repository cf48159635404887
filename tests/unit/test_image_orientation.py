"""Images are decoded the way a viewer shows them: a phone photo stores its pixels as the sensor read
them and an orientation beside them. Only JPEG's EXIF was honoured: the same photo saved as PNG
(eXIf chunk) or WebP (EXIF chunk) with orientation 6 was analysed on its side, its faces missed or
boxed in the wrong frame. A TIFF page's own Orientation tag is applied by OpenCV's TIFF decoder
(4.9 to 4.14 alike): checked here so that it stays applied once, never twice."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tests.support.orientation import exif, jpeg_with, png_with, stored, tiff_with, webp_with

from moodstream.shared.media import FrameItem, decode_image, decode_pixels

LIMIT = 50_000_000


@pytest.fixture(scope="module")
def upright() -> np.ndarray:
    """A 32x48 BGR picture of 16-pixel blocks of distinct colours (JPEG keeps them nearly exact):
    every one of the 8 orientations gives other pixels."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(16, axis=0).repeat(16, axis=1))


def encode(ext: str, img: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


def written(fmt: str, pixels: np.ndarray, block: bytes | None) -> bytes:
    """``pixels`` (BGR, as stored) encoded by OpenCV as ``fmt``, with the EXIF ``block`` added (None: none)."""
    h, w = pixels.shape[:2]
    if fmt == "jpeg":
        data = encode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])
        return data if block is None else jpeg_with(data, block)
    if fmt == "png":
        data = encode(".png", pixels)
        return data if block is None else png_with(data, block)
    if fmt == "webp":
        data = encode(".webp", pixels, [cv2.IMWRITE_WEBP_QUALITY, 101])  # over 100: lossless
        return data if block is None else webp_with(data, block, w, h)
    raise AssertionError(fmt)


def assert_shows(rgb: np.ndarray, bgr: np.ndarray, fmt: str) -> None:
    want = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    assert rgb.shape == want.shape
    if fmt == "jpeg":  # lossy (colours bleed over block edges): a wrong turn moves whole blocks (~100 apart)
        assert np.abs(rgb.astype(int) - want).mean() < 6
    else:
        np.testing.assert_array_equal(rgb, want)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_an_image_is_turned_as_its_exif_orientation_says(upright, fmt, orientation):
    data = written(fmt, stored(upright, orientation), exif(orientation))
    assert_shows(decode_image(data, LIMIT), upright, fmt)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_is_turned_as_its_orientation_tag_says_once(upright, orientation):
    data = tiff_with(encode(".tiff", stored(upright, orientation)), 0x0112, 3, orientation)
    assert_shows(decode_image(data, LIMIT), upright, "tiff")


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_little_endian_exif_is_read(upright, fmt):
    assert_shows(decode_image(written(fmt, stored(upright, 6), exif(6, order="II")), LIMIT), upright, fmt)


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_a_directory_claiming_more_entries_than_it_holds_is_read_as_far_as_it_goes(upright, fmt):
    """As browsers read it: entries while they lie in the block (the orientation is the first)."""
    block = b"MM\x00\x2a\x00\x00\x00\x08\xff\xff" + exif(8)[10:]
    assert_shows(decode_image(written(fmt, stored(upright, 8), block), LIMIT), upright, fmt)


def test_a_webp_exif_chunk_that_starts_as_jpeg_s_does_is_read(upright):
    """Some writers keep JPEG's ``Exif\\0\\0`` in front of the block in WebP too."""
    pixels = stored(upright, 6)
    lossless = encode(".webp", pixels, [cv2.IMWRITE_WEBP_QUALITY, 101])
    data = webp_with(lossless, exif(6), *pixels.shape[1::-1], prefix=b"Exif\x00\x00")
    assert_shows(decode_image(data, LIMIT), upright, "webp")


@pytest.mark.parametrize("fmt, kind", [("png", "rgba"), ("png", "gray"), ("png", "16-bit"),
                                       ("webp", "rgba")])  # WebP holds 8-bit RGB(A) only
def test_other_pixel_kinds_are_turned_too(upright, fmt, kind):
    """Alpha dropped, gray made RGB, 16 bits made 8, and then turned."""
    pixels = stored(upright, 6)
    converted = {"rgba": lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2BGRA),
                 "gray": lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2GRAY),
                 "16-bit": lambda a: a.astype(np.uint16) * 257}[kind](pixels)
    want = upright if kind != "gray" else cv2.cvtColor(cv2.cvtColor(upright, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if fmt == "png":
        data = png_with(encode(".png", converted), exif(6))
    else:
        data = webp_with(encode(".webp", converted, [cv2.IMWRITE_WEBP_QUALITY, 101]), exif(6), *pixels.shape[1::-1])
    assert_shows(decode_image(data, LIMIT), want, fmt)


MALFORMED = {
    "orientation 0": exif(0),
    "orientation 9": exif(9),
    "orientation 65535": exif(65535),
    "ASCII, not a number": exif(6, typ=2),
    "LONG, not SHORT": exif(6, order="II", typ=4),  # OpenCV read its low half (6) in a JPEG; browsers do not
    "no value (count 0)": exif(6, count=0),
    "cut inside the entry": exif(6)[:14],
    "cut inside the header": exif(6)[:5],
    "IFD0 past the end": b"MM\x00\x2a\xff\xff\xff\x00",
    "not a TIFF header": b"JUNK" + exif(6)[4:],
    "empty": b"",
}


@pytest.mark.parametrize("block", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_a_malformed_orientation_is_ignored(upright, fmt, block):
    """Read as stored, no error: a viewer shows such a file unturned."""
    pixels = stored(upright, 6)
    assert_shows(decode_image(written(fmt, pixels, block), LIMIT), pixels, fmt)


@pytest.mark.parametrize("value", [0, 9])
def test_a_tiff_with_a_malformed_orientation_is_read_as_stored(upright, value):
    pixels = stored(upright, 6)
    assert_shows(decode_image(tiff_with(encode(".tiff", pixels), 0x0112, 3, value), LIMIT), pixels, "tiff")


def test_the_worker_s_and_analyze_s_decodes_turn_alike(upright):
    """One decode step: a job's bytes (the worker) and a file's item (analyze) give the same pixels."""
    data = written("png", stored(upright, 6), exif(6))
    job = decode_pixels(data, None, LIMIT)
    item = FrameItem("phone.png", 0, data=data).decoded(LIMIT)
    assert_shows(job, upright, "png")
    np.testing.assert_array_equal(job, item)
