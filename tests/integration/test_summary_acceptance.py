"""The per-person summary as an outside check reads it (acceptance run on the shared videos):
``person`` needs ``last_timestamp_s - first_timestamp_s >= min_person_s`` (and, with gaps, the
``seen_s`` that span gives times ``frames / frames_spanned``), and the people table of several
videos says which video each track that is not a person belongs to."""

from __future__ import annotations

import pytest

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.tracking.summary import Summarizer, SummaryConfig, people_table


def face(track_id: int, x: float = 100.0) -> Face:
    probs = {label: (0.72 if label == "neutrality" else 0.04) for label in LABELS}
    return Face((x, 50.0, x + 80.0, 130.0), 0.999, None, emotion="neutrality", probabilities=probs,
                track_id=track_id)


def track_of(frames: int, fps: float, source: str = "v.mp4", track_id: int = 0) -> dict:
    summary = Summarizer(SummaryConfig(min_person_s=0.5))
    for i in range(frames):
        summary.add(FrameResult(source=source, frame=i, timestamp_s=i / fps, faces=[face(track_id)]))
    [entry] = summary.entries()
    return entry


@pytest.mark.parametrize("frames, fps, person", [
    (13, 25.0, False),  # street_1080p's track #12: 3.72-4.20 s, 0.48 s, was a person
    (14, 25.0, True),   # 0.52 s
    (1, 2.0, False),    # one face at --fps 2 was "seen 0.50 s": a person from a single frame
    (2, 2.0, True),     # 0.0-0.5 s
    (16, 30.0, True),   # 0.5 s exactly
    (15, 30.0, False),  # 0.467 s
])
def test_a_person_spans_min_person_s_from_first_to_last_face(frames, fps, person):
    t = track_of(frames, fps)
    span = t["last_timestamp_s"] - t["first_timestamp_s"]
    assert t["person"] is person, (span, t["not_person_why"])
    assert (span >= 0.5 - 1e-6) is person  # what a reader of the JSON can check
    assert t["seen_s"] == pytest.approx(span, abs=1e-4) and t["frames_spanned"] == frames  # seen in every frame
    if not person:
        assert t["not_person_why"] == (f"seen {span:.2f} s < 0.5 s" if frames > 1 else
                                       "seen in one frame only (< 0.5 s)")


def test_seen_s_is_what_a_reader_of_the_json_can_check():
    """A track with gaps: ``seen_s`` is the span times ``frames / frames_spanned``, and ``person``
    follows it (hamilton_360p's second shot had a "person" of two faces 20 frames apart)."""
    summary = Summarizer(SummaryConfig(min_person_s=0.5))
    for i in range(90):
        faces = [face(0)] if i % 3 == 0 or i in (40, 41) else []
        faces += [face(1, x=400.0)] if i in (10, 30) else []
        summary.add(FrameResult(source="v.mp4", frame=i, timestamp_s=i / 30.0, faces=faces))
    for t in summary.entries():
        span = t["last_timestamp_s"] - t["first_timestamp_s"]
        assert t["seen_s"] == pytest.approx(span * t["frames"] / t["frames_spanned"], abs=1e-3)
        assert t["person"] is (t["seen_s"] >= 0.5 - 1e-6), t
    a, b = summary.entries()
    assert (a["frames"], a["frames_spanned"], a["person"]) == (32, 88, True)  # 2.9 s, a face every third frame
    assert (b["frames"], b["frames_spanned"], b["person"]) == (2, 21, False)
    assert b["not_person_why"] == "seen 0.06 s (2 of 21 frames over 0.67 s) < 0.5 s"


def test_the_not_people_line_names_the_video_when_there_are_several():
    a = track_of(2, 30.0, source="/videos/hamilton_360p.mp4", track_id=5)
    b = track_of(40, 30.0, source="/videos/street_1080p.mp4", track_id=5)
    c = track_of(1, 30.0, source="/videos/street_1080p.mp4", track_id=6)
    table = people_table([a, b, c])
    last = table.splitlines()[-1]
    assert last.startswith("not people: 2 tracks")
    assert "hamilton_360p.mp4 #5" in last and "street_1080p.mp4 #6" in last, table
    single = people_table([b, c]).splitlines()[-1]  # one video: the table's rows already name it
    assert "#6" in single and "street_1080p.mp4" not in single


def episode(emotion: str, start_s: float, peak: float) -> dict:
    return {"emotion": emotion, "start_s": start_s, "end_s": start_s + 0.4, "peak": peak, "peak_s": start_s + 0.2,
            "frames": 12}


def test_the_table_names_every_episodes_emotion():
    # acceptance run: hamilton_360p's track 3 has 4 episodes; the table named 3 and "+1 more", so its
    # anger (the weakest) was nowhere on stderr, though the contract names each episode's emotion
    person = track_of(60, 30.0)
    person["episodes"] = [episode("happiness", 0.1, 0.96), episode("anger", 0.6, 0.45),
                          episode("surprise", 1.1, 0.62), episode("happiness", 1.5, 0.87),
                          episode("fear", 1.9, 0.41)]
    brief = track_of(10, 30.0, track_id=1)
    brief["episodes"] = [episode("disgust", 0.0, 0.7)]
    table = people_table([person, brief])
    row = next(line for line in table.splitlines() if line.split()[1:2] == ["#0"])
    for name in ("happiness", "anger", "surprise", "fear"):
        assert name in row, row
    assert "+2 more" in row
    assert "disgust" in table.splitlines()[-1]  # a track that is not a person names its episodes too
