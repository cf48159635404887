"""Whether a video file's container holds the whole of itself, where OpenCV's reader ended early:
a Matroska / WebM or AVI file whose structure is in place to its end (its header's length is then
no measure of a cut), an MPEG program stream that stops inside a packet, an ASF (WMV) file that
stops before the end its Data Object announces. Headers alone are read, each walk bounded; a
doubt is no cut (a false alarm on a whole file is worse than a miss). Pure byte readers, used by
:mod:`shared.media` once a video's frames have ended."""

from __future__ import annotations

import os
import re
import struct

from moodstream.shared.formats import sniff_format

SNIFF_BYTES = 16  # what sniff_video reads
_EBML = b"\x1a\x45\xdf\xa3"  # Matroska / WebM
_MPEG_PACK = b"\x00\x00\x01\xba"  # an MPEG program stream's pack header
ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")  # ASF (WMV): its Header Object's GUID


def sniff_video(data: bytes) -> str | None:
    """The container named by the first bytes of a video (``.mp4`` for MP4 / QuickTime / 3GP,
    ``.webm`` for WebM / Matroska, ``.avi``, ``.mpg`` for an MPEG program stream, ``.wmv`` for
    ASF, ``.flv``, ``.ts`` for an MPEG transport stream: its first 577 bytes; ``.dav`` for a Dahua
    recorder's DHAV packets, ``.rm`` for RealMedia, ``.ivf`` for IVF (VP8 / VP9 / AV1), ``.mjpg`` for
    a multipart Motion-JPEG stream (its first 1 KB), ``.h264`` / ``.hevc`` for a raw stream with no
    container, :func:`raw_stream`), or None (images among them; an animated GIF:
    :func:`shared.media.read_gif_head`). The one place a video container's signature is read:
    :func:`container_whole` and :func:`shared.media.container_cut` go by it."""
    head = data[:SNIFF_BYTES]
    if head[4:8] == b"ftyp" and sniff_format(data) is None:  # ISO media; AVIF images share the box
        return ".mp4"
    if head[:4] == _EBML:
        return ".webm"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    if head[:4] == _MPEG_PACK:
        return ".mpg"
    if head == ASF_HEADER:
        return ".wmv"
    if head[:4] == b"FLV\x01":
        return ".flv"
    if is_mpeg_ts(data):
        return ".ts"
    if head[:5] == b"DAHUA" or (head[:4] == b"DHAV" and head[4:5] in (b"\xf0", b"\xf1", b"\xfc", b"\xfd")):
        return ".dav"  # a Dahua recorder's export: FFmpeg's dhav demuxer starts on these (its probe's)
    if data.lstrip(b"\r\n")[:2] == b"--" and _MULTIPART_JPEG.search(data, 0, 1024):
        return ".mjpg"  # an IP camera's multipart stream saved to a file (curl -o cam.mjpg): FFmpeg's mpjpeg
    if head[:4] == b".RMF":
        return ".rm"  # RealMedia (.rm, .rmvb)
    if head[:4] == b"DKIF" and head[6:8] == b"\x20\x00":  # IVF (vpxenc, aomenc, WebRTC dumps): its 32-byte header
        return ".ivf"
    return raw_stream(head)


# H.264 profile_idc values (Baseline 66 ... High 4:4:4 244, SVC and MVC's): an SPS's second byte
H264_PROFILES = {66, 77, 88, 100, 110, 122, 244, 44, 83, 86, 118, 128, 134, 135, 138, 139}
HEVC_FIRST = {32, 33, 34, 35, 39}  # a raw H.265 stream's first NAL unit: VPS, SPS, PPS, AUD, prefix SEI


_MULTIPART_JPEG = re.compile(rb"(?i)\ncontent-type:[ \t]*image/jpeg")  # in a multipart part's header


def raw_stream(head: bytes) -> str | None:
    """``.h264`` or ``.hevc`` where ``head`` begins as a raw H.264 / H.265 stream in Annex B (no
    container: a security camera recorder's export, ``cat ch01.264 |``): a start code, then a NAL unit
    such a stream begins with (H.265: a VPS, SPS, PPS, access unit delimiter or SEI of layer 0; H.264:
    an SPS of a profile there is, an access unit delimiter, an SEI), its forbidden bit clear. None else
    (an MPEG program stream's or MPEG-2 video's start code is followed by no NAL unit)."""
    at = 4 if head[:4] == b"\0\0\0\1" else 3 if head[:3] == b"\0\0\1" else 0
    if not at or len(head) < at + 2:
        return None
    first, second = head[at], head[at + 1]
    if first & 0x81 == 0 and first >> 1 in HEVC_FIRST and 1 <= second <= 7:  # layer 0, temporal id + 1
        return ".hevc"
    kind, ref = first & 0x1F, first & 0x60
    if first & 0x80 == 0 and ((kind == 7 and ref and second in H264_PROFILES)
                              or (kind == 9 and not ref and second & 0x1F == 0x10)  # primary_pic_type, stop bit
                              or (kind == 6 and not ref and second)):  # an SEI's payload type
        return ".h264"
    return None


def is_mpeg_ts(data: bytes) -> bool:
    """Whether ``data`` begins as an MPEG transport stream (a camcorder's .mts / .m2ts, a broadcast
    or IPTV recording): a sync byte 0x47 every 188 bytes (192 in an M2TS, after a 4-byte time code),
    three packets' worth at least. (Not a TypeScript file named .ts.)"""
    for start, step in ((0, 188), (4, 192)):
        if len(data) >= start + 2 * step + 1 and all(data[start + k * step] == 0x47 for k in range(3)):
            return True
    return False


def _vint(data: bytes, i: int, marker: bool) -> tuple[int, int] | None:
    """An EBML variable-size integer at ``data[i]`` (an element id with its marker bit, or a size
    without; -1 for the "unknown" size) and where it ends, or None where there is none."""
    if i >= len(data) or not data[i]:
        return None
    n = 9 - data[i].bit_length()
    if i + n > len(data):
        return None
    value = int.from_bytes(data[i:i + n], "big")
    if not marker:
        value &= (1 << (7 * n)) - 1
        if value == (1 << (7 * n)) - 1:
            return -1, i + n
    return value, i + n


def _ebml_element(f, pos: int) -> tuple[int, int, int] | None:
    """(id, where its data starts, its size; -1 unknown) of the EBML element at ``pos`` of ``f``
    (its header only read: 12 bytes at most), or None where there is none."""
    f.seek(pos)
    head = f.read(12)
    eid = _vint(head, 0, True)
    length = _vint(head, eid[1], False) if eid else None
    if length is None:
        return None
    return eid[0], pos + length[1], length[0]


def container_whole(path: str, frames: int | None = None) -> bool:
    """Whether ``path`` is a Matroska / WebM or an AVI file that holds the whole of itself, so that
    the length its header announces is no measure of a cut: a Matroska file's is its container's
    duration (every track's, from its first timestamp, not 0: a video that starts at 10 s, or whose
    sound goes on after its last frame, is shorter and still whole); an AVI's counts its dropped
    frames (empty chunks: a screen recording's unchanged end decodes to fewer frames), and where
    ``frames`` were decoded, its chunks that hold a frame's bytes are not many more (its last frames'
    bytes damaged, their chunks in place). False where it cannot tell (a live recording's unknown
    sizes, a cut, zeros at the end or over a stretch of the frames, any other file)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            kind = sniff_video(f.read(SNIFF_BYTES))
            f.seek(0)
            if kind == ".webm":
                return _matroska_whole(f, size)
            if kind == ".avi":
                return _riff_whole(f, size, frames=frames)
    except (OSError, ValueError):
        pass
    return False


_SEGMENT, _CLUSTER = 0x18538067, 0x1F43B675


def _matroska_whole(f, size: int, max_elements: int = 1_000_000) -> bool:
    """Whether the Matroska file ``f`` holds its Segment, of known size, every top-level element
    of it in place up to its end, and each Cluster its elements (Timecode, SimpleBlock,
    BlockGroup...) up to its own: a download stopped with the file at full size, the rest zeros, or
    a copy that wrote zeros over a stretch of the frames (FFmpeg stops there, at the Cues where the
    stretch is in the last Cluster), ends in no element. An element of unknown size (a live
    recording's Segment and Clusters) cannot tell. Headers alone are read (12 bytes each, the data
    seeked past). Past ``max_elements`` the walk goes on over the top-level elements only, Clusters
    taken whole (a long file with sound, which ends after its last frame, is not called cut for its
    length), and past twice that it stops and says whole: nothing walked was out of place."""
    ebml = _ebml_element(f, 0)
    if ebml is None or ebml[2] < 0 or ebml[1] + ebml[2] > size:
        return False
    segment = _ebml_element(f, ebml[1] + ebml[2])
    if segment is None or segment[0] != _SEGMENT or segment[2] < 0 or segment[1] + segment[2] > size:
        return False
    pos, ends = segment[1], [segment[1] + segment[2]]  # ends: of the Segment and the Cluster pos is in
    for walked in range(2 * max_elements):
        while pos == ends[-1]:  # the end of a Cluster: on in the Segment; of the Segment: whole
            ends.pop()
            if not ends:
                return True
        element = _ebml_element(f, pos)
        if element is None or element[2] < 0 or element[1] + element[2] > ends[-1]:
            return False
        eid, pos, length = element
        if eid == _CLUSTER and len(ends) == 1 and walked < max_elements:
            ends.append(pos + length)  # into it
        else:
            pos += length
    return True  # a doubt is no cut: a false alarm on a whole file is worse than a miss


_FOURCC = re.compile(rb"[ -~]{4}")


def _riff_whole(f, size: int, max_chunks: int = 1_000_000, frames: int | None = None) -> bool:
    """Whether the AVI file ``f`` is its RIFF chunks (the first, and OpenDML's ``AVIX`` after it
    past 1 GiB) up to its end, each of them its chunks up to its own, and each list among them
    (``hdrl``, ``movi``: the frames, a dropped one an empty chunk) its chunks up to its own: a
    download stopped with the file at full size, the rest zeros, or a copy that wrote zeros over a
    stretch of the frames (FFmpeg stops there), ends in no chunk. Where ``frames`` were decoded, its
    video chunks that hold bytes (``##dc``, ``##db``) are at most :func:`few_more` than them.
    Chunks are 8 bytes at least, so ``max_chunks`` (12 bytes read each) bounds the walk of a file
    of a few GB; past it, whole."""
    pos, ends = 0, []  # ends: of the RIFF and the lists pos is in, innermost last
    coded = 0  # video chunks holding bytes: frames the file has
    for _ in range(max_chunks):
        while ends and pos >= ends[-1]:  # the end of a list: on in the one around it
            if pos > ends[-1] + 1:  # a chunk past its list's end (its pad byte may be left out)
                return False
            end = ends.pop()
            pos = end + (end & 1)
        if not ends and pos >= size:  # after the last RIFF
            return pos - size in (0, 1) and (frames is None or not few_more(coded, frames))
        f.seek(pos)
        head = f.read(12)
        if len(head) < 8 or not _FOURCC.fullmatch(head[:4]) or (not ends and head[:4] != b"RIFF"):
            return False
        n = struct.unpack_from("<I", head, 4)[0]
        if head[:4] in (b"RIFF", b"LIST"):
            if n < 4 or pos + 8 + n > (ends[-1] + 1 if ends else size):
                return False
            ends.append(pos + 8 + n)
            pos += 12
        else:
            coded += n > 0 and head[2:4] in (b"dc", b"db")
            pos += 8 + n + (n & 1)
    return True  # a walk this long found nothing out of place: a doubt is no cut (a false alarm is worse)


def few_more(coded: int, frames: int) -> bool:
    """Whether ``coded`` frames in a file are more than the ``frames`` decoded by more than 2 and
    5% (a codec's frames that decode to none: a packed B-frame's placeholder)."""
    return coded - frames > max(2, 0.05 * coded)


MPEG_TAIL_BYTES = 256 * 1024  # the end of an MPEG program stream read for its last packs (one is 2 KiB on a DVD)


def mpeg_ps_cut(f, size: int) -> bool:
    """Whether the MPEG program stream ``f`` (``size`` bytes) stops inside a pack header or a
    packet: its last ``MPEG_TAIL_BYTES`` walked from a pack start, by the packets' own lengths.
    A stream announces no length: one cut exactly between packets ends as a whole one does (FFmpeg
    writes no program end code), and is not called cut; nor is one whose end is no packets."""
    start = max(0, size - MPEG_TAIL_BYTES)
    f.seek(start)
    tail = f.read(size - start)
    at = tail.find(_MPEG_PACK)
    for _ in range(16):  # a start code inside a packet's data walks out of step: the next one
        if at < 0:
            return False
        cut = _mpeg_walk(tail, at)
        if cut is not None:
            return cut
        at = tail.find(_MPEG_PACK, at + 4)
    return False


def _mpeg_walk(data: bytes, i: int) -> bool | None:
    """From the pack at ``data[i]``: True where a pack header or a packet runs past the end of
    ``data``, False where the last ends with it, None where the bytes are no packs (out of step)."""
    n = len(data)
    while i < n:
        if n - i < 4:
            return True if data[i:] == b"\x00\x00\x01"[:n - i] else None
        if data[i:i + 3] != b"\x00\x00\x01":
            return None
        code = data[i + 3]
        if code == 0xB9:  # the program end code
            i += 4
        elif code == 0xBA:  # a pack header: MPEG-1's 12 bytes, or MPEG-2's 14 and its stuffing
            if n - i < 5:
                return True
            if data[i + 4] >> 6 == 1:
                i += 14 if n - i < 14 else 14 + (data[i + 13] & 7)
            elif data[i + 4] >> 4 == 2:
                i += 12
            else:
                return None
        elif code >= 0xBB:  # the system header, a PES packet: its length follows
            if n - i < 6:
                return True
            i += 6 + int.from_bytes(data[i + 4:i + 6], "big")
        else:
            return None
    return i > n


_ASF_FILE_PROPERTIES = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")
_ASF_DATA = bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c")


def asf_cut(f, size: int, max_objects: int = 1024) -> int | None:
    """The bytes an ASF (WMV) file ``f`` of ``size`` bytes announces to the end of its Data Object,
    where it is cut before there; None where it is not, or cannot tell: a broadcast's (live) sizes
    are no sizes, an unfinished recording's Data Object announces only its own header."""
    head = f.read(30)
    if len(head) < 30 or head[:16] != ASF_HEADER:
        return None
    header_size, count = struct.unpack_from("<QI", head, 16)
    if header_size > size:  # no Data Object to read (a size past any file's: no offset to seek to)
        return None
    pos, broadcast = 30, True
    for _ in range(min(count, max_objects)):
        if pos >= header_size:
            break
        f.seek(pos)
        obj = f.read(92)
        if len(obj) < 24:
            break
        if obj[:16] == _ASF_FILE_PROPERTIES and len(obj) == 92:
            broadcast = bool(struct.unpack_from("<I", obj, 88)[0] & 1)
        pos += max(24, struct.unpack_from("<Q", obj, 16)[0])
    f.seek(header_size)
    data = f.read(50)
    if len(data) < 50 or data[:16] != _ASF_DATA or broadcast:
        return None
    end = header_size + struct.unpack_from("<Q", data, 16)[0]
    return end if end > size else None


def mp4_missing_index(path: str, max_boxes: int = 4096) -> bool:
    """Whether ``path`` is an MP4 / QuickTime file with its frames (an ``mdat`` box) and no whole
    index (no ``moov`` box, or one that runs past the end): a recording stopped before it was
    finished, which most writers leave so (the index is written last). Top-level box headers alone
    are read, at most ``max_boxes``; bytes that are no boxes, or a file with its index, are False."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if sniff_video(f.read(SNIFF_BYTES)) != ".mp4":
                return False
            pos, frames, index = 0, False, False
            for _ in range(max_boxes):
                if pos + 8 > size:
                    break
                f.seek(pos)
                head = f.read(16)
                length, kind = struct.unpack(">I4s", head[:8])
                if length == 1:  # a 64-bit size follows the type
                    if len(head) < 16:
                        break
                    length = struct.unpack(">Q", head[8:16])[0]
                elif length == 0:  # the box runs to the end of the file
                    length = size - pos
                if length < 8 or not re.fullmatch(rb"[\x20-\x7e]{4}", kind):
                    return False  # no box: not a file this reader can judge
                if kind == b"mdat":
                    frames = True
                elif kind == b"moov":
                    index = pos + length <= size
                pos += length
            return frames and not index
    except (OSError, ValueError, struct.error):
        return False
