"""Who felt what, when, as CSV: ``analyze`` / ``up --summary FILE.csv`` and ``tracks --csv``.

A row per track of a summary's ``tracks`` (:mod:`moodstream.worker.tracking.summary`), people and not
alike, in their order; its cells are the JSON's values as JSON writes them (a float's shortest form,
``true`` / ``false``, an empty cell for a key a track has not: ``page`` of a video's, ``shot`` of a
photo's, ``thumbnail`` where no picture was written). The eight mean probabilities are a column each,
named by label; the episodes one cell, ``happiness 2.7367-3.3033 s peak 0.9712 at 2.7367 s (17 frames);
surprise ...`` (older ones past ``MAX_EPISODES`` said first: ``12 earlier episodes left out; ...``).
Text cells follow ``--format csv``'s rule (:func:`moodstream.shared.table.text_cell`): one that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, a tab, a CR first) gets a leading ``'``,
the OWASP advice; commas, quotes and newlines are the csv module's quoting, read back whole. The run
list, the settings and ``interrupted`` of the JSON are not in it (the exit code says an interrupted run).
"""

from __future__ import annotations

import json
from pathlib import Path

from moodstream.shared.labels import LABELS
from moodstream.shared.table import csv_text, plural, text_cell

FIELDS = ("source", "page", "track_id", "shot", "first_timestamp_s", "last_timestamp_s", "seen_s", "frames", "person",
          "not_person_why", "dominant")  # the entry's own values, one a column
TRACK_COLUMNS = (*FIELDS, *LABELS, "episodes", "thumbnail")  # LABELS: each emotion's mean probability
RUN_COLUMNS = ("run", "part")  # `tracks --csv`: the service's run of the source, and its part (after source)


def is_csv(path: str | Path) -> bool:
    """A summary file to write as CSV: its name ends in ``.csv``, in any case."""
    return Path(path).suffix.lower() == ".csv"


def _cell(value: object) -> object:
    """A JSON value as its cell: numbers as they are, text safe from formulas (a service summary's
    values are another program's: a list or object is its JSON, as text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    return text_cell(value if isinstance(value, str) else json.dumps(value))


def episodes_cell(track: dict) -> str:
    """The track's episodes in one cell, every field of each: ``happiness 2.74-3.3 s peak 0.97 at 2.74 s
    (17 frames); ...``."""
    eps = [f"{e['emotion']} {e['start_s']}-{e['end_s']} s peak {e['peak']} at {e['peak_s']} s "
           f"({plural(e['frames'], 'frame')})" for e in track["episodes"]]
    dropped = track.get("episodes_dropped") or 0
    if dropped:
        eps.insert(0, f"{plural(dropped, 'earlier episode')} left out")
    return "; ".join(eps)


def track_row(track: dict, run: tuple = ()) -> list:
    """``track``'s row in :data:`TRACK_COLUMNS` order, ``run``'s cells (:data:`RUN_COLUMNS`) after its source."""
    probs = track["mean_probabilities"]
    return [_cell(track["source"]), *(_cell(v) for v in run),
            *(_cell(track.get(k)) for k in FIELDS[1:]),
            *(_cell(probs.get(label)) for label in LABELS), _cell(episodes_cell(track)), _cell(track.get("thumbnail"))]


def summary_csv(tracks: list[dict]) -> str:
    """The CSV file ``--summary FILE.csv`` writes: a header, then a row per track."""
    return csv_text([list(TRACK_COLUMNS), *(track_row(t) for t in tracks)])


def service_header() -> list[str]:
    """`tracks --csv`'s header: a track's columns with the run's after the source."""
    return [TRACK_COLUMNS[0], *RUN_COLUMNS, *TRACK_COLUMNS[1:]]


def service_rows(summary: dict) -> list[list]:
    """A service run summary's rows (`tracks --csv`): its run and part (empty where it has none) in each."""
    run = (summary.get("run"), summary.get("part"))
    return [track_row(t, run) for t in summary["tracks"]]
