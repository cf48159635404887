"""The CSV cells of a summary's track (``worker.tracking.summary_csv``): every field of each episode in one
cell, older episodes left out said, and a service summary's values (another program's JSON) never a formula."""

from __future__ import annotations

import csv
import io

from moodstream.shared.labels import LABELS
from moodstream.worker.tracking.summary_csv import TRACK_COLUMNS, is_csv, summary_csv, track_row

TRACK = {"source": "cam", "track_id": 0, "first_timestamp_s": 1.0, "last_timestamp_s": 3.5, "seen_s": 2.5,
         "frames": 75, "person": True, "not_person_why": "", "dominant": "happiness",
         "mean_probabilities": {label: 0.125 for label in LABELS},
         "episodes": [{"emotion": "happiness", "start_s": 1.0, "end_s": 2.0, "peak": 0.97, "peak_s": 1.5, "frames": 31},
                      {"emotion": "fear", "start_s": 3.0, "end_s": 3.0, "peak": 0.6, "peak_s": 3.0, "frames": 1}],
         "episodes_dropped": 0, "thumbnail": None}


def test_a_track_s_row_has_its_values_and_its_episodes_in_one_cell():
    (row,) = csv.DictReader(io.StringIO(summary_csv([TRACK])))
    assert list(row) == list(TRACK_COLUMNS)
    assert (row["page"], row["shot"], row["thumbnail"], row["person"], row["seen_s"]) == ("", "", "", "true", "2.5")
    assert row["episodes"] == "happiness 1.0-2.0 s peak 0.97 at 1.5 s (31 frames); fear 3.0-3.0 s peak 0.6 at 3.0 s (1 frame)"


def test_episodes_left_out_are_said_first():
    row = track_row({**TRACK, "episodes_dropped": 12})
    assert row[TRACK_COLUMNS.index("episodes")].startswith("12 earlier episodes left out; happiness 1.0-2.0 s")


def test_a_service_summary_s_text_is_never_a_formula():
    hostile = {**TRACK, "source": "@SUM(A1)", "track_id": "=1+1", "dominant": "+cmd", "not_person_why": "-x", "shot": {"=a": 1},
               "episodes": [{**TRACK["episodes"][0], "emotion": "=HYPERLINK(1)"}], "thumbnail": "-t0.jpg"}
    row = dict(zip(TRACK_COLUMNS, track_row(hostile)))
    for key in ("source", "track_id", "dominant", "not_person_why", "episodes", "thumbnail"):
        assert str(row[key]).startswith("'"), (key, row[key])
    assert row["shot"] == '{"=a": 1}'  # not a number in the JSON: its JSON, as text


def test_the_csv_suffix_is_the_name_s_last_in_any_case():
    assert is_csv("a/p.csv") and is_csv("P.CSV") and not is_csv("p.csv.json") and not is_csv("csv")
