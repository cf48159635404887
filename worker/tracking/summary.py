"""Who felt what, when: per-person summaries of tracked results.

:class:`Summarizer` takes tracked :class:`~moodstream.shared.record.FrameResult`
records (faces with ``track_id``), one by one in frame order per source, and
gives one entry per track (:meth:`Summarizer.entries`)::

    source, track_id, first_timestamp_s, last_timestamp_s, first_frame, last_frame, frames,
    frames_spanned: int     # the run's analysed frames from the track's first face to its last (frames of them show it)
    seen_s: float           # last - first timestamp, times frames / frames_spanned: the time its face was seen
    page: int               # only a still image's: its page, 1-based (1 for a one-page image)
    shot: int               # only a video's: the camera shot the track is in (tracks end at a cut; a track
                            # across shots, with track_shot_cuts off, has none)
    person: bool            # seen >= min_person_s of video and is face-like (see below)
    not_person_why: str     # why not ("" for a person)
    box: [x1, y1, x2, y2]   # the median box, frame pixels
    mean_score: float       # the detector's mean confidence
    mean_probabilities      # the mean of the raw probabilities over the track's frames (sum to 1)
    dominant, dominant_emotion   # the emotion with the highest mean (dominant_emotion: its older name)
    emotions                # share of the track's frames inside an episode of each emotion, the rest neutrality
    episodes: [{emotion, start_s, end_s, peak, peak_s, frames}]   # neutrality excluded
    episodes_dropped: int   # older episodes left out past MAX_EPISODES (their frames still count in emotions)
    thumbnail: str | None   # set by write_summary: the face picture, relative to the summary's folder

and one item per run (:func:`write_summary`'s ``videos``; the service's run summary,
``moodstream.worker.tracking.runs.summary_message``, has ``frames``, ``late_frames`` and ``dropped_frames`` too)::

    source; page            # a still image's: its page, 1-based
    frames: int             # the run's frames summarised (tracked)
    late_frames: int        # the service's: results of the run published untracked because they came late (after
                            # a later frame of it was released, over reorder_wait_ms): in no track, not in frames;
                            # analyze has none (0). Late results of a run whose summary is out are in none:
                            # <prefix>:track:stats counts them (``moodstream status``)
    dropped_frames: int     # the service's: frames of the run its producer did not send (backpressure "drop", the
                            # backlog over its limit), said by the next frame it sent; analyze drops none (0)
    tracks, people: int     # its tracks, and those that are people
    timeline: str | None    # with timelines: its picture beside the summary

Nothing is dropped: a track that is not a person stays, with ``person: false``.
Pure numpy + OpenCV (no torch, no scipy): ``analyze`` and the service's track
stage run this same code, fed the same records, so they give the same summary.

**Episodes** (:class:`EpisodeFinder`, online, O(1) memory per track). The raw
probabilities of each frame are averaged along the track by a causal
exponential moving average in probability space with time constant
``episode_tau_s`` (video seconds; weight of a new frame ``1 - exp(-dt / tau)``);
the leading emotion of that average labels the frame. A run of frames led by one
emotion other than neutrality is an episode; runs of the same emotion less than
``episode_gap_s`` apart are one episode; an episode shorter than
``episode_min_s`` is flicker and is left out. ``peak`` is the highest raw
probability of the emotion within the episode, ``peak_s`` its time. The
defaults (0.05 s, 0.25 s, 0.2 s) come from ``moodstream bench tracking --part
episodes`` (docs/RESULTS.md, "Video"): on FER+ faces with scripted expressions they keep
92-100% of the 0.3 / 0.5 / 1 s expressions at 30 and 10 fps with no episode
from flicker, where the former smoothed label kept 8-50% and raw runs gave 17
false episodes a minute.

**People.** A track is a person when its face is seen at least ``min_person_s`` of
video: ``seen_s``, its span from its first face to its last (``last_timestamp_s - first_timestamp_s``,
what a reader of the JSON can check; one face at ``--fps 2`` is not half a second) times the share
of the run's analysed frames over that span that show it (``frames / frames_spanned``: the tracker
keeps a track a second without its face, so two stray detections 20 frames apart spanned 0.67 s
and were a "person" seen in 2 of 21 frames; a small face whose detections come and go, in 45 of
102 frames over 4 s, is seen 1.8 s and stays one). And its median detector
score is at least ``person_score_min`` (0.92). In a still image (one result with a ``page``, or
without a timestamp) the score decides alone: every face of a group photo was "not a person" (seen 0.00 s).
``analyze`` makes each still image (an image file, a page of a multi-page TIFF) a run of its
own with its ``page`` (:meth:`Summarizer.add`): its faces are at 0 s, as it has no time (a
page's were at page / 30 s, frames of a video that is not there); so does the track stage for a
result with a ``page``. Untimed results without one are frames ``default_fps`` apart. Chosen by ``moodstream bench
tracking --part people``: on WIDER, keeping detections scoring >= 0.92 raises
precision 96.67 -> 96.93% for 0.5 point of recall (0.98 would cost 2.6
points), while the landmark-geometry rule lowers both (it rejects profiles);
on the shared videos the length rule is what removes the noise (hamilton 12 -> 8 tracks, its
three cuts ending tracks; street 13 -> 9; those left out have 1-5 frames, one face only the
clip's last 0.48 s, and one was two faces 20 frames apart, seen 0.06 s of its 0.67 s).

**Bounded memory.** A live camera's run never ends, so nothing here grows with
the frames of a run: means are running sums; the box and score medians come from
:class:`StridedSample`, every frame up to ``MEDIAN_KEEP`` (4096) per track,
then every s-th (s a power of two, 2048-4096 values evenly spaced over the
track). So a track of up to 4096 frames gets numpy's median over all of them
(the answer of keeping every frame, on ordinary files); a longer one the
median of that even sample, whose rank is typically within a percentile or
two of the true median's (a box that oscillated with exactly the stride's
period could bias it; the mean score is then the running sum's, exact up to
float rounding). A track keeps its newest ``MAX_EPISODES`` (1000) episodes; older ones
are counted in ``episodes_dropped`` and their frames still count in
``emotions``. The source keeps its first and last frame time, frame count and
smallest step, not every time. ``series=True`` (``analyze``'s timeline picture) keeps
each track's probabilities over time in at most ``TIMELINE_BUCKETS`` buckets of time
(:class:`TimelineSeries`: a short video's bucket is a frame) and the frame steps'
median as the medians above.
Nor with the tracks, in the service: its track stage makes a track's entry
final once the tracker lets it go (:meth:`SourceSummary.retire`) and publishes
a run's ended tracks in parts (``moodstream.worker.tracking.stage``).

**Face pictures.** :class:`ThumbnailPicker` keeps, per track, the best crop
offered so far by :func:`thumbnail_score` (large, sharp, frontal). It takes
either the whole frame (``analyze`` has it) or a crop cut elsewhere (the
service), so the pixels can come from wherever the caller has them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from moodstream.shared.errors import ConfigError
from moodstream.shared.labels import LABELS
from moodstream.shared.files import write_text_atomic
from moodstream.shared.media import unwritable
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.table import plural, printable, source_cell
from moodstream.worker.tracking.summary_csv import is_csv, summary_csv

if TYPE_CHECKING:
    from moodstream.shared.settings import Settings

NEUTRAL = "neutrality"
THUMB_MARGIN = 0.25  # a face picture: the box grown by this share of its side on each side
THUMB_MAX_PX = 128  # ... and scaled down to at most this many pixels on its longer side
MEDIAN_KEEP = 4096  # values a track keeps for its medians: all up to this many, then an even sample
MAX_EPISODES = 1000  # finished episodes a track keeps (the newest); older ones are counted
TIMELINE_BUCKETS = 2400  # a track's timeline keeps at most this many buckets of time: two a pixel of its picture


@dataclass(frozen=True)
class SummaryConfig:
    min_person_s: float = 0.5  # a track shorter than this (video time) is not a person
    person_score_min: float = 0.92  # ... nor one whose median detector score is below this
    episode_tau_s: float = 0.05  # time constant of the probability average that labels frames
    episode_min_s: float = 0.25  # an episode shorter than this is flicker
    episode_gap_s: float = 0.2  # runs of one emotion at most this far apart are one episode
    default_fps: float = 30.0  # frame times when a source has no timestamps

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> SummaryConfig:
        """The summary settings of ``settings`` (those it has), then ``overrides``."""
        names = {f.name for f in fields(cls)}
        values = {n: getattr(settings, n) for n in names if hasattr(settings, n)}
        return cls(**{**values, **overrides})


# --- episodes ------------------------------------------------------------------------------------

@dataclass
class _Run:
    emotion: int
    start_s: float
    end_s: float
    peak: float
    peak_s: float
    frames: int = 1

    def extend(self, t: float, p: float, frames: int) -> None:
        self.end_s = t
        self.frames += frames
        if p > self.peak:
            self.peak, self.peak_s = p, t


class EpisodeFinder:
    """Episodes of one track, online: :meth:`add` each frame's raw probabilities ``(C,)`` in
    order, :meth:`finish` at the end. ``neutral`` is the index of neutrality in the labels."""

    def __init__(self, neutral: int, tau_s: float, min_s: float, gap_s: float, default_step_s: float = 1 / 30,
                 space: str = "linear", max_episodes: int = MAX_EPISODES):
        self.neutral, self.tau_s, self.min_s, self.gap_s, self.space = neutral, tau_s, min_s, gap_s, space
        self.step_s = default_step_s  # the time between analysed frames (the smallest seen along the track)
        self.first_dt = True
        self.avg: np.ndarray | None = None
        self.t_s: float | None = None
        self.open: _Run | None = None  # the episode being followed (it may be in a gap)
        self.challenger: _Run | None = None  # another emotion leading now, not yet long enough to take over
        self.gap_frames = 0  # frames since the open episode last led
        self.done: deque[_Run] = deque(maxlen=max_episodes)  # finished episodes, the newest
        self.dropped = 0  # finished episodes pushed out of done
        self.dropped_frames = np.zeros(len(LABELS), np.int64)  # ... and their frames, per emotion

    def add(self, t_s: float, probs: np.ndarray) -> int:
        """One frame; returns the emotion index that leads the average now."""
        x = np.log(np.clip(probs, 1e-6, 1.0)) if self.space == "log" else probs
        if self.avg is None or self.t_s is None:
            self.avg = np.array(x, np.float64)
        else:
            dt = t_s - self.t_s
            if dt > 0:  # the sampling interval: a track's gaps (missed detections) are not frames
                self.step_s = dt if self.first_dt else min(self.step_s, dt)
                self.first_dt = False
            alpha = 1.0 if self.tau_s <= 0 or dt <= 0 else 1.0 - math.exp(-dt / self.tau_s)
            self.avg += alpha * (x - self.avg)
        self.t_s = t_s
        label = int(np.argmax(self.avg))
        self._step(t_s, label, float(probs[label]))
        return label

    def _span(self, run: _Run) -> float:
        return run.end_s - run.start_s + self.step_s

    def _close(self, run: _Run | None) -> None:
        if run is not None and self._span(run) >= self.min_s - 1e-9:
            if len(self.done) == self.done.maxlen:
                old = self.done[0]
                self.dropped += 1
                self.dropped_frames[old.emotion] += old.frames
            self.done.append(run)

    def _step(self, t: float, label: int, p: float) -> None:
        op = self.open
        if op is not None and t - op.end_s > self.gap_s + self.step_s + 1e-9:
            self._close(op)  # a gap longer than gap_s: the episode ended at its last leading frame
            op = self.open = self.challenger  # another emotion that has led since, if any
            self.challenger, self.gap_frames = None, 0
        if label == self.neutral:
            self.challenger = None
            self.gap_frames += op is not None
            return
        if op is None:
            self.open, self.challenger, self.gap_frames = _Run(label, t, t, p, t), None, 0
        elif label == op.emotion:
            op.extend(t, p, self.gap_frames + 1)
            self.challenger, self.gap_frames = None, 0
        else:
            ch = self.challenger
            if ch is not None and ch.emotion == label:
                ch.extend(t, p, 1)
            else:
                ch = self.challenger = _Run(label, t, t, p, t)
            self.gap_frames += 1
            if self._span(ch) >= self.min_s - 1e-9:  # another emotion took over for good
                self._close(op)
                self.open, self.challenger, self.gap_frames = ch, None, 0

    def finish(self) -> list[_Run]:
        """The episodes so far (the newest ``max_episodes`` finished ones and those in progress),
        in time order, as if the track ended now (the finder goes on unchanged: a source that
        went idle may come back)."""
        runs = list(self.done) + [dataclasses.replace(r) for r in (self.open, self.challenger)
                                  if r is not None and self._span(r) >= self.min_s - 1e-9]
        return sorted(runs, key=lambda r: r.start_s)


# --- face pictures ---------------------------------------------------------------------------------

def crop_face(image: np.ndarray, box: tuple[float, ...], margin: float = THUMB_MARGIN,
              max_px: int = THUMB_MAX_PX) -> np.ndarray | None:
    """The face ``box`` of RGB ``image`` grown by ``margin`` sides, clipped to the frame and
    scaled down to at most ``max_px`` on its longer side (a copy); None when empty."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    a, b = max(0, int(x1 - mx)), max(0, int(y1 - my))
    c, d = min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my))
    if c - a < 2 or d - b < 2:
        return None
    crop = image[b:d, a:c]
    scale = max_px / max(crop.shape[:2])
    if scale < 1:
        return cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop).copy()


def frontality(face: Face) -> float:
    """1 for a face looking at the camera, towards 0 turned or tilted (from the five
    landmarks: the nose against the eyes' midpoint, the eye line's tilt); 0.5 without them."""
    if not face.landmarks or len(face.landmarks) < 3:
        return 0.5
    (lx, ly), (rx, ry), (nx, _) = face.landmarks[:3]
    eye = math.hypot(rx - lx, ry - ly)
    if eye < 1e-6:
        return 0.0
    yaw = abs(nx - (lx + rx) / 2) / eye  # 0 frontal, about 0.5 at a three-quarter view
    roll = abs(math.atan2(ry - ly, rx - lx))
    return max(0.0, 1.0 - 2.0 * yaw) * max(0.0, math.cos(roll))


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop at 64x64 grey, mapped to [0, 1) (``v / (v + 100)``)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    v = float(cv2.Laplacian(cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA), cv2.CV_64F).var())
    return v / (v + 100.0)


def pose_score(face: Face) -> float:
    """The pixel-free part of :func:`thumbnail_score` (size x frontality): an upper bound of it."""
    x1, y1, x2, y2 = face.box
    size = min(1.0, math.sqrt(max(0.0, x2 - x1) * max(0.0, y2 - y1)) / 96.0)
    return size * (0.2 + 0.8 * frontality(face))


def thumbnail_score(face: Face, crop: np.ndarray) -> float:
    """How good a picture of the person ``crop`` is: large (box side, saturating at 96 px),
    sharp and frontal, multiplied; each term in [0, 1]."""
    return pose_score(face) * (0.2 + 0.8 * sharpness(crop))


class ThumbnailPicker:
    """The best face picture of each track so far. :meth:`offer` a face with the whole RGB
    frame (``image``) or with a crop cut elsewhere (``crop``, e.g. from a worker)."""

    def __init__(self):
        self.best: dict[int, tuple[float, np.ndarray]] = {}

    def offer(self, track_id: int, face: Face, image: np.ndarray | None = None, crop: np.ndarray | None = None) -> None:
        best = self.best.get(track_id)
        if best is not None and pose_score(face) <= best[0]:
            return  # even a perfectly sharp crop would not beat the best: no pixels touched
        if crop is None and image is not None:
            crop = crop_face(image, face.box)
        if crop is None or crop.size == 0:
            return
        score = thumbnail_score(face, crop)
        if track_id not in self.best or score > self.best[track_id][0]:
            self.best[track_id] = (score, crop)

    def picture(self, track_id: int) -> np.ndarray | None:
        got = self.best.get(track_id)
        return None if got is None else got[1]


# --- one source ------------------------------------------------------------------------------------

class StridedSample:
    """Rows of ``width`` values kept for medians in bounded memory: every row up to ``keep``;
    then every s-th row of the stream (s = 2, 4, 8, ...: when the buffer is full, every
    other kept row goes and s doubles), so between ``keep / 2`` and ``keep`` rows evenly
    spaced over all of it. Deterministic: the same rows in, the same sample."""

    def __init__(self, width: int, keep: int = MEDIAN_KEEP):
        self.keep = keep
        self.rows = np.empty((min(keep, 64), width))  # grows by doubling up to keep
        self.n = 0  # rows kept
        self.seen = 0  # rows offered
        self.stride = 1

    def add(self, row) -> None:
        i, self.seen = self.seen, self.seen + 1
        if i % self.stride:
            return
        if self.n == len(self.rows):
            if self.n < self.keep:
                self.rows = np.concatenate([self.rows, np.empty((min(self.n, self.keep - self.n), self.rows.shape[1]))])
            else:
                self.rows[: (self.n + 1) // 2] = self.rows[: self.n : 2].copy()
                self.n, self.stride = (self.n + 1) // 2, self.stride * 2
                if i % self.stride:
                    return
        self.rows[self.n] = row
        self.n += 1

    @property
    def exact(self) -> bool:
        """Every row offered is kept (medians and means are over all of them)."""
        return self.n == self.seen

    def median(self) -> np.ndarray:
        return np.median(self.rows[: self.n], axis=0)

    def mean(self, column: int, total: float) -> float:
        """The mean of one column whose running sum is ``total``: numpy's over all rows while
        all are kept (the same float as ``np.mean`` of the values in a list), else ``total / seen``."""
        if self.exact:
            return float(np.mean(np.ascontiguousarray(self.rows[: self.n, column])))
        return total / max(self.seen, 1)


class TimelineSeries:
    """A track's probabilities over time for the timeline picture, in bounded memory: its frames
    summed in buckets of ``width_s`` seconds of video from its first frame, at most ``most``
    buckets; a frame past them doubles ``width_s`` (neighbours merged). ``width_s`` starts at a
    millisecond, so a short video's bucket is one frame (30 frames/s: up to 77 s a track); a
    longer track's spans at most 1/``most`` of it twice over, under a pixel of the picture."""

    def __init__(self, most: int = TIMELINE_BUCKETS, width_s: float = 1e-3):
        self.most, self.width_s = most, width_s
        self.t0: float | None = None
        cap = min(16, most)
        self.index = np.zeros(cap, np.int64)  # per bucket: its place, in widths from t0
        self.rows = np.zeros((cap, 3 + len(LABELS)))  # per bucket: frames, first and last time, summed probabilities
        self.n = 0

    def add(self, t: float, p: np.ndarray) -> None:
        if self.t0 is None:
            self.t0 = t
        k = max(0, int((t - self.t0) // self.width_s))
        while k >= self.most:
            self._merge()
            k = max(0, int((t - self.t0) // self.width_s))
        if self.n and k <= self.index[self.n - 1]:  # the last bucket's (a time that went back: it too)
            row = self.rows[self.n - 1]
            row[0] += 1.0
            row[2] = max(row[2], t)
            row[3:] += p
            return
        if self.n == len(self.rows):  # places are distinct and below most: n stays below most
            cap = min(2 * len(self.rows), self.most)
            self.index = np.concatenate([self.index, np.zeros(cap - len(self.index), np.int64)])
            self.rows = np.concatenate([self.rows, np.zeros((cap - len(self.rows), self.rows.shape[1]))])
        self.index[self.n] = k
        self.rows[self.n, :3] = (1.0, t, t)
        self.rows[self.n, 3:] = p
        self.n += 1

    def _merge(self) -> None:
        """Twice the width: buckets whose places halve to the same one are summed."""
        self.width_s *= 2
        index, rows = self.index[:self.n] // 2, self.rows[:self.n]
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        merged = np.add.reduceat(rows, starts, axis=0)
        merged[:, 1] = rows[starts, 1]
        merged[:, 2] = np.maximum.reduceat(rows[:, 2], starts)
        self.n = len(starts)
        self.index[:self.n], self.rows[:self.n] = index[starts], merged

    def columns(self, step_s: float) -> list[tuple[float, float, np.ndarray]]:
        """(start, end, mean probabilities) per bucket: from its first frame's time to the next
        bucket's where that comes within 1.5 steps of its last frame, else to its last frame's
        time + one step (a gap in the track stays blank)."""
        rows = self.rows[:self.n]
        out = []
        for i, row in enumerate(rows):
            nxt = rows[i + 1, 1] if i + 1 < self.n else None
            end = nxt if nxt is not None and nxt - row[2] <= 1.5 * step_s else row[2] + step_s
            out.append((float(row[1]), float(end), (row[3:] / row[0]).astype(np.float32)))
        return out


@dataclass
class _Track:
    track_id: int
    finder: EpisodeFinder
    first_s: float
    last_s: float
    first_frame: int
    last_frame: int
    first_index: int  # the run's analysed frames counted at its first face, and at its last
    last_index: int
    frames: int = 0
    prob_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(LABELS)))
    box_score: StridedSample = field(default_factory=lambda: StridedSample(5))  # (x1, y1, x2, y2, score) rows
    score_sum: float = 0.0
    timeline: TimelineSeries | None = None  # the series, for timelines (when kept)
    shot: int | None = None  # the camera shot it is in (a video's; None once a face of another shot joins it)


class SourceSummary:
    """The per-track summary of one run of one source; :meth:`add` its results in frame order.
    Its memory does not grow with the frames (see "Bounded memory" above) unless
    ``series=True``: that keeps every frame's time and probabilities (the timeline picture)."""

    def __init__(self, source: str, config: SummaryConfig | None = None, series: bool = True,
                 page: int | None = None):
        self.source = source
        self.page = page  # a still image's run (one result): its page, 1-based
        self.scale: float | None = None  # a photo over max_pixels read smaller: its scale (boxes in those pixels)
        self.config = config or SummaryConfig()
        self.series = series
        self.tracks: dict[int, _Track] = {}
        self.frames = 0  # frames analysed
        self.late_frames = 0  # results of the run not added, because they came late (the track stage's)
        self.dropped_frames = 0  # frames of the run its producer did not send (backpressure "drop")
        self.first_s = self.last_s = 0.0  # the first and last frame's time
        self.min_step_s: float | None = None  # the smallest time between two frames (None: under two frames)
        self.steps = StridedSample(1) if series else None  # the frames' steps, for the timeline's median step
        self.last_frame = -1
        self.timed = False  # a result had a timestamp: a video's frames, not a still image
        self.pictures = ThumbnailPicker()
        self.retired: dict[int, dict] = {}  # track id -> final entry, of tracks :meth:`retire` let go
        self._entries: list[dict] | None = None
        self.written: tuple[list[dict], dict] | None = None  # its entries and videos item, once written

    def add(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        """One tracked result (faces without a ``track_id`` are skipped); ``image``, the RGB
        frame, when at hand, for the face pictures."""
        cfg = self.config
        if result.timestamp_s is not None:
            t = float(result.timestamp_s)
        else:  # a still image has no time; an untimed sequence's frames are default_fps apart
            t = 0.0 if self.page is not None else result.frame / cfg.default_fps
        self.timed = self.timed or result.timestamp_s is not None
        self.scale = result.scale or self.scale
        if self.frames == 0:
            self.first_s = t
        else:
            step = t - self.last_s
            self.min_step_s = step if self.min_step_s is None else min(self.min_step_s, step)
            if self.steps is not None:
                self.steps.add((step,))
        self.frames += 1
        self.last_s = t
        self.last_frame = result.frame
        self._entries = None
        for face in result.faces:
            if face.track_id is None or not face.probabilities:
                continue
            tr = self.tracks.get(face.track_id)
            if tr is None:
                finder = EpisodeFinder(LABELS.index(NEUTRAL), cfg.episode_tau_s, cfg.episode_min_s,
                                       cfg.episode_gap_s, 1 / cfg.default_fps)
                tr = self.tracks[face.track_id] = _Track(face.track_id, finder, t, t, result.frame, result.frame,
                                                         self.frames, self.frames, shot=result.shot)
            elif tr.shot != result.shot:  # a track across shots (track_shot_cuts off): in no one shot
                tr.shot = None
            p = np.array([face.probabilities.get(k, 0.0) for k in LABELS], np.float64)
            p /= max(p.sum(), 1e-12)
            tr.finder.add(t, p)
            tr.prob_sum += p
            tr.frames += 1
            tr.last_s, tr.last_frame, tr.last_index = t, result.frame, self.frames
            tr.box_score.add((*face.box, face.score))
            tr.score_sum += face.score
            if self.series:
                if tr.timeline is None:
                    tr.timeline = TimelineSeries()
                tr.timeline.add(t, p)
            if image is not None:
                self.pictures.offer(face.track_id, face, image=image)

    def offer_crop(self, face: Face, crop: np.ndarray) -> None:
        """A face picture cut elsewhere (the service side), for ``face.track_id``."""
        if face.track_id is not None:
            self.pictures.offer(face.track_id, face, crop=crop)

    def entries(self) -> list[dict]:
        """One entry per track, by track id (see the module doc); episodes still in progress
        are reported as if the source ended now (more results may follow)."""
        if self.written is not None:  # its files are written, its running state freed
            return self.written[0]
        if self._entries is None:
            made = [self._entry(tr) for tr in self.tracks.values()]
            self._entries = sorted([*self.retired.values(), *made], key=lambda e: e["track_id"])
        return self._entries

    def retire(self, live) -> list[int]:
        """Tracks whose id is not in ``live`` (the tracker's: it let them go, no face of theirs comes
        again) are made final now: their entry is kept in :attr:`retired`, their running state
        freed. Returns their ids. A never-ending run (a live camera in the service) so holds only
        the tracks on screen; without ``series`` only (the timeline needs every track's frames)."""
        if self.series:
            return []
        gone = [tid for tid in self.tracks if tid not in live]
        for tid in gone:
            self.retired[tid] = self._entry(self.tracks.pop(tid))
        if gone:
            self._entries = None
        return gone

    def take_retired(self) -> list[dict]:
        """The retired tracks' entries, by track id; forgotten here."""
        out = sorted(self.retired.values(), key=lambda e: e["track_id"])
        self.retired = {}
        self._entries = None
        return out

    def _entry(self, tr: _Track) -> dict:
        cfg = self.config
        mean = tr.prob_sum / max(tr.frames, 1)
        episodes = tr.finder.finish()
        in_episodes = {label: 0 for label in LABELS}
        for ep in episodes:
            in_episodes[LABELS[ep.emotion]] += ep.frames
        for label, n in zip(LABELS, tr.finder.dropped_frames):
            in_episodes[label] += int(n)
        in_episodes[NEUTRAL] = max(0, tr.frames - sum(in_episodes.values()))
        span = tr.last_s - tr.first_s  # the JSON's own times
        spanned = tr.last_index - tr.first_index + 1  # the run's frames from its first face to its last
        seen = span * tr.frames / spanned
        medians = tr.box_score.median()
        score = float(medians[4])
        why = ""
        # a still image (a page, timed or not; one untimed result): the score alone
        if self.page is None and (self.timed or self.frames > 1) and seen < cfg.min_person_s - 1e-9:
            gaps = f" ({tr.frames} of {spanned} frames over {span:.2f} s)" if tr.frames < spanned else ""
            why = f"seen {seen:.2f} s{gaps} < {cfg.min_person_s:g} s" if tr.frames > 1 else \
                f"seen in one frame only (< {cfg.min_person_s:g} s)"  # not "seen 0.00 s": read as a bug
        elif score < cfg.person_score_min:
            why = f"detector score {score:.3f} < {cfg.person_score_min:g}"
        dominant = LABELS[int(np.argmax(mean))]
        return {"source": self.source, **({"page": self.page} if self.page is not None else {}),
                **({"scale": self.scale} if self.scale else {}),
                "track_id": tr.track_id, **({"shot": tr.shot} if tr.shot is not None else {}),
                "first_timestamp_s": round(tr.first_s, 4), "last_timestamp_s": round(tr.last_s, 4),
                "first_frame": tr.first_frame, "last_frame": tr.last_frame, "frames": tr.frames,
                "frames_spanned": spanned, "seen_s": round(seen, 4),
                "person": not why, "not_person_why": why,
                "box": [round(float(v), 1) for v in medians[:4]],
                "mean_score": round(tr.box_score.mean(4, tr.score_sum), 4),
                "mean_probabilities": {label: round(float(v), 4) for label, v in zip(LABELS, mean)},
                "dominant": dominant, "dominant_emotion": dominant,
                "emotions": {label: round(n / tr.frames, 4) for label, n in in_episodes.items()},
                "episodes": [{"emotion": LABELS[ep.emotion], "start_s": round(ep.start_s, 4),
                              "end_s": round(ep.end_s, 4), "peak": round(ep.peak, 4), "peak_s": round(ep.peak_s, 4),
                              "frames": ep.frames} for ep in episodes],
                "episodes_dropped": tr.finder.dropped,
                "thumbnail": None}

    def span(self) -> tuple[float, float, float]:
        """(first frame time, last frame time + one step, typical step) of the source: the
        median step with the series, else the smallest."""
        if self.steps is not None and self.steps.n:
            step = float(self.steps.median()[0])
        else:
            step = self.min_step_s if self.min_step_s is not None else 1 / self.config.default_fps
        return self.first_s, self.last_s + step, step


class Summarizer:
    """Summaries of many sources, each fed in frame order (sources may interleave). A frame
    index that does not increase starts a new run of that source (the same file again):
    the earlier run's tracks stay, a run never merges into another."""

    def __init__(self, config: SummaryConfig | None = None, series: bool = True):
        self.config = config or SummaryConfig()
        self.series = series
        self.runs: list[SourceSummary] = []
        self.current: dict[str, SourceSummary] = {}

    def add(self, result: FrameResult, image: np.ndarray | None = None, page: int | None = None) -> SourceSummary:
        """One tracked result of a video, camera or stream; returns the run it went to. With ``page``
        (1-based) the result is a still image, that page of its file: a run of its own (its track ids
        0..k-1 are not another page's), at no time."""
        run = self.current.get(result.source)
        if page is not None:  # not current: no result follows it
            run = SourceSummary(result.source, self.config, self.series, page)
            self.runs.append(run)
        elif run is None or result.frame <= run.last_frame:
            run = self.current[result.source] = SourceSummary(result.source, self.config, self.series)
            self.runs.append(run)
        run.add(result, image)
        return run

    def entries(self) -> list[dict]:
        return [e for run in self.runs for e in run.entries()]


# --- output ----------------------------------------------------------------------------------------

def check_writable(path: Path, what: str = "summary", inputs: frozenset[str] = frozenset()) -> None:
    """Before a run (not after the whole video): ``path`` is none of the ``inputs`` (real paths:
    :func:`shared.media.input_files`), and its folder exists (made if need be) and is writable;
    ConfigError naming ``what`` and the path otherwise."""
    why = unwritable(path, check_folder=False)  # the folder: made below, its own error named
    if why:
        raise ConfigError(f"cannot write the {what} {str(path)!r}: it {why}")
    if os.path.realpath(path) in inputs:
        raise ConfigError(f"cannot write the {what} {path}: it is one of the inputs")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} {path}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"cannot write the {what} {path}: its folder is not writable")


SUMMARY_MAX_BYTES = 256 << 20  # a summary file larger is none this module wrote (100,000 tracks: about 60 MB)


def pictures_named(path: str | Path) -> frozenset[str]:
    """The pictures the summary file at ``path`` names (its tracks' ``thumbnail``, its runs' ``timeline``; a
    CSV's ``thumbnail`` column): the command's own, written beside it, whether they carry its mark or not (an
    earlier version wrote none). None where there is no such file, or it is no summary."""
    import csv
    import io

    try:
        if os.path.getsize(path) > SUMMARY_MAX_BYTES:
            return frozenset()
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        if is_csv(path):
            rows = csv.DictReader(io.StringIO(text))
            return frozenset(r["thumbnail"] for r in rows if isinstance(r.get("thumbnail"), str) and r["thumbnail"])
        found = json.loads(text)
        items = [*found.get("tracks", []), *found.get("videos", [])]
        return frozenset(v for item in items if isinstance(item, dict)
                         for v in (item.get("thumbnail"), item.get("timeline")) if isinstance(v, str) and v)
    except (OSError, ValueError, TypeError, AttributeError, csv.Error):
        return frozenset()


def write_summary(path: str | Path, summarizer: Summarizer, extra: dict | None = None,
                  timelines: bool = True, inputs: frozenset[str] = frozenset(),
                  failed: list[str] | None = None, writer: SummaryWriter | None = None) -> dict:
    """The summary JSON at ``path`` (``{"tracks": [...], "videos": [...], **extra}``; where its name ends in
    ``.csv``, its tracks as CSV instead: :mod:`moodstream.worker.tracking.summary_csv`), a face
    picture per track that has one (``<stem>-<video>-t<id>.jpg``, its ``thumbnail`` relative to
    ``path``'s folder) and, with ``timelines``, a timeline PNG beside it per run, but a still image's
    without tracks (its ``timeline`` None: a picture of no faces over no time). Returns the object;
    the names of pictures and timelines that could not be written are added to ``failed`` (the JSON
    is written without them: the caller says so and fails the run). ``writer``: the one that wrote
    the runs that ended during the run (:meth:`SummaryWriter.write_ended`); it writes the rest, with its
    own ``timelines`` and ``inputs`` (those given here make the writer when there is none)."""
    writer = writer if writer is not None else SummaryWriter(path, timelines, inputs)
    tracks, videos = [], []
    for run in summarizer.runs:
        entries, video = writer.write_run(run)
        videos.append(video)
        tracks += entries
    if failed is not None:
        failed += writer.failed
    out = {"tracks": tracks, "videos": videos, "summary": summary_settings(summarizer.config), **(extra or {})}
    text = summary_csv(tracks) if is_csv(writer.path) else json.dumps(out, indent=1) + "\n"
    write_text_atomic(writer.path, text)  # a failure midway keeps the last good file
    return out


class SummaryWriter:
    """The files beside a summary, run by run, in the order of the runs (so the names are the same
    whenever a run is written): :meth:`write_ended` writes the runs no result can reach any more as
    a long ``analyze`` goes (a photo is one; a folder of 20,000 photos held every face picture until
    the end, 164 kB a photo), keeping only their entries; :func:`write_summary` the others and the JSON.
    The pictures and timelines carry moodstream's mark; a name whose file does not (a user's photo named
    ``s-street-t0.jpg``: :func:`worker.own_outputs.ours`) is never written over, the run's take the next n,
    unless the summary there names it (:func:`pictures_named`: an earlier version's, which marked none)."""

    def __init__(self, path: str | Path, timelines: bool = True, inputs: frozenset[str] = frozenset()):
        self.path = Path(path)
        self.timelines, self.inputs = timelines, inputs
        self.taken: set[str] = set()
        self.next_n: dict[str, int] = {}  # stem -> the n its last base took (every base below it is taken)
        self.failed: list[str] = []  # pictures and timelines not written: "name: why"
        self.done = 0  # summarizer.runs[:done] are written
        self.named = pictures_named(self.path)  # the summary there before: its pictures are ours, marked or not
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write_ended(self, summarizer: Summarizer) -> None:
        """Write the runs that have ended: every run but the last, and the last when it is a still
        image's (nothing follows it). Only for a caller that feeds one source after another
        (``analyze``): a run written is forgotten by the summarizer, so a later result of its source
        would start a new run."""
        runs = summarizer.runs
        upto = len(runs) if runs and runs[-1].page is not None else len(runs) - 1
        while self.done < upto:
            run = runs[self.done]
            run.written = self.write_run(run)
            run.pictures, run.tracks = ThumbnailPicker(), {}  # only its entries stay
            if summarizer.current.get(run.source) is run:
                del summarizer.current[run.source]
            self.done += 1

    def write_run(self, run: SourceSummary) -> tuple[list[dict], dict]:
        """Its pictures and timeline; returns its entries (with their ``thumbnail``) and its
        ``videos`` item. A run :meth:`write_ended` wrote gives what it gave then."""
        if run.written is not None:
            return run.written
        from moodstream.worker.annotate import ours, safe_stem, write_image, write_timeline

        path = self.path
        entries = run.entries()

        def free(base: str) -> bool:  # none of its picture and timeline files is an input or someone else's
            names = [base + ".png", *(f"{base}-t{e['track_id']}.jpg" for e in entries)]
            return not any(os.path.realpath(path.with_name(name)) in self.inputs
                           or not ours(path.with_name(name), self.named)
                           for name in names)

        stem = f"{path.stem}-{safe_stem(run.source, run.page)}"  # a page by its page: s-scan-page2
        n = self.next_n.get(stem, 1)  # not 1 again: thousands of photos named 0.jpg were quadratic
        base = stem if n == 1 else f"{stem}-{n}"
        while base in self.taken or not free(base):
            n += 1
            base = f"{stem}-{n}"
        self.taken.add(base)
        self.next_n[stem] = n
        pictures = {}
        for e in entries:
            pic = run.pictures.picture(e["track_id"])
            if pic is not None:
                name = f"{base}-t{e['track_id']}.jpg"
                why = write_image(path.with_name(name), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR), mark=True)
                if why is None:
                    e["thumbnail"] = name
                    pictures[e["track_id"]] = pic
                else:
                    self.failed.append(f"{name}: {why}")
        video = {"source": run.source, **({"page": run.page} if run.page is not None else {}),
                 **({"scale": run.scale} if run.scale else {}),
                 "frames": run.frames, "late_frames": run.late_frames, "dropped_frames": run.dropped_frames,
                 "tracks": len(entries),
                 "people": sum(e["person"] for e in entries)}
        if self.timelines and run.page is not None and not entries:
            video["timeline"] = None  # a still image without faces: nothing to draw, and no time to draw it over
        elif self.timelines:
            span = run.span()
            timelines_of = {tid: tr.timeline for tid, tr in run.tracks.items() if tr.timeline is not None}
            rows = [(e, timelines_of[e["track_id"]].columns(span[2]) if e["track_id"] in timelines_of else [],
                     pictures.get(e["track_id"])) for e in entries]
            why = write_timeline(path.with_name(base + ".png"), run.source, rows, span, still=run.page is not None)
            if why is None:
                video["timeline"] = base + ".png"
            else:
                self.failed.append(f"{base}.png: {why}")
        return entries, video


def summary_settings(config: SummaryConfig) -> dict:
    return {f.name: getattr(config, f.name) for f in fields(config)}


def _emotions(episodes: list[dict], shown: list[dict] = ()) -> str:
    """The emotions of the episodes not in ``shown``, each named once with its count: 'anger, fear x2'
    (at most the 8 labels, however many episodes)."""
    counts: dict[str, int] = {}
    for e in episodes:
        if not any(e is s for s in shown):
            counts[e["emotion"]] = counts.get(e["emotion"], 0) + 1
    return ", ".join(name + (f" x{n}" if n > 1 else "") for name, n in counts.items())


PEOPLE_SHOWN = 100  # rows of the people table at most (a folder of 2,000 photos printed 5,429); the JSON has all
SOURCE_COLUMN = 24  # the people table's source column, at least ...
SOURCE_COLUMN_MOST = 48  # ... and at most: wider only where names must be told apart


def short_names(sources) -> dict[str, str]:
    """Each source named by its file name, or by as many of its last path parts as tell it apart from the
    other sources (``cams/north/clip.mp4``, ``cams/south/clip.mp4`` -> ``north/clip.mp4``, ``south/clip.mp4``:
    both were ``clip.mp4``, rows no reader could tell apart)."""
    parts = {s: [p for p in s.split("/") if p] or [s] for s in set(sources)}
    depth = {s: 1 for s in parts}
    while True:
        named: dict[str, list[str]] = {}
        for s, ps in parts.items():
            named.setdefault("/".join(ps[-depth[s]:]), []).append(s)
        grow = [s for same in named.values() if len(same) > 1 for s in same if depth[s] < len(parts[s])]
        if not grow:
            return {s: "/".join(ps[-depth[s]:]) for s, ps in parts.items()}
        for s in grow:
            depth[s] += 1


def people_table(tracks: list[dict], max_episodes: int = 3, most: int = PEOPLE_SHOWN) -> str:
    """The short table of a summary's tracks: track, camera shot, time span, dominant emotion with its mean,
    the main episodes (strongest first, at most ``max_episodes``, then the others' emotions: every
    episode's emotion is named); people first, then the rest on one line (those with episodes first).
    A still image's track (with ``page``) has no span: "still image"; the tracks of a file with tracks
    on a page after the first are named by file and page ("scan.tif page 2"). A source is named by its
    file name, with as many of its folders as tell it apart from another of that name (:func:`short_names`;
    the column widens to at most ``SOURCE_COLUMN_MOST``). At most ``most`` people
    are rows; one line says how many more."""
    people = [t for t in tracks if t["person"]]
    others = [t for t in tracks if not t["person"]]
    paged = {t["source"] for t in tracks if t.get("page", 1) != 1}  # files of several pages
    short = short_names(t["source"] for t in tracks)

    def name(t: dict) -> str:
        return short[t["source"]] + (f" page {t['page']}" if t["source"] in paged else "")

    width = min(SOURCE_COLUMN_MOST, max([SOURCE_COLUMN, *(len(printable(name(t))) for t in people[:most])]))
    lines = [f"{'SOURCE':{width}s} {'TRACK':>5s} {'SHOT':>4s} {'SPAN_S':>13s}  {'DOMINANT (MEAN)':22s} EPISODES"]
    for t in people[:most]:
        dom = f"{t['dominant']} {t['mean_probabilities'][t['dominant']]:.0%}"
        main = sorted(t["episodes"], key=lambda e: -e["peak"])[:max_episodes]
        eps = ", ".join(f"{e['emotion']} {e['start_s']:.1f}-{e['end_s']:.1f}s (peak {e['peak']:.0%})"
                        for e in sorted(main, key=lambda e: e["start_s"]))
        more = len(t["episodes"]) - len(main)
        eps = (eps or "-") + (f" +{more} more ({_emotions(t['episodes'], main)})" if more > 0 else "")
        span = "still image" if "page" in t else f"{t['first_timestamp_s']:.1f}-{t['last_timestamp_s']:.1f}"
        src = source_cell(name(t), width)
        shot = printable(str(t.get("shot", "-")))  # the camera shot (a video's): tracks end at a cut
        lines.append(f"{src:{width}s} {'#' + printable(str(t['track_id'])):>5s} {shot:>4s} {span:>13s}  "
                     f"{printable(dom):22s} {printable(eps)}")  # a summary's strings may come from a stream
    if not people:
        lines.append("(no people)")
    elif len(people) > most:
        lines.append(f"... and {len(people) - most} more people (every one is in the summary's JSON)")
    if others:
        several = len({t["source"] for t in tracks}) > 1 or paged  # then each one names its video or page

        def who(t: dict) -> str:
            return (f"{name(t)} " if several else "") + f"#{t['track_id']}"

        lines.append(printable(f"not people: {plural(len(others), 'track')} ("
                               + "; ".join(f"{who(t)} {t['not_person_why']}"
                                           + (f", {_emotions(t['episodes'])}" if t["episodes"] else "")
                                           for t in sorted(others, key=lambda t: not t["episodes"])[:5])
                               + ("; ..." if len(others) > 5 else "") + ")"))
    return "\n".join(lines)
