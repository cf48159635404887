"""Tracks end at a shot cut, in-process and through the service: on ``tests/fixtures/cut_360p.mp4``
(the performer until frame 20, the audience from frame 21, see tests/unit/test_shots.py) the
performer's track went on with an audience member's face after the cut, in ``analyze`` (also with
``--detect-every``, where the optical flow carried the box across) and in the track stage's
tracked results of ``up``. Each result now carries the frame's ``shot``."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

CUT_AT = 21


def across(results: list[dict]) -> set[int]:
    """Track ids with a face on both sides of the cut."""
    before = {f["track_id"] for r in results if r["frame"] < CUT_AT for f in r["faces"]}
    after = {f["track_id"] for r in results if r["frame"] >= CUT_AT for f in r["faces"]}
    return before & after


@pytest.mark.parametrize("flags", [[], ["--detect-every", "3"], ["--fps", "6"]])
def test_analyze_ends_tracks_at_the_cut(fixtures_dir, flags):
    from moodstream.worker.analyze import analyze_cmd as analyze

    ran = CliRunner().invoke(analyze, ["--device", "cpu", str(fixtures_dir / "cut_360p.mp4"), *flags])
    assert ran.exit_code == 0, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["shot"] for r in results] == [int(r["frame"] >= CUT_AT) for r in results]
    assert any(r["faces"] for r in results if r["frame"] < CUT_AT)
    assert any(r["faces"] for r in results if r["frame"] >= CUT_AT)
    assert not across(results), "a track went on across the cut"


def test_a_fixed_camera_can_keep_its_tracks_through_a_change_of_picture(fixtures_dir, monkeypatch):
    from moodstream.worker.analyze import analyze_cmd as analyze

    clip = str(fixtures_dir / "cut_360p.mp4")
    ran = CliRunner().invoke(analyze, ["--device", "cpu", clip, "--no-track-shot-cuts"])
    assert ran.exit_code == 0, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert across(results)  # the tracks of before: the performer's went on with an audience member
    assert [r["shot"] for r in results] == [int(r["frame"] >= CUT_AT) for r in results]  # still numbered
    monkeypatch.setenv("MOODSTREAM_TRACK_SHOT_CUTS", "0")  # the setting, as every one, from the environment
    again = CliRunner().invoke(analyze, ["--device", "cpu", clip])
    tracks = [[f["track_id"] for f in json.loads(line)["faces"]] for line in again.stdout.splitlines()]
    assert tracks == [[f["track_id"] for f in r["faces"]] for r in results]


def test_analyze_summary_says_who_was_in_which_shot(fixtures_dir, tmp_path):
    from moodstream.worker.analyze import analyze_cmd as analyze

    out = tmp_path / "s.json"
    ran = CliRunner().invoke(analyze, ["--device", "cpu", str(fixtures_dir / "cut_360p.mp4"), "--summary", str(out)])
    assert ran.exit_code == 0, ran.output
    tracks = json.loads(out.read_text())["tracks"]
    assert tracks
    cut_s = CUT_AT / 29.97
    for t in tracks:  # each track's span lies on one side of the cut, the shot it is in named
        assert t["last_timestamp_s"] < cut_s or t["first_timestamp_s"] >= cut_s - 1e-3, t
        assert t["shot"] == int(t["first_timestamp_s"] >= cut_s - 1e-3), t
    header, *rows = [line.split() for line in ran.stderr.splitlines() if line.startswith(("SOURCE", "cut_360p"))]
    assert header[:3] == ["SOURCE", "TRACK", "SHOT"]
    people = {int(t["track_id"]): t["shot"] for t in tracks if t["person"]}
    assert {int(row[1][1:]): int(row[2]) for row in rows} == people and set(people.values()) == {0, 1}


def test_up_tracks_end_at_the_cut(fixtures_dir, monkeypatch, tmp_path):
    from moodstream.up import up

    for name in list(os.environ):
        if name.startswith("MOODSTREAM_"):
            monkeypatch.delenv(name)
    ran = CliRunner().invoke(up, [str(fixtures_dir / "cut_360p.mp4"), "--every", "3", "--device", "cpu",
                                  "--no-dashboard", "--format", "jsonl", "--timeout-s", "300",
                                  "--summary", str(tmp_path / "s.json")])
    assert ran.exit_code == 0, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["frame"] for r in results] == list(range(0, 46, 3))
    assert [r["shot"] for r in results] == [int(r["frame"] >= CUT_AT) for r in results]
    assert all(f.get("track_id") is not None for r in results for f in r["faces"])
    assert not across(results), "a track went on across the cut"
    shots = {f["track_id"]: r["shot"] for r in results for f in r["faces"]}
    tracks = json.loads((tmp_path / "s.json").read_text())["tracks"]  # the track stage's summary
    assert {t["track_id"]: t["shot"] for t in tracks} == shots and set(shots.values()) == {0, 1}
