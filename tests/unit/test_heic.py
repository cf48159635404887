"""An iPhone saves its photos as HEIC (HEIF holding HEVC) by default: every one of them was refused,
"unsupported: convert them to JPEG or PNG" (OpenCV has no HEIF decoder). They are read now, through
libheif (the pillow-heif wheel, in the cpu and worker installs), under the same guards as every format:
the size from the header (its ``ispe`` properties) within max_pixels before a byte is decoded, the pixels
decoding at once bounded, turned as its ``irot`` / ``imir`` say (as viewers and libheif turn them, not
again by its EXIF). Where pillow-heif is missing, each is still refused by name, saying what to install.

The HEIC files are made here by libheif's own encoder (x265), from the package's sample photo."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodstream.shared.errors import BadInputError
from moodstream.shared.formats import image_size, sniff_format
from moodstream.shared.media import decode_image, expand_paths, iter_frames
from tests.support.corpus import avif_header
from tests.support.orientation import SHOWN

pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif (the cpu and worker installs' HEIC decoder)")

STREET = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"
LIMIT = 50_000_000


def heic(orientation: int = 1, mode: str = "RGB") -> bytes:
    """samples/street.jpg as an iPhone stores it: its pixels as stored, ``orientation`` written as the HEIF's
    irot / imir (what libheif's writer makes of an EXIF orientation)."""
    from PIL import Image

    picture = Image.open(STREET).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    pillow_heif.from_pillow(picture).save(out, format="HEIF", quality=92, exif=exif.tobytes())
    return out.getvalue()


def street_rgb() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(STREET)), cv2.COLOR_BGR2RGB)


def test_an_iphone_photo_is_read_as_a_jpeg_is():
    data = heic()
    assert sniff_format(data) == "heif" and image_size(data) == (960, 540)
    rgb = decode_image(data, LIMIT)
    assert rgb.shape == (540, 960, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(np.int16) - street_rgb()).mean() < 4  # HEVC's loss at quality 92


@pytest.mark.parametrize("orientation", range(1, 9))
def test_it_is_turned_as_its_irot_and_imir_say(orientation):
    rgb = decode_image(heic(orientation), LIMIT)
    want = SHOWN[orientation](street_rgb())
    assert rgb.shape == want.shape and np.abs(rgb.astype(np.int16) - want).mean() < 4


def test_a_grey_photo_is_read_as_rgb():
    rgb = decode_image(heic(mode="L"), LIMIT)
    assert rgb.shape == (540, 960, 3) and (rgb[..., 0] == rgb[..., 2]).all()


def test_over_max_pixels_it_is_refused_from_its_header(monkeypatch):
    import pillow_heif as module

    monkeypatch.setattr(module, "open_heif", lambda *a, **k: pytest.fail("decoded despite its header"))
    with pytest.raises(BadInputError) as err:
        decode_image(heic(), 960 * 540 - 1)
    assert err.value.reason == "too_large" and "960x540 pixels is over the limit" in err.value.detail
    with pytest.raises(BadInputError, match="too_large"):  # a bomb's header: 30,000 x 30,000
        decode_image(avif_header(30_000, 30_000, major=b"heic") + b"\0" * 4096, LIMIT)


def test_damaged_bytes_are_one_unreadable_error():
    data = heic()
    with pytest.raises(BadInputError) as err:
        decode_image(data[: len(data) // 2], LIMIT)
    assert err.value.reason in ("unreadable", "truncated"), err.value
    with pytest.raises(BadInputError) as err:  # a header with a size and nothing to decode
        decode_image(avif_header(64, 64, major=b"heic") + b"\0" * 64, LIMIT)
    assert err.value.reason == "unreadable", err.value


def test_without_pillow_heif_it_is_refused_saying_what_to_install(monkeypatch):
    from moodstream.shared import media

    monkeypatch.setattr(media, "heif_decoder", lambda: False)
    with pytest.raises(BadInputError) as err:
        decode_image(heic(), LIMIT)
    assert err.value.reason == "unsupported" and "pillow-heif" in err.value.detail and "convert" in err.value.detail


def test_an_iphone_folder_is_read_whole(tmp_path):
    folder = tmp_path / "DCIM"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(heic(6))
    (folder / "IMG_0002.jpg").write_bytes(STREET.read_bytes())
    listed = list(expand_paths([str(folder)]))
    items = [i for p in listed for i in iter_frames([p])]
    assert [Path(i.source).name for i in items] == ["IMG_0001.HEIC", "IMG_0002.jpg"]
    assert [i.decoded(LIMIT).shape for i in items] == [(960, 540, 3), (540, 960, 3)]


def test_a_header_that_understates_the_picture_is_refused_not_decoded_larger():
    """The size guard reads the ``ispe`` header; a file whose ``ispe`` says 96 x 54 over a 960 x 540 picture
    would pass it. libheif holds a decode to its header's size, so it is one unreadable record, never a
    picture larger than the limit allowed."""
    import struct

    data = bytearray(heic())
    at = data.find(b"ispe")
    data[at + 8:at + 16] = struct.pack(">II", 96, 54)
    with pytest.raises(BadInputError) as err:
        decode_image(bytes(data), 96 * 54)
    assert err.value.reason == "unreadable" and "libheif" in err.value.detail, err.value


def test_an_honest_grid_is_read_whole():
    """An iPhone's HEIC is a grid of 512 x 512 tiles: a 2 x 2 grid that says 1024 x 1024, as its ispe does."""
    from tests.support.heif import derived_heif

    rgb = decode_image(derived_heif(b"grid", (1024, 1024), (1024, 1024), rows=2, columns=2), 2_000_000)
    assert rgb.shape == (1024, 1024, 3) and rgb.std() > 10


@pytest.mark.parametrize("kind, rows", [(b"grid", 3), (b"iovl", 1)])
def test_a_grid_or_overlay_larger_than_its_ispe_is_refused_from_its_header(kind, rows, monkeypatch):
    """libheif allocates a grid's picture at the size its own data declares, tiles decoded, before it checks
    it against the ispe the guard read: 49 tiles saying 28672 x 28672 under an ispe of 1024 x 1024 held
    1.3 GB and 7.5 s for a message of 258 KB. The guard reads a grid's and an overlay's own size now."""
    import pillow_heif as module

    from tests.support.heif import derived_heif

    data = derived_heif(kind, (1536, 1536) if kind == b"grid" else (30000, 30000), (256, 256), rows=rows,
                        columns=rows)
    monkeypatch.setattr(module, "open_heif", lambda *a, **k: pytest.fail("decoded despite its declared size"))
    with pytest.raises(BadInputError) as err:
        decode_image(data, 1_000_000)
    assert err.value.reason == "too_large", err.value
    assert ("1536x1536" if kind == b"grid" else "30000x30000") in err.value.detail


def test_a_grid_whose_size_cannot_be_read_is_refused():
    from tests.support.heif import derived_heif

    with pytest.raises(BadInputError) as err:
        decode_image(derived_heif(b"grid", (1024, 1024), (1024, 1024), rows=2, columns=2, with_place=False),
                     2_000_000)
    assert err.value.reason == "unreadable" and "grid or overlay" in err.value.detail, err.value


def test_an_item_table_of_empty_extents_is_refused_at_once():
    """The guard's own walk of the item locations: 4,096 items of 65,535 extents whose fields take no bytes
    (32 KB) held it 11 s. Past 4,096 items and extents it stops: unreadable."""
    import struct

    from tests.support.heif import box, full_box

    items = b"".join(struct.pack(">HHHH", i, 0, 0, 65535) for i in range(1, 4097))
    iloc = full_box(b"iloc", 1, 0, b"\0\0" + struct.pack(">H", 4096) + items)
    infe = full_box(b"infe", 2, 0, struct.pack(">HH", 1, 0) + b"grid\0")
    meta = full_box(b"meta", 0, 0, full_box(b"hdlr", 0, 0, b"\0" * 4 + b"pict" + b"\0" * 13) + iloc
                    + full_box(b"iinf", 0, 0, struct.pack(">H", 1) + infe)
                    + box(b"iprp", box(b"ipco", full_box(b"ispe", 0, 0, struct.pack(">II", 64, 64)))))
    with pytest.raises(BadInputError) as err:  # (before: 11 s walking it, then a size read from nowhere)
        decode_image(box(b"ftyp", b"heic\0\0\0\0mif1heic") + meta, LIMIT)
    assert err.value.reason == "unreadable", err.value
