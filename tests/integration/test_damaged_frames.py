"""A video with a few frames that cannot be decoded in its middle (a bad sector, a transfer that
garbled some bytes, the chunks and the index in place): FFmpeg fails the read of each, and the reads
after them go on. Every reader took the first failed read for the video's end: an AVI (whole, so no
``truncated``) was analysed up to the damage, the rest of it never read, exit 0 and "0 errors"."""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.shared.media import iter_video

FRAMES, DAMAGED = 60, range(20, 30)  # 2 s at 30 fps; frames 20..29 undecodable


def damaged_avi(path, fourcc: str, damaged: range = DAMAGED) -> None:
    """An AVI of FRAMES numbered frames whose chunks numbered in ``damaged`` hold zeros (sizes kept)."""
    written = path.with_name("written.avi")
    writer = cv2.VideoWriter(str(written), cv2.VideoWriter_fourcc(*fourcc), 30.0, (160, 120))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for i in range(FRAMES):
        img = np.full((120, 160, 3), (i * 4) % 255, np.uint8)
        cv2.putText(img, str(i), (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    data = bytearray(written.read_bytes())
    movi = data.index(b"movi") - 8
    pos, end, n = movi + 12, movi + 8 + struct.unpack_from("<I", data, movi + 4)[0], 0
    while pos < end:  # the movi list's chunks, one a frame
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if n in damaged:
            data[pos + 8:pos + 8 + size] = bytes(size)
        pos, n = pos + 8 + size + (size & 1), n + 1
    assert n == FRAMES
    path.write_bytes(data)


@pytest.mark.parametrize("fourcc", ["MJPG", "XVID"])
def test_the_frames_after_a_damaged_stretch_are_read_and_the_damage_said(tmp_path, fourcc):
    path = tmp_path / "damaged.avi"
    damaged_avi(path, fourcc)
    items = list(iter_video(str(path)))
    errors = [it for it in items if it.error is not None]
    frames = [it.frame for it in items if it.error is None]
    assert len(errors) == 1, [it.error for it in errors]
    err = errors[0]
    assert err.error.reason == "unreadable" and err.frame == DAMAGED[0], err.error
    assert f"{len(DAMAGED)} frames" in err.error.detail and "after" in err.error.detail, err.error.detail
    assert frames == [i for i in range(FRAMES) if i not in DAMAGED]  # numbered as in the video
    assert items.index(err) == DAMAGED[0]  # said where it is, between the frames around it
    times = {it.frame: it.timestamp_s for it in items if it.error is None}
    assert times[DAMAGED[-1] + 1] == pytest.approx((DAMAGED[-1] + 1) / 30, abs=0.002)
    assert times[FRAMES - 1] == pytest.approx((FRAMES - 1) / 30, abs=0.002)
    # sampled: the frames kept are the video's own, the damage said all the same
    sampled = list(iter_video(str(path), every_n=10))
    assert [it.frame for it in sampled if it.error is None] == [0, 10, 30, 40, 50]
    assert [it.error.reason for it in sampled if it.error is not None] == ["unreadable"]
    # stopped before the damage: nothing of it read, nothing said
    assert [it.frame for it in iter_video(str(path), max_frames=5)] == [0, 1, 2, 3, 4]


def test_analyze_reads_past_damaged_frames_and_exits_1(tmp_path):
    from moodstream.worker.analyze import analyze_cmd as analyze

    path = tmp_path / "damaged.avi"
    damaged_avi(path, "MJPG")
    ran = CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--every", "10", str(path)])
    assert ran.exit_code == 1, ran.output
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["frame"] for r in records if not r.get("error")] == [0, 10, 30, 40, 50]
    assert [(r["frame"], r["error"]["reason"]) for r in records if r.get("error")] == [(20, "unreadable")]
    assert "1 error" in ran.stderr


@pytest.mark.parametrize("fourcc", ["MJPG", "XVID"])
def test_an_avi_whose_last_frames_are_damaged_is_truncated_not_whole(tmp_path, fourcc):
    """Its last 40 frames' chunks in place, their bytes zeros: the chunks walk whole (as a screen
    recording's dropped frames, empty chunks, do), so the 20 frames read were taken for all of it:
    exit 0, "0 errors". Chunks that hold bytes are frames the file has."""
    path = tmp_path / "tail.avi"
    damaged_avi(path, fourcc, range(20, FRAMES))
    *frames, last = iter_video(str(path))
    assert [it.frame for it in frames] == list(range(20)) and all(it.error is None for it in frames)
    assert last.error is not None and last.error.reason == "truncated", last
    assert "20 frames" in last.error.detail and "(60 frames)" in last.error.detail, last.error.detail
