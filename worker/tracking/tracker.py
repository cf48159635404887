"""Face tracks within one source: a ``track_id`` per face and emotions smoothed along it.

:class:`TrackState` (one per video, camera or stream) takes each analysed
frame's faces (:class:`~moodstream.shared.record.Face`), in frame order, and
returns copies with two more fields::

    track_id: int          # small, per source, in order of appearance
    smoothed: Smoothed     # {"emotion": str, "probabilities": {label: p}}

The raw ``emotion`` / ``probabilities`` stay as they were. Pure numpy + scipy,
no torch: the in-process ``analyze``, the ``moodstream track`` stage and the
benchmarks run this same class.

**Association.** Each live track predicts its box at the frame's time with a
constant-velocity model (box corners in px/s, an exponential average of the
measured velocities); detections are assigned to predictions by Hungarian
matching (:func:`scipy.optimize.linear_sum_assignment`) on ``1 - IoU``, gated
at ``iou_min``, first for the tracks seen on the previous frame, then for the
tracks missed lately (DeepSORT's matching cascade: a track that has been
coasting on its prediction does not take a face from one that is being
followed). Detections and tracks left over go through a third Hungarian
round on the centre distance in units of the track's box side, gated at
``centre_max`` and a size ratio within ``1 / size_max .. size_max``: it
catches a face that moved more than half its width between two sampled
frames (low ``--fps``), where IoU is 0. Why scipy and not a tracker
library: MTCNN reports few, high-confidence faces (score >= 0.9), so
ByteTrack's second association of low-score boxes (``supervision``) has
nothing to work with, and ``supervision`` depends on matplotlib, requests,
pyyaml and ``opencv-python`` (the GUI build, which clashes with our
``opencv-python-headless``); ``norfair`` depends on filterpy (last release
2018) and pins rich below 13. scipy is a well-kept part of the numeric stack,
and the Hungarian step is the part not worth writing by hand; the motion
model is ten lines.

**Crowds.** A frame usually holds a handful of faces, but a results message
can carry thousands (a crowd, or a hostile producer: the track stage runs this
for every result). Each round is therefore solved only on the pairs its gate
can pass, found without an ``N x M`` matrix, and one connected component of
them at a time (:mod:`worker.tracking.assign`): the same assignments as the
dense solve (the optimum splits over components), in about linear time for
faces spread over a frame (10,000 faces: 0.19 s a frame instead of 39 s and
6.3 GB; ``moodstream bench crowd``). A pile-up of boxes that really is
``N x M`` gated pairs is bounded by ``max_pairs`` and ``max_cells``: such a
frame is matched approximately (every face still gets a track) and logged
once per source.

**Lifetime.** A detection that matches no track starts a new one at once
(confirmed immediately: MTCNN's detections are already filtered at score 0.9,
and every face record must carry a ``track_id``; a spurious detection
becomes a short track of its own). A track that matches nothing keeps being
predicted and survives ``max_missed`` analysed frames or ``max_missed_s``
seconds of video time, whichever is longer; after that it ends and a face in
the same place later gets a new id. No re-identification by appearance.
Every track ends at a shot cut of an edited video (a frame whose ``shot``
differs from the last one's, :mod:`moodstream.shared.shots`): a face of the
next shot near where one of the last was is another person, or the same seen
by another camera, and either way no motion links them.

**Smoothing** (for display: what an annotated frame shows; the evidence stays in
the raw values and the summary's episodes, :mod:`worker.tracking.summary`). ``smoothed``
is an exponential moving average of the probabilities along the track with a
time constant ``smoothing_tau_s`` in video seconds (weight of the new frame
``1 - exp(-dt / tau)``, ``dt`` the video time since the track's last face):
the same smoothing at any sampled frame rate, and after a gap the new frame
counts more. A track's first face is smoothed to itself. Chosen by
``moodstream bench tracking --part episodes`` (docs/RESULTS.md, "Video"): the former
log-space average over 0.5 s (a geometric mean) held a steady runner-up such
as neutrality on top through a 0.3-0.5 s smile at p 0.8 and showed 8% of the
0.3 s expressions (25% of all; on ``samples/hamilton_clip.mp4`` the smile of
frames 36-40 at p 0.77-0.88 read "neutrality 50%"); probability space over
0.25 s shows that smile from frame 39 and changes label 52 / 27 times a minute
on the shared hamilton / street videos, where the raw label changes 195 / 99
times (the former smoothing: 17 / 15, by showing almost nothing but neutrality).

Frame times come from ``timestamp_s``; a source without timestamps (still
images, some streams) uses ``frame_index / default_fps``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
import numpy as np

from moodstream.shared.boxes import pair_iou
from moodstream.shared.record import Face, Smoothed
from moodstream.shared.settings import Settings
from moodstream.worker.tracking.assign import assign, window_pairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerConfig:
    iou_min: float = 0.3  # IoU of a detection with a track's predicted box to match in the first round
    centre_max: float = 1.5  # second round: centre distance at most this many track box sides
    size_max: float = 1.5  # second round: box side ratio within 1/size_max .. size_max
    max_missed: int = 5  # a track survives this many analysed frames without a face ...
    max_missed_s: float = 1.0  # ... or this much video time, whichever is longer (ByteTrack: 30 frames)
    velocity_gain: float = 0.5  # weight of a new velocity measurement in its moving average
    smoothing_tau_s: float = 0.25  # time constant of the emotion smoothing, video seconds
    default_fps: float = 30.0  # frame times when a source has no timestamps
    max_pairs: int = 1_000_000  # candidate pairs a round; past it (a pile-up of boxes) a frame is matched approximately
    max_cells: int = 1_000_000  # cells of dense Hungarian blocks a round (1000 x 1000: ~0.1 s); past it, greedy
    shot_cuts: bool = True  # every track ends where a frame's shot differs from the last one's

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackerConfig:
        """The tracker the ``track_*`` settings describe (the rest at their defaults)."""
        return cls(iou_min=settings.track_iou_min, max_missed=settings.track_max_missed,
                   max_missed_s=settings.track_max_missed_s, smoothing_tau_s=settings.track_smoothing_tau_s,
                   shot_cuts=settings.track_shot_cuts)


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # (4,) x1, y1, x2, y2 of the last matched face
    t_s: float  # video time of the last matched face
    frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # (4,) px / s per box coordinate
    hits: int = 1
    missed: int = 0  # analysed frames since the last match
    probs: np.ndarray | None = None  # (C,) smoothed probabilities

    def predict(self, t_s: float, horizon_s: float) -> np.ndarray:
        """The box expected at ``t_s`` (extrapolated at most ``horizon_s`` past the last face)."""
        return self.box + self.velocity * min(max(t_s - self.t_s, 0.0), horizon_s)


def _side(boxes: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 1e-6, None) * np.clip(boxes[:, 3] - boxes[:, 1], 1e-6, None))


def _centre(boxes: np.ndarray) -> np.ndarray:
    """Box centres ``(N, 2)`` for the gates' windows, as halves: no overflow even at 1e308."""
    return boxes[:, :2] * 0.5 + boxes[:, 2:] * 0.5


class Matching(NamedTuple):
    pairs: list[tuple[int, int]]  # (track row, detection row), by round, by track row within one
    exact: bool  # False: past a budget (max_pairs, max_cells), some windows were cut or components matched greedily


def match(predicted: np.ndarray, detected: np.ndarray, config: TrackerConfig,
          missed: list[int] | None = None) -> Matching:
    """(track row, detection row) pairs in three Hungarian rounds: IoU with the tracks seen on
    the last frame, IoU of the rest with the tracks missed lately (``missed[i] > 0``), then the
    centre distance for what is left. Each round on its gated pairs only (:mod:`.assign`)."""
    n, m = len(predicted), len(detected)
    if n == 0 or m == 0:
        return Matching([], True)
    missed_a = np.asarray(missed if missed is not None else [0] * n)
    free_t, free_d = np.ones(n, bool), np.ones(m, bool)
    pairs: list[tuple[int, int]] = []

    def take(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, all_rows: np.ndarray, all_cols: np.ndarray) -> None:
        nonlocal exact
        r, c, solved = assign(rows, cols, cost, all_rows, all_cols, config.max_cells)
        free_t[r], free_d[c] = False, False
        pairs.extend(zip(r.tolist(), c.tolist()))
        exact = exact and solved

    # IoU >= iou_min > 0 needs overlap and the detection's width <= the track's / iou_min (the
    # intersection, at most w_track x h_det, is at least iou_min x the union >= iou_min x w_det x h_det),
    # so centres lie within (w_track + min(w_track / iou_min, widest detection)) / 2 in x; y alike
    t = config.iou_min
    wh_p = np.maximum(predicted[:, 2:] - predicted[:, :2], 0)
    widest = np.fmax.reduce(np.maximum(detected[:, 2:] - detected[:, :2], 0), axis=0)  # NaN only if all are
    reach = wh_p * 0.5 + np.minimum(wh_p / t, widest) * 0.5
    rows, cols, exact = window_pairs(_centre(predicted), reach, _centre(detected), config.max_pairs)
    iou = pair_iou(predicted[rows], detected[cols])
    gated = iou >= t
    rows, cols, iou_cost = rows[gated], cols[gated], 1.0 - iou[gated]
    seen = missed_a[rows] == 0
    take(rows[seen], cols[seen], iou_cost[seen], np.flatnonzero(missed_a == 0), np.arange(m))
    later = (missed_a[rows] > 0) & free_d[cols]
    take(rows[later], cols[later], iou_cost[later], np.flatnonzero(missed_a > 0), np.flatnonzero(free_d))

    left_t, left_d = np.flatnonzero(free_t), np.flatnonzero(free_d)
    if left_t.size and left_d.size:
        p, d = predicted[left_t], detected[left_d]
        side_p, side_d = _side(p), _side(d)
        centre_p, centre_d = (p[:, :2] + p[:, 2:]) / 2, (d[:, :2] + d[:, 2:]) / 2
        reach = np.repeat((config.centre_max * side_p)[:, None], 2, axis=1)  # the disc's square
        r, c, complete = window_pairs(centre_p, reach, centre_d, config.max_pairs)
        exact = exact and complete
        dist = np.linalg.norm(centre_p[r] - centre_d[c], axis=1) / side_p[r]  # (K,) in track box sides
        ratio = side_d[c] / side_p[r]
        ok = (dist <= config.centre_max) & (ratio <= config.size_max) & (ratio >= 1 / config.size_max)
        take(left_t[r[ok]], left_d[c[ok]], dist[ok], left_t, left_d)
    return Matching(pairs, exact)


def smoothed_record(probs: np.ndarray, labels: list[str]) -> Smoothed:
    """Smoothed probabilities ``(C,)`` -> emotion and probabilities (renormalised)."""
    p = probs / max(float(probs.sum()), 1e-12)
    return Smoothed(labels[int(p.argmax())], {label: round(float(v), 4) for label, v in zip(labels, p)})


class TrackState:
    """Tracks and smoothed emotions for one source; feed frames in order with :meth:`update`."""

    def __init__(self, config: TrackerConfig | None = None, name: str = "tracker"):
        self.config = config or TrackerConfig()
        self.name = name  # who logs: the source, in the track stage
        self.tracks: list[Track] = []
        self.next_id = 0
        self.last_frame: int | None = None
        self.approximate_frames = 0  # frames past a budget (max_pairs, max_cells): logged the first time
        self.shot: int | None = None  # the camera shot of the last frame that had one
        self.cuts = 0  # shot changes that ended tracks

    def update(self, frame_index: int, timestamp_s: float | None, faces: list[Face],
               shot: int | None = None) -> list[Face]:
        """One analysed frame's classified faces -> copies with ``track_id`` and
        ``smoothed`` set, in the same order. ``shot``: the frame's camera shot
        (:mod:`moodstream.shared.shots`); where it differs from the last frame's, every track
        ends first (a face of the next shot is another person), unless ``config.shot_cuts`` is off;
        None knows of no cut."""
        cfg = self.config
        if shot is not None and cfg.shot_cuts:
            if self.shot is not None and shot != self.shot and self.tracks:
                self.tracks = []
                self.cuts += 1
            self.shot = shot
        t = float(timestamp_s) if timestamp_s is not None else frame_index / cfg.default_fps
        boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
        horizon = max(cfg.max_missed_s, 1.0 / cfg.default_fps)
        predicted = np.array([tr.predict(t, horizon) for tr in self.tracks], dtype=np.float64).reshape(-1, 4)
        pairs, exact = self._match(predicted, boxes)
        if not exact:
            self.approximate_frames += 1
            if self.approximate_frames == 1:
                log.warning("%s: frame %d: %d tracks x %d faces pass the tracker's budget (max_pairs %d, "
                            "max_cells %d), a pile-up of boxes: matched greedily in part (every face still "
                            "has a track); later such frames are counted, not logged", self.name, frame_index,
                            len(predicted), len(boxes), cfg.max_pairs, cfg.max_cells)
        owner: dict[int, Track] = {d: self.tracks[p] for p, d in pairs}
        out = []
        for j, face in enumerate(faces):
            labels = list(face.probabilities)
            p = np.array([face.probabilities[k] for k in labels], np.float64)
            track = owner.get(j)
            if track is None:
                track = Track(self.next_id, boxes[j].copy(), t, frame_index, probs=p)
                self.next_id += 1
                self.tracks.append(track)
                owner[j] = track
            else:
                dt = t - track.t_s
                if dt > 0:
                    measured = (boxes[j] - track.box) / dt
                    gain = 1.0 if track.hits == 1 else cfg.velocity_gain
                    track.velocity = gain * measured + (1 - gain) * track.velocity
                    alpha = 1.0 - math.exp(-dt / cfg.smoothing_tau_s)
                else:  # the same instant twice (no timestamps): treat as a fresh look
                    alpha = 1.0
                if track.probs is None or len(track.probs) != len(p):
                    track.probs = p
                else:
                    track.probs = track.probs + alpha * (p - track.probs)
                track.box, track.t_s, track.frame = boxes[j].copy(), t, frame_index
                track.hits += 1
                track.missed = 0
            out.append(msgspec.structs.replace(face, track_id=track.track_id,
                                               smoothed=smoothed_record(track.probs, labels)))
        matched = set(map(id, owner.values()))
        for track in self.tracks:
            if id(track) not in matched:
                track.missed += 1
        self.tracks = [tr for tr in self.tracks if id(tr) in matched or not self._expired(tr, t)]
        self.last_frame = frame_index
        return out

    def _match(self, predicted: np.ndarray, boxes: np.ndarray) -> Matching:
        return match(predicted, boxes, self.config, [tr.missed for tr in self.tracks])

    def _expired(self, track: Track, t_s: float) -> bool:
        return track.missed > self.config.max_missed and t_s - track.t_s > self.config.max_missed_s
