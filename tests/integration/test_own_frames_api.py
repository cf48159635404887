"""From Python, frames a program already holds (its own camera loop, a robot's topic) get what
`analyze` gives a video: track ids and smoothed emotions along the source (README "From Python").
One frame at a time gives the same records as `analyze` on the file, batch for batch."""

from __future__ import annotations

from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "hamilton_clip.mp4"


def test_frames_held_by_a_program_are_tracked_as_analyze_tracks_a_video():
    from moodstream import Pipeline, Settings, VideoAnalyzer, VideoFrame, analyze

    settings = Settings(device="cpu")
    pipeline = Pipeline(settings)
    expected = [(r.frame, [(f.track_id, f.box, f.smoothed.emotion, f.emotion) for f in r.faces])
                for r in analyze(str(CLIP), pipeline=pipeline, max_frames=30)]
    video = VideoAnalyzer(pipeline)
    cap = cv2.VideoCapture(str(CLIP))
    got = []
    for i in range(30):
        ok, bgr = cap.read()
        assert ok
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
        (r,) = video.analyze([VideoFrame("camera-1", i, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))])
        got.append((r.frame, [(f.track_id, f.box, f.smoothed.emotion, f.emotion) for f in r.faces]))
    cap.release()
    assert got == expected
    assert {tid for _, faces in got for tid, *_ in faces} == {0}  # one face, one track along the clip


def test_a_frame_the_analyzer_cannot_use_is_refused_by_name():
    """A program's mistakes said where they are made: a list for an image was an AttributeError deep
    inside ('list' object has no attribute 'dtype'); a NaN time was taken and came back as the
    record's time."""
    import math

    import numpy as np
    import pytest

    from moodstream import VideoFrame

    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(TypeError, match="image must be a numpy array"):
        VideoFrame("cam", 0, 0.0, rgb.tolist())
    for t in (math.nan, math.inf, "0.5"):
        with pytest.raises(ValueError, match="timestamp_s"):
            VideoFrame("cam", 0, t, rgb)
    with pytest.raises(ValueError, match="frame"):
        VideoFrame("cam", -1, 0.0, rgb)
    VideoFrame("cam", 0, None, rgb)  # a frame without a time is fine
