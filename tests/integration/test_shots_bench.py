"""``moodstream bench shots`` (docs/results/shots_audit.md) on two of its edits: each edit is
written as MP4 and WebM and read back whole, its cuts scored against where they were made, and the
report names the CPU and the rule."""

from __future__ import annotations

import json

from click.testing import CliRunner

from moodstream.trainer.bench.shots import Edit, score
from moodstream.trainer.cli import bench


def test_score_counts_a_cut_at_its_frame_a_gradual_one_in_its_span_and_the_rest_as_false():
    edit = Edit("e", [], cuts=[10, 20], gradual=[(30, 40)], events=[("flash", 50, 51)])
    got = score(edit, [10, 21, 33, 35, 50])
    assert (got["cuts_found"], got["missed"], got["gradual_found"]) == (1, [20], 1)
    assert got["false"] == [21, 35, 50] and got["false_at_events"] == [50]


def test_two_edits_scored_with_the_footage_as_shot(shared_data, tmp_path):
    out, md = tmp_path / "shots.json", tmp_path / "shots.md"
    # "one frame" (81 frames, two cuts) rather than "hard cuts" (270): writing the VP8 and mp4v files was half the test
    ran = CliRunner().invoke(bench, ["shots", "--videos", str(shared_data / "videos"), "--only", "one frame",
                                     "--only", "light on", "--no-tracks", "--no-sweep", "--repeat", "1",
                                     "--work", str(tmp_path / "edits"), "--out", str(out), "--markdown", str(md)])
    assert ran.exit_code == 0, ran.output
    report = json.loads(out.read_text())
    rows = {r["file"]: r for r in report["detection"]}
    assert set(rows) == {"hamilton_360p.mp4", "street_1080p.mp4", "hamilton_clip.mp4", "one_frame.mp4",
                         "one_frame.webm", "light_on.mp4", "light_on.webm"}
    for name in ("one_frame.mp4", "one_frame.webm"):  # a shot of one frame between two: two cuts
        assert rows[name]["cuts_found"] == rows[name]["cuts"] == 2 and not rows[name]["false"], rows[name]
    for name in ("light_on.mp4", "light_on.webm"):  # brightness x1.6 from frame 60: no cut
        assert rows[name]["changes"] == [], rows[name]
    assert rows["hamilton_360p.mp4"]["changes"] == [20, 82, 211]
    assert report["totals"]["precision"] == 1.0 and report["totals"]["unedited_false"] == 0
    assert report["rule"]["PICTURE_CUT"] > 0 and len(report["cost"]) == 2 and report["cpu"] in md.read_text()


def test_an_unknown_edit_is_one_line(shared_data, tmp_path):
    ran = CliRunner().invoke(bench, ["shots", "--videos", str(shared_data / "videos"), "--only", "nope",
                                     "--no-tracks", "--repeat", "0", "--work", str(tmp_path)])
    assert ran.exit_code == 2 and "no edit named 'nope'" in ran.output and "Traceback" not in ran.output
