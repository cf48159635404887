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

**The measure.** Each decoded frame is reduced to a 64x36 thumbnail, and that to two histograms in
HSV (hue x saturation, 12 x 4 bins; value, 16 bins) and a 16x9 grey picture. Two frames differ in
colour by the larger of the two histograms' total variation distance (half the L1 distance of the
normalised histograms, 0..1), in picture by one minus the correlation of the two grey pictures where
they match best (one's centre, :data:`SHIFT` pixels in from every side, over the other shifted by up
to that much each way; 0 the same, 1 unrelated; a brighter or darker copy is the same picture). A cut
is a change of colours that comes with a change of picture (:data:`CUT_DISTANCE`,
:data:`PICTURE_CHANGE`), or a change of picture alone that large (:data:`PICTURE_CUT`): histograms do
not move when the camera or a face moves, but two cameras in one room (an interview's shot and
reverse shot, a closer framing of the same stage) show the same colours, and a light switched on, a
flash or a strobe changes every colour of the picture and leaves the picture itself. The best shift
is what a camera in the hand needs: compared as they lie, a random walk of 2% of the width a frame
decorrelated the pictures as much as a cut (0.4-0.6 apart), a false cut every 20-30 frames. A
picture without contrast (:data:`BLANK_STD`: black, a fade's end, a title card's plain middle) is
unlike any other, so a fade through black ends a shot at the black and the next one begins after it.
``moodstream bench shots`` (``docs/results/shots_audit.md``) measures the rule on edited copies of
the shared videos (``../shared/data/videos``, MIT): hard cuts between their shots, cuts between
shots of one colour (mirrored, closer, shifted, two parts of one shot), shots of 1-10 frames, fades
and dissolves, flashes, strobes, lights switched on, zooms, pans and a shaking camera, as MP4 and
WebM. Within shots, consecutive frames differ by at most 0.13 in colour, hand-held or not (0.085 in
the files as shot), and by 0.26 in picture (a head moving across the frame; up to 0.47 with a camera
shaking 1.5-3% of the width a frame over it); a flash, a strobe or a light by at most 0.17 in picture;
the cuts that change colour by 0.15 change the picture by 0.21 or more. 63 of 74 cuts are found, none
false; missed are dissolves and cuts of one colour whose picture changes as little as a shaking
camera's (0.15-0.30: a punch-in, the street mirrored, a jump cut of a fixed camera). It costs about
0.06-0.08 ms a decoded frame at any size (a 360p frame takes about 0.35 ms to decode, a 1080p one 4.4 ms).

**Not a flash.** A photographer's flash or a frame dropped to black changes one frame as much as a
cut does, and the next is as before. A cut at frame k is therefore called only once frame k+1 is seen
and is a cut from frame k-1 too (the reader holds a kept frame until the next is decoded: one frame
of latency); a frame after the video's last is none, so a cut at the last frame is judged on its own.
A shot may be one frame long (a music video's). A dissolve changes each frame a little and is not a
cut: its tracks may run across it.
"""

from __future__ import annotations

import cv2
import numpy as np

from moodstream.shared.pixels import to_rgb8

CUT_DISTANCE = 0.15  # two frames this far apart in colour (histogram total variation, 0..1) ...
PICTURE_CHANGE = 0.2  # ... are in two shots if their pictures differ this much too (1 - correlation, 0..2)
PICTURE_CUT = 0.5  # two pictures this different are two shots whatever their colours (two cameras, one room)
BLANK_STD = 2.0  # a grey picture of less contrast than this (std, grey levels) shows nothing: black, a fade's end
THUMB = (64, 36)  # the thumbnail the histograms count, (W, H)
PICTURE = (16, 9)  # the grey picture compared, (W, H): the thumbnail averaged over 4 x 4 pixels
SHIFT = 1  # the pictures are compared shifted by up to this many of its pixels each way (the best kept)


class Signature:
    """A frame's two normalised histograms (hue x saturation, value) of its thumbnail, and its grey
    picture (None for a picture without contrast) with its centre, the picture less :data:`SHIFT` of
    its pixels on every side, which the other frame's picture is searched for."""

    __slots__ = ("hs", "v", "picture", "centre")

    def __init__(self, bgr: np.ndarray):
        # bilinear: 2 x 2 pixels read per thumbnail pixel, 23 us at any size (averaging every pixel, INTER_AREA,
        # took 0.2 ms at 360p and 1.8 ms at 1080p, for the same distances); histograms need no more
        small = cv2.resize(bgr, THUMB, interpolation=cv2.INTER_LINEAR)
        if small.dtype != np.uint8 or small.ndim != 3 or small.shape[2] != 3:  # 16-bit, float, grey, alpha
            small = cv2.cvtColor(to_rgb8(small), cv2.COLOR_RGB2BGR)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        n = float(THUMB[0] * THUMB[1])
        self.hs = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256]).ravel() / n
        self.v = cv2.calcHist([hsv], [2], None, [16], [0, 256]).ravel() / n
        grey = cv2.resize(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), PICTURE, interpolation=cv2.INTER_AREA)
        centre = grey[SHIFT:-SHIFT, SHIFT:-SHIFT]  # a centre without contrast would match any picture: blank
        blank = min(float(cv2.meanStdDev(grey)[1][0, 0]), float(cv2.meanStdDev(centre)[1][0, 0])) < BLANK_STD
        self.picture = None if blank else grey.astype(np.float32)  # 1 us each; numpy's std of 144 values took 20
        self.centre = None if blank else centre.astype(np.float32)

    def distance(self, other: Signature) -> float:
        """Colours: 0 for the same histograms, 1 for no overlap."""
        return 0.5 * max(float(np.abs(self.hs - other.hs).sum()), float(np.abs(self.v - other.v).sum()))

    def picture_distance(self, other: Signature) -> float:
        """Picture: 1 - the correlation of the grey pictures where they match best, one's centre over the
        other's shifted by up to :data:`SHIFT` pixels each way, both ways (0 the same picture, moved a
        little or not, brighter or not; 1 unrelated, up to 2 for a negative); two pictures without contrast
        are the same, one and a picture are unrelated."""
        if self.picture is None or other.picture is None:
            return 0.0 if self.picture is None and other.picture is None else 1.0
        # OpenCV's normalised correlation: a window without contrast gives 0 or +-1, never NaN; 3 us each
        best = max(cv2.minMaxLoc(cv2.matchTemplate(other.picture, self.centre, cv2.TM_CCOEFF_NORMED))[1],
                   cv2.minMaxLoc(cv2.matchTemplate(self.picture, other.centre, cv2.TM_CCOEFF_NORMED))[1])
        return 1.0 - float(best)


class ShotCounter:
    """Shot numbers (0, 1, ...) along one video's decoded frames, every one of them in order.

    :meth:`see` takes a frame and returns the shot of the frame *before* it (None for the first),
    which the new frame decides (a flash is no cut); :meth:`last` gives the shot of the last frame
    seen, once no frame follows it."""

    def __init__(self, cut_distance: float = CUT_DISTANCE, picture_change: float = PICTURE_CHANGE,
                 picture_cut: float = PICTURE_CUT):
        self.cut_distance = cut_distance
        self.picture_change = picture_change
        self.picture_cut = picture_cut
        self.shot = 0  # of the last frame decided
        self.before: Signature | None = None  # frame k-1 (decided)
        self.pending: Signature | None = None  # frame k (its shot not decided yet)
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

    def is_cut(self, a: Signature, b: Signature) -> bool:
        """Whether frames ``a`` and ``b`` are in two shots: their colours and their picture changed, or
        their picture so much that their colours do not matter."""
        picture = a.picture_distance(b)
        return picture >= self.picture_cut or (picture >= self.picture_change and a.distance(b) >= self.cut_distance)

    def _decide(self, nxt: Signature | None) -> int:
        frame, before = self.pending, self.before
        assert frame is not None
        jump = before is not None and self.is_cut(before, frame)
        if jump and nxt is not None and not self.is_cut(before, nxt):
            return self.shot  # a flash: the next frame is as the one before; compared with that one still
        if jump:
            self.shot += 1
            self.cuts += 1
        self.before = frame
        return self.shot
