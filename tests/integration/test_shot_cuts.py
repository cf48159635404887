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


def test_a_fixed_camera_can_keep_its_tracks_through_a_change_of_picture(fixtures_dir, monkeypatch, tmp_path):
    from moodstream.worker.analyze import analyze_cmd as analyze

    clip = str(fixtures_dir / "cut_360p.mp4")
    ran = CliRunner().invoke(analyze, ["--device", "cpu", clip, "--no-track-shot-cuts",
                                       "--summary", str(tmp_path / "s.json")])
    assert ran.exit_code == 0, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert across(results)  # the tracks of before: the performer's went on with an audience member
    tracks = {t["track_id"]: t for t in json.loads((tmp_path / "s.json").read_text())["tracks"]}
    for tid in across(results):  # a track in two shots names none (it named its first)
        assert "shot" not in tracks[tid], tracks[tid]
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


def edited(fixtures_dir, tmp_path, name: str, change) -> str:
    """cut_360p.mp4 edited (``change``: its frames -> the edit's), written as mp4v as a user's file."""
    import cv2

    cap, images = cv2.VideoCapture(str(fixtures_dir / "cut_360p.mp4")), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        images.append(bgr)
    images = change(images)
    path = tmp_path / name
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 29.97, images[0].shape[1::-1])
    for bgr in images:
        writer.write(bgr)
    writer.release()
    return str(path)


def analyzed(path: str, *flags: str) -> list[dict]:
    from moodstream.worker.analyze import analyze_cmd as analyze

    ran = CliRunner().invoke(analyze, ["--device", "cpu", path, *flags])
    assert ran.exit_code == 0, ran.output
    return [json.loads(line) for line in ran.stdout.splitlines()]


def test_a_cut_to_the_same_scene_mirrored_ends_the_tracks(fixtures_dir, tmp_path):
    """The audience, then the audience mirrored (as a second camera across the room would see it, in
    the same colours): the histograms saw no cut and three tracks went on with other people's faces."""
    import cv2

    path = edited(fixtures_dir, tmp_path, "mirrored.mp4",
                  lambda images: images[CUT_AT:] + [cv2.flip(f, 1) for f in images[CUT_AT:]])
    results = analyzed(path)
    n = 46 - CUT_AT
    assert [r["shot"] for r in results] == [0] * n + [1] * n
    before = {f["track_id"] for r in results[:n] for f in r["faces"]}
    after = {f["track_id"] for r in results[n:] for f in r["faces"]}
    assert before and after and not before & after, "a track went on across the cut"


def test_a_light_switched_on_keeps_the_performers_track(fixtures_dir, tmp_path):
    """The stage lit x1.6 from frame 8 on: the performer is one track until the cut (it was two, the
    light taken for a cut), and the cut is still found."""
    import numpy as np

    path = edited(fixtures_dir, tmp_path, "light.mp4", lambda images: images[:8] + [
        np.clip(f.astype(np.float32) * 1.6, 0, 255).astype(np.uint8) for f in images[8:]])
    results = analyzed(path)
    assert [r["shot"] for r in results] == [int(r["frame"] >= CUT_AT) for r in results]
    performer = {f["track_id"] for r in results if r["frame"] < CUT_AT for f in r["faces"]}
    assert len(performer) == 1 and not across(results)
