"""The people table (`analyze --summary`, `up --summary`) names each source so that a reader can tell
two sources apart: two cameras' folders each holding a `clip.mp4` were two rows both named
"clip.mp4", the same track ids, no way to say whose is whose."""

from __future__ import annotations

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.tracking.summary import Summarizer, people_table


def _face(track_id: int, top: str) -> Face:
    p = {label: (0.7 if label == top else 0.3 / (len(LABELS) - 1)) for label in LABELS}
    return Face((100.0, 50.0, 180.0, 130.0), 0.999, None, emotion=top, probabilities=p, track_id=track_id)


def _entries(sources: list[tuple[str, str]], frames: int = 30) -> list[dict]:
    summary = Summarizer()
    for source, top in sources:  # one person each, 1 s of video
        for i in range(frames):
            summary.add(FrameResult(source=source, frame=i, timestamp_s=i / 30, faces=[_face(0, top)]))
    return summary.entries()


def _row_names(table: str) -> list[str]:
    return [line.split(" #")[0].strip() for line in table.splitlines()[1:] if " #" in line]


def test_people_table_tells_apart_two_files_of_one_name_in_two_folders():
    entries = _entries([("cams/north/clip.mp4", "happiness"), ("cams/south/clip.mp4", "sadness")])
    table = people_table(entries)
    names = _row_names(table)
    assert names == ["north/clip.mp4", "south/clip.mp4"], table
    # and each row's emotion is the one of its own folder's clip
    assert "happiness" in table.splitlines()[1] and "sadness" in table.splitlines()[2]


def test_people_table_keeps_long_distinct_folder_names_whole():
    """Cut from the left to 24 characters, 'lobby-camera-east/2026-12-06/clip.mp4' and '...-west/...' both
    read '…a-east/2026-12-06/clip.mp4'-like tails; the column widens (up to a limit) instead."""
    a, b = "site/lobby-camera-east/2026-12-06/clip.mp4", "site/lobby-camera-west/2026-12-06/clip.mp4"
    table = people_table(_entries([(a, "happiness"), (b, "sadness")]))
    assert _row_names(table) == ["lobby-camera-east/2026-12-06/clip.mp4", "lobby-camera-west/2026-12-06/clip.mp4"]
    header, first, _ = table.splitlines()[:3]
    assert header.index("TRACK") == first.index("#0") - (len("TRACK") - len("#0"))  # the columns still line up


def test_people_table_names_a_lone_file_by_its_name_only():
    table = people_table(_entries([("/data/videos/hamilton_360p.mp4", "happiness"), ("samples/street.mp4", "sadness")]))
    assert _row_names(table) == ["hamilton_360p.mp4", "street.mp4"]
    assert table.splitlines()[0].startswith("SOURCE" + " " * 19 + "TRACK")  # the usual 24-wide column


def test_people_table_not_people_line_tells_the_folders_apart_too():
    entries = _entries([("cams/north/clip.mp4", "happiness"), ("cams/south/clip.mp4", "sadness")], frames=3)
    line = people_table(entries).splitlines()[-1]
    assert line.startswith("not people: 2 tracks (north/clip.mp4 #0 seen"), line
    assert "; south/clip.mp4 #0 seen" in line, line
