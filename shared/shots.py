"""Shots of an edited video: where one camera shot cuts to another, so that tracks end there.

A face tracker links a face to the one near the same place a moment before. In an edited
video (a concert, an interview, a film) the picture cuts from one camera to another, and a
face of the next shot found near where a face of the last one was would be taken for the same
person: one track, one "person" in the summary, two people's emotions. The reader of a video
therefore numbers its shots (:class:`ShotCounter`, on every decoded frame, sampled or not) and
each frame carries its ``shot``; the tracker (:class:`worker.tracking.TrackState`) ends every
track where the number changes. In the service the producer numbers them as it reads and the
number travels with the frame job to the result (the track stage sees only the sampled frames, whose
differences 0.5 s apart are as large within a shot, when the camera pans, as across a cut).

**The measure.** Each decoded frame is reduced to two histograms of a 64x36 thumbnail in HSV
(hue x saturation, 12 x 4 bins; value, 16 bins); two frames differ by the larger of the two
histograms' total variation distance (half the L1 distance of the normalised histograms, 0..1).
Histograms do not move when the camera or a face moves; the value histogram sees cuts in a
black-and-white film, where hue and saturation say nothing. On the shared videos
(``../shared/data/videos``: 275 + 105 frames, ``samples/hamilton_clip.mp4``), consecutive frames
within a shot differ by at most 0.085, the three cuts of ``hamilton_360p.mp4`` by 0.38-0.49 (0.19-0.33
in a black-and-white copy): :data:`CUT_DISTANCE` 0.15 sits between them. It costs about 25 us a
decoded frame at any size (a 360p frame takes about 500 us to decode, a 1080p one 6 ms).

**Not a flash.** A photographer's flash or a strobe light changes one frame as much as a cut does,
and the next is as before. A cut at frame k is therefore called only once frame k+1 is seen and
differs from frame k-1 as much (the reader holds a kept frame until the next is decoded: one
frame of latency); a frame after the video's last is none, so a cut at the last frame is judged on
its own. Cuts closer than :data:`MIN_SHOT_FRAMES` decoded frames to the one before are not
called (a strobe at every other frame, a glitch). A gradual transition (a dissolve, a fade) changes
each frame a little and is not a cut: its tracks may run across it.
"""

from __future__ import annotations

import cv2
import numpy as np

CUT_DISTANCE = 0.15  # two frames this far apart (histogram total variation, 0..1) are in two shots
MIN_SHOT_FRAMES = 8  # decoded frames at least between two cuts
THUMB = (64, 36)  # the thumbnail the histograms count, (W, H)


class Signature:
    """A frame's two normalised histograms (hue x saturation, value) of its thumbnail."""

    __slots__ = ("hs", "v")

    def __init__(self, bgr: np.ndarray):
        # bilinear: 2 x 2 pixels read per thumbnail pixel, 23 us at any size (averaging every pixel, INTER_AREA,
        # took 0.2 ms at 360p and 1.8 ms at 1080p, for the same distances); histograms need no more
        small = cv2.resize(bgr, THUMB, interpolation=cv2.INTER_LINEAR)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        n = float(THUMB[0] * THUMB[1])
        self.hs = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256]).ravel() / n
        self.v = cv2.calcHist([hsv], [2], None, [16], [0, 256]).ravel() / n

    def distance(self, other: Signature) -> float:
        """0 for the same histograms, 1 for no overlap."""
        return 0.5 * max(float(np.abs(self.hs - other.hs).sum()), float(np.abs(self.v - other.v).sum()))


class ShotCounter:
    """Shot numbers (0, 1, ...) along one video's decoded frames, every one of them in order.

    :meth:`see` takes a frame and returns the shot of the frame *before* it (None for the first),
    which the new frame decides (a flash is no cut); :meth:`last` gives the shot of the last frame
    seen, once no frame follows it."""

    def __init__(self, cut_distance: float = CUT_DISTANCE, min_shot_frames: int = MIN_SHOT_FRAMES):
        self.cut_distance = cut_distance
        self.min_shot_frames = min_shot_frames
        self.shot = 0  # of the last frame decided
        self.before: Signature | None = None  # frame k-1 (decided)
        self.pending: Signature | None = None  # frame k (its shot not decided yet)
        self.since = 0  # frames decided since the last cut
        self.cuts = 0

    def see(self, bgr: np.ndarray) -> int | None:
        nxt = Signature(bgr)
        decided = self._decide(nxt) if self.pending is not None else None
        self.pending = nxt
        return decided

    def last(self) -> int | None:
        """The shot of the last frame seen (judged without a next frame); None if none was seen."""
        if self.pending is None:
            return None
        decided = self._decide(None)
        self.pending = None
        return decided

    def _decide(self, nxt: Signature | None) -> int:
        frame, before = self.pending, self.before
        assert frame is not None
        jump = before is not None and before.distance(frame) >= self.cut_distance
        if jump and nxt is not None and before.distance(nxt) < self.cut_distance:
            self.since += 1  # a flash: the next frame is as the one before; compared with that one still
            return self.shot
        if jump and self.since >= self.min_shot_frames:
            self.shot += 1
            self.cuts += 1
            self.since = 0
        self.since += 1
        self.before = frame
        return self.shot
