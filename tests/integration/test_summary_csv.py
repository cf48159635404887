"""Who felt what, when, in a spreadsheet: ``--summary FILE.csv`` (``analyze``, ``up``) writes the per-person
summary as CSV, a row per track of the JSON's 'tracks' (people and not), and ``tracks --csv`` the service's
summaries the same way (with run and part). A cell a spreadsheet would run as a formula (a file named
``=cmd.jpg``) gets a leading ``'``, as ``--format csv`` does (``shared.table.text_cell``); commas, quotes and
newlines in a name are the csv module's quoting, read back whole."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.streamkit import settings_for

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.wire import FIELD, encode_result
from moodstream.worker.analyze import analyze_cmd as analyze
from moodstream.worker.tracking.stage import TrackStage

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
COLUMNS = ["source", "page", "track_id", "shot", "first_timestamp_s", "last_timestamp_s", "seen_s", "frames",
           "person", "not_person_why", "dominant", *LABELS, "episodes", "thumbnail"]
EPISODE = re.compile(r"(\w+) ([\d.]+)-([\d.]+) s peak ([\d.]+) at ([\d.]+) s \((\d+) frames?\)")


def rows_of(text: str, columns: list[str] = COLUMNS) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == columns
    return list(reader)


def run_analyze(*args: str) -> None:
    ran = CliRunner().invoke(analyze, ["--device", "cpu", *args])
    assert ran.exit_code == 0, ran.output
    assert "Traceback" not in ran.stderr


def cell(value) -> str:
    """What a JSON value reads as in the CSV."""
    return "" if value is None else ("true" if value else "false") if isinstance(value, bool) else str(value)


def assert_row_is_track(row: dict, t: dict) -> None:
    for key in ("source", "page", "track_id", "shot", "first_timestamp_s", "last_timestamp_s", "seen_s", "frames",
                "person", "not_person_why", "dominant", "thumbnail"):
        assert row[key] == cell(t.get(key)), (key, row[key], t.get(key))
    assert [float(row[label]) for label in LABELS] == [t["mean_probabilities"][label] for label in LABELS]
    episodes = [m.groups() for m in EPISODE.finditer(row["episodes"])]
    assert "; ".join(m.group(0) for m in EPISODE.finditer(row["episodes"])) == row["episodes"]
    assert [(e, float(a), float(b), float(p), float(at), int(n)) for e, a, b, p, at, n in episodes] == \
        [(e["emotion"], e["start_s"], e["end_s"], e["peak"], e["peak_s"], e["frames"]) for e in t["episodes"]]


def test_analyze_summary_csv_has_a_row_per_json_track_with_equal_values(tmp_path):
    run_analyze(str(SAMPLES), "--summary", str(tmp_path / "json" / "people.json"))
    run_analyze(str(SAMPLES), "--summary", str(tmp_path / "csv" / "people.csv"))
    want = json.loads((tmp_path / "json" / "people.json").read_text())["tracks"]
    rows = rows_of((tmp_path / "csv" / "people.csv").read_text())
    assert len(rows) == len(want) == 8  # the photos' faces, the clip's person and its track that is not one
    assert {r["person"] for r in rows} == {"true", "false"} and any(t["episodes"] for t in want)
    for row, t in zip(rows, want):
        assert_row_is_track(row, t)
        assert (tmp_path / "csv" / row["thumbnail"]).is_file()  # the face pictures beside the CSV
    # the timelines beside it too, as beside the JSON
    assert sorted(p.name for p in (tmp_path / "csv").glob("*.png")) == \
        sorted(p.name for p in (tmp_path / "json").glob("*.png"))


def test_the_csv_suffix_is_told_in_any_case_and_only_at_the_end(tmp_path):
    run_analyze(str(SAMPLES / "audience.jpg"), "--summary", str(tmp_path / "People.CSV"))
    assert len(rows_of((tmp_path / "People.CSV").read_text())) == 1
    run_analyze(str(SAMPLES / "audience.jpg"), "--summary", str(tmp_path / "people.csv.json"))
    assert json.loads((tmp_path / "people.csv.json").read_text())["tracks"][0]["track_id"] == 0


def test_hostile_source_names_read_back_whole_and_a_formula_is_text(tmp_path, monkeypatch):
    names = ["a,b.jpg", 'q"uote.jpg', "new\nline.jpg", "=cmd.jpg", "+x.jpg", "-x.jpg", "@x.jpg"]
    for name in names:
        shutil.copy(SAMPLES / "audience.jpg", tmp_path / name)
    monkeypatch.chdir(tmp_path)  # the sources are these names, not paths that start with '/'
    run_analyze("--summary", "=out.csv", "--", *names)
    rows = rows_of((tmp_path / "=out.csv").read_text())
    shown = {name: ("'" + name if name[0] in "=+-@" else name) for name in names}
    assert [r["source"] for r in rows] == [shown[n] for n in names]
    for r in rows:  # the face pictures' names start with the summary's stem: '=' too, so text as well
        assert r["thumbnail"].startswith("'=out-") and (tmp_path / r["thumbnail"][1:]).is_file()


def test_an_unwritable_csv_path_is_one_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    ran = CliRunner().invoke(analyze, ["--device", "cpu", str(SAMPLES / "audience.jpg"),
                                       "--summary", str(tmp_path / "afile" / "x.csv")])
    assert ran.exit_code == 1 and "Traceback" not in ran.output
    (line,) = ran.stderr.strip().splitlines()
    assert line.startswith("Error: cannot write the summary ") and "x.csv" in line, line
    assert ran.stdout == ""  # found out before any frame


@pytest.mark.slow
def test_up_summary_csv_is_analyze_s(tmp_path, monkeypatch):
    from moodstream.up import up

    clip = str(SAMPLES / "hamilton_clip.mp4")
    run_analyze(clip, "--summary", str(tmp_path / "analyze" / "s.csv"))
    monkeypatch.delenv("MOODSTREAM_REDIS_URL", raising=False)  # an embedded server
    ran = CliRunner().invoke(up, [clip, "--device", "cpu", "--format", "jsonl", "--no-dashboard",
                                  "--summary", str(tmp_path / "up" / "s.csv")])
    assert ran.exit_code == 0, ran.output
    got, want = (rows_of((tmp_path / name / "s.csv").read_text()) for name in ("up", "analyze"))
    assert [(r["source"], r["track_id"], r["person"], r["thumbnail"]) for r in got] == \
        [(r["source"], r["track_id"], r["person"], r["thumbnail"]) for r in want]
    for g, w in zip(got, want):
        assert [float(g[label]) for label in LABELS] == pytest.approx([float(w[label]) for label in LABELS], abs=2e-3)
        assert (tmp_path / "up" / g["thumbnail"]).is_file()


# --- `tracks --csv`: the service's summaries --------------------------------------------------------------

HAPPY = {label: (0.9 if label == "happiness" else 0.1 / 7) for label in LABELS}
HOSTILE = '=HYPERLINK("http://x","y"),\ncam'


def add(client, keys, source: str, frame: int) -> None:
    faces = [Face((100.0 + frame, 80.0, 160.0 + frame, 150.0), 0.99, emotion="happiness", probabilities=HAPPY)]
    r = FrameResult(job_id=f"{source}-{frame}", source=source, frame=frame, worker="w", faces=faces,
                    timestamp_s=frame / 10, size=(640, 360))
    client.xadd(keys.results, {FIELD: encode_result(r)})


def test_tracks_csv_gives_the_json_s_tracks_with_run_and_part(redis_url, client, keys):
    from moodstream.worker.tracking.reader import tracks

    stage = TrackStage(settings_for(redis_url), name="tracker", reorder_wait_ms=300, block_ms=1, pictures=False)
    stage._ensure_group()
    for source in (HOSTILE, "hall"):
        for f in range(10):  # a second of happiness: a person with an episode
            add(client, keys, source, f)
    stage.step(now_s=100.0)
    stage.flush()  # the stage stops: each run's summary is out
    env = {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    as_json = CliRunner().invoke(tracks, ["--from-start", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    summaries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [s["source"] for s in summaries] == [HOSTILE, "hall"]

    out = CliRunner().invoke(tracks, ["--from-start", "--csv"], env=env)
    assert out.exit_code == 0, out.output
    rows = rows_of(out.stdout, ["source", "run", "part", *COLUMNS[1:]])
    want = [(s, t) for s in summaries for t in s["tracks"]]
    assert len(rows) == len(want) == 2
    for row, (s, t) in zip(rows, want):
        assert (row["run"], row["part"]) == (cell(s.get("run")), cell(s.get("part")))
        assert_row_is_track({**row, "source": row["source"].removeprefix("'")}, t)
        assert row["episodes"].startswith("happiness 0.0-0.9 s peak 0.9 at 0.0 s (10 frames)")
    assert rows[0]["source"] == "'" + HOSTILE  # a formula is text; the comma and newline read back whole

    both = CliRunner().invoke(tracks, ["--from-start", "--csv", "--json"], env=env)
    assert both.exit_code == 2 and "--csv" in both.stderr and "--json" in both.stderr


def test_tracks_csv_is_a_header_when_there_is_no_summary(redis_url, keys):
    from moodstream.worker.tracking.reader import tracks

    out = CliRunner().invoke(tracks, ["--from-start", "--csv"],
                             env={"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix})
    assert out.exit_code == 0 and rows_of(out.stdout, ["source", "run", "part", *COLUMNS[1:]]) == []
