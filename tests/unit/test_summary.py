"""Per-person summaries (worker.tracking.summary) on scripted sequences: episodes kept and flicker
dropped, means and dominant emotion, people vs noise, runs, face pictures, the table."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.tracking.summary import (EpisodeFinder, Summarizer, SummaryConfig, ThumbnailPicker, people_table,
                                       thumbnail_score, write_summary)

FPS = 30.0


def probs(top: str = "neutrality", p: float = 0.7) -> dict[str, float]:
    rest = (1 - p) / (len(LABELS) - 1)
    return {label: (p if label == top else rest) for label in LABELS}


def face(track_id: int, top: str = "neutrality", p: float = 0.7, x: float = 100, side: float = 80,
         score: float = 0.999, landmarks=None) -> Face:
    return Face((x, 50.0, x + side, 50.0 + side), score, landmarks, emotion=top, probabilities=probs(top, p),
                track_id=track_id)


def script(windows: list[tuple[float, float, str, float]], seconds: float, fps: float = FPS,
           base: str = "neutrality") -> list[tuple[str, float]]:
    """Per frame (top label, its p): ``base`` at 0.6, then each (start, length, emotion, p) window."""
    out = []
    for i in range(int(seconds * fps)):
        t = i / fps
        hit = [(e, p) for s, n, e, p in windows if s <= t < s + n - 1e-9]
        out.append(hit[0] if hit else (base, 0.6))
    return out


def summarise(frames: list[tuple[str, float]], fps: float = FPS, config: SummaryConfig | None = None,
              track_id: int = 0) -> dict:
    summary = Summarizer(config)
    for i, (top, p) in enumerate(frames):
        summary.add(FrameResult(source="clip.mp4", frame=i, timestamp_s=i / fps, faces=[face(track_id, top, p)]))
    [entry] = summary.entries()
    return entry


@pytest.mark.parametrize("length_s", [0.3, 0.5, 1.0])
def test_brief_expression_is_an_episode(length_s):
    e = summarise(script([(1.0, length_s, "happiness", 0.7)], 3.0))
    [ep] = e["episodes"]
    assert ep["emotion"] == "happiness" and ep["peak"] == pytest.approx(0.7)
    assert 1.0 <= ep["start_s"] <= 1.0 + 0.15 and 1.0 + length_s - 0.1 <= ep["end_s"] <= 1.0 + length_s + 0.15
    assert ep["start_s"] <= ep["peak_s"] <= ep["end_s"]
    assert e["dominant"] == "neutrality" and e["person"] is True


def test_moderate_expression_with_neutrality_second_survives():
    """The issue's case: raw top surprise at p 0.45-0.47 for 0.8 s, neutrality just behind."""
    frames = []
    for i in range(90):
        t = i / FPS
        p = {label: 0.02 for label in LABELS}
        if 1.0 <= t < 1.8:
            p.update(surprise=0.46, neutrality=0.40)
        else:
            p.update(neutrality=0.6, surprise=0.26)
        frames.append(p)
    summary = Summarizer()
    for i, p in enumerate(frames):
        s = sum(p.values())
        f = Face((0.0, 0.0, 50.0, 50.0), 0.99, emotion=max(p, key=p.get),
                 probabilities={k: v / s for k, v in p.items()}, track_id=0)
        summary.add(FrameResult(source="c", frame=i, timestamp_s=i / FPS, faces=[f]))
    [e] = summary.entries()
    assert [ep["emotion"] for ep in e["episodes"]] == ["surprise"]
    assert e["episodes"][0]["end_s"] - e["episodes"][0]["start_s"] >= 0.55


def test_flicker_is_not_an_episode():
    # one- and two-frame flips to other emotions, every half second
    windows = [(0.5 * k + 0.2, (1 + k % 2) / FPS, ("surprise", "anger", "happiness")[k % 3], 0.8) for k in range(12)]
    e = summarise(script(windows, 6.0))
    assert e["episodes"] == [] and e["emotions"]["neutrality"] == 1.0


def test_a_flicker_inside_an_episode_does_not_split_it():
    e = summarise(script([(1.0, 1.0, "happiness", 0.7), (1.5, 2 / FPS, "neutrality", 0.9)], 3.0))
    assert [ep["emotion"] for ep in e["episodes"]] == ["happiness"]
    e = summarise(script([(1.0, 0.4, "happiness", 0.7), (2.0, 0.4, "happiness", 0.7)], 3.0))
    assert len(e["episodes"]) == 2  # 0.6 s apart: two episodes


def test_emotion_change_gives_two_episodes_and_shares():
    e = summarise(script([(1.0, 1.0, "happiness", 0.8), (2.0, 1.0, "surprise", 0.8)], 4.0))
    assert [ep["emotion"] for ep in e["episodes"]] == ["happiness", "surprise"]
    assert e["episodes"][0]["end_s"] < e["episodes"][1]["start_s"]
    assert e["emotions"]["happiness"] == pytest.approx(0.25, abs=0.05)
    assert e["emotions"]["surprise"] == pytest.approx(0.25, abs=0.05)
    assert sum(e["emotions"].values()) == pytest.approx(1, abs=1e-3)


def test_low_frame_rate_keeps_the_episode():
    e = summarise(script([(2.0, 1.0, "sadness", 0.7)], 5.0, fps=5.0), fps=5.0)
    assert [ep["emotion"] for ep in e["episodes"]] == ["sadness"]


def test_mean_probabilities_and_dominant():
    e = summarise(script([(0.0, 2.0, "happiness", 0.9)], 3.0))
    mean = e["mean_probabilities"]
    assert tuple(mean) == LABELS and sum(mean.values()) == pytest.approx(1, abs=1e-3)
    assert mean["happiness"] == pytest.approx((60 * 0.9 + 30 * 0.4 / 7) / 90, abs=1e-3)
    assert e["dominant"] == e["dominant_emotion"] == "happiness"


def test_people_and_noise_are_kept_apart():
    summary = Summarizer(SummaryConfig(min_person_s=0.5))
    for i in range(30):
        faces = [face(0, x=100 + i)]
        if 10 <= i < 13:  # 3 frames: 0.1 s
            faces.append(face(1, x=400))
        summary.add(FrameResult(source="v", frame=i, timestamp_s=i / FPS, faces=faces))
    a, b = summary.entries()
    assert (a["track_id"], a["person"], a["not_person_why"]) == (0, True, "")
    assert (b["track_id"], b["person"]) == (1, False) and "0.5" in b["not_person_why"]
    assert b["frames"] == 3  # kept, never dropped
    assert a["box"] == pytest.approx([114.5, 50.0, 194.5, 130.0])  # the median box
    low = Summarizer(SummaryConfig(person_score_min=0.99))
    for i in range(30):
        low.add(FrameResult(source="v", frame=i, timestamp_s=i / FPS, faces=[face(0, score=0.95)]))
    assert low.entries()[0]["person"] is False


def test_two_faces_far_apart_are_not_a_person():
    """The tracker keeps a track a second without its face, so two detections 20 frames apart (on the
    shared hamilton video: frames 45 and 65 of its second shot) made one track spanning 0.67 s: a
    "person" seen in 2 of 21 frames. A person is *seen* min_person_s: the span times the share of
    the run's frames over it that show the face; a face missed now and then (a small face whose
    detections flicker: street video's #7, 45 of 102 frames over 4 s) stays a person."""
    summary = Summarizer(SummaryConfig(min_person_s=0.5))
    for i in range(120):
        faces = []
        if i in (45, 65):
            faces.append(face(0, x=430))
        if i % 9 < 4:  # 4 frames in 9 over 4 s
            faces.append(face(1, x=100))
        summary.add(FrameResult(source="v", frame=i, timestamp_s=i / FPS, faces=faces))
    sparse, flicker = summary.entries()
    assert (sparse["frames"], sparse["frames_spanned"]) == (2, 21)
    assert sparse["seen_s"] == pytest.approx(20 / FPS * 2 / 21, abs=1e-3)
    assert sparse["person"] is False
    assert sparse["not_person_why"] == "seen 0.06 s (2 of 21 frames over 0.67 s) < 0.5 s"
    assert flicker["person"] is True and flicker["frames"] < flicker["frames_spanned"] / 2
    full = summarise(script([(0.0, 1.0, "happiness", 0.9)], 1.0))  # seen in every frame: seen = span
    assert full["frames"] == full["frames_spanned"] and full["seen_s"] == pytest.approx(
        full["last_timestamp_s"] - full["first_timestamp_s"])


def test_runs_sources_and_untracked_faces():
    summary = Summarizer()
    for i in range(20):  # two sources interleaved
        summary.add(FrameResult(source="a", frame=i, timestamp_s=i / FPS, faces=[face(0)]))
        summary.add(FrameResult(source="b", frame=i, timestamp_s=i / FPS, faces=[face(0), face(1, x=300)]))
    summary.add(FrameResult(source="a", frame=0, timestamp_s=0.0, faces=[face(0)]))  # the file again: a new run
    summary.add(FrameResult(source="a", frame=1, timestamp_s=None, faces=[face(None)]))  # untracked: skipped
    got = [(e["source"], e["track_id"], e["frames"]) for e in summary.entries()]
    assert got == [("a", 0, 20), ("b", 0, 20), ("b", 1, 20), ("a", 0, 1)]
    assert summary.entries()[0]["last_timestamp_s"] == pytest.approx(19 / FPS, abs=1e-4)


def test_timestamps_missing_use_frame_index():
    summary = Summarizer()
    for i in range(30):
        summary.add(FrameResult(source="cam", frame=i, faces=[face(0)]))
    assert summary.entries()[0]["last_timestamp_s"] == pytest.approx(29 / 30, abs=1e-4)


def test_still_pages_have_no_time_and_are_named_by_page():
    """analyze's still images (a TIFF's pages) are runs of their own with their page, at 0 s (page 3
    was at 0.0667 s, a frame of a 30 fps video); the table names each track's page, people or not."""
    summary = Summarizer()
    for k in range(3):
        summary.add(FrameResult(source="in/scan.tif", frame=k, faces=[face(0, score=0.5 if k == 2 else 0.999)]),
                    page=k + 1)
    entries = summary.entries()
    assert [(e["page"], e["first_timestamp_s"], e["last_timestamp_s"], e["person"]) for e in entries] == \
        [(1, 0.0, 0.0, True), (2, 0.0, 0.0, True), (3, 0.0, 0.0, False)]
    table = people_table(entries)
    assert [line.split("#0")[0].strip() for line in table.splitlines()[1:3]] == ["scan.tif page 1", "scan.tif page 2"]
    assert table.count("still image") == 2 and "0.0-0.0" not in table
    assert "not people: 1 track (scan.tif page 3 #0 detector score 0.500 < 0.92)" in table



def test_a_still_with_a_time_is_a_person_by_its_score():
    """A snapshot an API user sends with its ``page`` and the time it was taken (``timestamp_s``):
    one frame, so its face spans 0 s, and was "not a person (seen 0.00 s)" as a video's face seen
    once, where a still image's faces are people by the detector's score alone. Its time is kept."""
    summary = Summarizer()
    summary.add(FrameResult(source="cam", frame=0, timestamp_s=12.5, faces=[face(0)]), page=1)
    [entry] = summary.entries()
    assert (entry["page"], entry["first_timestamp_s"], entry["person"], entry["not_person_why"]) == (1, 12.5, True, "")

def textured(side: int, blur: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), blur) if blur else img


def test_thumbnail_prefers_sharp_large_frontal():
    frontal = [(120.0, 80.0), (160.0, 80.0), (140.0, 100.0), (125.0, 120.0), (155.0, 120.0)]
    turned = [(120.0, 80.0), (160.0, 80.0), (158.0, 100.0), (125.0, 120.0), (155.0, 120.0)]
    sharp, blurred = textured(100, 0), textured(100, 4)
    f = face(0, landmarks=frontal)
    assert thumbnail_score(f, sharp) > thumbnail_score(f, blurred)
    assert thumbnail_score(f, sharp) > thumbnail_score(face(0, landmarks=turned), sharp)
    assert thumbnail_score(f, sharp) > thumbnail_score(face(0, side=30, landmarks=frontal), sharp)
    picker = ThumbnailPicker()
    frame_blur, frame_sharp = textured(400, 4, 1), textured(400, 0, 1)
    picker.offer(0, f, image=frame_blur)
    picker.offer(0, f, image=frame_sharp)
    picker.offer(0, f, image=frame_blur)
    x1, y1, x2, y2 = map(int, f.box)
    best = picker.picture(0)
    assert best.shape[0] <= 128 and best.shape[1] <= 128
    assert sharpness_of(best) > 2 * sharpness_of(cv2.resize(frame_blur[y1:y2, x1:x2], best.shape[1::-1]))
    picker.offer(1, f, crop=sharp)  # a crop cut elsewhere (the service side)
    assert picker.picture(1) is sharp


def sharpness_of(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_write_summary_thumbnails_timeline_and_table(tmp_path):
    summary = Summarizer()
    image = textured(360, 1)
    for i, (top, p) in enumerate(script([(0.5, 0.5, "surprise", 0.8)], 2.0)):
        faces = [face(0, top, p)] + ([face(1, x=250)] if i < 3 else [])
        summary.add(FrameResult(source="dir/my clip.mp4", frame=i, timestamp_s=i / FPS, faces=faces), image)
    out = write_summary(tmp_path / "sub" / "s.json", summary, {"detect_every": 1})
    data = json.loads((tmp_path / "sub" / "s.json").read_text())
    assert data == json.loads(json.dumps(out)) and data["detect_every"] == 1
    for t in data["tracks"]:
        assert {"source", "track_id", "first_timestamp_s", "last_timestamp_s", "frames", "person", "box",
                "mean_probabilities", "episodes", "thumbnail"} <= set(t)
        assert (tmp_path / "sub" / t["thumbnail"]).is_file() and "/" not in t["thumbnail"]
    assert cv2.imread(str(tmp_path / "sub" / data["videos"][0]["timeline"])) is not None
    assert data["videos"][0]["people"] == 1
    table = people_table(data["tracks"])
    assert "#0" in table and "surprise" in table and "neutrality" in table
    assert "not people: 1" in table and "#1" in table


def test_episode_finder_reports_leading_labels():
    finder = EpisodeFinder(LABELS.index("neutrality"), tau_s=0.0, min_s=0.0, gap_s=0.0)
    p = np.array(list(probs("anger", 0.9).values()))
    assert finder.add(0.0, p) == LABELS.index("anger")
    [ep] = finder.finish()
    assert (ep.start_s, ep.end_s, ep.frames) == (0.0, 0.0, 1)


def test_entries_mid_stream_do_not_change_the_final_answer():
    frames = script([(1.0, 1.0, "happiness", 0.8)], 3.0)
    whole, parts = Summarizer(), Summarizer()
    for i, (top, p) in enumerate(frames):
        r = FrameResult(source="cam", frame=i, timestamp_s=i / FPS, faces=[face(0, top, p)])
        whole.add(r)
        parts.add(r)
        if i in (40, 45, 70):  # asked while the episode is open, and after it
            parts.entries()
    assert parts.entries() == whole.entries()
    assert [e["emotion"] for e in whole.entries()[0]["episodes"]] == ["happiness"]


def test_a_lone_frame_after_a_detection_gap_is_not_an_episode():
    """A face missed for a while (gaps in its track) and seen again for one frame: that frame
    stands for one frame interval, not for the gap."""
    summary = Summarizer()
    seen = [(i, "neutrality") for i in range(30)] + [(60, "happiness"), (90, "neutrality"), (120, "surprise"),
                                                     (150, "neutrality"), (180, "happiness"), (210, "neutrality")]
    for i, top in seen:
        summary.add(FrameResult(source="v", frame=i, timestamp_s=i / FPS, faces=[face(0, top, 0.8)]))
    assert summary.entries()[0]["episodes"] == []


def test_episode_bench_scores_a_rule_against_the_script():
    """bench tracking --part episodes: recall, false episodes and flicker of a rule on a known
    series (one 0.5 s happiness window kept, one 1-frame blip dropped)."""
    from moodstream.trainer.bench.episodes import Rule, Window, evaluate

    times = np.arange(90) / FPS
    frames = script([(1.0, 0.5, "happiness", 0.8), (2.5, 1 / FPS, "anger", 0.9)], 3.0)
    series = {0: (times, np.array([list(probs(top, p).values()) for top, p in frames]))}
    windows = [Window(0, 1.0, 1.5, "happiness", "expression"), Window(0, 2.5, 2.5 + 1 / FPS, "anger", "blip")]
    chosen = evaluate(Rule("chosen", 0.05, 0.25, 0.2), series, windows)
    assert chosen["recall"]["0.5s"] == 1.0 and chosen["blips_kept"] == 0.0 and chosen["false_per_min"] == 0.0
    assert chosen["flicker_per_min"] == pytest.approx(2 / (3.0 / 60), rel=1e-3)  # into and out of the episode
    raw = evaluate(Rule("raw", 0.0, 0.0, 0.0), series, windows)
    assert raw["blips_kept"] == 1.0 and raw["flicker_per_min"] == pytest.approx(4 / (3.0 / 60), rel=1e-3)


def test_the_people_table_shows_at_most_its_rows_and_says_how_many_more():
    """`analyze FOLDER --summary` on 2,000 photos printed 5,429 table lines on stderr; the JSON has
    every track. Now PEOPLE_SHOWN rows, then one line with how many more and where they are."""
    from moodstream.worker.tracking.summary import PEOPLE_SHOWN

    summary = Summarizer()
    for k in range(PEOPLE_SHOWN + 40):
        summary.add(FrameResult(source=f"in/{k:04d}.jpg", frame=0, faces=[face(0, score=0.999)]), page=1)
    table = people_table(summary.entries()).splitlines()
    assert len(table) == 1 + PEOPLE_SHOWN + 1, len(table)  # header, the rows, one line for the rest
    assert "0000.jpg" in table[1] and f"{PEOPLE_SHOWN - 1:04d}.jpg" in table[PEOPLE_SHOWN]
    assert table[-1] == "... and 40 more people (every one is in the summary's JSON)"


def test_a_track_of_one_frame_says_so_not_seen_0_00_s():
    """A face in one frame of a video was 'not a person: seen 0.00 s < 0.5 s', right by the rule but read
    as a bug (a face that was seen, for no time); it says it was seen in one frame only."""
    summary = Summarizer()
    for i in range(30):
        faces = [face(0, "happiness", 0.9)] + ([face(1, "anger", 0.8)] if i == 12 else [])
        summary.add(FrameResult(source="v", frame=i, timestamp_s=i / FPS, faces=faces))
    _, once = summary.entries()
    assert (once["frames"], once["person"]) == (1, False)
    assert once["not_person_why"] == "seen in one frame only (< 0.5 s)"
