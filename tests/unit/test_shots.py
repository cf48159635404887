"""Shot cuts: a face of the next camera shot found where a face of the last one was is another
person. ``tests/fixtures/cut_360p.mp4`` is frames 190-235 of the shared hamilton video: the
performer until its frame 20, the audience from frame 21; a tracker that ignores the cut gave the
performer's track to an audience member (one "person", two people's emotions)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from moodstream.shared.media import iter_video
from moodstream.shared.record import Face
from moodstream.shared.shots import ShotCounter
from moodstream.worker.tracking.tracker import TrackState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CUT = FIXTURES / "cut_360p.mp4"
CUT_AT = 21  # the first frame of the audience shot


def frames(path: Path) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(bgr)


def shots_of(images: list[np.ndarray]) -> list[int]:
    counter, out = ShotCounter(), []
    for image in images:
        shot = counter.see(image)
        if shot is not None:
            out.append(shot)
    out.append(counter.last())
    return out


def test_the_cut_is_found_at_its_frame_and_nowhere_else():
    assert shots_of(frames(CUT)) == [0] * CUT_AT + [1] * (46 - CUT_AT)


def test_a_video_of_one_shot_is_one_shot():
    assert set(shots_of(frames(FIXTURES / "clip_360p.mp4"))) == {0}


def test_a_flash_is_no_cut_and_the_cut_after_it_still_is():
    images = frames(CUT)
    for k in (5, 30):  # a photographer's flash: one frame twice as bright
        images[k] = np.clip(images[k].astype(np.int16) * 2 + 40, 0, 255).astype(np.uint8)
    assert shots_of(images) == [0] * CUT_AT + [1] * (46 - CUT_AT)


def test_a_black_and_white_video_has_its_cut():
    grey = [cv2.cvtColor(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) for b in frames(CUT)]
    assert shots_of(grey) == [0] * CUT_AT + [1] * (46 - CUT_AT)


def test_the_reader_numbers_the_shots_of_every_frame_sampled_or_not():
    every = [(it.frame, it.shot) for it in iter_video(str(CUT))]
    assert every == [(k, int(k >= CUT_AT)) for k in range(46)]
    # 2 frames a second: the kept frames 0.5 s apart tell nothing of a cut; the reader saw every frame
    sampled = [(it.frame, it.shot) for it in iter_video(str(CUT), fps=2)]
    assert sampled == [(k, int(k >= CUT_AT)) for k in range(0, 46, 15)]
    assert [(it.frame, it.shot) for it in iter_video(str(CUT), every_n=7, max_frames=4)] == \
        [(0, 0), (7, 0), (14, 0), (21, 1)]


def face(box) -> Face:
    return Face(box, 0.99, emotion="neutrality", probabilities={"neutrality": 0.9, "happiness": 0.1})


def test_a_shot_change_ends_every_track():
    state = TrackState()
    first = state.update(0, 0.0, [face((10, 10, 50, 50))], shot=0)
    same = state.update(1, 0.033, [face((11, 10, 51, 50))], shot=0)
    after = state.update(2, 0.066, [face((11, 10, 51, 50))], shot=1)
    assert first[0].track_id == same[0].track_id == 0
    assert after[0].track_id == 1 and state.cuts == 1
    assert after[0].smoothed.probabilities == {"neutrality": 0.9, "happiness": 0.1}  # smoothed afresh
    # frames without a shot number (a program's own frames, a producer of another release) cut nothing
    kept = state.update(3, 0.1, [face((11, 10, 51, 50))], shot=None)
    assert kept[0].track_id == 1


def test_a_live_source_numbers_its_shots_too():
    from moodstream.producer.live import LiveConfig, LiveSource

    opened: list[cv2.VideoCapture] = []

    def opener(spec, cfg):  # the real reader over the file: a finite source, read once
        opened.append(cv2.VideoCapture(spec))
        return opened[-1] if len(opened) == 1 else None

    source = LiveSource(str(CUT), LiveConfig(max_reconnects=0), opener=opener)
    assert [(f.frame, f.shot) for f in source.frames()] == [(k, int(k >= CUT_AT)) for k in range(46)]
