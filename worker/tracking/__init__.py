"""Tracking: faces followed along each source, and who felt what, when.

One place for everything that follows a face through time, as supervision
keeps its ``tracker/byte_tracker/`` and norfair its tracker apart from video
reading and drawing:

* :mod:`.tracker`: :class:`TrackState` (ids by Hungarian matching of predicted
  and detected boxes, the smoothed emotion along a track), :class:`TrackerConfig`;
* :mod:`.assign`: its Hungarian step on the pairs that can match, one connected
  component at a time (thousands of faces a frame);
* :mod:`.flow`: following faces between key frames by optical flow
  (:func:`follow_faces`, :class:`FlowConfig`);
* :mod:`.summary`: the per-person summary of tracked records (episodes, person
  flag, face pictures, the people table), the same for ``analyze --summary``
  and the service;
* :mod:`.stage`: the service's track stage, ``moodstream track`` (results back
  in frame order per source, tracked, summaries when a source run ends);
* :mod:`.runs`: a source's run as the stage holds it (its reorder buffer, the
  answers it has seen, its summary message);
* :mod:`.pictures`: face pictures read back from the frames stream for it;
* :mod:`.reader`: ``moodstream tracks``, which reads those summaries.

Drawing (boxes, timelines) is :mod:`worker.annotate`; the video analyzer that
detects, follows and classifies is :mod:`worker.video` (analysis: it drives
the pipeline and uses this package). The names below are imported when first
used, so importing one module of the package (the ``tracks`` reader, say)
does not import the tracker's scipy or the stage's Redis loop.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrackState": "tracker", "TrackerConfig": "tracker",
    "FlowConfig": "flow", "follow_face": "flow", "follow_faces": "flow",
    "SourceSummary": "summary", "Summarizer": "summary", "SummaryConfig": "summary", "people_table": "summary",
    "write_summary": "summary",
    "TrackStage": "stage",
    "FramePictures": "pictures",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
