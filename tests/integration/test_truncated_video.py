"""A video cut short (a download that stopped, a disk that filled) decodes its first part and then
simply ends: every frame reader took that end as the video's, and ``analyze`` said the run went
well. Its header still announces the whole length: a video that ends well before it is an error
(``truncated``) after the frames it had, and ``analyze`` exits 1."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.shared.media import iter_video
from moodstream.worker.webm import open_webm

FRAMES = 90  # 3 s at 30 fps


def write(path, kind: str) -> None:
    if kind == "webm":
        writer = open_webm(path, 30.0, (160, 120))
    else:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    for i in range(FRAMES):
        img = np.full((120, 160, 3), (i * 2) % 255, np.uint8)
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
