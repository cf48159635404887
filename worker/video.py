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

import dataclasses
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from moodstream.shared.record import Face, FrameResult
from moodstream.shared.settings import is_number, is_whole
from moodstream.shared.table import printable
from moodstream.worker.pipeline import Pipeline, check_frames
from moodstream.worker.tracking.flow import FlowConfig, follow_faces
from moodstream.worker.tracking.tracker import TrackerConfig, TrackState

log = logging.getLogger(__name__)
MAX_SOURCES = 1024  # sources held at once (tracker, last frame): past it the least recently seen is forgotten


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
        if not isinstance(self.source, str):
            raise TypeError(f"source must be a string naming what the frames are of (\"camera-1\"), got "
                            f"{type(self.source).__name__}")
        if not isinstance(self.image, np.ndarray):
            raise TypeError(f"image must be a numpy array (RGB uint8, H x W x 3), got {type(self.image).__name__}")
        if self.timestamp_s is not None and (not is_number(self.timestamp_s) or not math.isfinite(self.timestamp_s)):
            raise ValueError(f"timestamp_s must be a finite number of seconds or None, got {self.timestamp_s!r}")
        if not is_whole(self.frame) or self.frame < 0:
            raise ValueError(f"frame must be a whole number from 0, got {self.frame!r}")
        if self.shot is not None and (not is_whole(self.shot) or self.shot < 0):
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

    Each source is held (its tracks and, with ``detect_every`` > 1, its last
    frame) until :meth:`finish` forgets it; at most ``max_sources`` at once,
    past which the least recently seen is forgotten (logged once, counted in
    ``evicted``; a frame of it later starts it afresh), so a program that names
    every request's frames apart does not grow without bound.

    Several threads may share one analyzer (and its pipeline), each sending its
    own sources; the frames of one source come from one thread, in order.
    A call that raises (a frame it cannot use: :class:`BadInputError`, or a
    TypeError for what is no :class:`VideoFrame`) leaves every source as it was.
    """

    def __init__(self, pipeline: Pipeline, detect_every: int = 1, tracker: TrackerConfig | None = None,
                 flow: FlowConfig | None = None, *, max_sources: int = MAX_SOURCES):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if not is_whole(max_sources) or max_sources < 1:
            raise ValueError(f"max_sources must be a whole number from 1, got {max_sources!r}")
        self.pipeline = pipeline
        self.detect_every = detect_every
        base = tracker or TrackerConfig.from_settings(pipeline.settings)
        self.tracker_config = TrackerConfig(**{**base.__dict__, "max_missed": max(base.max_missed, detect_every)})
        self.flow = flow or FlowConfig()
        self.max_sources = int(max_sources)
        self.sources: OrderedDict[str, _Source] = OrderedDict()  # least recently seen first
        self.lost = 0  # faces the flow could not follow
        self.evicted = 0  # sources forgotten past max_sources

    def _source(self, f: VideoFrame) -> _Source:
        st = self.sources.get(f.source)
        if st is None or f.frame <= st.last_frame:
            st = self.sources[f.source] = _Source(TrackState(self.tracker_config, name=f"tracker of {f.source}"))
        self.sources.move_to_end(f.source)
        return st

    def _bound(self) -> None:
        while len(self.sources) > self.max_sources:
            source, _ = self.sources.popitem(last=False)
            self.evicted += 1
            if self.evicted == 1:
                log.warning("video analyzer: over %d sources held at once: the least recently seen (%s) is "
                            "forgotten, its tracks ended (call finish(source) when a source ends; max_sources "
                            "raises the bound); later ones are counted in .evicted, not logged", self.max_sources,
                            printable(str(source))[:80])

    def finish(self, source: str) -> None:
        """Forget a source's tracks and previous frame (it has ended)."""
        self.sources.pop(source, None)

    def analyze(self, frames: list[VideoFrame]) -> list[FrameResult]:
        """One result per frame, in order, with the frame's ``source``, ``frame`` and
        ``timestamp_s`` set and faces with ``track_id`` and ``smoothed``."""
        if not isinstance(frames, (list, tuple)):
            raise TypeError(f"analyze takes a list of VideoFrame: for one frame, [frame]; got {type(frames).__name__}")
        for k, f in enumerate(frames):
            if not isinstance(f, VideoFrame):
                raise TypeError(f"frames[{k}] must be a VideoFrame(source, frame, timestamp_s, image), got "
                                f"{type(f).__name__}")
        check_frames([f.image for f in frames], self.pipeline.settings.max_pixels)  # all, before any source moves on
        # a call that raises all the same (a detector's error) leaves the sources as they were
        saved = [(name, st, dataclasses.replace(st)) for name, st in self.sources.items()]  # the fields, not the tracker
        try:
            results = self._analyze(frames)
        except BaseException:
            self.sources = OrderedDict()
            for name, st, fields in saved:
                st.count, st.last_frame, st.shot = fields.count, fields.last_frame, fields.shot
                st.prev_image, st.prev_faces = fields.prev_image, fields.prev_faces
                self.sources[name] = st
            raise
        self._bound()
        return results

    def _analyze(self, frames: list[VideoFrame]) -> list[FrameResult]:
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
