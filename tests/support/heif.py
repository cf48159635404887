"""HEIF files built box by box around a real HEVC picture (libheif's x265, through pillow-heif), so that a
test says exactly what a file declares: a grid of one tile repeated, or an overlay, with the sizes it
claims (an attacker's as much as a camera's)."""

from __future__ import annotations

import functools
import io
import struct
from pathlib import Path

STREET = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, body: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + body)


@functools.cache
def hevc_picture(size: tuple[int, int], quality: int = 50) -> tuple[bytes, bytes]:
    """(its hvcC box, its coded picture with 4-byte NAL lengths): the sample photo at ``size`` (W, H), as
    libheif's x265 codes it for a one-picture HEIC."""
    import pillow_heif
    from PIL import Image

    out = io.BytesIO()
    pillow_heif.from_pillow(Image.open(STREET).resize(size)).save(out, format="HEIF", quality=quality)
    data = out.getvalue()
    at = data.find(b"hvcC")
    config = data[at - 4:at - 4 + struct.unpack(">I", data[at - 4:at])[0]]
    at = data.find(b"mdat")
    return config, data[at + 4:at - 4 + struct.unpack(">I", data[at - 4:at])[0]]


def annex_b(config: bytes, picture: bytes) -> bytes:
    """The picture as a raw H.265 stream (Annex B, what a recorder exports): the parameter sets of its
    hvcC box (VPS, SPS, PPS), then its NAL units, each after a start code instead of its length."""
    pos, units = 8 + 23, []  # the box's size and type, its 22-byte header and numOfArrays
    for _ in range(config[8 + 22]):
        count = struct.unpack(">H", config[pos + 1:pos + 3])[0]
        pos += 3
        for _ in range(count):
            size = struct.unpack(">H", config[pos:pos + 2])[0]
            units.append(config[pos + 2:pos + 2 + size])
            pos += 2 + size
    pos = 0
    while pos + 4 <= len(picture):  # 4-byte lengths before each NAL unit
        size = struct.unpack(">I", picture[pos:pos + 4])[0]
        units.append(picture[pos + 4:pos + 4 + size])
        pos += 4 + size
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def derived_heif(kind: bytes, size: tuple[int, int], ispe: tuple[int, int], rows: int = 1, columns: int = 1,
                 tile: int = 512, with_place: bool = True) -> bytes:
    """A HEIC whose primary item is a ``kind`` (b"grid" or b"iovl") declaring ``size`` in its own data, with
    an ``ispe`` of ``ispe``, over rows x columns references to one ``tile`` x ``tile`` HEVC picture; its data
    in ``idat`` (``with_place`` False: no ``iloc`` entry says where)."""
    config, picture = hevc_picture((tile, tile))
    n = rows * columns
    wide = max(size) > 65535
    sides = struct.pack(">II", *size) if wide else struct.pack(">HH", *size)
    if kind == b"grid":
        own = bytes([0, int(wide), rows - 1, columns - 1]) + sides
    else:  # an overlay: the canvas's fill, its size, then each input's offset
        own = bytes([0, int(wide)]) + b"\xff\xff" * 4 + sides + struct.pack(">ii" if wide else ">hh", 0, 0) * n
    infe = full_box(b"infe", 2, 0, struct.pack(">HH", 1, 0) + kind + b"\0") + \
        full_box(b"infe", 2, 1, struct.pack(">HH", 2, 0) + b"hvc1" + b"\0")
    ipco = box(b"ipco", config + full_box(b"ispe", 0, 0, struct.pack(">II", tile, tile))
               + full_box(b"ispe", 0, 0, struct.pack(">II", *ispe)))
    ipma = full_box(b"ipma", 0, 0, struct.pack(">I", 2) + struct.pack(">HB", 1, 1) + bytes([3])
                    + struct.pack(">HB", 2, 2) + bytes([0x81, 2]))
    head = box(b"ftyp", b"heic\0\0\0\0mif1heic")

    def meta(picture_at: int) -> bytes:
        places = [struct.pack(">HHH", 2, 0, 0) + struct.pack(">H", 1) + struct.pack(">II", picture_at, len(picture))]
        if with_place:
            places.insert(0, struct.pack(">HHH", 1, 1, 0) + struct.pack(">H", 1) + struct.pack(">II", 0, len(own)))
        iloc = full_box(b"iloc", 1, 0, bytes([0x44, 0x00]) + struct.pack(">H", len(places)) + b"".join(places))
        return full_box(b"meta", 0, 0, full_box(b"hdlr", 0, 0, b"\0" * 4 + b"pict" + b"\0" * 13)
                        + full_box(b"pitm", 0, 0, struct.pack(">H", 1)) + iloc
                        + full_box(b"iinf", 0, 0, struct.pack(">H", 2) + infe)
                        + full_box(b"iref", 0, 0, box(b"dimg", struct.pack(">HH", 1, n) + struct.pack(">H", 2) * n))
                        + box(b"iprp", ipco + ipma) + box(b"idat", own))

    picture_at = len(head) + len(meta(0)) + 8
    return head + meta(picture_at) + box(b"mdat", picture)
