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
