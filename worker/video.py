"""Video as a sequence: detect every N-th frame, follow faces in between, track, summarise.

:class:`VideoAnalyzer` wraps one :class:`worker.pipeline.Pipeline`. For each
video, camera or stream source (frames in order, possibly mixed with other
sources and still images in one batch):

* every ``detect_every``-th analysed frame of a source is a key frame: the full
  detector runs on it (:meth:`Pipeline.detect`, all key frames of a batch in
  one call);
* on the frames in between, each face of the previous frame is followed by
  pyramidal Lucas-Kanade optical flow (:func:`follow_faces`), with no image
  pyramid of the detector; a face whose flow fails is dropped until the next
  key frame, and new faces appear only at key frames;
* the emotion classifier runs on every frame (:meth:`Pipeline.classify`, one
  call for the batch), so every record has fresh probabilities;
* :class:`worker.track.TrackState` gives each face its ``track_id`` and
  ``smoothed`` emotion along its source. A still image gets a fresh tracker
  (ids 0..k-1, ``smoothed`` equal to the raw values).

With ``detect_every=1`` every frame is a key frame and the records are
exactly :meth:`Pipeline.process`'s, plus ``track_id`` and ``smoothed``.

The per-person summary of tracked records (``--summary``) is
:mod:`worker.summary`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from moodstream.shared.record import Face, FrameResult
from moodstream.worker.track import TrackerConfig, TrackState

if TYPE_CHECKING:
    from moodstream.worker.pipeline import Pipeline

log = logging.getLogger(__name__)


# --- following faces between key frames -----------------------------------------------------

@dataclass(frozen=True)
class FlowConfig:
    margin: float = 0.5  # the flow window: the face box grown by this many box sides on every side
    max_corners: int = 60  # good features to track inside a box (plus its landmarks)
    min_points: int = 6  # fewer points that survive the checks: the face is lost
    levels: int = 3  # pyramid levels of the LK flow (inside the window only)
    fb_max: float = 0.04  # forward-backward error at most this many box sides (and at least 1 px)
    max_scale_step: float = 1.25  # box scale change per frame is clipped to 1/this .. this


def _window(box: tuple[float, ...], margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    return (max(0, math.floor(x1 - margin * bw)), max(0, math.floor(y1 - margin * bh)),
            min(w, math.ceil(x2 + margin * bw)), min(h, math.ceil(y2 + margin * bh)))


def follow_face(prev: np.ndarray, cur: np.ndarray, face: Face, cfg: FlowConfig = FlowConfig()) -> Face | None:
    """``face`` on RGB frame ``prev`` -> the same face on ``cur`` (box shifted by the median
    flow and scaled by the median change of point distances, landmarks moved with it),
    or None when the flow is not trustworthy (too few points, large forward-backward
    error, box centre off the frame)."""
    h, w = cur.shape[:2]
    x1, y1, x2, y2 = face.box
    bw, bh = x2 - x1, y2 - y1
    if bw < 2 or bh < 2:
        return None
    side = math.sqrt(bw * bh)
    wx1, wy1, wx2, wy2 = _window(face.box, cfg.margin, w, h)
    if wx2 - wx1 < 8 or wy2 - wy1 < 8:
        return None
    a = cv2.cvtColor(np.ascontiguousarray(prev[wy1:wy2, wx1:wx2]), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(np.ascontiguousarray(cur[wy1:wy2, wx1:wx2]), cv2.COLOR_RGB2GRAY)
    mask = np.zeros_like(a)
    mask[max(0, int(y1) - wy1):max(0, math.ceil(y2) - wy1), max(0, int(x1) - wx1):max(0, math.ceil(x2) - wx1)] = 255
    corners = cv2.goodFeaturesToTrack(a, cfg.max_corners, 0.01, max(2.0, side / 20), mask=mask)
    pts = [] if corners is None else [corners.reshape(-1, 2)]
    if face.landmarks:
        lm = np.asarray(face.landmarks, np.float32) - (wx1, wy1)
        pts.append(lm[(lm[:, 0] >= 0) & (lm[:, 1] >= 0) & (lm[:, 0] < a.shape[1]) & (lm[:, 1] < a.shape[0])])
    p0 = np.concatenate(pts).astype(np.float32).reshape(-1, 1, 2) if pts else np.zeros((0, 1, 2), np.float32)
    if len(p0) < cfg.min_points:
        return None
    win = int(np.clip(side / 3, 9, 31)) | 1  # odd, about a third of the face
    lk = {"winSize": (win, win), "maxLevel": cfg.levels,
          "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **lk)
    fb = np.linalg.norm((p0 - back).reshape(-1, 2), axis=1)
    good = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= max(1.0, cfg.fb_max * side))
    if good.sum() < cfg.min_points:
        return None
    q0, q1 = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]
    dx, dy = np.median(q1 - q0, axis=0)
    i, j = np.triu_indices(len(q0), k=1)
    d0 = np.linalg.norm(q0[i] - q0[j], axis=1)
    d1 = np.linalg.norm(q1[i] - q1[j], axis=1)
    keep = d0 > 1.0
    scale = float(np.median(d1[keep] / d0[keep])) if keep.any() else 1.0
    scale = float(np.clip(scale, 1 / cfg.max_scale_step, cfg.max_scale_step))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ncx, ncy = cx + float(dx), cy + float(dy)
    if not (0 <= ncx < w and 0 <= ncy < h):
        return None
    box = (ncx - bw * scale / 2, ncy - bh * scale / 2, ncx + bw * scale / 2, ncy + bh * scale / 2)
    landmarks = None if face.landmarks is None else [
        (ncx + (x - cx) * scale, ncy + (y - cy) * scale) for x, y in face.landmarks]
    return Face(box, face.score, landmarks)


def follow_faces(prev: np.ndarray, cur: np.ndarray, faces: list[Face], cfg: FlowConfig = FlowConfig()) -> list[Face]:
    """:func:`follow_face` for each face; lost faces are left out."""
    return [f for f in (follow_face(prev, cur, face, cfg) for face in faces) if f is not None]


# --- the analyzer ----------------------------------------------------------------------------

@dataclass
class VideoFrame:
    source: str
    frame: int  # frame index in the source (native numbering; sampled videos skip indexes)
    timestamp_s: float | None
    image: np.ndarray  # RGB uint8 (H, W, 3)
    video: bool  # True: a frame of a video / camera / stream, tracked along its source


@dataclass
class _Source:
    tracker: TrackState
    count: int = 0  # analysed frames so far
    last_frame: int = -1
    prev_image: np.ndarray | None = None
    prev_faces: list[Face] = field(default_factory=list)


class VideoAnalyzer:
    """Detect-every-N, flow in between, classify every frame, track per source.

    ``tracker.max_missed`` is raised to at least ``detect_every`` so a face the
    flow lost keeps its track until the next key frame can find it again.
    Frames of a source must come in order; a frame index that does not
    increase starts the source afresh (the same file analysed twice).
    """

    def __init__(self, pipeline: Pipeline, detect_every: int = 1, tracker: TrackerConfig | None = None,
                 flow: FlowConfig | None = None):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.pipeline = pipeline
        self.detect_every = detect_every
        base = tracker or TrackerConfig.from_settings(pipeline.settings)
        self.tracker_config = TrackerConfig(**{**base.__dict__, "max_missed": max(base.max_missed, detect_every)})
        self.flow = flow or FlowConfig()
        self.sources: dict[str, _Source] = {}
        self.lost = 0  # faces the flow could not follow

    def _source(self, f: VideoFrame) -> _Source:
        st = self.sources.get(f.source)
        if st is None or f.frame <= st.last_frame:
            st = self.sources[f.source] = _Source(TrackState(self.tracker_config))
        return st

    def finish(self, source: str) -> None:
        """Forget a source's tracks and previous frame (it has ended)."""
        self.sources.pop(source, None)

    def analyze(self, frames: list[VideoFrame]) -> list[FrameResult]:
        """One result per frame, in order, with the frame's ``source``, ``frame`` and
        ``timestamp_s`` set and faces with ``track_id`` and ``smoothed``."""
        states: list[_Source | None] = []
        key: list[bool] = []
        for f in frames:  # key frames first, so all of them are detected in one call
            st = self._source(f) if f.video else None
            key.append(st is None or st.count % self.detect_every == 0)
            if st is not None:
                st.count += 1
                st.last_frame = f.frame
            states.append(st)
        if self.detect_every == 1:  # no flow, so no raw faces to keep: today's one call
            results = self.pipeline.process([f.image for f in frames])
            return self._track(frames, states, results)
        t0 = time.perf_counter()
        detected = iter(self.pipeline.detect([f.image for f, k in zip(frames, key) if k]))
        t1 = time.perf_counter()
        faces: list[list[Face]] = []
        for f, k, st in zip(frames, key, states):
            if k:
                found = next(detected)
            else:
                found = follow_faces(st.prev_image, f.image, st.prev_faces, self.flow)
                self.lost += len(st.prev_faces) - len(found)
            if st is not None:
                st.prev_image, st.prev_faces = f.image, found
            faces.append(found)
        t2 = time.perf_counter()
        timings = {"detect": round((t1 - t0) * 1e3, 2)}
        if not all(key):
            timings["flow"] = round((t2 - t1) * 1e3, 2)
        results = self.pipeline.classify([f.image for f in frames], faces, timings=timings)
        return self._track(frames, states, results)

    def _track(self, frames: list[VideoFrame], states: list[_Source | None],
               results: list[FrameResult]) -> list[FrameResult]:
        for f, st, res in zip(frames, states, results):
            tracker = st.tracker if st is not None else TrackState(self.tracker_config)
            res.source, res.frame, res.timestamp_s = f.source, f.frame, f.timestamp_s
            res.faces = tracker.update(f.frame if st is not None else 0, f.timestamp_s, res.faces)
        return results
