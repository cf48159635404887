"""`--format csv` for `analyze` and `results`: a row per face, for a spreadsheet or pandas (what
py-feat's users get, and ask of the others). A frame without faces and an input that failed keep a
row each (nothing vanishes from the table); a cell a spreadsheet would run as a formula (a file
named `=HYPERLINK(...).jpg`) is written as text."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from click.testing import CliRunner

from moodstream.producer.cli import results
from moodstream.up import up
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult, Smoothed
from moodstream.shared.table import CSV_COLUMNS
from moodstream.shared.wire import FIELD, encode_result
from moodstream.worker.analyze import analyze_cmd as analyze

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"


def rows_of(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == list(CSV_COLUMNS)
    return list(reader)


def test_analyze_writes_a_row_per_face_and_keeps_empty_frames_and_failures(tmp_path):
    shutil.copy(SAMPLES / "street.jpg", tmp_path / "a.jpg")
    (tmp_path / "blank.png").write_bytes(_blank_png())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    shutil.copy(SAMPLES / "hamilton_clip.mp4", tmp_path / "clip.mp4")
    result = CliRunner().invoke(analyze, ["--device", "cpu", "--max-frames", "2", "--format", "csv",
                                                          str(tmp_path)])
    assert result.exit_code == 1, result.stderr  # the broken file
    rows = rows_of(result.stdout)
    by_source = {}
    for row in rows:
        by_source.setdefault(Path(row["source"]).name, []).append(row)
    street = by_source["a.jpg"]
    assert len(street) >= 4 and {r["face"] for r in street} == {str(i) for i in range(len(street))}
    for r in street:
        probs = [float(r[label]) for label in LABELS]
        assert abs(sum(probs) - 1) < 1e-3 and r["emotion"] == LABELS[max(range(len(LABELS)), key=probs.__getitem__)]
        assert float(r["x2"]) > float(r["x1"]) and r["page"] == "1" and r["timestamp_s"] == r["shot"] == ""
    (blank,) = by_source["blank.png"]
    assert blank["face"] == "" and blank["emotion"] == "" and blank["width"] != ""
    (broken,) = by_source["broken.jpg"]
    assert broken["error"] == "unreadable" and broken["face"] == ""
    clip = by_source["clip.mp4"]
    assert {r["frame"] for r in clip} == {"0", "1"} and all(r["track_id"] != "" and r["smoothed_emotion"] for r in clip)
    assert {r["shot"] for r in clip} == {"0"}  # the camera shot: tracks end where it changes


def _blank_png() -> bytes:
    import cv2
    import numpy as np

    return cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()


def test_results_writes_the_same_columns_and_a_formula_is_text(redis_url, client):
    p = {label: (0.65 if label == "happiness" else 0.05) for label in LABELS}
    face = Face((1.0, 2.0, 30.0, 40.0), 0.99, emotion="happiness", probabilities=p, track_id=3,
                smoothed=Smoothed("happiness", p))
    hostile = '=HYPERLINK("http://x","y").jpg'
    for r in (FrameResult(job_id="j1", source=hostile, frame=0, size=(64, 48), faces=[face], worker="w"),
              FrameResult(job_id="j2", source="cam", frame=5, timestamp_s=0.2, size=(64, 48), worker="w")):
        client.xadd("t:results", {FIELD: encode_result(r)})
    result = CliRunner().invoke(results, ["--from-start", "--format", "csv", "--redis-url", redis_url,
                                                          "--prefix", "t"])
    assert result.exit_code == 0, result.stderr
    rows = rows_of(result.stdout)
    assert [r["job_id"] for r in rows] == ["j1", "j2"]
    assert rows[0]["source"] == "'" + hostile  # text, not a formula
    assert rows[0]["track_id"] == "3" and rows[0]["emotion"] == "happiness" and float(rows[0]["happiness"]) == 0.65
    assert rows[1]["face"] == "" and rows[1]["timestamp_s"] == "0.2"


def test_up_prints_its_tracked_rows_as_csv(tmp_path):
    """`up --format csv`: the same columns, each face tracked (its track_id and smoothed emotion)."""
    result = CliRunner().invoke(up, [str(SAMPLES / "hamilton_clip.mp4"), "--max-frames", "4", "--device", "cpu",
                                     "--no-dashboard", "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    rows = rows_of(result.stdout)
    assert {r["frame"] for r in rows} == {"0", "1", "2", "3"}
    assert all(r["track_id"] != "" and r["smoothed_emotion"] and r["job_id"] for r in rows if r["face"] != "")


def test_the_help_names_the_columns_the_csv_has_and_the_record_its_keys():
    """`analyze --help` listed the CSV columns without `shot` (written after timestamp_s since shot
    cuts) and the JSON record without `page` and `shot`: a newcomer reading the help for the columns
    got the wrong ones from the fifth on. The help's list is the header's, in its order."""
    text = " ".join(CliRunner().invoke(analyze, ["--help"]).output.split())  # the wrapping undone
    named = ", ".join(CSV_COLUMNS[:CSV_COLUMNS.index("smoothed_emotion") + 1])
    assert f"({named}, a column per emotion's probability, error, error_detail, scale)" in text, text
    assert '"page"' in text and '"shot"' in text and '"scale"' in text, text
    assert CSV_COLUMNS[-3:] == ("error", "error_detail", "scale")
