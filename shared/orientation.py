"""How an image says its pixels are to be turned: the EXIF orientation a JPEG, PNG or WebP carries.

A phone stores a photo as its sensor read it and writes beside the pixels how a viewer turns them
upright (EXIF tag 0x0112: 1 as stored, 2-8 mirrored and / or turned). This reads that number from
the bytes, without decoding and without OpenCV (whose versions differ on which formats they turn);
:func:`shared.media.decode_image` turns the decoded pixels.
"""

from __future__ import annotations

import struct

from moodstream.shared.formats import avif_turn, jpeg_segments

ORIENTATION_TAG = 0x0112


# an AVIF's (irot quarter turns anticlockwise, imir axis) -> the EXIF orientation that turns it alike
# (imir's mode 0 exchanges top and bottom, 1 left and right: HEIF's second edition, libavif, browsers)
AVIF_ORIENTATIONS = {(0, None): 1, (0, 0): 4, (0, 1): 2, (1, None): 8, (1, 0): 5, (1, 1): 7,
                     (2, None): 3, (2, 0): 2, (2, 1): 4, (3, None): 6, (3, 0): 7, (3, 1): 5}


def exif_orientation(data: bytes, kind: str) -> int:
    """The orientation (1-8) that a JPEG's APP1 Exif segment, a PNG's eXIf chunk or a WebP's EXIF
    chunk gives, read as browsers read it (Orientation in IFD0, a SHORT of count 1, 1 to 8); 1 (as
    stored) where there is none or it is malformed, as a viewer then shows the file. A TIFF page's
    own Orientation tag is not EXIF: OpenCV's TIFF decoder applies it (4.9 to 4.14, whatever the flags).
    An AVIF's turn is its irot / imir properties (:func:`shared.formats.avif_turn`), which OpenCV's
    decoder does not apply (4.14). A HEIF's (HEIC's) are its too, which libheif applies as it decodes: 1
    for it (its EXIF orientation, beside them, is not applied again)."""
    if kind == "avif":  # not EXIF: its primary item's irot and imir properties, as browsers apply them
        return AVIF_ORIENTATIONS[avif_turn(data)]
    find = {"jpeg": _jpeg_exif, "png": _png_exif, "webp": _webp_exif}.get(kind)
    block = find(data) if find is not None else None
    return _ifd0_orientation(block) if block else 1


def _jpeg_exif(data: bytes) -> bytes | None:
    """The TIFF-structured block of the first APP1 segment that starts ``Exif\\0\\0``, before the first scan."""
    for marker, at, length in jpeg_segments(data):
        if marker in (0xDA, 0xD9):  # start of scan, end of image: the headers are over
            return None
        if marker == 0xE1 and data[at + 4:at + 10] == b"Exif\x00\x00":
            return data[at + 10:at + 2 + length]
    return None


def _png_exif(data: bytes) -> bytes | None:
    """The eXIf chunk's data, where it comes before the image data (where the PNG specification puts
    it, and where libpng, hence OpenCV and browsers, see it)."""
    i = 8
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"eXIf":
            return data[i + 8:i + 8 + length]
        if kind in (b"IDAT", b"IEND"):
            return None
        i += 12 + length
    return None


def _webp_exif(data: bytes) -> bytes | None:
    """The EXIF chunk's data in an extended (VP8X) WebP, less the ``Exif\\0\\0`` some writers put first."""
    if data[12:16] != b"VP8X":
        return None
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    i = 12
    while i + 8 <= end:
        kind, size = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        if kind == b"EXIF":
            block = data[i + 8:i + 8 + size]
            return block[6:] if block[:6] == b"Exif\x00\x00" else block
        i += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _ifd0_orientation(block: bytes) -> int:
    """Orientation from a TIFF-structured EXIF block; 1 where it is absent or not one a viewer uses.
    The entries are read while they lie in the block, whatever count the directory claims."""
    if len(block) < 8 or block[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    end = "<" if block[:2] == b"II" else ">"
    ifd = struct.unpack(end + "I", block[4:8])[0]
    if ifd + 2 > len(block):
        return 1
    (count,) = struct.unpack(end + "H", block[ifd:ifd + 2])
    for at in range(ifd + 2, min(ifd + 2 + 12 * count, len(block) - 11), 12):
        tag, typ, n = struct.unpack(end + "HHI", block[at:at + 8])
        if tag == ORIENTATION_TAG:
            value = struct.unpack(end + "H", block[at + 8:at + 10])[0] if typ == 3 and n == 1 else 0
            return value if 1 <= value <= 8 else 1
    return 1
