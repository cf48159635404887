"""A live run's summary comes in parts (the track stage publishes its ended tracks 1000 at a time):
the dashboard adds a part to the run's summary it shows, where it replaced it before (the tracks
an earlier part called "not a person" came back as people)."""

from __future__ import annotations

import json

from moodstream.producer.dashboard import model as dm
from moodstream.shared.labels import LABELS


def part(run: int, number: int, ids: range, not_people=(), last: bool = False, thumb: str = "QUJD") -> dict:
    return {"source": "cam", "run": run, "part": number, "last_part": last,
            "tracks": [{"track_id": t, "person": t not in not_people, "first_timestamp_s": 0.0,
                        "last_timestamp_s": 1.0, "frames": 10, "dominant": "happiness",
                        "mean_probabilities": {k: 0.125 for k in LABELS}, "episodes": []} for t in ids],
            "thumbnails": {str(t): thumb for t in ids}}


def shown(model: dm.Model) -> list[tuple[int, bool]]:
    return [(t["track_id"], t["person"]) for t in model.sources["cam"].summary["tracks"]]


def test_parts_of_one_run_add_up_newest_kept():
    model = dm.Model()
    model.fold_summary("cam", part(1, 1, range(0, 40), not_people={3, 39}), "1-0")
    model.fold_summary("cam", part(1, 2, range(40, 80), not_people={41}), "2-0")
    got = shown(model)
    assert [t for t, _ in got] == list(range(80 - dm.MAX_SUMMARY_TRACKS, 80))  # the newest MAX_SUMMARY_TRACKS
    assert (39, False) in got and (41, False) in got
    # the last part of the run adds up too; a new run's first part starts afresh
    model.fold_summary("cam", part(1, 3, range(80, 90), last=True), "3-0")
    assert shown(model)[-1] == (89, True) and len(shown(model)) == dm.MAX_SUMMARY_TRACKS
    model.fold_summary("cam", part(2, 1, range(0, 5), last=True), "4-0")
    assert [t for t, _ in shown(model)] == [0, 1, 2, 3, 4]


def test_a_summary_without_parts_replaces_as_before():
    model = dm.Model()
    model.fold_summary("cam", {"run": 1, "tracks": part(1, 1, range(3))["tracks"]}, "1-0")
    model.fold_summary("cam", {"run": 2, "tracks": part(2, 1, range(2))["tracks"]}, "2-0")
    assert [t for t, _ in shown(model)] == [0, 1]


def test_merged_pictures_stay_within_the_summary_budget():
    big = "A" * 60_000  # a picture under MAX_THUMB_CHARS; 17 of them fill the budget
    model = dm.Model()
    for n in range(1, 6):
        model.fold_summary("cam", part(1, n, range(10 * (n - 1), 10 * n), thumb=big), f"{n}-0")
    tracks = model.sources["cam"].summary["tracks"]
    pictures = [t["thumbnail"] for t in tracks]
    assert sum(len(p or "") for p in pictures) <= dm.MAX_SUMMARY_THUMB_CHARS
    assert pictures[-1] is not None and pictures[0] is None  # the newest tracks keep theirs


def test_a_page_that_reconnects_after_a_results_batch_still_gets_the_summary_after_it():
    """A batch's id (the page's Last-Event-ID) named the results and tracked streams only: a batch
    that brought only a summary had the id of the one before, so a page that had that one and
    reconnected was taken to have the summary too, and kept showing tracks it calls not people."""
    model = dm.Model()
    model.fold_summary("cam", part(1, 1, range(2), last=True), "1-0")
    model.commit()
    had = model.snapshot()["id"]  # what the page had when its connection dropped
    model.fold_summary("cam", part(2, 1, range(3), not_people={2}, last=True), "2-0")
    model.commit()
    seq = model.seq_of(had)
    assert seq is not None
    [(_, _, text)] = model.since(seq)
    assert [t["person"] for t in json.loads(text)["sources"][0]["summary"]["tracks"]] == [True, True, False]


def test_a_tiff_s_pages_are_runs_of_their_own_on_the_dashboard():
    """The track stage makes each page of a TIFF a run of its own (ids from 0 on every page): the
    dashboard folded the faces of pages 1-3, each #0, into one person of 3 frames over 0-2 s (the
    frame index for a time), the face tracked across pages the stage no longer claims. Now a page
    starts a run, as a source's frame 0 again does: the people shown are the newest page's."""
    from moodstream.shared.record import Face, FrameResult, Smoothed

    model = dm.Model()
    probs = {k: 0.3 if k == "happiness" else 0.1 for k in LABELS}
    for k in range(3):
        face = Face(box=(10.0, 10.0, 50.0, 60.0), score=0.99, emotion="happiness", probabilities=probs, track_id=0,
                    smoothed=Smoothed("happiness", probs))
        model.fold("tracked", f"{k + 1}-0", FrameResult(source="scan.tif", frame=k, page=k + 1, faces=[face]))
    src = model.sources["scan.tif"]
    assert src.runs == 3 and [(p.track_id, p.frames) for p in src.people.values()] == [(0, 1)]


def test_a_track_that_is_not_a_person_says_why():
    """The report page says why a track is not a person; the dashboard listed it with its span and frames
    only, so a 0.67 s track "not counted as people" looked like a mistake (seen 0.06 s of it)."""
    summary = part(1, 1, range(2), not_people={1}, last=True)
    summary["tracks"][1]["not_person_why"] = "seen 0.06 s (2 of 21 frames over 0.67 s) < 0.5 s"
    summary["tracks"][0]["not_person_why"] = "x" * 5000  # text from a stream: cut
    view = dm.summary_view(summary)
    assert view["tracks"][1]["not_person_why"] == "seen 0.06 s (2 of 21 frames over 0.67 s) < 0.5 s"
    assert len(view["tracks"][0]["not_person_why"]) <= dm.TEXT_CHARS


def test_a_run_s_late_frames_are_said_on_its_source_and_quiet_when_none():
    """The track stage publishes a result that came after reorder_wait_ms untracked, in no track:
    the summary's ``late_frames`` says how many, and the page says it beside the source."""
    model = dm.Model()
    model.fold_summary("cam", {**part(1, 1, range(2), last=True), "late_frames": 2}, "1-0")
    page = {s["name"]: s for s in model.snapshot()["sources"]}  # what the page gets
    assert page["cam"]["summary"]["missing"] == "2 late frames not tracked (over reorder_wait_ms)"
    model.fold_summary("cam", {**part(2, 1, range(2), last=True), "late_frames": 1}, "2-0")
    assert model.sources["cam"].summary["missing"] == "1 late frame not tracked (over reorder_wait_ms)"
    # a live run's parts: each has the run's count so far, the newest is shown
    model.fold_summary("cam", {**part(3, 1, range(2)), "late_frames": 1}, "3-0")
    model.fold_summary("cam", {**part(3, 2, range(2, 4)), "late_frames": 4}, "4-0")
    assert model.sources["cam"].summary["missing"].startswith("4 late frames")
    # none, a summary of before the key, or a value that is no count: nothing said
    for n, value in enumerate((0, None, True, "2", -1, 2.5)):
        summary = part(4 + n, 1, range(1), last=True)
        if value is not None:
            summary["late_frames"] = value
        model.fold_summary("cam", summary, f"{5 + n}-0")
        assert model.sources["cam"].summary["missing"] == "", value


def test_a_run_s_dropped_frames_are_said_beside_its_late_ones():
    """Frames its producer did not send (backpressure "drop") are missing from a run too: the page says
    them with the late ones, in the words `tracks` and `up --summary` use."""
    model = dm.Model()
    model.fold_summary("cam", {**part(1, 1, range(2), last=True), "late_frames": 1, "dropped_frames": 40}, "1-0")
    page = {s["name"]: s for s in model.snapshot()["sources"]}
    assert page["cam"]["summary"]["missing"] == ("1 late frame not tracked (over reorder_wait_ms); "
                                                 "40 frames dropped by the producer "
                                                 "(backlog over lag_limit or stream_max_mb)")


def test_a_run_the_track_stage_numbered_anew_starts_its_people_afresh():
    """A camera's frames go on across a restart of the track stage (ids from 0 again): its person of
    the run before and the one after were one on the dashboard, which saw a new run only where the
    frames started again from 0. A tracked result says its run: a new number starts the people
    afresh; a late result of a run that had ended (no run) changes nothing."""
    from moodstream.shared.record import Face, FrameResult, Smoothed

    model = dm.Model()
    probs = {k: 0.3 if k == "happiness" else 0.1 for k in LABELS}

    def fold(frame: int, run: int | None, track_id: int | None = 0) -> None:
        face = Face(box=(10.0, 10.0, 50.0, 60.0), score=0.99, emotion="happiness", probabilities=probs,
                    track_id=track_id, smoothed=Smoothed("happiness", probs))
        model.fold("tracked", f"{frame + 1}-0", FrameResult(source="cam", frame=frame, faces=[face], run=run))

    for f in range(5):
        fold(f, run=1)
    fold(5, run=2)  # the restarted stage's run
    fold(3, run=None, track_id=None)  # a straggler of run 1
    fold(6, run=2)
    src = model.sources["cam"]
    assert src.runs == 2 and [(p.track_id, p.frames) for p in src.people.values()] == [(0, 2)]
