"""A camera's JPEG over ``max_pixels`` (a 61 MP mirrorless camera's, a 108 MP or 200 MP phone photo,
over the 50,000,000-pixel default) was refused whole ("too_large"), where libjpeg can decode it at 1/2,
1/4 or 1/8 of its size holding only the reduced pixels. Now such a JPEG (one sequential scan, of at most
MAX_PIXELS_CEILING pixels whole) is read at the largest of those sizes within ``max_pixels``, and its
record says so (``scale``). A progressive JPEG is buffered whole by libjpeg whatever the output's size
(its coefficients, ~2 bytes a pixel a component), so it is refused as before, as is every other format."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from moodstream.shared.errors import BadInputError
from moodstream.shared.formats import jpeg_one_scan
from moodstream.shared.media import decode_image, decoded_scale
from moodstream.shared.settings import MAX_PIXELS_CEILING
from tests.support.orientation import exif, jpeg_with


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A 1200 x 900 BGR picture with structure at every scale (a reduced decode must look like it)."""
    y, x = np.mgrid[0:900, 0:1200]
    img = np.stack([(x // 7) % 256, (y // 5) % 256, ((x + y) // 11) % 256], axis=-1).astype(np.uint8)
    return img


def jpeg(img: np.ndarray, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] + ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else [])
    return cv2.imencode(".jpg", img, params)[1].tobytes()


@pytest.mark.parametrize("limit, shape, scale", [
    (1200 * 900, (900, 1200, 3), None),  # within the limit: whole, as before
    (1200 * 900 - 1, (450, 600, 3), 0.5),
    (600 * 450, (450, 600, 3), 0.5),
    (600 * 450 - 1, (225, 300, 3), 0.25),
    (150 * 113, (113, 150, 3), 0.125),  # 1/8 of 900 rounds up, as libjpeg's output does
])
def test_a_jpeg_over_the_limit_is_read_at_the_largest_reduced_size_within_it(picture, limit, shape, scale):
    data = jpeg(picture)
    rgb = decode_image(data, limit)
    assert rgb.shape == shape and rgb.shape[0] * rgb.shape[1] <= limit
    assert decoded_scale(data, rgb) == scale
    whole = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    shrunk = cv2.resize(whole, shape[1::-1], interpolation=cv2.INTER_AREA).astype(np.int16)
    assert np.abs(rgb.astype(np.int16) - shrunk).mean() < 6  # the same picture, smaller


def test_past_an_eighth_it_is_refused_and_says_how(picture):
    with pytest.raises(BadInputError) as err:
        decode_image(jpeg(picture), 150 * 113 - 1)
    assert err.value.reason == "too_large"
    assert "1200x900 pixels is over the limit" in err.value.detail and "MOODSTREAM_MAX_PIXELS" in err.value.detail


def test_a_progressive_jpeg_or_a_png_over_the_limit_is_refused_unread(picture, monkeypatch):
    progressive = jpeg(picture, progressive=True)
    assert not jpeg_one_scan(progressive) and jpeg_one_scan(jpeg(picture))
    png = cv2.imencode(".png", picture)[1].tobytes()
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    for data in (progressive, png):
        with pytest.raises(BadInputError, match="too_large"):
            decode_image(data, 1200 * 900 - 1)


def test_a_phone_photo_turned_by_its_exif_is_turned_after_the_reduced_read(picture):
    """Stored on its side with orientation 6 (a phone held upright): upright and halved."""
    data = jpeg_with(jpeg(np.ascontiguousarray(np.rot90(picture, 1))), exif(6))  # stored turned left
    assert jpeg_one_scan(data)  # the EXIF block before the frame is passed over
    rgb = decode_image(data, 1200 * 900 - 1)
    assert rgb.shape == (450, 600, 3) and decoded_scale(data, rgb) == 0.5
    shrunk = cv2.resize(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB), (600, 450), interpolation=cv2.INTER_AREA)
    assert np.abs(rgb.astype(np.int16) - shrunk.astype(np.int16)).mean() < 6


def test_a_jpeg_bomb_past_the_ceiling_is_still_refused_from_its_header(monkeypatch):
    """30,000 x 30,000 (900 M pixels) would fit max_pixels at 1/8, but libjpeg would still walk all of its
    blocks: past MAX_PIXELS_CEILING whole, a JPEG is refused unread at any scale."""
    from tests.support.corpus import bombs

    data = bombs()["jpeg"]
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    with pytest.raises(BadInputError, match="too_large"):
        decode_image(data, 50_000_000)
    assert 30_000 ** 2 > MAX_PIXELS_CEILING and (30_000 // 8) ** 2 < 50_000_000


def test_no_scale_for_what_is_not_a_reduced_jpeg(picture):
    rgb = np.zeros((450, 600, 3), np.uint8)
    assert decoded_scale(None, rgb) is None
    assert decoded_scale(cv2.imencode(".png", picture)[1].tobytes(), rgb) is None  # a PNG is never reduced
    assert decoded_scale(b"not an image", rgb) is None
