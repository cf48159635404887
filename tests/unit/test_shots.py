"""Shot cuts: a face of the next camera shot found where a face of the last one was is another
person. ``tests/fixtures/cut_360p.mp4`` is frames 190-235 of the shared hamilton video: the
performer until its frame 20, the audience from frame 21; a tracker that ignores the cut gave the
performer's track to an audience member (one "person", two people's emotions)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

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


# --- the audit's classes of edits (docs/results/shots_audit.md), on the fixture's two shots ---------------------

def performer_and_audience() -> tuple[list[np.ndarray], list[np.ndarray]]:
    images = frames(CUT)
    return images[:CUT_AT], images[CUT_AT:]


def brighter(bgr: np.ndarray, gain: float, offset: float = 0.0) -> np.ndarray:
    return np.clip(bgr.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def closer(bgr: np.ndarray) -> np.ndarray:
    """A second camera nearer the same scene: its right part (0.6 of the frame), at the frame's size (a
    punch-in on the middle, 1.4x or less, is not found: its picture changes as little as people moving)."""
    h, w = bgr.shape[:2]
    return cv2.resize(bgr[int(0.2 * h):int(0.8 * h), int(0.4 * w):], (w, h))


@pytest.mark.parametrize("second", [lambda f: cv2.flip(f, 1), closer, lambda f: np.roll(f, f.shape[1] // 4, axis=1)],
                         ids=["mirrored", "closer", "shifted"])
def test_a_cut_between_two_shots_of_one_colour_is_a_cut(second):
    """Two cameras in one room (an interview's shot and reverse shot) show the same colours: the
    histograms alone (0.03-0.14 apart) did not see the cut; the picture changes."""
    _, audience = performer_and_audience()
    images = audience + [second(f) for f in audience]
    assert shots_of(images) == [0] * len(audience) + [1] * len(audience)


def test_a_light_switched_on_is_no_cut():
    """The colours change at once (x1.6 from frame 10: the histograms 0.37 apart), the picture does not."""
    images = frames(CUT)
    images[10:] = [brighter(f, 1.6) for f in images[10:]]
    assert shots_of(images) == [0] * CUT_AT + [1] * (46 - CUT_AT)


def test_a_flash_of_two_frames_and_a_strobe_are_no_cut():
    images = frames(CUT)
    for k in (5, 6, 30, 31):  # two flashes of two frames
        images[k] = brighter(images[k], 2.0, 40.0)
    for k in range(34, 46):  # a strobe: two frames lit, two not
        if (k // 2) % 2 == 0:
            images[k] = brighter(images[k], 2.0, 40.0)
    assert shots_of(images) == [0] * CUT_AT + [1] * (46 - CUT_AT)


def test_short_shots_are_shots():
    """A music video's cuts come fast: shots of 3, 5 and 1 frames (a cut within 8 frames of the
    last one was not called: the 3-frame shot and the next were one)."""
    performer, audience = performer_and_audience()
    images = performer[:12] + audience[:3] + [cv2.flip(f, 1) for f in performer[12:17]] + audience[10:11] \
        + performer[17:]
    assert shots_of(images) == [0] * 12 + [1] * 3 + [2] * 5 + [3] + [4] * 4


def test_a_fade_through_black_ends_the_shot_at_the_black_and_the_next_begins_after_it():
    """The faces fading out stay in their shot and those fading in are in the next (the histograms
    of a fade change frame after frame: it was cut into pieces 8 frames apart)."""
    performer, audience = performer_and_audience()
    out = performer[:13] + [brighter(f, 1 - (i + 1) / 9) for i, f in enumerate(performer[13:21])]
    black = [np.zeros_like(performer[0])] * 3
    into = [brighter(f, (i + 1) / 9) for i, f in enumerate(audience[:8])] + audience[8:]
    assert shots_of(out + black + into) == [0] * 21 + [1] * 3 + [2] * 25


@pytest.mark.parametrize("form", ["uint16", "float32", "grey", "bgra", "one channel"])
def test_frames_of_any_form_a_reader_may_give(form):
    """A frame as to_rgb8 takes it (16-bit, float 0-1, grey, with alpha) is numbered as its 8-bit BGR
    copy is (16-bit and float64 ones raised cv2.error)."""
    images = frames(CUT)
    convert = {"uint16": lambda f: f.astype(np.uint16) * 257, "float32": lambda f: f.astype(np.float32) / 255,
               "grey": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY),
               "bgra": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA),
               "one channel": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[:, :, None]}[form]
    assert shots_of([convert(f) for f in images]) == [0] * CUT_AT + [1] * (46 - CUT_AT)


def test_a_frame_of_one_pixel_and_a_uniform_frame():
    assert shots_of([np.full((1, 1, 3), v, np.uint8) for v in (0, 0, 255, 255)]) == [0, 0, 0, 0]
    assert ShotCounter().see(np.zeros((1, 1), np.uint16)) is None


def window(bgr: np.ndarray, x: float, y: float, scale: float = 0.8) -> np.ndarray:
    """The window of ``scale`` x the frame at (x, y) (fractions of the room left), at the frame's size."""
    h, w = bgr.shape[:2]
    cw, ch = int(w * scale), int(h * scale)
    x0, y0 = int((w - cw) * x), int((h - ch) * y)
    return cv2.resize(bgr[y0:y0 + ch, x0:x0 + cw], (w, h))


@pytest.mark.parametrize("seed", range(4))
def test_a_hand_held_camera_shaking_is_no_cut(seed):
    """A phone in the hand: the picture moves by 2% of its width a frame (a random walk). The grey pictures
    compared as they lie decorrelated (2, 2, 0 and 3 false cuts on these 60 frames, each ending every track);
    compared at the best of their shifts by one of their pixels each way, none."""
    clip = frames(FIXTURES.parent.parent / "samples" / "hamilton_clip.mp4")
    walk = np.clip(0.5 + np.cumsum(np.random.default_rng(seed).normal(0.0, 0.1, (len(clip), 2)), axis=0), 0, 1)
    assert set(shots_of([window(f, x, y) for f, (x, y) in zip(clip, walk)])) == {0}


def test_a_fast_pan_is_no_cut():
    """A pan across the audience at 6% of the width a frame (a whip pan's speed)."""
    _, audience = performer_and_audience()
    assert set(shots_of([window(f, min(1.0, k * 0.06 / 0.4), 0.5, 0.6) for k, f in enumerate(audience[:8])])) == {0}


def test_a_picture_whose_middle_is_plain_matches_no_other():
    """A title card: a plain middle, lines only at its edges. OpenCV's normalised correlation of a plain
    template is 1 at every place, so it would have matched any picture (no cut to or from it); it is a
    picture without contrast, as black is."""
    from moodstream.shared.shots import Signature

    card = np.full((360, 640, 3), 30, np.uint8)
    card[:30] = card[-30:] = 220
    audience = frames(CUT)[CUT_AT]
    assert Signature(card).picture_distance(Signature(audience)) == 1.0
    assert Signature(card).picture_distance(Signature(card.copy())) == 0.0
