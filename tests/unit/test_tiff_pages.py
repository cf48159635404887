"""A multi-page TIFF (a scanner's or fax's document, a burst saved as one file) was read as its
first page only, without a word. Each page is now a frame of its file, as a video's frames are
(its own frame number, no time: a still image each), for `analyze` and `produce` alike, from a
file, stdin or the expander; a job's bytes are one image, so the worker reads the first page and
says the others were not read."""

from __future__ import annotations

import io
import logging
import os
import struct

import cv2
import numpy as np
import pytest
from tests.support.orientation import stored, tiff_with

from moodstream.producer.sources import file_items
from moodstream.shared.errors import BadInputError
from moodstream.shared.formats import MAX_TIFF_ENTRIES, MAX_TIFF_PAGES, tiff_directories
from moodstream.shared.media import decode_image, decode_pixels, iter_frames

LIMIT = 50_000_000


@pytest.fixture(scope="module")
def pages() -> list[np.ndarray]:
    """Three upright BGR pages of other sizes and pixels."""
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (20 + 4 * k, 30 + 2 * k, 3), dtype=np.uint8) for k in range(3)]


def multi_tiff(path, images: list[np.ndarray]) -> bytes:
    assert cv2.imwritemulti(str(path), images)
    return path.read_bytes()


@pytest.fixture
def document(tmp_path, pages):
    """A 3-page TIFF whose last page is stored on its side and says so (Orientation 6)."""
    data = multi_tiff(tmp_path / "raw.tiff", [pages[0], pages[1], stored(pages[2], 6)])
    path = tmp_path / "scan.tiff"
    path.write_bytes(tiff_with(data, 0x0112, 3, 6, page=2))
    return path


def rgb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_pages(items, source: str, pages: list[np.ndarray]) -> None:
    assert [(i.source, i.frame, i.timestamp_s, i.error) for i in items] == [(source, k, None, None) for k in range(3)]
    for item, page in zip(items, pages):
        np.testing.assert_array_equal(item.decoded(LIMIT), rgb(page))


def test_each_page_of_a_tiff_file_is_a_frame(document, pages):
    check_pages(list(iter_frames([str(document)], max_pixels=LIMIT)), str(document), pages)


def test_each_page_of_a_tiff_on_stdin_is_a_frame(document, pages):
    check_pages(list(iter_frames(["-"], stdin=io.BytesIO(document.read_bytes()), max_pixels=LIMIT)), "-", pages)


def test_each_page_of_a_tiff_the_expander_reads_is_a_frame(document, pages):
    check_pages(list(file_items(str(document), os.path.realpath(document.parent), max_pixels=LIMIT)),
                str(document), pages)


def test_a_one_page_tiff_stays_one_image(tmp_path, pages):
    path = tmp_path / "one.tiff"
    path.write_bytes(multi_tiff(path, pages[:1]))
    [item] = iter_frames([str(path)], max_pixels=LIMIT)
    assert item.frame == 0 and item.data == path.read_bytes()  # its bytes, as any image file's


def test_a_page_over_the_pixel_limit_fails_alone(tmp_path, pages):
    """Each page is judged by its own size: the pages within the limit are read, the other is an error
    named by its page, read no further than its header."""
    big = np.zeros((200, 300, 3), np.uint8)
    path = tmp_path / "mixed.tiff"
    multi_tiff(path, [pages[0], big, pages[1]])
    items = list(iter_frames([str(path)], max_pixels=10_000))
    assert [i.frame for i in items] == [0, 1, 2]
    assert items[1].error is not None and items[1].error.reason == "too_large"
    assert items[1].error.detail.startswith("page 2: 300x200 pixels")
    np.testing.assert_array_equal(items[2].decoded(10_000), rgb(pages[1]))


def test_pages_past_the_bound_give_one_error_after_the_others(tmp_path):
    tiny = [np.full((2, 3, 3), k, np.uint8) for k in range(MAX_TIFF_PAGES + 2)]
    path = tmp_path / "long.tiff"
    multi_tiff(path, tiny)
    items = list(iter_frames([str(path)], max_pixels=LIMIT))
    assert len(items) == MAX_TIFF_PAGES + 1
    assert all(i.error is None and i.image[0, 0, 0] == k for k, i in enumerate(items[:-1]))
    last = items[-1]
    assert last.frame == MAX_TIFF_PAGES and last.error.reason == "too_large"
    assert f"more than {MAX_TIFF_PAGES} pages" in last.error.detail


def test_a_tiff_directory_of_too_many_entries_is_refused_unread(tmp_path, pages, monkeypatch):
    """libtiff reads a directory in time growing with the square of its unknown entries, once for
    every page read: 64 pages of 4,000 entries each held a run 13 s. Real ones hold tens. That page
    is refused unread, the others read (the whole file was refused for one such page)."""
    import moodstream.shared.media as media

    data = multi_tiff(tmp_path / "two.tiff", pages[:2])
    private = tuple((60000 + k, 3, 0) for k in range(MAX_TIFF_ENTRIES))  # unknown to libtiff
    data = tiff_with(data, 59999, 3, 0, page=1, more=private)
    decoded = []
    real = media.cv2.imdecode
    monkeypatch.setattr(media.cv2, "imdecode", lambda buf, flags: decoded.append(len(buf)) or real(buf, flags))
    first, second = iter_frames(["-"], stdin=io.BytesIO(data), max_pixels=LIMIT)
    np.testing.assert_array_equal(first.decoded(LIMIT), rgb(pages[0]))
    with pytest.raises(media.BadInputError) as err:
        second.decoded(LIMIT)
    assert err.value.reason == "unreadable" and f"over {MAX_TIFF_ENTRIES} entries" in err.value.detail
    assert err.value.detail.startswith("page 2: ") and len(decoded) == 1  # page 1 only


def test_a_job_s_multi_page_tiff_gives_its_first_page_and_says_so(document, pages, caplog):
    """The worker decodes a job's bytes as one image: page 1, and a warning that names the pages left."""
    with caplog.at_level(logging.WARNING, logger="moodstream.shared.media"):
        np.testing.assert_array_equal(decode_image(document.read_bytes(), LIMIT), rgb(pages[0]))
    assert "a TIFF of 3 pages: only its first is read" in caplog.text


# --- malformed files and pages (an audit: each a traceback or a wrong answer before) -------------


def without_tag(tiff: bytes, tag: int, page: int) -> bytes:
    """The TIFF with ``tag`` renamed to a private one (65000) in its ``page``-th directory: the
    directory keeps its size and place, the tag is gone for libtiff and for us."""
    end = "<" if tiff[:2] == b"II" else ">"
    offset = struct.unpack(end + "I", tiff[4:8])[0]
    for _ in range(page):
        (n,) = struct.unpack(end + "H", tiff[offset:offset + 2])
        offset = struct.unpack(end + "I", tiff[offset + 2 + 12 * n:offset + 6 + 12 * n])[0]
    (n,) = struct.unpack(end + "H", tiff[offset:offset + 2])
    out = bytearray(tiff)
    for k in range(n):
        at = offset + 2 + 12 * k
        if struct.unpack(end + "H", out[at:at + 2])[0] == tag:
            out[at:at + 2] = struct.pack(end + "H", 65000)
    return bytes(out)


@pytest.mark.parametrize("data", [b"II*\x00", b"II*\x00\x08\x00", b"MM\x00*\x00\x00\x00"])
def test_a_tiff_cut_inside_its_header_is_unreadable(data):
    """Under 8 bytes the directory walk unpacked a missing offset: struct.error out of decode_image,
    and out of iter_frames (analyze stopped with a traceback, the other inputs unread)."""
    with pytest.raises(BadInputError) as err:
        decode_image(data, LIMIT)
    assert err.value.reason == "unreadable"
    [item] = iter_frames(["-"], stdin=io.BytesIO(data), max_pixels=LIMIT)
    with pytest.raises(BadInputError):
        item.decoded(LIMIT)


@pytest.mark.parametrize("first", [0, 4096, 0xFFFFFFFF])
def test_a_tiff_whose_first_directory_is_not_in_it_is_unreadable(tmp_path, pages, first):
    """A first directory at 0 or past the end gave no page: max() of nothing, a ValueError out of
    decode_image and analyze (the size check before today's pages said 'unreadable')."""
    data = bytearray(multi_tiff(tmp_path / "one.tiff", pages[:1]))[:1024]
    data[4:8] = struct.pack("<I", first)
    path = tmp_path / "nowhere.tiff"
    path.write_bytes(bytes(data))
    with pytest.raises(BadInputError) as err:
        decode_image(bytes(data), LIMIT)
    assert err.value.reason == "unreadable"
    [item] = iter_frames([str(path)], max_pixels=LIMIT)
    with pytest.raises(BadInputError):
        item.decoded(LIMIT)


@pytest.mark.parametrize("tag", [256, 257])
def test_a_page_whose_size_cannot_be_read_fails_alone(tmp_path, pages, tag):
    """A page without its width (or length) refused the whole file: a scan of many pages lost every
    one of them for one bad directory. That page is its frame's error, read no further."""
    data = without_tag(multi_tiff(tmp_path / "three.tiff", pages), tag, page=1)
    items = list(iter_frames(["-"], stdin=io.BytesIO(data), max_pixels=LIMIT))
    assert [i.frame for i in items] == [0, 1, 2]
    assert items[1].error is not None and items[1].error.reason == "unreadable"
    assert items[1].error.detail.startswith("page 2: ")
    for k in (0, 2):
        np.testing.assert_array_equal(items[k].decoded(LIMIT), rgb(pages[k]))


def test_a_job_s_tiff_is_judged_by_the_page_it_decodes(tmp_path, pages):
    """The worker decodes a job's first page but judged it by the file's largest: a document whose
    page 2 is over max_pixels was refused whole (too_large) where analyze and produce read page 1."""
    big = np.zeros((200, 300, 3), np.uint8)
    data = multi_tiff(tmp_path / "mixed.tiff", [pages[0], big, pages[1]])
    [first, *_] = iter_frames(["-"], stdin=io.BytesIO(data), max_pixels=10_000)
    job = decode_pixels(data, None, 10_000)
    np.testing.assert_array_equal(job, first.decoded(10_000))
    np.testing.assert_array_equal(job, rgb(pages[0]))


def test_a_tiff_cut_before_a_page_ends_with_a_truncated_error(tmp_path, pages):
    """A download that stopped inside a multi-page TIFF lost its last pages without a word (the
    chain's next directory lay past the end, taken for its end): the pages before are read, then
    a truncated error, as a GIF or a video cut short ends."""
    data = multi_tiff(tmp_path / "three.tiff", pages)
    third = tiff_directories(data).pages[2][0]  # where the third page's directory starts
    cut = data[:third]
    items = list(iter_frames(["-"], stdin=io.BytesIO(cut), max_pixels=LIMIT))
    assert [(i.frame, i.error is None) for i in items] == [(0, True), (1, True), (2, False)]
    assert items[2].error.reason == "truncated" and "page 3" in items[2].error.detail
    for k in (0, 1):
        np.testing.assert_array_equal(items[k].decoded(LIMIT), rgb(pages[k]))
