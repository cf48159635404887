"""Images that say how to turn them, as a phone writes them: the pixels stored on their side and
an orientation tag (EXIF 0x0112, or a TIFF page's own Orientation tag) saying how a viewer turns
them upright.

The pixels come from a real encoder (OpenCV); the tag's bytes are written here, by hand, so a test
knows exactly what a file holds. :func:`stored` gives the pixels a camera stores for an upright
picture and an orientation; decoding the file must give the upright picture back.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import numpy as np

# orientation -> what a viewer does to the stored pixels, (H, W, ...) -> (H', W', ...)
SHOWN: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # turned 90 clockwise (a phone held upright, its camera's sensor landscape)
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transverse
    8: lambda a: np.rot90(a, 1),  # turned 90 counter-clockwise
}
UNDONE_BY = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}  # each is its own inverse but the quarter turns


def stored(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for ``upright`` when it writes ``orientation`` beside them."""
    return np.ascontiguousarray(SHOWN[UNDONE_BY[orientation]](upright))


def exif(orientation: int, order: str = "MM", typ: int = 3, count: int = 1) -> bytes:
    """A TIFF-structured EXIF block (what JPEG's APP1, PNG's eXIf and WebP's EXIF hold): IFD0 with
    one entry, Orientation, as SHORT (``typ`` 3) unless told otherwise."""
    end = ">" if order == "MM" else "<"
    value = struct.pack(end + "HH", orientation, 0) if typ == 3 else struct.pack(end + "I", orientation)
    return order.encode() + struct.pack(end + "HI", 42, 8) + struct.pack(end + "HHHI", 1, 0x0112, typ, count) \
        + value + struct.pack(end + "I", 0)


def jpeg_with(jpeg: bytes, block: bytes) -> bytes:
    """The JPEG with an APP1 Exif segment holding ``block``, after its APP0 (JFIF) as cameras write it."""
    payload = b"Exif\x00\x00" + block
    at = 2 + 2 + struct.unpack(">H", jpeg[4:6])[0] if jpeg[2:4] == b"\xff\xe0" else 2
    return jpeg[:at] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[at:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with(png: bytes, block: bytes) -> bytes:
    """The PNG with an eXIf chunk holding ``block`` right after IHDR (before IDAT, where the PNG
    specification puts it)."""
    at = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:at] + png_chunk(b"eXIf", block) + png[at:]


def webp_with(webp: bytes, block: bytes, width: int, height: int, prefix: bytes = b"") -> bytes:
    """The simple-format WebP (one VP8 / VP8L chunk) made extended: a VP8X chunk flagging EXIF, the
    image chunk, then an EXIF chunk holding ``prefix`` + ``block`` (some writers start it with
    ``Exif\\0\\0`` as in JPEG)."""
    assert webp[12:16] in (b"VP8 ", b"VP8L"), "a simple-format WebP"
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) \
        + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    payload = prefix + block
    chunk = b"EXIF" + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)
    body = b"WEBP" + vp8x + webp[12:] + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_with(tiff: bytes, tag: int, typ: int, value: int, page: int = 0,
              more: tuple[tuple[int, int, int], ...] = ()) -> bytes:
    """The TIFF with ``tag`` set to ``value`` (and each of ``more``, (tag, type, value)) in its
    ``page``-th directory: that directory copied to the end of the file with the entries added
    (sorted by tag, as TIFF wants), the pointer to it moved; the pixels and every other offset stay
    where the encoder put them."""
    end = "<" if tiff[:2] == b"II" else ">"
    pointer = 4  # where the offset of the directory is kept: the header, then each directory's last 4 bytes
    offset = struct.unpack(end + "I", tiff[4:8])[0]
    for _ in range(page):
        (n,) = struct.unpack(end + "H", tiff[offset:offset + 2])
        pointer = offset + 2 + 12 * n
        offset = struct.unpack(end + "I", tiff[pointer:pointer + 4])[0]
    (n,) = struct.unpack(end + "H", tiff[offset:offset + 2])
    entries = [tiff[offset + 2 + 12 * k:offset + 14 + 12 * k] for k in range(n)]
    added = ((tag, typ, value), *more)
    entries = [e for e in entries if struct.unpack(end + "H", e[:2])[0] not in {t for t, _, _ in added}]
    for t, ty, v in added:
        data = struct.pack(end + "HH", v, 0) if ty == 3 else struct.pack(end + "I", v)
        entries.append(struct.pack(end + "HHI", t, ty, 1) + data)
    entries.sort(key=lambda e: struct.unpack(end + "H", e[:2])[0])
    following = tiff[offset + 2 + 12 * n:offset + 6 + 12 * n]
    out = bytearray(tiff + b"\x00" * (len(tiff) % 2))  # a directory starts on a word boundary
    new = len(out)
    out += struct.pack(end + "H", len(entries)) + b"".join(entries) + following
    out[pointer:pointer + 4] = struct.pack(end + "I", new)
    return bytes(out)
