"""The per-person summary on the real sample clip, with the real models on CPU: the smile on
frames 36-40 of samples/hamilton_clip.mp4 (raw happiness 0.65-0.89) survives as a
happiness episode and shows on the annotated frames, the microphone is not a person,
the contract's keys are there and the face pictures exist."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from moodstream.shared.labels import LABELS
from moodstream.worker.analyze import analyze_cmd

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"
CONTRACT = {"source", "track_id", "first_timestamp_s", "last_timestamp_s", "frames", "person", "box",
            "mean_probabilities", "episodes", "thumbnail"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("summary")
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(CLIP), "--summary", str(out / "people.json")])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return out, json.loads((out / "people.json").read_text()), records, result.stderr


def test_the_smile_survives_as_a_happiness_episode(run):
    _, summary, records, stderr = run
    smile = [f for r in records if 36 <= r["frame"] <= 40 for f in r["faces"] if f["track_id"] == 0]
    assert len(smile) == 5 and min(f["probabilities"]["happiness"] for f in smile) >= 0.6  # the raw evidence
    singer = next(t for t in summary["tracks"] if t["track_id"] == 0)
    assert singer["person"] is True
    t36 = next(r["timestamp_s"] for r in records if r["frame"] == 36)
    t40 = next(r["timestamp_s"] for r in records if r["frame"] == 40)
    happy = [e for e in singer["episodes"] if e["emotion"] == "happiness"]
    assert any(e["start_s"] <= t40 and e["end_s"] >= t36 + 0.05 for e in happy), singer["episodes"]
    assert max(e["peak"] for e in happy) >= 0.85
    assert all(e["emotion"] != "neutrality" and e["start_s"] <= e["peak_s"] <= e["end_s"] for e in singer["episodes"])
    assert "happiness" in stderr and "#0" in stderr  # the people table names the episode


def test_annotated_frames_show_the_smile(run):
    """What an annotated frame shows (the smoothed label) agrees with the raw evidence within
    0.1 s of the smile's start (frame 36), instead of "neutrality 50%" throughout."""
    from moodstream.shared.record import FrameResult
    from moodstream.worker.annotate import face_label

    import msgspec

    _, _, records, _ = run
    shown = {}
    for rec in records:
        result = msgspec.convert(rec, FrameResult)
        for face in result.faces:
            if face.track_id == 0 and 36 <= result.frame <= 40:
                shown[result.frame] = face_label(face)
    assert len(shown) == 5 and all("happiness" in text for _, text in shown.values()), shown  # never hidden
    assert shown[39][0] == shown[40][0] == "happiness", shown


def test_the_microphone_is_not_a_person_and_the_contract_holds(run):
    out, summary, records, stderr = run
    tracks = summary["tracks"]
    assert [t["track_id"] for t in tracks] == sorted({f["track_id"] for r in records for f in r["faces"]})
    mic = [t for t in tracks if t["track_id"] != 0]
    assert mic and all(t["person"] is False and t["not_person_why"] for t in mic)  # kept, marked
    assert "not people" in stderr
    for t in tracks:
        assert CONTRACT <= set(t)
        assert len(t["box"]) == 4 and t["box"][0] < t["box"][2] and t["box"][1] < t["box"][3]
        assert tuple(t["mean_probabilities"]) == LABELS
        assert sum(t["mean_probabilities"].values()) == pytest.approx(1, abs=1e-3)
        for e in t["episodes"]:
            assert set(e) >= {"emotion", "start_s", "end_s", "peak", "peak_s"}
        picture = cv2.imread(str(out / t["thumbnail"]))
        assert picture is not None and min(picture.shape[:2]) >= 16
    [video] = summary["videos"]
    assert video["people"] == 1 and cv2.imread(str(out / video["timeline"])) is not None


def test_an_unwritable_summary_path_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(CLIP), "--summary", str(blocker / "s.json")])
    assert result.exit_code == 1, result.output
    assert "cannot write the summary" in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""  # no frame was analysed


def test_min_person_s_setting_reaches_the_summary():
    from moodstream.shared.settings import Settings
    from moodstream.worker.tracking.summary import SummaryConfig

    cfg = SummaryConfig.from_settings(Settings.from_env(env={"MOODSTREAM_MIN_PERSON_S": "0.05"}))
    assert cfg.min_person_s == 0.05
