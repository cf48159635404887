"""A variable-frame-rate WebM for tests: OpenCV writes only constant rates, so the block times of
one it wrote are rewritten in place (EBML: each SimpleBlock's 16-bit time relative to its
cluster's, and the segment's duration)."""

from __future__ import annotations

import struct
from pathlib import Path

CLUSTER, CLUSTER_TIME, SIMPLE_BLOCK, DURATION, TIME_SCALE = 0x1F43B675, 0xE7, 0xA3, 0x4489, 0x2AD7B1
MASTERS = {0x18538067, CLUSTER, 0x1549A966}  # Segment, Cluster, Info: walked into


def _vint(b: bytes, i: int, keep_marker: bool) -> tuple[int, int]:
    n = 1
    while n <= 8 and not b[i] & (0x80 >> (n - 1)):
        n += 1
    value = b[i] if keep_marker else b[i] & ((0x80 >> (n - 1)) - 1)
    for k in range(1, n):
        value = (value << 8) | b[i + k]
    return value, n


def elements(b: bytes, start: int = 0, end: int | None = None):
    """(id, data start, data end) of every element, depth first, into MASTERS."""
    i, end = start, len(b) if end is None else end
    while i < end:
        eid, n1 = _vint(b, i, keep_marker=True)
        size, n2 = _vint(b, i + n1, keep_marker=False)
        data = i + n1 + n2
        stop = end if size == (1 << (7 * n2)) - 1 else data + size  # unknown size: to the parent's end
        yield eid, data, stop
        if eid in MASTERS:
            yield from elements(b, data, stop)
        i = stop


def retime_webm(path: Path, times_ms: list[int]) -> None:
    """Give the i-th frame of a WebM of OpenCV's (a few seconds) the time ``times_ms[i]`` (later than
    its own: a block's time is relative to its cluster's, which stays)."""
    b = bytearray(path.read_bytes())
    found = list(elements(bytes(b)))
    scale = next(int.from_bytes(b[d:s], "big") for e, d, s in found if e == TIME_SCALE)
    assert scale == 1_000_000  # ms
    blocks, cluster_time = [], None
    for e, d, s in found:
        if e == CLUSTER_TIME:
            cluster_time = int.from_bytes(b[d:s], "big")
        elif e == SIMPLE_BLOCK:
            blocks.append((d, cluster_time))
    assert len(blocks) == len(times_ms), (len(blocks), len(times_ms))
    for (data, base), t in zip(blocks, times_ms):
        _, n = _vint(bytes(b), data, keep_marker=False)  # the track number
        assert 0 <= t - base < 1 << 15, (t, base)
        b[data + n:data + n + 2] = struct.pack(">h", t - base)
    for e, d, s in found:
        if e == DURATION:
            step = times_ms[-1] - times_ms[-2]
            b[d:s] = struct.pack(">d" if s - d == 8 else ">f", float(times_ms[-1] + step))
    path.write_bytes(bytes(b))
