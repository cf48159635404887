"""A phone held upright records a portrait video as a landscape one with a rotation in its track header
(the MP4 `tkhd` display matrix: 90 degrees): a player turns it, and faces read as stored lie on their side,
where MTCNN finds none. The one video reader (`shared.media.iter_video`: analyze, produce, the expander)
must give the frames turned as a player shows them. OpenCV's FFmpeg backend does that by default
(CAP_PROP_ORIENTATION_AUTO) today; this pins it, so an OpenCV upgrade or a reader change that stops
turning them is found here, not by a user whose phone videos come back without faces."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

import moodstream
from moodstream.shared.media import iter_frames
from moodstream.shared.settings import Settings

CLIP = Path(moodstream.__file__).resolve().parent / "samples" / "hamilton_clip.mp4"
ROTATE_90 = (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)  # tkhd matrix: shown turned 90 degrees clockwise


def _with_matrix(data: bytearray, matrix: tuple[int, ...]) -> bytearray:
    """The MP4 with its (first) track header's display matrix set to ``matrix``."""
    at = data.find(b"tkhd")
    version = data[at + 4]
    # version, flags; times, track id, reserved, duration (64-bit times in version 1); reserved 8,
    # layer, alternate group, volume, reserved 2; then the 3x3 matrix
    off = at + 8 + (32 if version == 1 else 20) + 8 + 8
    data[off:off + 36] = struct.pack(">9i", *matrix)
    return data


@pytest.fixture(scope="module")
def portrait(tmp_path_factory) -> Path:
    """12 frames of the sample clip stored turned a quarter left, with the rotation a phone writes."""
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < 12:
        ok, bgr = cap.read()
        assert ok
        frames.append(np.ascontiguousarray(np.rot90(bgr, 1)))  # stored on its side, as the sensor saw it
    cap.release()
    folder = tmp_path_factory.mktemp("phone")
    stored = folder / "stored.mp4"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(stored), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    path = folder / "portrait.mp4"
    path.write_bytes(_with_matrix(bytearray(stored.read_bytes()), ROTATE_90))
    return path


def test_the_reader_gives_a_portrait_videos_frames_upright(portrait):
    items = list(iter_frames([str(portrait)]))
    assert len(items) == 12 and all(i.error is None for i in items)
    assert {i.image.shape for i in items} == {(360, 640, 3)}  # turned back: the clip's own landscape frames
    cap = cv2.VideoCapture(str(CLIP))
    ok, first = cap.read()
    cap.release()
    upright = cv2.cvtColor(first, cv2.COLOR_BGR2RGB).astype(np.int16)
    assert np.abs(items[0].image.astype(np.int16) - upright).mean() < 12  # mp4v's loss, not a turn


def test_its_faces_are_found(portrait):
    records = list(moodstream.analyze(portrait, Settings.from_env(env={}, device="cpu")))
    assert len(records) == 12 and all(r.error is None and r.size == (640, 360) for r in records)
    assert sum(len(r.faces) for r in records) >= 10  # the sample's one face, in (nearly) every frame
