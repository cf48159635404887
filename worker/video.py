"""Video as a sequence: detect every N-th frame, follow faces in between, classify, track.

This is analysis (it drives a :class:`worker.pipeline.Pipeline`); following
faces, tracks and summaries are :mod:`worker.tracking`, which it uses.

:class:`VideoAnalyzer` wraps one :class:`worker.pipeline.Pipeline`. For each
video, camera or stream source (frames in order, possibly mixed with other
sources and still images in one batch):

* every ``detect_every``-th analysed frame of a source is a key frame: the full
  detector runs on it (:meth:`Pipeline.detect`, all key frames of a batch in
  one call); so is the first frame of a new camera shot (``shot``,
  :mod:`moodstream.shared.shots`): no face is followed across a cut;
* on the frames in between, each face of the previous frame is followed by
  pyramidal Lucas-Kanade optical flow (:func:`worker.tracking.flow.follow_faces`),
  with no image pyramid of the detector; a face whose flow fails is dropped
  until the next key frame, and new faces appear only at key frames;
* the emotion classifier runs on every frame (:meth:`Pipeline.classify`, one
  call for the batch), so every record has fresh probabilities;
* :class:`worker.tracking.TrackState` gives each face its ``track_id`` and
  ``smoothed`` emotion along its source. A still image gets a fresh tracker
  (ids 0..k-1, ``smoothed`` equal to the raw values).

With ``detect_every=1`` every frame is a key frame and the records are
exactly :meth:`Pipeline.process`'s, plus ``track_id`` and ``smoothed``.

The per-person summary of tracked records (``--summary``) is
:mod:`worker.tracking.summary`.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from moodstream.shared.record import Face, FrameResult
from moodstream.worker.tracking.flow import FlowConfig, follow_faces
from moodstream.worker.tracking.tracker import TrackerConfig, TrackState

if TYPE_CHECKING:
    from moodstream.worker.pipeline import Pipeline

log = logging.getLogger(__name__)


# --- the analyzer ----------------------------------------------------------------------------

@dataclass
class VideoFrame:
    """One frame for :meth:`VideoAnalyzer.analyze` (part of the stable API: a program's own frames,
    tracked as ``analyze`` tracks a video's)."""

    source: str  # what the frames are of: tracks are per source
    frame: int  # frame index in the source (native numbering; sampled videos skip indexes)
    timestamp_s: float | None  # its time in the source (smoothing and episodes are in seconds)
    image: np.ndarray  # RGB uint8 (H, W, 3)
    video: bool = True  # True: a frame of a video / camera / stream, tracked along its source; False: a still
    shot: int | None = None  # its camera shot (shared.shots, as the reader numbers them): tracks end at a change

    def __post_init__(self) -> None:  # a program's mistake named where it is made, not deep in the pipeline
        if not isinstance(self.image, np.ndarray):
            raise TypeError(f"image must be a numpy array (RGB uint8, H x W x 3), got {type(self.image).__name__}")
        if self.timestamp_s is not None and (isinstance(self.timestamp_s, bool) or not isinstance(
                self.timestamp_s, numbers.Real) or not math.isfinite(self.timestamp_s)):
            raise ValueError(f"timestamp_s must be a finite number of seconds or None, got {self.timestamp_s!r}")
        if isinstance(self.frame, bool) or not isinstance(self.frame, numbers.Integral) or self.frame < 0:
            raise ValueError(f"frame must be a whole number from 0, got {self.frame!r}")
        if self.shot is not None and (isinstance(self.shot, bool) or not isinstance(self.shot, numbers.Integral)
                                      or self.shot < 0):
            raise ValueError(f"shot must be a whole number from 0 or None, got {self.shot!r}")


@dataclass
class _Source:
    tracker: TrackState
    count: int = 0  # analysed frames so far
    last_frame: int = -1
    shot: int | None = None  # of the last frame
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
            st = self.sources[f.source] = _Source(TrackState(self.tracker_config, name=f"tracker of {f.source}"))
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
            cut = st is not None and f.shot is not None and st.shot is not None and f.shot != st.shot \
                and self.tracker_config.shot_cuts
            if cut:  # a new shot is detected afresh, its count from 0: nothing is followed across a cut
                st.count = 0
            key.append(st is None or st.count % self.detect_every == 0)
            if st is not None:
                st.count += 1
                st.last_frame = f.frame
                st.shot = f.shot if f.shot is not None else st.shot
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
            res.source, res.frame, res.timestamp_s, res.shot = f.source, f.frame, f.timestamp_s, f.shot
            res.faces = tracker.update(f.frame if st is not None else 0, f.timestamp_s, res.faces, f.shot)
        return results
