"""`--summary` with a still image (acceptance run): `up street.jpg --summary` listed its 5 faces as
tracks (the track stage summarises every source), while `analyze street.jpg --summary` wrote an empty
`tracks` list and said only "(no people)". The service's summary must equal analyze's on the same file."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from test_service_summary import analyze_summary, assert_same_tracks

REPO = Path(__file__).resolve().parents[2]


def test_an_image_is_summarised_alike_by_analyze_and_up(tmp_path, monkeypatch):
    from moodstream.up import up

    image = str(REPO / "samples" / "street.jpg")
    want = analyze_summary(image, tmp_path / "analyze")
    assert len(want["tracks"]) >= 3 and all(t["frames"] == 1 for t in want["tracks"])
    # a still's faces are not held to the 0.5 s a video's track must span (every one of a group
    # photo was "not a person": seen 0.00 s): the detector's score decides alone
    assert [t["person"] for t in want["tracks"]] == [t["mean_score"] >= 0.92 for t in want["tracks"]]
    assert sum(t["person"] for t in want["tracks"]) >= 3
    monkeypatch.delenv("MOODSTREAM_REDIS_URL", raising=False)  # an embedded server
    ran = CliRunner().invoke(up, [image, "--device", "cpu", "--no-dashboard", "--format", "jsonl", "--summary",
                                  str(tmp_path / "up" / "s.json")])
    assert ran.exit_code == 0, ran.output
    got = json.loads((tmp_path / "up" / "s.json").read_text())
    assert_same_tracks(got["tracks"], tmp_path / "up", want["tracks"], tmp_path / "analyze")


def test_up_with_a_summary_path_it_cannot_write_is_one_line_before_the_run(tmp_path, monkeypatch):
    # acceptance run: `up clip --summary afile/s.json` served every frame, then a FileExistsError traceback
    from moodstream.up import up

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.delenv("MOODSTREAM_REDIS_URL", raising=False)
    ran = CliRunner().invoke(up, [str(REPO / "samples" / "street.jpg"), "--device", "cpu", "--no-dashboard",
                                  "--summary", str(blocker / "s.json")])
    assert ran.exit_code == 1
    assert ran.exception is None or isinstance(ran.exception, SystemExit), repr(ran.exception)
    assert ran.output.strip() == f"Error: cannot write the summary {blocker / 's.json'}: File exists", ran.output
