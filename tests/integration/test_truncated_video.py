"""A video cut short (a download that stopped, a disk that filled) decodes its first part and then
simply ends: every frame reader took that end as the video's, and ``analyze`` said the run went
well. Its header still announces the whole length: a video that ends well before it is an error
(``truncated``) after the frames it had, and ``analyze`` exits 1."""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.vfr import CLUSTER, elements

from moodstream.shared.containers import _matroska_whole, container_whole
from moodstream.shared.media import iter_video
from moodstream.worker.webm import open_webm

FRAMES = 90  # 3 s at 30 fps


def write(path, kind: str, fourcc: str = "MJPG", numbered: bool = True, frames: int = FRAMES) -> None:
    """``frames`` frames at 30 a second, each its number on a grey that changes with it
    (``numbered=False``: the grey alone, a still scene of a few hundred bytes a frame)."""
    if kind == "webm":
        writer = open_webm(path, 30.0, (160, 120))
    else:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30.0, (160, 120))
        assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for i in range(frames):
        img = np.full((120, 160, 3), (i * 2) % 255, np.uint8)
        if numbered:
            cv2.putText(img, str(i), (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(img)
    writer.release()


@pytest.fixture(params=["webm", "avi"])
def videos(request, tmp_path):
    whole = tmp_path / f"whole.{request.param}"
    write(whole, request.param)
    cut = tmp_path / f"cut.{request.param}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return whole, cut


def test_a_video_that_ends_before_its_header_says_is_an_error_after_its_frames(videos):
    whole, cut = videos
    items = list(iter_video(str(whole)))
    assert len(items) == FRAMES and all(it.error is None for it in items)
    items = list(iter_video(str(cut)))
    *frames, last = items
    assert 20 < len(frames) < FRAMES and all(it.error is None for it in frames)
    assert last.error is not None and last.error.reason == "truncated", last.error
    assert last.frame == len(frames) and "3.0 s" in last.error.detail
    # sampled, or stopped early on purpose: the same
    assert list(iter_video(str(cut), every_n=7))[-1].error.reason == "truncated"
    assert all(it.error is None for it in iter_video(str(cut), max_frames=10))


def test_analyze_keeps_the_frames_and_exits_1(videos):
    from moodstream.worker.analyze import analyze_cmd as analyze

    _, cut = videos
    ran = CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--every", "10", str(cut)])
    assert ran.exit_code == 1, ran.output
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["error"]["reason"] for r in records if r.get("error")] == ["truncated"]
    assert sum(1 for r in records if not r.get("error")) >= 2


@pytest.mark.parametrize("name", ["tests/fixtures/clip_360p.mp4", "samples/hamilton_clip.mp4"])
def test_whole_videos_are_not_called_truncated(name):
    assert all(it.error is None for it in iter_video(name))


# MPEG-1 / MPEG-2 program streams and ASF (WMV) as OpenCV's FFmpeg writes them. Their reader takes a
# file's length from the data it holds (an MPEG-PS) or announces none once the file is cut (a WMV:
# a negative count): a cut file was a whole one as far as the frame count went. MJPG and XVID AVIs
# are the header-checked case beside them.
CUT_CONTAINERS = [("mpg", "PIM1"), ("mpeg", "MPG2"), ("wmv", "WMV2"), ("wmv", "WMV1"), ("avi", "XVID")]


@pytest.mark.parametrize("ext, fourcc", CUT_CONTAINERS)
def test_every_container_cut_short_is_truncated_and_whole_is_not(tmp_path, ext, fourcc):
    whole = tmp_path / f"whole.{ext}"
    write(whole, ext, fourcc)
    items = list(iter_video(str(whole)))
    assert len(items) == FRAMES and all(it.error is None for it in items), [it.error for it in items if it.error]
    assert all(it.error is None for it in iter_video(str(whole), every_n=7))
    data = whole.read_bytes()
    # a cut inside a packet; an MPEG-PS cut exactly between two packs looks whole: FFmpeg writes no
    # program end code, and nothing else in the stream tells its length
    for offset in [len(data) * k // 10 + 1 for k in ((2, 5) if ext == "avi" else (1, 2, 5, 8, 9))]:
        assert offset % 2048, offset  # FFmpeg's MPEG-PS packs are 2048 bytes
        cut = tmp_path / f"cut{offset}.{ext}"
        cut.write_bytes(data[:offset])
        *frames, last = iter_video(str(cut))
        assert frames and all(it.error is None for it in frames), (offset, [it.error for it in frames if it.error])
        assert last.error is not None and last.error.reason == "truncated", (offset, last)
        assert last.frame == len(frames) < FRAMES


@pytest.mark.parametrize("ext, fourcc", [("mpg", "PIM1"), ("wmv", "WMV2")])
def test_analyze_keeps_the_frames_of_a_cut_mpeg_or_wmv_and_exits_1(tmp_path, ext, fourcc):
    from moodstream.worker.analyze import analyze_cmd as analyze

    whole, cut = tmp_path / f"whole.{ext}", tmp_path / f"cut.{ext}"
    write(whole, ext, fourcc)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 8 // 10 + 1])
    for path, code, errors in ((whole, 0, []), (cut, 1, ["truncated"])):
        ran = CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--every", "10", str(path)])
        assert ran.exit_code == code, ran.output
        records = [json.loads(line) for line in ran.stdout.splitlines()]
        assert [r["error"]["reason"] for r in records if r.get("error")] == errors
        assert sum(1 for r in records if not r.get("error")) >= 5


def drop_frames(data: bytes, dropped: set[int]) -> bytes:
    """The AVI ``data`` (one RIFF, an ``idx1`` index) with the video chunks numbered in ``dropped``
    made empty, as a capture program writes a dropped frame (FFmpeg too, for a gap in the frames'
    times): a 0-byte chunk in ``movi`` and in the index, counted in the header's frames."""
    movi = data.index(b"movi") - 8
    movi_end = movi + 8 + struct.unpack_from("<I", data, movi + 4)[0]
    idx1 = data.index(b"idx1", movi_end)
    body, pos, n, moved = bytearray(), movi + 12, 0, {}
    while pos < movi_end:
        size = struct.unpack_from("<I", data, pos + 4)[0]
        keep = 0 if n in dropped else size
        moved[pos - movi - 8] = (len(body) + 4, keep)  # idx1 offsets count from the "movi" fourcc
        body += data[pos:pos + 4] + struct.pack("<I", keep) + data[pos + 8:pos + 8 + keep] + b"\0" * (keep & 1)
        pos, n = pos + 8 + size + (size & 1), n + 1
    count = struct.unpack_from("<I", data, idx1 + 4)[0] // 16
    entries = bytearray()
    for k in range(count):
        ckid, flags, offset, _ = struct.unpack_from("<4sIII", data, idx1 + 8 + 16 * k)
        offset, size = moved[offset]
        entries += struct.pack("<4sIII", ckid, flags if size else 0, offset, size)
    out = bytearray(data[:movi]) + b"LIST" + struct.pack("<I", len(body) + 4) + b"movi" + body
    out += b"idx1" + struct.pack("<I", len(entries)) + entries + data[idx1 + 8 + 16 * count:]
    struct.pack_into("<I", out, 4, len(out) - 8)
    return bytes(out)


@pytest.mark.parametrize("fourcc", ["MJPG", "XVID"])
def test_an_avi_ending_on_dropped_frames_is_whole(tmp_path, fourcc):
    """A screen recording whose last 40 frames did not change (each an empty chunk: a dropped frame)
    decoded 50 frames (1.7 s) of the 3.0 s its header announces and was called ``truncated``, exit 1."""
    written = tmp_path / "written.avi"
    write(written, "avi", fourcc)
    whole = tmp_path / "dropped.avi"
    whole.write_bytes(drop_frames(written.read_bytes(), set(range(30, 35)) | set(range(50, FRAMES))))
    items = list(iter_video(str(whole)))
    assert len(items) == 45 and all(it.error is None for it in items), items[-1]
    data = whole.read_bytes()
    cut, zeros = tmp_path / "cut.avi", tmp_path / "zeros.avi"  # cut short, or at full size the rest zeros
    cut.write_bytes(data[: len(data) // 2])
    zeros.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    for path in (cut, zeros):
        *frames, last = iter_video(str(path))
        assert frames and last.error is not None and last.error.reason == "truncated", (path, last)


@pytest.mark.parametrize("ext, fourcc", [("mpg", "PIM1"), ("wmv", "WMV2")])
def test_a_piped_mpeg_or_wmv_is_read_as_a_video(tmp_path, ext, fourcc):
    """`analyze -` told a video from an image by its first bytes for MP4, WebM and AVI only: an
    MPEG program stream or a WMV on stdin was taken for an image ("not an image")."""
    from moodstream.worker.analyze import analyze_cmd

    path = tmp_path / f"v.{ext}"
    write(path, ext, fourcc)
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", "-", "--max-frames", "5"], input=path.read_bytes())
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4] and all(r.get("error") is None for r in records), \
        result.stdout
    assert records[4]["timestamp_s"] == pytest.approx(4 / 30, abs=0.01)


def test_a_wmv_announcing_a_header_past_any_file_is_read_whole(tmp_path):
    """An ASF header object whose size is 2**64 - 1 (FFmpeg reads the frames all the same): the
    truncation check seeked there and raised ValueError out of the reader, and ``analyze`` ended in
    a traceback, none of the frames it had read written."""
    from moodstream.worker.analyze import analyze_cmd as analyze

    path = tmp_path / "sizes.wmv"
    write(path, "wmv", "WMV2")
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 16, 2**64 - 1)
    path.write_bytes(data)
    items = list(iter_video(str(path)))
    assert len(items) == FRAMES and all(it.error is None for it in items), items[-1]
    ran = CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--every", "10", str(path)])
    assert ran.exit_code == 0, ran.output
    assert len(ran.stdout.splitlines()) == FRAMES // 10


@pytest.mark.parametrize("kind, fourcc", [("avi", "MJPG"), ("avi", "XVID"), ("webm", "VP80")])
def test_a_video_with_a_stretch_of_its_frames_zeroed_is_still_an_error(tmp_path, kind, fourcc):
    """A copy that wrote zeros over 40% of the frames (a bad sector), the file whole in size: FFmpeg
    stops at them (about half the frames, none after). It was 'truncated or damaged'; the check for
    dropped frames (an AVI's) or for a container's own length (a WebM's) found the top-level chunks
    or elements whole and called it whole: exit 0, the rest of the video never read and never said.
    The WebM is a still scene (a slide, a camera on a wall), whose 3 s FFmpeg's muxer keeps in one
    Cluster (a new one comes at a keyframe after 4 KiB, or after 5 s): past the zeros it finds the
    Cues, and stops."""
    from moodstream.worker.analyze import analyze_cmd as analyze

    written = tmp_path / f"written.{kind}"
    write(written, kind, fourcc, numbered=kind == "avi")
    data = bytearray(written.read_bytes())
    if kind == "avi":
        begin, end = data.index(b"movi"), data.rindex(b"idx1")
    else:
        ((begin, end),) = [(d, s) for e, d, s in elements(bytes(data)) if e == CLUSTER]
    start, stop = begin + (end - begin) * 3 // 10, begin + (end - begin) * 7 // 10
    data[start:stop] = bytes(stop - start)
    damaged = tmp_path / f"damaged.{kind}"
    damaged.write_bytes(data)
    *frames, last = iter_video(str(damaged))
    # the MJPG frame the zeros begin in fails its read, and FFmpeg reads on: said where it is
    assert all(it.error.reason == "unreadable" for it in frames if it.error is not None)
    frames = [it for it in frames if it.error is None]
    assert frames and len(frames) < FRAMES * 2 // 3
    assert last.error is not None and last.error.reason == "truncated", last
    ran = CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--every", "10", str(damaged)])
    assert ran.exit_code == 1, ran.output
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["error"]["reason"] for r in records if r.get("error")][-1:] == ["truncated"]
    assert [r["frame"] for r in records if not r.get("error")] == list(range(0, len(frames), 10))


SEGMENT = 0x18538067


def unknown_sizes(data: bytes) -> bytes:
    """The WebM ``data`` with its Segment's and Clusters' sizes made unknown (all ones, as wide as
    they were), as a browser's MediaRecorder writes them: a live recording's headers are written
    before their sizes are known."""
    out = bytearray(data)
    for e, d, _ in elements(data):
        if e in (SEGMENT, CLUSTER):
            n = next(n for n in range(1, 9) if data[d - n - 4:d - n] == e.to_bytes(4, "big")
                     and 9 - data[d - n].bit_length() == n)
            out[d - n:d] = ((1 << (7 * n + 1)) - 1).to_bytes(n, "big")
    return bytes(out)


@pytest.mark.parametrize("frames, numbered", [(1, True), (30, True), (FRAMES, True), (FRAMES, False),
                                              (600, True), (600, False)])
def test_whole_webms_are_whole_and_with_unknown_sizes_are_not_truncated(tmp_path, frames, numbered):
    """Whole files of one Cluster or of 50, walked to the end of each; the same with a live
    recording's unknown sizes cannot be told whole, and are read whole, no error."""
    whole = tmp_path / "whole.webm"
    write(whole, "webm", numbered=numbered, frames=frames)
    live = tmp_path / "live.webm"
    live.write_bytes(unknown_sizes(whole.read_bytes()))
    assert container_whole(str(whole)) and not container_whole(str(live))
    for path in (whole, live):
        items = list(iter_video(str(path)))
        assert len(items) == frames and all(it.error is None for it in items), (path, items[-1])


def ebml_noise(rng) -> bytes:
    """Up to 8 elements nearly right, or random bytes: a Cluster's, a block's, a Void's or any id, a
    size 1 to 8 bytes wide (small, unknown or past any file), then data of a small size, or none."""
    out = b""
    for _ in range(int(rng.integers(0, 9))):
        if rng.random() < 0.2:
            out += rng.integers(0, 256, int(rng.integers(0, 16)), np.uint8).tobytes()
            continue
        eid = [CLUSTER, 0xA3, 0xE7, 0xEC, int(rng.integers(1, 1 << 32))][int(rng.integers(0, 5))]
        width = int(rng.integers(1, 9))
        small = int(rng.integers(0, min(24, (1 << (7 * width)) - 1)))  # 0x7F in one byte is unknown
        size = [small, (1 << (7 * width)) - 1, (1 << (7 * width)) - 2][int(rng.choice(3, p=[0.8, 0.1, 0.1]))]
        out += eid.to_bytes((eid.bit_length() + 7) // 8, "big") + ((1 << (7 * width)) | size).to_bytes(width, "big")
        out += rng.integers(0, 256, small, np.uint8).tobytes()
    return out


def test_the_matroska_walk_answers_any_bytes(tmp_path):
    """A small WebM cut at every byte, and its head followed by random bytes (its Segment's size
    theirs, so that they are walked): not whole, or by chance whole, never an exception other than
    the OSError and ValueError that container_whole takes for 'cannot tell'. The walk is bounded."""
    written = tmp_path / "small.webm"
    write(written, "webm", frames=5)
    data = written.read_bytes()
    probe = tmp_path / "probe.webm"
    for n in range(len(data)):
        probe.write_bytes(data[:n])
        assert container_whole(str(probe)) is False, n
    segment, cluster = (next(d for e, d, _ in elements(data) if e == eid) for eid in (SEGMENT, CLUSTER))
    rng = np.random.default_rng(7)
    for trial in range(3000):
        head = data[:cluster - 6] if trial % 2 else data[:int(rng.integers(segment, len(data)))]
        body = bytearray(head + ebml_noise(rng))
        body[segment - 8:segment] = ((1 << 56) | (len(body) - segment)).to_bytes(8, "big")
        probe.write_bytes(body)
        assert container_whole(str(probe)) in (True, False), (trial, bytes(body).hex())
    with written.open("rb") as f:  # its 5 blocks, a Cluster's time and the top-level elements: over 2
        assert _matroska_whole(f, len(data)) and _matroska_whole(f, len(data), max_elements=2)
    zeroed = bytearray(data)  # a Cluster's inside zeroed: found while the budget lasts, not past it
    zeroed[cluster:cluster + 4] = bytes(4)  # its first element's header
    probe.write_bytes(zeroed)
    with probe.open("rb") as f:
        assert not _matroska_whole(f, len(zeroed)) and _matroska_whole(f, len(zeroed), max_elements=1)


def _boxes(*boxes: tuple[bytes, bytes]) -> bytes:
    return b"".join(struct.pack(">I4s", 8 + len(body), kind) + body for kind, body in boxes)


@pytest.mark.parametrize("cut_at", [0.3, 0.6, 0.99])
def test_an_mp4_cut_before_its_index_says_so(tmp_path, cut_at):
    """A recording stopped before its end (a crash, a full disk, a pulled card) leaves an MP4 with
    its frames (mdat) and no index (moov, which most writers put last): no frame can be read. It was
    'unreadable: cannot open video', as for bytes that are no video at all; now `truncated`, naming
    the missing index, and `analyze` exits 1 with that line."""
    from moodstream.worker.analyze import analyze_cmd

    whole = tmp_path / "whole.mp4"
    write(whole, "mp4", "mp4v")
    data = whole.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")  # OpenCV writes the index last
    cut = tmp_path / "recording.mp4"
    cut.write_bytes(data[: int(len(data) * cut_at)])
    [item] = list(iter_video(str(cut)))
    assert item.error is not None and item.error.reason == "truncated" and "moov" in str(item.error), item.error
    run = CliRunner().invoke(analyze_cmd, [str(cut)])
    assert run.exit_code == 1
    [record] = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["error"]["reason"] == "truncated" and "index" in record["error"]["detail"]


def test_an_mp4_with_its_index_or_that_is_no_video_is_not_called_cut(tmp_path):
    """Only an MP4 with frames and no index anywhere is `truncated`: bytes after an ftyp that are no
    boxes, or an index present (the reader failed for another reason), stay `unreadable`."""
    from moodstream.shared.containers import mp4_missing_index

    ftyp = (b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
    cases = {
        "index first, frames cut": (_boxes(ftyp, (b"moov", b"\x00" * 64), (b"mdat", b"\x00" * 4096))[:-1000], False),
        "frames cut, no index": (_boxes(ftyp, (b"free", b""), (b"mdat", b"\x00" * 4096))[:-1000], True),
        "frames whole, no index": (_boxes(ftyp, (b"mdat", b"\x00" * 4096)), True),
        "no frames": (_boxes(ftyp, (b"free", b"\x00" * 16)), False),
        "junk after ftyp": (_boxes(ftyp) + b"\xff" * 64, False),
        "a box past 2**32 (largesize), cut": (_boxes(ftyp) + struct.pack(">I4sQ", 1, b"mdat", 1 << 33) + b"\x00" * 64,
                                              True),
        "a box of size 0 (to the end)": (_boxes(ftyp) + struct.pack(">I4s", 0, b"mdat") + b"\x00" * 64, True),
    }
    for name, (data, missing) in cases.items():
        path = tmp_path / "v.mp4"
        path.write_bytes(data)
        assert mp4_missing_index(str(path)) is missing, name
    for n in range(0, 80):  # any prefix of a file answers, never raises
        path.write_bytes(_boxes(ftyp, (b"mdat", b"\x00" * 32))[:n])
        assert mp4_missing_index(str(path)) in (True, False)
