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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from moodstream.shared.record import TIME_LIMIT_S, Face, FrameResult
from moodstream.shared.settings import is_number, is_whole
from moodstream.shared.table import printable
from moodstream.worker.pipeline import Pipeline, check_frames
from moodstream.worker.tracking.flow import FlowConfig, Held, follow_faces, hold
from moodstream.worker.tracking.tracker import TrackerConfig, TrackState

log = logging.getLogger(__name__)
MAX_SOURCES = 1024  # sources held at once (tracker, faces' windows): past it the least recently seen is forgotten


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
        if self.timestamp_s is not None:
            self.timestamp_s = _seconds(self.timestamp_s)
        if not is_whole(self.frame) or self.frame < 0:
            raise ValueError(f"frame must be a whole number from 0, got {self.frame!r}")
        self.frame = int(self.frame)  # numpy's integers kept as they came failed the record's JSON
        if self.shot is not None and (not is_whole(self.shot) or self.shot < 0):
            raise ValueError(f"shot must be a whole number from 0 or None, got {self.shot!r}")
        self.shot = None if self.shot is None else int(self.shot)


def _seconds(t: object) -> float:
    """A frame's time as a float (numpy's, a Fraction), or a ValueError: not a number, not finite, or
    beyond what a record carries (1e12 s; nanoseconds given as seconds)."""
    try:
        seconds = float(t) if is_number(t) else math.nan
    except OverflowError:  # an int past float's range
        seconds = math.inf
    if not abs(seconds) <= TIME_LIMIT_S:
        raise ValueError(f"timestamp_s must be a finite number of seconds within +-{TIME_LIMIT_S:g} (a time in "
                         f"ns or us is divided first) or None, got {t!r}")
    return seconds


@dataclass
class _Source:
    tracker: TrackState
    count: int = 0  # analysed frames so far
    last_frame: int = -1
    last_t: float | None = None  # the last frame's time: a source's times do not go back
    shot: int | None = None  # of the last frame
    size: tuple[int, int] | None = None  # (height, width) of the last frame: a new size is detected afresh
    held: Held | None = None  # what the flow needs of the last frame (its faces' windows, copied)
    prev_faces: list[Face] = field(default_factory=list)


class VideoAnalyzer:
    """Detect-every-N, flow in between, classify every frame, track per source.

    ``tracker.max_missed`` is raised to at least ``detect_every`` so a face the
    flow lost keeps its track until the next key frame can find it again.
    Frames of a source must come in order, of index and of time (a time that
    goes back is a ValueError); a frame index that does not increase starts the
    source afresh (the same file analysed twice); a frame of a new size is a key
    frame. The caller's arrays are not kept: what the flow needs of a frame (its
    faces' windows, in grey) is copied, so a camera may fill one buffer again.

    Each source is held (its tracks and, with ``detect_every`` > 1, its faces'
    windows of the last frame) until :meth:`finish` forgets it; at most ``max_sources`` at once,
    past which the least recently seen is forgotten (logged once, counted in
    ``evicted``; a frame of it later starts it afresh), so a program that names
    every request's frames apart does not grow without bound.

    Several threads may share one analyzer (and its pipeline), each sending its
    own sources; the frames of one source come from one thread, in order.
    A call that raises (a frame it cannot use: :class:`BadInputError`, or a
    TypeError for what is no :class:`VideoFrame`) leaves the sources it touched as
    they were (another thread's are its own).
    """

    def __init__(self, pipeline: Pipeline, detect_every: int = 1, tracker: TrackerConfig | None = None,
                 flow: FlowConfig | None = None, *, max_sources: int = MAX_SOURCES):
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"VideoAnalyzer takes a Pipeline (VideoAnalyzer(Pipeline(settings))), got "
                            f"{type(pipeline).__name__}")
        if not is_whole(detect_every) or detect_every < 1:  # nan was taken, and no face was ever found
            raise (ValueError if is_number(detect_every) else TypeError)(
                f"detect_every must be a whole number from 1 (1: every frame detected), got {detect_every!r}")
        if not is_whole(max_sources) or max_sources < 1:
            raise ValueError(f"max_sources must be a whole number from 1, got {max_sources!r}")
        self.pipeline = pipeline
        self.detect_every = int(detect_every)
        base = tracker or TrackerConfig.from_settings(pipeline.settings)
        self.tracker_config = TrackerConfig(**{**base.__dict__, "max_missed": max(base.max_missed, detect_every)})
        self.flow = flow or FlowConfig()
        self.max_sources = int(max_sources)
        self.sources: OrderedDict[str, _Source] = OrderedDict()  # least recently seen first
        self._lock = threading.Lock()  # over ``sources``: threads share the analyzer, each its own sources
        self.lost = 0  # faces the flow could not follow
        self.evicted = 0  # sources forgotten past max_sources

    def _source(self, f: VideoFrame, touched: dict[str, tuple[_Source, _Source] | None]) -> _Source:
        """``f``'s source, begun when new or restarted; the first touch of each source in a call is kept in
        ``touched`` (the source and a copy of its fields, or None for one this call began)."""
        st = self.sources.get(f.source)
        if f.source not in touched:
            touched[f.source] = None if st is None else (st, dataclasses.replace(st))  # the fields, not the tracker
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
        """Forget a source's tracks and what it held of its last frame (it has ended)."""
        with self._lock:
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
        touched: dict[str, tuple[_Source, _Source] | None] = {}
        with self._lock:  # the sources held are shared by threads; each source's own state is its thread's
            try:
                states, key = self._step(frames, touched)
            except ValueError:
                self._put_back(touched)
                raise
        try:
            results = self._analyze(frames, states, key)
        except BaseException:  # a call that raises all the same (a detector's error): its sources as they were
            with self._lock:
                self._put_back(touched)
            raise
        with self._lock:
            self._bound()
        return results

    def _put_back(self, touched: dict[str, tuple[_Source, _Source] | None]) -> None:
        """The sources a failed call touched as they were before it (others, another thread's, stay)."""
        for name, before in touched.items():
            if before is None:
                self.sources.pop(name, None)
                continue
            st, fields = before
            for kept in (fl.name for fl in dataclasses.fields(_Source) if fl.name != "tracker"):
                setattr(st, kept, getattr(fields, kept))
            self.sources[name] = st

    def _step(self, frames: list[VideoFrame], touched: dict) -> tuple[list[_Source | None], list[bool]]:
        """Each frame's source moved on to it, and whether it is a key frame (detected): every
        ``detect_every``-th of its source, the first of a new shot and the first of a new size."""
        states: list[_Source | None] = []
        key: list[bool] = []
        for f in frames:
            st = self._source(f, touched) if f.video else None
            if st is not None and f.timestamp_s is not None and st.last_t is not None and f.timestamp_s < st.last_t:
                raise ValueError(f"{printable(f.source)[:80]}'s frame {f.frame} at {f.timestamp_s:g} s comes after its "
                                 f"frame {st.last_frame} at {st.last_t:g} s: a source's times go on with its frames (a "
                                 "clock that does not go back, time.monotonic(); a frame index that does not go on "
                                 "starts the source afresh)")
            if st is not None:
                cut = f.shot is not None and st.shot is not None and f.shot != st.shot and self.tracker_config.shot_cuts
                size = f.image.shape[:2]
                if cut or (st.size is not None and size != st.size):  # nothing is followed across a cut or
                    st.count = 0  # onto a frame of another size (a camera's new resolution): detected afresh
                st.size = size
            key.append(st is None or st.count % self.detect_every == 0)
            if st is not None:
                st.count += 1
                st.last_frame = f.frame
                st.last_t = f.timestamp_s if f.timestamp_s is not None else st.last_t
                st.shot = f.shot if f.shot is not None else st.shot
            states.append(st)
        return states, key

    def _analyze(self, frames: list[VideoFrame], states: list[_Source | None], key: list[bool]) -> list[FrameResult]:
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
                found = follow_faces(st.held, f.image, st.prev_faces, self.flow)
                self.lost += len(st.prev_faces) - len(found)
            if st is not None:  # kept for the next frame, copied: the caller may fill this array again
                st.held, st.prev_faces = hold(f.image, found, self.flow), found
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
