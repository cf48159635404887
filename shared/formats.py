"""What an image's or a video's bytes say before anything is decoded: the format by its
signature, an image's size by its header (every page of a TIFF), whether a JPEG or a GIF holds
the whole of itself (a video container's signature and structure: :mod:`shared.containers`). Pure byte
readers (numpy for a TIFF's directories), used by :mod:`shared.media` to judge an input before
OpenCV decodes it."""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from moodstream.shared.errors import BadInputError

HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}  # HEIC: an iPhone's photos


def sniff_format(data: bytes) -> str | None:
    """The image format named by the first bytes, or None if it is none OpenCV decodes.

    Names: jpeg, png, webp, bmp, gif, tiff, pnm, avif (the formats we accept: each has a
    header :func:`image_size` reads), and jpeg2000, openexr, hdr, sunraster,
    pfm, bigtiff (OpenCV decodes them, we refuse them: their sizes are not checked
    before decoding), heif (HEIC: OpenCV has no decoder for it, libheif does; named so that
    it is not taken for a video) and jxl (JPEG XL: no decoder here; named so that it is
    refused as what it is, not as "not an image").
    """
    head = data[:16]
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM":
        return "bmp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] in (b"II+\x00", b"MM\x00+"):
        return "bigtiff"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n#":
        return "pnm"
    if head[:2] in (b"PF", b"Pf") and head[2:3] in b" \t\r\n":
        return "pfm"
    if head[4:8] == b"ftyp":  # ISO media: an AVIF or HEIF image by its brands (a video's are others)
        major, end = head[8:12], min(int.from_bytes(head[:4], "big"), 64)
        compatible = {data[i:i + 4] for i in range(16, end - 3, 4)}  # after the major brand and its version
        if major in (b"avif", b"avis") or (major in (b"mif1", b"msf1") and compatible & {b"avif", b"avis"}):
            return "avif"
        if major in HEIF_BRANDS:
            return "heif"
    if head[:4] == b"\xff\x4f\xff\x51" or head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":
        return "jpeg2000"
    if head[:4] == b"\x76\x2f\x31\x01":
        return "openexr"
    if head[:10] in (b"#?RADIANCE", b"#?RGBE\n\x00\x00\x00"[:10]) or head[:6] == b"#?RGBE":
        return "hdr"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "sunraster"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":  # a bare codestream, a container
        return "jxl"
    return None


# heif: decoded by libheif (pillow-heif) where it is installed (shared.media.heif_decoder), OpenCV the others
ACCEPTED_FORMATS = ("jpeg", "png", "webp", "bmp", "gif", "tiff", "pnm", "avif", "heif")
MAX_BOXES = 4096  # ISO media boxes walked at most to find an AVIF's size


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG, PNG, WebP, BMP, GIF, TIFF, PNM, AVIF or HEIF header without
    decoding, or None. For a TIFF, the largest page (of the first :data:`MAX_TIFF_PAGES`; None
    where one's size cannot be read). BadInputError for a JPEG of over :data:`MAX_JPEG_SEGMENTS`
    header segments (:func:`jpeg_segments`)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        chain = tiff_directories(data)
        if chain is None or any(size is None for _, size in chain.pages):
            return None
        return max((size for _, size in chain.pages), key=lambda wh: wh[0] * wh[1])
    kind = sniff_format(data)
    if kind == "pnm":
        return _pnm_size(data)
    if kind in ("avif", "heif"):  # one container (ISO media's HEIF): its items' ispe properties
        return _avif_size(data)
    return None


def _boxes(data, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The ISO media boxes in ``data[start:end]``: (type, where its content starts, where it ends),
    at most :data:`MAX_BOXES`, none past ``end``."""
    at = start
    for _ in range(MAX_BOXES):
        if at + 8 > end:
            return
        size, kind, body = int.from_bytes(data[at:at + 4], "big"), bytes(data[at + 4:at + 8]), at + 8
        if size == 1 and at + 16 <= end:  # a 64-bit size follows the type
            size, body = int.from_bytes(data[at + 8:at + 16], "big"), at + 16
        elif size == 0:  # to the end
            size = end - at
        if size < body - at or at + size > end:
            return
        yield kind, body, at + size
        at += size


def _inside(data, path: tuple[bytes, ...], start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """The boxes at ``path`` (their types, outermost first) in ``data[start:end]``, as :func:`_boxes`
    gives them, in order; a ``meta`` box's content starts after its version and flags (a full box)."""
    for kind, body, stop in _boxes(data, start, len(data) if end is None else end):
        if kind != path[0]:
            continue
        if kind == b"meta":
            body += 4
        if len(path) == 1:
            yield kind, body, stop
        else:
            yield from _inside(data, path[1:], body, stop)


def _avif_ipco_ipma(data) -> tuple[list[tuple[bytes, int, int]], dict[int, list[int]], int | None]:
    """An AVIF's item properties (ipco's boxes, in order), each item's associated property indices
    (ipma: 1-based into them) and its primary item (pitm), as far as they can be read."""
    props, assoc, primary = [], {}, None
    for _, body, end in _inside(data, (b"meta", b"pitm")):
        if end - body >= 6:
            wide = data[body] >= 1
            primary = int.from_bytes(data[body + 4:body + (8 if wide else 6)], "big")
    for _, body, end in _inside(data, (b"meta", b"iprp", b"ipco")):
        props = list(_boxes(data, body, end))
    for _, body, end in _inside(data, (b"meta", b"iprp", b"ipma")):
        if end - body < 8:
            continue
        version, flags = data[body], data[body + 3]
        at, count = body + 8, int.from_bytes(data[body + 4:body + 8], "big")
        width, step = 4 if version >= 1 else 2, 2 if flags & 1 else 1
        mask = 0x7FFF if step == 2 else 0x7F  # the top bit says "essential"
        for _ in range(min(count, MAX_BOXES)):
            if at + width + 1 > end:
                break
            item, n = int.from_bytes(data[at:at + width], "big"), data[at + width]
            at += width + 1
            if at + n * step > end:
                break
            assoc[item] = [int.from_bytes(data[at + k * step:at + (k + 1) * step], "big") & mask for k in range(n)]
            at += n * step
    return props, assoc, primary


# derived images whose own data (not an ``ispe``) declares the picture's size: a grid of tiles (an iPhone's
# HEIC is 512 x 512 tiles in one) and an overlay's canvas
DERIVED_ITEMS = (b"grid", b"iovl")


def heif_derived_sizes(data) -> list[tuple[int, int]] | None:
    """The (width, height) each derived image of a HEIF or AVIF declares in its own data (:data:`DERIVED_ITEMS`):
    libheif allocates a grid's picture at its declared size, tiles decoded, before it checks that size against
    the ``ispe`` the size guard reads, so a grid of 49 tiles that says 28672 x 28672 with an ``ispe`` of 1024 x
    1024 held 1.3 GB and 7.5 s of decoding for a message of 258 KB. [] where there is none; None where one's
    data cannot be read (its ``iloc`` entry or bytes missing): the image is refused then."""
    types = {}  # item id -> item type, from meta > iinf > infe (version 2 and 3)
    entries = 0  # boxes read in iinf, MAX_BOXES at most in all
    for _, body, end in _inside(data, (b"meta", b"iinf")):
        start = body + 4 + (2 if body < len(data) and data[body] == 0 else 4)  # version, flags, entry count
        for kind, b, e in _boxes(data, start, end):
            entries += 1
            if entries > MAX_BOXES:
                return None
            version, idlen = (data[b] if b < e else 0), (4 if b < e and data[b] == 3 else 2)
            if kind == b"infe" and version >= 2 and b + 4 + idlen + 6 <= e:
                item = int.from_bytes(data[b + 4:b + 4 + idlen], "big")
                types[item] = bytes(data[b + 4 + idlen + 2:b + 4 + idlen + 6])  # after item_protection_index
    derived = [item for item, kind in types.items() if kind in DERIVED_ITEMS]
    if not derived:
        return []
    places = _iloc(data)
    idat = next(((b, e) for _, b, e in _inside(data, (b"meta", b"idat"))), None)
    sizes = []
    for item in derived:
        method, base, extents = places.get(item, (None, 0, [])) if places is not None else (None, 0, [])
        if not extents or method not in (0, 1) or (method == 1 and idat is None):
            return None
        offset, length = extents[0]
        start, limit = (idat[0] + base + offset, idat[1]) if method == 1 else (base + offset, len(data))
        end = min(limit, start + length) if length else limit  # a length of 0: to the end
        size = _derived_size(types[item], bytes(data[start:min(end, start + 32)]))
        if size is None:
            return None
        sizes.append(size)
    return sizes


def _derived_size(kind: bytes, head: bytes) -> tuple[int, int] | None:
    """A grid's output size (version, flags, rows - 1, columns - 1, then width and height, 32 bits each where
    flags' low bit is set, else 16) or an overlay's canvas (version, flags, four 16-bit fill values, then
    the same)."""
    at = 4 if kind == b"grid" else 10
    wide = len(head) > 1 and head[1] & 1
    n = 4 if wide else 2
    if len(head) < at + 2 * n:
        return None
    return int.from_bytes(head[at:at + n], "big"), int.from_bytes(head[at + n:at + 2 * n], "big")


def _iloc(data) -> dict[int, tuple[int, int, list[tuple[int, int]]]] | None:
    """meta > iloc: item id -> (construction method, base offset, [(extent offset, extent length)]); None where
    it is cut short or lists over MAX_BOXES items and extents (an extent of zero-sized fields takes no bytes:
    4,096 items of 65,535 extents each in 32 KB held this loop 11 s)."""
    box = next(iter(_inside(data, (b"meta", b"iloc"))), None)
    if box is None:
        return {}
    _, at, end = box
    version = data[at] if at < end else 0
    at += 4

    def read(n: int) -> int:
        nonlocal at
        if at + n > end:
            raise ValueError("iloc cut short")
        value, at = int.from_bytes(data[at:at + n], "big"), at + n
        return value

    places, steps = {}, 0  # steps: items and extents read, MAX_BOXES at most (an extent may take no bytes)
    try:
        sizes = read(2)
        offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
        index_size = sizes & 15 if version in (1, 2) else 0
        for _ in range(read(4 if version == 2 else 2)):
            item = read(4 if version == 2 else 2)
            method = read(2) & 15 if version in (1, 2) else 0
            read(2)  # data reference index
            base = read(base_size)
            extents = []
            for _ in range(read(2)):
                steps += 1
                if steps > MAX_BOXES:
                    raise ValueError("iloc of too many extents")
                read(index_size)
                extents.append((read(offset_size), read(length_size)))
            steps += 1
            if steps > MAX_BOXES:
                raise ValueError("iloc of too many items")
            places[item] = (method, base, extents)
    except ValueError:
        return None
    return places


def avif_turn(data) -> tuple[int, int | None]:
    """How a viewer turns an AVIF's primary image: its ``irot`` (quarter turns anticlockwise, 0-3) and
    ``imir`` (its mode: 0 top and bottom exchanged, 1 left and right; None: no mirror),
    applied in that order. (0, None) where the properties cannot be read."""
    props, assoc, primary = _avif_ipco_ipma(data)
    mine = assoc.get(primary, []) if primary is not None else []
    turn, mirror = 0, None
    for index in mine:
        if not 1 <= index <= len(props):
            continue
        kind, body, end = props[index - 1]
        if kind == b"irot" and end > body:
            turn = data[body] & 0x3
        elif kind == b"imir" and end > body:
            mirror = data[body] & 0x1
    return turn, mirror


def _avif_animation(data) -> Animation | None:
    """An animated AVIF's frames (its first track's samples: moov > trak > mdia > minf > stbl > stsz)
    and canvas (the largest ispe, else the track header's size)."""
    frames, canvas = 0, _avif_size(data)
    trak = next(_inside(data, (b"moov", b"trak")), None)  # the first track: the colour frames (an alpha track follows)
    if trak is not None:
        _, body, end = trak
        if canvas is None:  # 16.16 fixed, the track header's last 8 bytes
            canvas = next(((int.from_bytes(data[e - 8:e - 6], "big"), int.from_bytes(data[e - 4:e - 2], "big"))
                           for _, b, e in _inside(data, (b"tkhd",), body, end) if e - b >= 84), None)
        for _, b, e in _inside(data, (b"mdia",), body, end):
            frames = next((int.from_bytes(data[b3 + 8:b3 + 12], "big")
                           for _, b3, e3 in _inside(data, (b"minf", b"stbl", b"stsz"), b, e) if e3 - b3 >= 12), 0)
            if frames:
                break
    if frames <= 1 or not canvas or min(canvas) <= 0:
        return None
    return Animation("avif", frames, *canvas)


def avif_sequence(data) -> bool:
    """Whether an AVIF is an image sequence (an animated AVIF: major brand ``avis``)."""
    return data[8:12] == b"avis"


def _avif_size(data) -> tuple[int, int] | None:
    """An AVIF's (width, height): the largest of its items' ``ispe`` properties (meta > iprp > ipco),
    which a grid image's output item has too; None where there is none."""
    sizes = [struct.unpack(">II", data[b + 4:b + 12])
             for _, b, e in _inside(data, (b"meta", b"iprp", b"ipco", b"ispe")) if e - b >= 12]
    return max(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None


MAX_ANIMATION_CHUNKS = 1_000_000  # chunks walked at most in an animation's header (a frame is one or two)


class Animation(NamedTuple):
    kind: str  # "webp", "png" (APNG) or "avif"
    frames: int  # as its header counts them
    width: int  # the canvas
    height: int


def animation_frames(data) -> Animation | None:
    """An animated WebP's, PNG's (APNG's) or AVIF's frame count and canvas size, from its chunks or
    boxes without decoding (a WebP's ANMF chunks, an APNG's acTL before its image data, an AVIF
    sequence's samples), or None: a still image, or none of those (an animated GIF is a video FFmpeg
    reads). ``data``: bytes, or a map of a file."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        at, frames, canvas, animated = 12, 0, None, False
        for _ in range(MAX_ANIMATION_CHUNKS):
            if at + 8 > len(data):
                break
            kind, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
            if kind == b"VP8X" and at + 18 <= len(data):
                animated = bool(data[at + 8] & 0x02)
                canvas = (1 + int.from_bytes(data[at + 12:at + 15], "little"),
                          1 + int.from_bytes(data[at + 15:at + 18], "little"))
            elif kind == b"ANMF":
                frames += 1
            at += 8 + size + (size & 1)
        return Animation("webp", frames, *canvas) if animated and canvas and frames > 1 else None
    if data[4:8] == b"ftyp" and avif_sequence(data):
        return _avif_animation(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        at, canvas = 8, None
        for _ in range(MAX_ANIMATION_CHUNKS):
            if at + 8 > len(data):
                break
            size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
            if kind == b"IHDR" and at + 16 <= len(data):
                canvas = struct.unpack(">II", data[at + 8:at + 16])
            elif kind == b"acTL" and at + 12 <= len(data) and canvas:
                frames = int.from_bytes(data[at + 8:at + 12], "big")
                return Animation("png", frames, *canvas) if frames > 1 else None
            elif kind in (b"IDAT", b"IEND"):  # an APNG's acTL comes before its image data
                break
            at += 12 + size
    return None


_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """From the frame header (SOF), which comes before the first scan; bytes that are no marker
    where one must be are skipped, as libjpeg skips them."""
    for marker, at, _ in jpeg_segments(data, resync=True):
        if marker in _SOF_MARKERS and at + 9 <= len(data):
            h, w = struct.unpack(">HH", data[at + 5:at + 9])
            return w, h
    return None


# marker segments walked before a JPEG's first scan, each a step in Python: a camera's JPEG has
# 10-30 (APPn, DQT, SOF, DHT; an ICC profile or XMP in a few more); 30 MiB of empty segments held
# a decode 10 s, where libjpeg takes 0.06 s
MAX_JPEG_SEGMENTS = 4096
# from a 0xFF: fill bytes (0xFF runs) and markers without a length (TEM, RSTn, SOI) up to the next
# marker byte, skipped by the regex engine (one character class: a run of them is no step each); a
# lone 0x01 or 0xD0-0xD8 among them is passed over as libjpeg passes over stray bytes
_JPEG_SKIP = re.compile(rb"\xff[\xff\x01\xd0-\xd8]*")


def jpeg_segments(data: bytes, resync: bool = False) -> Iterator[tuple[int, int, int]]:
    """(marker, at, length) of each marker segment of a JPEG's header after its SOI, up to and
    including its first start of scan (0xDA) or end of image (0xD9, length 0): ``at`` where its
    0xFF is, ``length`` its length field. Ends where the data does, or where a marker must be and
    none is (``resync``: at the next 0xFF, as libjpeg skips such bytes). BadInputError
    ``unsupported`` past :data:`MAX_JPEG_SEGMENTS` steps (one a segment, or a run of bytes
    skipped)."""
    i = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        skip = _JPEG_SKIP.match(data, i)
        i = skip.end() if skip else i
        if i >= len(data):
            return
        if skip is None or data[i - 1] != 0xFF:  # no marker where one must be
            i = data.find(b"\xff", i) if resync else -1
            if i < 0:
                return
            continue
        marker, at = data[i], i - 1
        if marker == 0xD9:
            yield marker, at, 0
            return
        if at + 4 > len(data):
            return
        length = int.from_bytes(data[at + 2:at + 4], "big")
        yield marker, at, length
        if marker == 0xDA:
            return
        i = at + 2 + length
    raise BadInputError("unsupported", f"a JPEG of over {MAX_JPEG_SEGMENTS} marker segments before its image "
                                       "data (a camera's has tens)")


MAX_JPEG_SCANS = 256  # start-of-scan markers (FF DA cannot occur inside entropy-coded data: FF is stuffed)


def jpeg_end(data: bytes) -> int:
    """Where the image's end-of-image marker ends (-1: none, a truncated file): after its first
    scan, not only at the end of the data, as phones append a video (Motion Photos) or a trailer
    (Samsung). The scan is found by walking the marker segments, so an EXIF thumbnail's own scan
    and end (inside APP1) do not count."""
    for marker, at, _ in jpeg_segments(data):
        if marker == 0xDA:  # start of scan: entropy-coded data follows, where 0xFF is stuffed (FF 00)
            found = data.find(b"\xff\xd9", at + 2)
            return found + 2 if found >= 0 else -1
        if marker == 0xD9:  # an end before any scan: no image (OpenCV then says so)
            return at + 2
    # not a marker where one must be: ends as the data does, or truncated
    return len(data) if data.rstrip(b"\x00")[-2:] == b"\xff\xd9" else -1


def jpeg_stream(data, complete: bool = True) -> bool | None:
    """Whether another JPEG begins where this one ends (zero bytes or line ends between them skipped):
    Motion-JPEG written to a file or a pipe (``rpicam-vid --codec mjpeg``, ``v4l2-ctl --stream-to``,
    ``ffmpeg -f mjpeg``), a video, not a photo. Not a JPEG whose own pictures follow it: a multi-picture
    JPEG (a 3D camera's MPO, an Ultra HDR photo's gain map) names them in an APP2 ``MPF`` segment, and a
    Motion Photo's MP4 is no JPEG. ``complete`` False (a pipe read so far): None where the data ends
    before that can be told."""
    try:
        segments = list(jpeg_segments(data))
    except BadInputError:  # (its header refused as a photo's is)
        return False
    if any(marker == 0xE2 and data[at + 4:at + 8] == b"MPF\x00" for marker, at, _ in segments):
        return False
    if not segments or segments[-1][0] != 0xDA:  # no image data (yet)
        return None if not complete else False
    end = data.find(b"\xff\xd9", segments[-1][1] + 2)  # the image's end, as jpeg_end finds it
    if end < 0:
        return None if not complete else False
    after = data[end + 2:end + 2 + 64].lstrip(b"\x00\r\n")
    if len(after) < 3 and not complete and len(data) < end + 2 + 64:
        return None
    return after[:3] == b"\xff\xd8\xff"


def jpeg_one_scan(data: bytes) -> bool:
    """Whether a JPEG's image is one sequential scan of all its components, as a camera writes it:
    libjpeg then decodes it a band of rows at a time, so a reduced decode (1/2, 1/4, 1/8) holds only the
    reduced pixels. A progressive JPEG, or a scan per component, is buffered whole (its DCT coefficients,
    about 2 bytes a pixel a component) whatever the output's size. An EXIF thumbnail's scan, inside APP1,
    is not the image's."""
    frame = None  # (SOF marker, components)
    for marker, at, _ in jpeg_segments(data):
        if marker in _SOF_MARKERS and at + 10 <= len(data):
            frame = (marker, data[at + 9])
        elif marker == 0xDA:
            if frame is None or frame[0] not in (0xC0, 0xC1) or at + 5 > len(data) or data[at + 4] != frame[1]:
                return False
            end = data.find(b"\xff\xd9", at + 2)  # the image's end, as jpeg_end finds it from this scan
            return end > 0 and data.find(b"\xff\xda", at + 2, end) < 0
    return False


MAX_TIFF_PAGES = 64  # pages of a TIFF sized (and read as frames); a longer one gives an error after them
# entries in one TIFF directory (a camera's have ~20-60; its EXIF is a directory of its own): libtiff's
# time to read one grows with the square of its unknown entries (4,000: 0.2 s), once per page read
MAX_TIFF_ENTRIES = 1024
_IFD_ENTRY = {end: np.dtype([("tag", end + "u2"), ("type", end + "u2"), ("count", end + "u4"), ("value", "V4")])
              for end in "<>"}


class TiffChain(NamedTuple):
    """A TIFF's directory chain as :func:`tiff_directories` walks it."""

    pages: list[tuple[int, tuple[int, int] | None]]  # (directory offset, (width, height); None: unreadable)
    more: bool  # pages follow the first MAX_TIFF_PAGES
    cut: bool  # the chain names a next directory past the end of the data: a file cut short


def tiff_directories(data: bytes) -> TiffChain | None:
    """Each page along a TIFF's directory chain (bounded, loop-safe), at most :data:`MAX_TIFF_PAGES`
    of them: its directory's offset and its (width, height), None where that page's size cannot be
    read or its directory holds over :data:`MAX_TIFF_ENTRIES` entries (that page is refused rather
    than guessed at, or read at length; the chain goes on past it). None where there is no first
    directory in the data (a header cut short, an offset of 0 or past the end). A directory's
    entries are scanned by numpy: each page decoded walks the chain again, and a directory may
    hold 65,535 entries."""
    if len(data) < 8:
        return None
    end = "<" if data[:2] == b"II" else ">"
    found: list[tuple[int, tuple[int, int] | None]] = []
    seen: set[int] = set()
    offset = struct.unpack(end + "I", data[4:8])[0]
    while offset and offset not in seen:
        if offset + 2 > len(data):
            if not found:
                return None
            return TiffChain(found, False, True)
        if len(seen) == MAX_TIFF_PAGES:
            return TiffChain(found, True, False)
        seen.add(offset)
        (count,) = struct.unpack(end + "H", data[offset:offset + 2])
        found.append((offset, None if count > MAX_TIFF_ENTRIES else _tiff_size(data, end, offset, count)))
        nxt = offset + 2 + 12 * count
        if nxt + 4 > len(data):
            break  # a directory cut short: libtiff refuses that page
        offset = struct.unpack(end + "I", data[nxt:nxt + 4])[0]
    return TiffChain(found, False, False) if found else None


def _tiff_size(data: bytes, end: str, offset: int, count: int) -> tuple[int, int] | None:
    """(ImageWidth, ImageLength) of the directory at ``offset`` of ``count`` entries, read from the
    entries that lie in the data; None where either is missing, named twice (libtiff reads the first,
    a check the last) or of a type other than SHORT or LONG."""
    entries = np.frombuffer(data, _IFD_ENTRY[end], min(count, (len(data) - offset - 2) // 12), offset + 2)
    dims: dict[int, int] = {}
    for k in np.flatnonzero((entries["tag"] == 256) | (entries["tag"] == 257)):
        tag, typ = int(entries["tag"][k]), int(entries["type"][k])
        if tag in dims or typ not in (3, 4):
            return None
        at = offset + 2 + 12 * int(k) + 8
        fmt = end + ("H" if typ == 3 else "I")
        dims[tag] = struct.unpack(fmt, data[at:at + struct.calcsize(fmt)])[0]
    return (dims[256], dims[257]) if 256 in dims and 257 in dims else None


def tiff_page_alone(data: bytes, offset: int) -> bytearray:
    """The TIFF made a one-page TIFF of its page whose directory is at ``offset``: the header points
    at that directory, and it at none after it (offsets are from the file's start: the rest stays).
    libtiff then reads that one directory, where asking OpenCV for page k (imdecodemulti) read the k
    before it again for every page (64 pages of 2,000-entry directories: 108 s, now 3.4 s)."""
    end = "<" if data[:2] == b"II" else ">"
    (count,) = struct.unpack(end + "H", data[offset:offset + 2])
    alone = bytearray(data)
    alone[4:8] = struct.pack(end + "I", offset)
    nxt = offset + 2 + 12 * count
    if nxt + 4 <= len(alone):
        alone[nxt:nxt + 4] = bytes(4)
    return alone


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """P1-P6: magic, then width and height as decimal tokens (comments start with #)."""
    tokens: list[int] = []
    i, n = 2, min(len(data), 1024)
    while len(tokens) < 2 and i < n:
        c = data[i:i + 1]
        if c == b"#":
            while i < n and data[i:i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isdigit():
            j = i
            while j < n and data[j:j + 1].isdigit():
                j += 1
            tokens.append(int(data[i:j]))
            i = j
            continue
        elif c not in (b" ", b"\t", b"\r", b"\n"):
            return None
        i += 1
    return (tokens[0], tokens[1]) if len(tokens) == 2 else None


def gif_frames_beyond_one(f) -> bool:
    """Whether the GIF read from ``f`` (a file or bytes) has a second image; False where the data
    stops before one or is no GIF."""
    return gif_blocks(f, stop_at=2)[0] > 1


def gif_blocks(f, stop_at: int | None = None) -> tuple[int, bool]:
    """(images, whole) of the GIF read from ``f``: its images counted (up to ``stop_at``), and
    whether its blocks end with the trailer (0x3b) or with the data, between blocks (a cut inside
    a block is not whole); (0, False) for no GIF."""
    head = f.read(13)
    if len(head) < 13 or head[:6] not in (b"GIF87a", b"GIF89a"):
        return 0, False
    if head[10] & 0x80:
        f.seek(3 << ((head[10] & 7) + 1), os.SEEK_CUR)  # the global colour table
    images = 0
    while True:
        kind = f.read(1)
        if kind == b"\x2c":  # an image: descriptor, local colour table, LZW size, data
            images += 1
            if stop_at is not None and images >= stop_at:
                return images, False
            desc = f.read(9)
            if len(desc) < 9:
                return images, False
            if desc[8] & 0x80:
                f.seek(3 << ((desc[8] & 7) + 1), os.SEEK_CUR)
            f.read(1)
        elif kind == b"\x21":  # an extension: its label, then its data
            f.read(1)
        else:  # the trailer; the data ending between blocks (every image whole: some encoders leave out
            return images, kind in (b"\x3b", b"")  # the trailer, browsers show it whole); not a GIF past here
        while True:  # data sub-blocks, up to an empty one
            size = f.read(1)
            if not size:
                return images, False
            if size == b"\x00":
                break
            f.seek(size[0], os.SEEK_CUR)  # past the end: the next read is empty
