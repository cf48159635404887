"""moodstream.shared.media: safe decoding of every kind of bad input, header sizes, video sampling, path expansion."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodstream.shared.errors import BadInputError
from moodstream.shared.formats import MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS, image_size
from moodstream.shared.media import (FrameItem, decode_image, expand_paths, is_stream_spec, is_video, iter_frames,
                                     iter_video, to_rgb8)

LIMIT = 50_000_000


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    """A 40x64 BGR test card: distinct colours in each quadrant."""
    img = np.zeros((40, 64, 3), np.uint8)
    img[:20, :32] = (255, 0, 0)
    img[:20, 32:] = (0, 255, 0)
    img[20:, :32] = (0, 0, 255)
    img[20:, 32:] = (40, 120, 200)
    return img


def encode(ext: str, img: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` but holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


# --- decode_image ---------------------------------------------------------------------


def test_decode_jpeg_gives_rgb_uint8(bgr):
    rgb = decode_image(encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100]), LIMIT)
    assert rgb.shape == (40, 64, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert rgb[5, 5, 2] > 200 and rgb[5, 5, 0] < 50  # BGR blue became RGB (.., .., 255)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 Exif segment whose one tag is Orientation (0x0112), right after SOI."""
    tiff = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">HHHIHHI", 1, 0x0112, 3, 1, orientation, 0, 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.mark.parametrize("orientation, stored", [(6, lambda a: np.rot90(a, 1)), (8, lambda a: np.rot90(a, -1)),
                                                 (3, lambda a: np.rot90(a, 2)), (1, lambda a: a)])
def test_a_photo_is_turned_as_its_exif_orientation_says(bgr, orientation, stored):
    """A phone's photo stores its pixels turned and says so in EXIF: read as stored it came out on
    its side (540x960 instead of 960x540), and MTCNN found 0 of its 5 faces."""
    data = with_exif_orientation(encode(".jpg", np.ascontiguousarray(stored(bgr)), [cv2.IMWRITE_JPEG_QUALITY, 100]),
                                 orientation)
    rgb = decode_image(data, LIMIT)
    assert rgb.shape == (40, 64, 3)  # upright, as viewers show it
    assert rgb[5, 5, 2] > 200 and rgb[5, 60, 1] > 200 and rgb[35, 5, 0] > 200  # each quadrant in its place


def test_zero_bytes_is_empty():
    with pytest.raises(BadInputError) as err:
        decode_image(b"", LIMIT)
    assert err.value.reason == "empty"


def test_truncated_jpeg(bgr):
    data = encode(".jpg", bgr)
    with pytest.raises(BadInputError) as err:
        decode_image(data[: len(data) // 2], LIMIT)
    assert err.value.reason == "truncated"


@pytest.mark.parametrize("trailer", [b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40,  # a Motion Photo's video
                                     b"SEFH" + b"\x01" * 300 + b"SEFT"])  # a Samsung trailer
def test_a_jpeg_with_data_after_its_end_is_read(bgr, trailer):
    """Phones store Motion Photos as a JPEG with an MP4 after it (Samsung: a trailer): OpenCV reads
    them, but they were refused as truncated (the file did not end with the end-of-image marker)."""
    data = encode(".jpg", bgr)
    assert decode_image(data + trailer, LIMIT).shape == decode_image(data, LIMIT).shape


def test_a_truncated_jpeg_with_a_video_after_it_is_still_truncated(bgr):
    data = encode(".jpg", bgr)
    with pytest.raises(BadInputError) as err:
        decode_image(data[: len(data) // 2] + b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, LIMIT)
    assert err.value.reason == "truncated"


@pytest.mark.parametrize("data", [b"hello, not an image" * 10, bytes(range(256)) * 4,
                                  b"\x89PNG\r\n\x1a\n" + b"garbage" * 40, b"\xff\xd8\xff" + b"\x00" * 50 + b"\xff\xd9"],
                         ids=["text", "random", "png-signature-garbage", "jpeg-markers-garbage"])
def test_corrupt_bytes_are_unreadable(data):
    with pytest.raises(BadInputError) as err:
        decode_image(data, LIMIT)
    assert err.value.reason == "unreadable"


def heif(major: bytes, compatible: bytes = b"mif1heic") -> bytes:
    """The start of a HEIF file: its ftyp box (major brand, version, compatible brands), then junk."""
    box = b"ftyp" + major + b"\x00\x00\x00\x00" + compatible
    return struct.pack(">I", 4 + len(box)) + box + b"\x00\x00\x00\x08meta" + bytes(range(256)) * 8


@pytest.mark.parametrize("major", [b"heic", b"heix", b"mif1", b"msf1", b"hevc"])
def test_a_heic_photo_is_told_by_its_brand_from_a_file_and_from_stdin(tmp_path, major, monkeypatch):
    """An iPhone's photo (HEIC): a file was "not an image (no known image signature)"; on stdin its ftyp
    box made it a video ("cannot open video stdin"). It is a HEIF image (decoded by pillow-heif, in
    test_heic.py): these bytes have no size, so they are unreadable; without pillow-heif, refused by name."""
    from moodstream.shared import media

    data = heif(major)
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(data)
    for item in iter_frames([str(path), "-"], stdin=io.BytesIO(data)):
        with pytest.raises(BadInputError) as err:
            item.decoded(LIMIT)
        assert str(err.value) == "unreadable: heif header without a readable image size"
    monkeypatch.setattr(media, "heif_decoder", lambda: False)
    for item in iter_frames([str(path), "-"], stdin=io.BytesIO(data)):
        with pytest.raises(BadInputError) as err:
            item.decoded(LIMIT)
        assert err.value.reason == "unsupported" and "pillow-heif" in err.value.detail and "convert" in err.value.detail


def test_an_avif_photo_is_read_as_a_jpeg_is_judged_by_its_size_first(tmp_path):
    """An AVIF (what Chrome and Android save photos as) was refused, "avif images are not accepted (their
    size cannot be checked before decoding)", and a folder's .avif files left out without a word. Its
    size is its items' ispe properties: one over the limit is refused unread, as a JPEG's."""
    from PIL import Image, features

    from tests.support.corpus import avif_header

    from moodstream.shared.media import IMAGE_EXTS, avif_decoder

    assert ".avif" in IMAGE_EXTS
    for data in (heif(b"avif", b"mif1avif"), heif(b"mif1", b"avifmiaf")):  # its brands, and no size
        with pytest.raises(BadInputError) as err:
            decode_image(data, LIMIT)
        assert err.value.reason == "unreadable" and err.value.detail == "avif header without a readable image size"
    with pytest.raises(BadInputError) as err:
        decode_image(avif_header(20000, 10000) + b"\x00" * 64, LIMIT)
    assert err.value.reason == "too_large"
    assert err.value.detail.startswith(f"20000x10000 pixels is over the limit of {LIMIT} (max_pixels: raise it with "
                                       "MOODSTREAM_MAX_PIXELS, up to 268435456, or scale the image down)")
    with pytest.raises(BadInputError) as err:  # an animated AVIF: said, not its first frame alone
        decode_image(avif_header(64, 48, major=b"avis") + b"\x00" * 64, LIMIT)
    assert err.value.reason == "unsupported" and "animated AVIF" in err.value.detail
    if not (features.check("avif") and avif_decoder()):
        pytest.skip("Pillow here writes no AVIF, or OpenCV here decodes none")
    street = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"
    Image.open(street).save(tmp_path / "street.avif", quality=90)
    [item] = iter_frames([str(tmp_path)])
    assert item.source == str(tmp_path / "street.avif") and item.page == 1
    rgb = item.decoded(LIMIT)
    want = decode_image(street.read_bytes(), LIMIT)
    assert rgb.shape == want.shape and np.abs(rgb.astype(int) - want).mean() < 6  # the same picture, lossy twice


def test_16bit_png_is_converted(bgr):
    data = encode(".png", bgr.astype(np.uint16) * 257)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    rgb = decode_image(data, LIMIT)
    assert rgb.dtype == np.uint8 and rgb.shape == (40, 64, 3)
    np.testing.assert_array_equal(rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_rgba_png_drops_alpha(bgr):
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 7
    rgb = decode_image(encode(".png", bgra), LIMIT)
    assert rgb.shape == (40, 64, 3)
    np.testing.assert_array_equal(rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_grayscale_becomes_three_equal_channels(bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgb = decode_image(encode(".png", gray), LIMIT)
    assert rgb.shape == (40, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray)


def test_over_pixel_limit_is_refused_from_the_header(monkeypatch):
    # 100k x 100k: decoding would need 30 GB; the header check must refuse it first
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded despite the header saying it is too large")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(BadInputError) as err:
        decode_image(png_header_only(100_000, 100_000), LIMIT)
    assert err.value.reason == "too_large"
    assert "100000x100000" in err.value.detail


def test_pixel_limit_applies_to_real_images(bgr):
    with pytest.raises(BadInputError) as err:
        decode_image(encode(".png", bgr), max_pixels=64 * 40 - 1)
    assert err.value.reason == "too_large"
    assert decode_image(encode(".png", bgr), max_pixels=64 * 40).shape == (40, 64, 3)
    # a camera's JPEG is read smaller instead (test_reduced_jpeg.py): at half size here
    assert decode_image(encode(".jpg", bgr), max_pixels=64 * 40 - 1).shape == (20, 32, 3)


def test_to_rgb8_float_and_unsupported_channels():
    rgb = to_rgb8(np.full((4, 5, 3), 0.5, np.float32))
    assert rgb.dtype == np.uint8 and (rgb == 127).all()
    with pytest.raises(BadInputError) as err:
        to_rgb8(np.zeros((4, 5, 2), np.uint8))
    assert err.value.reason == "unsupported"


# --- image_size -------------------------------------------------------------------------


@pytest.mark.parametrize("ext,params", [
    (".png", None),
    (".jpg", None),
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    (".bmp", None),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),   # lossy: VP8
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
], ids=["png", "jpeg", "jpeg-progressive", "bmp", "webp-lossy", "webp-lossless"])
def test_image_size_from_header(ext, params):
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    assert image_size(encode(ext, img, params)) == (53, 37)


def test_image_size_webp_extended_header():
    # VP8X (extended) header: canvas width-1 and height-1 as 24-bit little-endian at bytes 24..30
    data = b"RIFF" + b"\x00" * 4 + b"WEBP" + b"VP8X" + b"\x0a\x00\x00\x00" + b"\x00" * 4 \
        + (1919).to_bytes(3, "little") + (1079).to_bytes(3, "little")
    assert image_size(data) == (1920, 1080)


def test_image_size_unknown_is_none():
    assert image_size(b"") is None
    assert image_size(b"not an image at all, just text") is None
    assert image_size(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10) is None  # no IHDR chunk


# --- sources ----------------------------------------------------------------------------


def test_frame_item_decoded_raises_its_error():
    item = FrameItem("x.jpg", 0, error=BadInputError("not_found", "x.jpg does not exist"))
    with pytest.raises(BadInputError, match="not_found"):
        item.decoded(LIMIT)
    arr = np.zeros((2, 2, 3), np.uint8)
    assert FrameItem("v.mp4", 3, 0.1, image=arr).decoded(LIMIT) is arr


def test_expand_paths(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ["a.jpg", "b/c.PNG", "b/deep/d.mp4", "b/notes.txt", "b/.hidden.jpg", "e.webp"]:
        (tmp_path / name).write_bytes(b"x")
    found = list(expand_paths([str(tmp_path), "-", "0", "rtsp://cam/1", str(tmp_path / "b" / "notes.txt")]))
    rel = [str(Path(p).relative_to(tmp_path)) if p.startswith(str(tmp_path)) else p for p in found]
    # folders: recursive, sorted, images and videos only, no dot-files; named files, stdin, streams pass through
    assert rel == ["a.jpg", "b/c.PNG", "b/deep/d.mp4", "e.webp", "-", "0", "rtsp://cam/1", "b/notes.txt"]


def test_stream_and_video_specs():
    assert is_stream_spec("0") and is_stream_spec("rtsp://host/x") and not is_stream_spec("a.mp4")
    assert is_video("clip.MP4") and is_video("2") and not is_video("a.jpg")


def test_iter_frames_files_errors_and_stdin(tmp_path, bgr):
    good = tmp_path / "good.jpg"
    good.write_bytes(encode(".jpg", bgr))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    items = list(iter_frames([str(good), str(tmp_path / "missing.jpg"), str(empty), "-"],
                             stdin=io.BytesIO(b"stdin bytes")))
    assert [(i.source, i.frame) for i in items] == [(str(good), 0), (str(tmp_path / "missing.jpg"), 0),
                                                     (str(empty), 0), ("-", 0)]
    assert items[0].data == good.read_bytes() and items[0].timestamp_s is None
    assert items[1].error is not None and items[1].error.reason == "not_found"
    with pytest.raises(BadInputError, match="empty"):
        items[2].decoded(LIMIT)
    assert items[3].data == b"stdin bytes"


def test_video_every_n(fixtures_dir):
    items = list(iter_video(str(fixtures_dir / "clip_360p.mp4"), every_n=4))
    assert [i.frame for i in items] == [0, 4, 8]
    assert all(i.image.shape == (180, 320, 3) and i.image.dtype == np.uint8 for i in items)
    assert items[0].timestamp_s == 0.0 and items[1].timestamp_s == pytest.approx(4 / 29.97, abs=1e-3)


def test_video_fps_and_max_frames(fixtures_dir):
    clip = str(fixtures_dir / "clip_360p.mp4")  # 12 frames at 29.97 fps
    assert [i.frame for i in iter_video(clip, fps=10)] == [0, 3, 6, 9]
    assert [i.frame for i in iter_video(clip, fps=1000)] == list(range(12))  # never more than every frame
    assert [i.frame for i in iter_video(clip, every_n=2, max_frames=3)] == [0, 2, 4]


def test_bad_video_gives_one_error_item(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    for spec in (str(bad), str(tmp_path / "missing.mp4")):
        items = list(iter_frames([spec]))
        assert len(items) == 1 and items[0].error is not None and items[0].source == spec
    assert list(iter_frames([str(tmp_path / "missing.mp4")]))[0].error.reason == "not_found"


def test_a_zero_byte_video_is_empty_as_a_zero_byte_photo_is(tmp_path):
    """A video file of zero bytes (a copy or download cut before its first byte, a camera that
    wrote nothing) was "unreadable: cannot open video X", where a zero-byte photo says "empty:
    zero bytes"; the producer and the service dead-letter by that reason."""
    (tmp_path / "cut.jpg").write_bytes(b"")
    [photo] = iter_frames([str(tmp_path / "cut.jpg")])
    with pytest.raises(BadInputError) as said:
        photo.decoded(10**8)
    assert (said.value.reason, said.value.detail) == ("empty", "zero bytes")
    for name in ("cut.mp4", "cut.webm", "cut.avi"):
        (tmp_path / name).write_bytes(b"")
        [item] = iter_frames([str(tmp_path / name)])
        assert (item.source, item.error.reason, item.error.detail) == (str(tmp_path / name), "empty", "zero bytes")


def test_a_video_over_the_pixel_limit_is_refused_before_a_frame_is_decoded(tmp_path, monkeypatch):
    """--max-pixels once let a 1.3 MB 8000x8000 MJPG video decode every frame in full (1.08 GB)."""
    path = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (400, 300))
    for _ in range(3):
        writer.write(np.zeros((300, 400, 3), np.uint8))
    writer.release()
    reads = []
    real = cv2.VideoCapture.read
    monkeypatch.setattr(cv2.VideoCapture, "read", lambda self: reads.append(1) or real(self))
    items = list(iter_frames([str(path)], max_pixels=400 * 300 - 1))
    assert [(i.error.reason if i.error else None) for i in items] == ["too_large"] and reads == []
    assert "400x300" in items[0].error.detail
    assert len([i for i in iter_frames([str(path)], max_pixels=400 * 300) if i.error is None]) == 3


def test_an_input_is_read_no_further_than_the_byte_limit(tmp_path):
    """`analyze /dev/zero` (and endless stdin) read without a cap until memory ran out."""
    items = list(iter_frames(["/dev/zero"], max_image_bytes=1 << 20))
    assert [i.error.reason for i in items] == ["too_large"]
    endless = io.BufferedReader(io.FileIO("/dev/zero"))
    items = list(iter_frames(["-"], stdin=endless, max_image_bytes=1 << 20))
    assert [i.error.reason for i in items] == ["too_large"]
    small = tmp_path / "x.png"
    small.write_bytes(b"\x89PNG" + b"\0" * 100)
    assert [i.error for i in iter_frames([str(small)], max_image_bytes=1 << 20)] == [None]


def test_an_empty_path_is_not_the_current_folder(tmp_path, monkeypatch):
    """`analyze ""` (an unset variable in a script) walked the whole current folder."""
    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    items = list(iter_frames([""]))
    assert len(items) == 1 and items[0].error is not None and items[0].error.reason == "not_found"


def _tiff(entries: list[tuple[int, int, int]]) -> bytes:
    """A little-endian TIFF whose one directory holds ``entries`` (tag, type, value) in that order."""
    import struct as st
    ifd = st.pack("<H", len(entries)) + b"".join(
        st.pack("<HHI", tag, typ, 1) + (st.pack("<HH", value, 0) if typ == 3 else st.pack("<I", value))
        for tag, typ, value in entries) + st.pack("<I", 0)
    return b"II*\x00" + st.pack("<I", 8) + ifd + b"\x00" * 64


def test_a_tiff_naming_its_size_twice_is_refused_before_decoding(monkeypatch):
    """The size check read the last ImageWidth / ImageLength, libtiff the first: a 6 KB TIFF saying
    10000x10000 then 64x64 passed as 64x64 and decoded to 1.5 GB before the limit refused it."""
    import moodstream.shared.media as media

    def never(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(media.cv2, "imdecode", never)
    data = _tiff([(256, 4, 10000), (257, 4, 10000), (256, 3, 64), (257, 3, 64), (258, 3, 16), (277, 3, 4)])
    with pytest.raises(BadInputError) as err:
        decode_image(data, LIMIT)
    assert err.value.reason in ("unreadable", "too_large")


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(bgr, monkeypatch):
    """A progressive JPEG repeating one 20-byte scan costs ~0.5 ms a scan to decode: 150,000 of them
    (3 MB) held a worker 74 s (its health check failed at 60 s); 32 MiB would be ~13 minutes."""
    import moodstream.shared.media as media

    data = encode(".jpg", bgr)
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 10
    bomb = data[:-2] + scan * (MAX_JPEG_SCANS + 1) + b"\xff\xd9"

    def never(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(media.cv2, "imdecode", never)
    with pytest.raises(BadInputError) as err:
        decode_image(bomb, LIMIT)
    assert err.value.reason == "unsupported" and "scans" in err.value.detail


@pytest.mark.parametrize("where", ["before its size", "after its size"])
def test_a_jpeg_of_thousands_of_header_segments_is_refused_before_decoding(bgr, monkeypatch, where):
    """Three walks of a JPEG's header (its size, its end, its EXIF orientation) took its marker
    segments one Python step each: 30 MiB of empty COM segments (a message under
    max_message_bytes) held a decode 10 s, the GIL with it, where libjpeg takes 0.06 s. A
    camera's JPEG has tens of segments before its image data."""
    import moodstream.shared.media as media

    data = encode(".jpg", bgr)
    at = 2 if where == "before its size" else data.index(b"\xff\xda")  # after SOI, or just before the scan
    bomb = data[:at] + b"\xff\xfe\x00\x02" * (MAX_JPEG_SEGMENTS + 1) + data[at:]
    monkeypatch.setattr(media.cv2, "imdecode", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(BadInputError) as err:
        decode_image(bomb, LIMIT)
    assert err.value.reason == "unsupported" and f"over {MAX_JPEG_SEGMENTS} marker segments" in err.value.detail


def test_a_jpeg_s_fill_bytes_and_lone_markers_are_not_steps(bgr, monkeypatch):
    """Fill bytes (0xFF runs) and markers without a length (TEM) between segments are allowed and
    skipped by libjpeg: they cost the header walks no step (a byte each was 3 s for 30 MiB of them),
    so a JPEG of many is still read, its EXIF orientation found after them."""
    from moodstream.shared import formats

    monkeypatch.setattr(formats, "MAX_JPEG_SEGMENTS", 32)
    data = with_exif_orientation(encode(".jpg", np.ascontiguousarray(np.rot90(bgr, 1)), [cv2.IMWRITE_JPEG_QUALITY, 100]),
                                 6)
    padded = data[:2] + b"\xff" * 100_000 + b"\xff\x01" * 1_000 + data[2:]
    rgb = decode_image(padded, LIMIT)
    assert rgb.shape == (40, 64, 3) and rgb[5, 5, 2] > 200 and rgb[35, 5, 0] > 200


def test_a_folder_s_symlinked_subfolders_are_searched_once(tmp_path, bgr):
    """rglob does not enter symlinked folders: their images were skipped without a word (produce
    reported 1 of 3 jobs, exit 0). Followed now, each real folder once (a link loop ends)."""
    from moodstream.shared.media import expand_paths

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.jpg").write_bytes(encode(".jpg", bgr))
    top = tmp_path / "top"
    top.mkdir()
    (top / "a.jpg").write_bytes(encode(".jpg", bgr))
    (top / "linked").symlink_to(elsewhere)
    (top / "twice").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(top)
    found = sorted(Path(p).name for p in expand_paths([str(top)]))
    assert found == ["a.jpg", "b.jpg"], found


def test_a_folder_s_pnm_images_are_found_as_they_are_read_when_named(tmp_path, bgr):
    """PNM is an accepted format (a .ppm named directly is analysed), but a folder's .ppm, .pgm, .pbm
    and .pnm files were left out as 'not images or videos by their names': `analyze frames/` said
    'no images or videos in frames' and exit 1. Found now, by analyze's and the expander's walks."""
    from moodstream.producer.sources import media_files

    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    files = {"a.ppm": encode(".ppm", bgr), "b.pgm": encode(".pgm", gray),
             "c.pbm": encode(".pbm", gray), "d.pnm": encode(".ppm", bgr)}
    for name, data in files.items():
        assert decode_image(data, LIMIT).shape == (40, 64, 3), name  # each is read when named
        (tmp_path / name).write_bytes(data)
    assert sorted(Path(p).name for p in expand_paths([str(tmp_path)])) == sorted(files)
    assert sorted(Path(p).name for p, _ in media_files(str(tmp_path), str(tmp_path))) == sorted(files)


def test_a_folders_files_that_are_not_media_are_named_at_info(tmp_path, caplog):
    """A folder's notes.txt was left out without a word, even with -v (INFO)."""
    import logging

    from moodstream.shared.media import expand_paths

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".hidden").write_text("")
    with caplog.at_level(logging.INFO, logger="moodstream.shared.media"):
        assert list(expand_paths([str(tmp_path)])) == [str(tmp_path / "a.jpg")]
    assert "1 file left out" in caplog.text and "notes.txt" in caplog.text and ".hidden" not in caplog.text


def test_fps_keeps_no_two_frames_closer_than_its_step_after_a_gap():
    """`--fps 10` on a video with a gap in its frames' times (a phone that paused, a cut-out stretch of a
    variable frame rate file): after the gap, the frame at the gap's end and the very next one were
    both kept, 33 ms apart (the next slot was put at the frame itself). Now the slot after a gap is one
    step after the frame kept; frames without gaps keep the grid (about fps a second, no drift)."""
    from moodstream.shared.media import RateCap

    cap = RateCap(10)
    times = [round(i / 30, 4) for i in range(10)] + [round(5 + i / 30, 4) for i in range(10)]
    kept = [t for t in times if cap.keep(t)]
    assert kept == [0.0, 0.1, 0.2, 0.3, 5.0, 5.1, 5.2, 5.3]
    steady = RateCap(10)  # 30 fps for 10 s: 100 kept, every third frame
    assert sum(steady.keep(i / 30) for i in range(300)) == 100
    odd = RateCap(7)  # a step that is no multiple of the frames': the grid, not the frames, sets the rate
    assert sum(odd.keep(i / 30) for i in range(300)) == 70


def test_a_video_cut_after_its_first_frame_is_said_in_the_singular():
    from moodstream.shared.media import cut_short

    said = cut_short(1, 0.0, 300, 30.0)
    assert said is not None and said.startswith("the video ended after 1 frame (0.0 s) of the 10.0 s"), said
    assert cut_short(2, 0.03, 300, 30.0).startswith("the video ended after 2 frames ")


def test_a_camera_that_cannot_be_opened_is_named_a_camera():
    """`analyze 0` on a machine without a camera said 'cannot open video 0': now the camera, and
    where Linux has no device node for it, that."""
    from moodstream.shared.media import open_capture

    index = next(i for i in range(57, 99) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(BadInputError) as caught:
        open_capture(str(index))
    assert str(caught.value) == f"unreadable: cannot open camera {index} (no /dev/video{index} on this machine)"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_avif_is_turned_as_its_irot_and_imir_say(tmp_path, orientation):
    """A phone's AVIF stores its pixels on their side and says how to turn them (irot, imir), as a
    JPEG's EXIF does: OpenCV decodes them as stored, so the photo was read sideways (or mirrored)."""
    from PIL import Image, ImageOps, features

    from moodstream.shared.media import avif_decoder

    if not (features.check("avif") and avif_decoder()):
        pytest.skip("Pillow here writes no AVIF, or OpenCV here decodes none")
    exif = Image.Exif()
    exif[0x0112] = orientation  # Pillow writes it as the AVIF's irot / imir
    street = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"
    Image.open(street).save(tmp_path / "p.avif", exif=exif.tobytes(), quality=90)
    want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "p.avif")).convert("RGB"))
    got = decode_image((tmp_path / "p.avif").read_bytes(), LIMIT)
    assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 1


def test_a_camcorder_s_or_an_old_phone_s_videos_are_videos_in_a_folder_and_on_stdin(tmp_path):
    """A camcorder's AVCHD .MTS / .m2ts, an old phone's .3gp, a .flv, a DVD's .vob, a broadcast .ts:
    named, each was read as an image ("not an image (no known image signature)"); in a folder, left
    out ("no images or videos in X"). A TypeScript file named .ts is still no video."""
    clip = cv2.VideoCapture(str(Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"))
    frames = [clip.read()[1] for _ in range(6)]
    folder = tmp_path / "camera"
    folder.mkdir()
    for name, fourcc in (("00001.MTS", "mp4v"), ("00002.m2ts", "mp4v"), ("call.3gp", "mp4v"), ("old.flv", "FLV1"),
                         ("VTS_01_1.VOB", "mp4v"), ("rec.ts", "mp4v")):
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*fourcc), 25, (640, 360))
        for f in frames:
            writer.write(f)
        writer.release()
    (folder / "app.ts").write_text("export const answer: number = 42;\n")
    listed = list(expand_paths([str(folder)]))
    assert sorted(Path(p).name for p in listed) == ["00001.MTS", "00002.m2ts", "VTS_01_1.VOB", "call.3gp", "old.flv",
                                                    "rec.ts"]
    from moodstream.producer.sources import media_files

    assert [p for p, _ in media_files(str(folder), str(tmp_path.resolve()))] == sorted(listed)  # the expander's
    for path in listed:
        items = list(iter_frames([path]))
        assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(6)], (path, items[-1].error)
        assert all(i.timestamp_s is not None and i.image.shape == (360, 640, 3) for i in items)
    for name in ("00002.m2ts", "rec.ts", "old.flv"):  # told by their bytes on stdin
        piped = list(iter_frames(["-"], stdin=io.BytesIO((folder / name).read_bytes())))
        assert len(piped) == 6 and all(i.error is None and i.timestamp_s is not None for i in piped), name


def test_a_file_is_read_as_what_its_bytes_are_whatever_its_name(tmp_path):
    """A video saved without an extension (a download named by its hash) or as .jpg was "not an image
    (no known image signature)", though the same bytes on stdin were read as the video they are; a
    JPEG named .mp4 was read by FFmpeg as a one-frame video (time 0.0, shot 0), not as the photo it is."""
    from moodstream.producer.sources import file_items

    samples = Path(__file__).resolve().parents[2] / "samples"
    clip, photo = (samples / "hamilton_clip.mp4").read_bytes(), (samples / "street.jpg").read_bytes()
    for name in ("3f2a9c", "clip.jpg", "clip.png"):
        (tmp_path / name).write_bytes(clip)
    (tmp_path / "photo.mp4").write_bytes(photo)
    (tmp_path / "photo.webm").write_bytes(photo)
    root = str(tmp_path.resolve())
    for name in ("3f2a9c", "clip.jpg", "clip.png"):
        for items in (list(iter_frames([str(tmp_path / name)], max_frames=4)),
                      list(file_items(str(tmp_path / name), root, max_frames=4))):
            assert [(i.frame, i.page, i.error) for i in items] == [(k, None, None) for k in range(4)], (name, items)
            assert all(i.timestamp_s is not None and i.image is not None for i in items)
    for name in ("photo.mp4", "photo.webm"):
        for items in (list(iter_frames([str(tmp_path / name)])), list(file_items(str(tmp_path / name), root))):
            assert [(i.frame, i.page, i.timestamp_s, i.data) for i in items] == [(0, 1, None, photo)], name
    assert is_video(str(tmp_path / "3f2a9c")) and not is_video(str(tmp_path / "photo.mp4"))
    assert is_video("missing.mp4") and not is_video("missing.jpg")  # no file: by its name, as before


def test_an_iphone_s_heic_photos_in_a_folder_are_each_said_not_left_out(tmp_path, monkeypatch):
    """A folder of an iPhone's photos: its .HEIC files were left out without a word (only -v said
    "left out"), and a folder of them alone was "no images or videos in X (looked for ...)". Each is
    now read (test_heic.py); where pillow-heif is not installed, refused by name: install it, or convert."""
    from moodstream.producer.sources import media_files
    from moodstream.shared import media

    monkeypatch.setattr(media, "heif_decoder", lambda: False)
    folder = tmp_path / "DCIM"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(heif(b"heic"))
    (folder / "IMG_0002.jpg").write_bytes((Path(__file__).resolve().parents[2] / "samples" / "street.jpg").read_bytes())
    listed = list(expand_paths([str(folder)]))
    assert [Path(p).name for p in listed] == ["IMG_0001.HEIC", "IMG_0002.jpg"]
    assert [Path(p).name for p, _ in media_files(str(folder), str(tmp_path.resolve()))] == \
        ["IMG_0001.HEIC", "IMG_0002.jpg"]  # the expander's
    heic = next(iter_frames([listed[0]]))
    with pytest.raises(BadInputError) as err:
        heic.decoded(LIMIT)
    assert err.value.reason == "unsupported" and "pillow-heif" in err.value.detail and "convert" in err.value.detail
    from moodstream.trainer.data import IMAGE_EXTS as TRAINING

    assert ".heic" not in TRAINING  # a training folder's HEIC would end the run, not one record
