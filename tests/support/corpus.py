"""The poison corpus, generated (nothing shipped): decompression bombs in every
image format OpenCV decodes, and malformed frame messages of every kind found
by attacking the service (issue 12).

A bomb here is a small file whose header declares a huge image (30000 x 30000
unless said otherwise): what a decoder allocates comes from the header, so a
header the guard lets through costs gigabytes whether or not the data that
follows fills the image.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import msgpack
import numpy as np

from moodstream.shared.record import FrameJob
from moodstream.shared.wire import SCHEMA_VERSION, encode_frame, now_ms

SIDE = 30_000


def _png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    # a real deflate stream of zero rows: about 1000:1, as a real bomb would be (capped at 2 MB here)
    idat = zlib.compress(b"\x00" * min((3 * w + 1) * h, 2_000_000_000 // 1000), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg(w: int, h: int) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", min(h, 65535), min(w, 65535))
    return bytes(data)


def _tiff(w: int, h: int, pages: int = 1) -> bytes:
    """A deflate-compressed TIFF whose first (or last) page declares w x h."""
    small = cv2.imencode(".tiff", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    data = bytearray(small)
    end = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(end + "I", data[4:8])[0]
    (count,) = struct.unpack(end + "H", data[offset:offset + 2])
    for k in range(count):
        at = offset + 2 + 12 * k
        tag, typ = struct.unpack(end + "HH", data[at:at + 4])
        if tag in (256, 257):
            value = w if tag == 256 else h
            data[at + 2:at + 4] = struct.pack(end + "H", 4)  # LONG
            data[at + 4:at + 8] = struct.pack(end + "I", 1)
            data[at + 8:at + 12] = struct.pack(end + "I", value)
    return bytes(data)


def box(kind: bytes, body: bytes) -> bytes:
    """An ISO media box."""
    return struct.pack(">I", 8 + len(body)) + kind + body


def avif_header(width: int, height: int, major: bytes = b"avif") -> bytes:
    """An AVIF's boxes up to its size: ftyp, then meta > iprp > ipco > ispe (width x height)."""
    ispe = box(b"ispe", b"\x00" * 4 + struct.pack(">II", width, height))
    return box(b"ftyp", major + b"\x00\x00\x00\x00avifmif1miaf") + \
        box(b"meta", b"\x00" * 4 + box(b"hdlr", b"\x00" * 8 + b"pict" + b"\x00" * 13) + box(b"iprp", box(b"ipco", ispe)))


def bombs() -> dict[str, bytes]:
    """name -> bytes, one per format OpenCV 4.x decodes (see cv2.getBuildInformation)."""
    bmp = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    bmp[18:26] = struct.pack("<ii", SIDE, SIDE)
    gif = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x3b"
    webp_lossless = bytearray(cv2.imencode(".webp", np.zeros((4, 4, 3), np.uint8),
                                           [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    bits = (16383) | (16383 << 14)
    webp_lossless[21:25] = (int.from_bytes(webp_lossless[21:25], "little") & ~((1 << 28) - 1) | bits).to_bytes(4, "little")
    return {
        "png": _png(SIDE, SIDE),
        "jpeg": _jpeg(SIDE, SIDE),
        "webp-lossless": bytes(webp_lossless),  # 16384 x 16384, the format's largest
        "bmp": bytes(bmp),
        "gif": gif,
        "tiff": _tiff(SIDE, SIDE),
        "pnm": f"P6\n{SIDE} {SIDE}\n255\n".encode() + b"\x00" * 4096,
        "pgm-comment": f"P5\n# a comment\n{SIDE} {SIDE}\n255\n".encode() + b"\x00" * 4096,
        "pfm": f"PF\n{SIDE} {SIDE}\n-1.0\n".encode() + b"\x00" * 4096,
        "hdr": f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {SIDE} +X {SIDE}\n".encode() + b"\x00" * 4096,
        "sunraster": struct.pack(">8I", 0x59A66A95, SIDE, SIDE, 24, 0, 1, 0, 0) + b"\x00" * 4096,
        "jpeg2000": b"\xff\x4f\xff\x51" + struct.pack(">HHIIIIIIIIH", 47, 0, SIDE, SIDE, 0, 0, SIDE, SIDE, 0, 0, 3)
                    + b"\x07\x01\x01" * 3 + b"\x00" * 4096,
        "openexr": b"\x76\x2f\x31\x01\x02\x00\x00\x00" + b"dataWindow\x00box2i\x00\x10\x00\x00\x00"
                   + struct.pack("<iiii", 0, 0, SIDE - 1, SIDE - 1) + b"\x00" * 4096,
        "avif": avif_header(SIDE, SIDE) + b"\x00" * 4096,
        "heif": avif_header(SIDE, SIDE, major=b"heic") + b"\x00" * 4096,  # an iPhone's HEIC: one container
    }


def _map(**changes) -> dict:
    m = {"v": SCHEMA_VERSION, "kind": "frame", "job_id": "x", "source": "poison", "frame": 0,
         "enqueued_at_ms": now_ms(), "image": cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()}
    m.update(changes)
    return {k: v for k, v in m.items() if v is not None}


def _empty_maps(n: int) -> bytes:
    """A msgpack array of ``n`` empty maps: ``n + 5`` bytes that decode to ``n`` Python dicts."""
    return b"\xdd" + struct.pack(">I", n) + b"\x80" * n


def _with_field(key: bytes, value: bytes, **changes) -> bytes:
    """A frame job map with one more entry whose key and value are given as msgpack bytes."""
    body = msgpack.packb(_map(**changes))
    assert 0x80 <= body[0] < 0x8F  # a fixmap: one more entry is one more in its count
    return bytes([body[0] + 1]) + body[1:] + key + value


def options_bomb(n: int, **changes) -> bytes:
    """Issue 22 item 1, exactly: ``"options": {"a": [{} x n]}``, i.e. ``\\x81 \\xa1a \\xdd <n> \\x80*n``
    (4 MiB decoded to +300 MiB of Python objects)."""
    return _with_field(b"\xa7options", b"\x81\xa1a" + _empty_maps(n), **changes)


def messages() -> list[tuple[str, bytes, str]]:
    """(name, message bytes, expected dead-letter reason) for every kind of bad frame job."""
    raw = lambda shape, data=b"": {"shape": shape, "dtype": "uint8", "data": data}  # noqa: E731
    no_image = {"image": None}
    out: list[tuple[str, bytes, str]] = [
        ("shape-overflow", msgpack.packb(_map(**no_image, raw=raw([2**32, 2**32]))), "bad_field"),
        ("shape-overflow-3", msgpack.packb(_map(**no_image, raw=raw([2**32, 2**32, 3]))), "bad_field"),
        ("shape-negative", msgpack.packb(_map(**no_image, raw=raw([-4, -4]))), "bad_field"),
        ("shape-huge-uint64", msgpack.packb(_map(**no_image, raw=raw([2**64 - 1, 1]))), "bad_field"),
        ("shape-strings", msgpack.packb(_map(**no_image, raw=raw(["4", "4"]))), "bad_field"),
        ("raw-dtype", msgpack.packb(_map(**no_image, raw={"shape": [2, 2], "dtype": "float64", "data": b"\0" * 32})),
         "bad_field"),
        ("raw-not-map", msgpack.packb(_map(**no_image, raw=[1, 2, 3])), "bad_field"),
        ("frame-string", msgpack.packb(_map(frame="7")), "bad_field"),
        ("frame-negative", msgpack.packb(_map(frame=-1)), "bad_field"),
        ("frame-bool", msgpack.packb(_map(frame=True)), "bad_field"),
        ("timestamp-nan", msgpack.packb(_map(timestamp_s=float("nan"))), "bad_field"),
        ("job-id-list", msgpack.packb(_map(job_id=[1, 2])), "bad_field"),
        ("job-id-huge", msgpack.packb(_map(job_id="j" * 10_000)), "bad_field"),
        ("source-huge", msgpack.packb(_map(source="s" * 10_000)), "bad_field"),
        ("job-id-1mb", msgpack.packb(_map(job_id="j" * 1_000_000)), "too_large"),
        ("options-4mi-empty-maps", options_bomb(4 * 1024 * 1024), "too_large"),
        ("version-4mi-empty-maps", _with_field(b"\xa1v", _empty_maps(4 * 1024 * 1024), v=None), "too_large"),
        ("shape-4mi-ints", msgpack.packb(_map(**no_image, raw=raw([1] * (4 * 1024 * 1024)))), "too_large"),
        ("options-list", msgpack.packb(_map(options=[1])), "bad_field"),
        ("image-string", msgpack.packb(_map(image="not bytes")), "bad_field"),
        ("both-payloads", msgpack.packb(_map(raw=raw([1, 1], b"\0"))), "bad_field"),
        ("version-map", msgpack.packb(_map(v={"a": 1})), "schema_version"),
        ("top-level-list", msgpack.packb([1, 2, 3]), "not_msgpack"),
        ("int-keys", msgpack.packb({1: 2}), "not_msgpack"),
        ("deep-nesting", b"\x91" * 100_000 + b"\xc0", "not_msgpack"),
        ("ext-type", msgpack.packb(_map(options=msgpack.ExtType(5, b"x"))), "bad_field"),
        ("reserved-byte", b"\xc1", "not_msgpack"),
        ("trailing-bytes", msgpack.packb(_map()) + b"\x00", "not_msgpack"),
    ]
    for name, data in bombs().items():
        reason = "unsupported" if name in ("pfm", "hdr", "sunraster", "jpeg2000", "openexr") else "too_large"
        out.append((f"bomb-{name}", encode_frame(FrameJob(f"bomb-{name}", f"bomb.{name}", 0, image=data)), reason))
    return out
