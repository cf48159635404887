"""analyze's outputs for a multi-page TIFF's pages: each annotated page is named by its page
(doc.png, doc-page2.png), so a second run into the same folder writes the same files again.
They took the next free name (doc-2.png, ...), which a rerun found taken: every rerun added a
copy of every page after the first, and doc-2.png could be page 2 of doc.tif or doc-2.tif.
A summary names a page's people by their file and page, still images without a time; a report
counts a TIFF as one image."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from moodstream.worker.analyze import analyze_cmd


def run(*args: str):
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_annotated_pages_are_named_by_page_and_a_rerun_writes_the_same_files(tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "in"
    src.mkdir()
    assert cv2.imwritemulti(str(src / "doc.tif"), [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
                                                    for _ in range(3)])
    assert cv2.imwrite(str(src / "doc-2.tif"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    out = tmp_path / "out"
    for _ in range(2):
        result = run("--annotate", str(out), str(src))
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["doc-2.png", "doc-page2.png", "doc-page3.png", "doc.png"]


def report_data(page: Path) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page.read_text(), re.S).group(1))


def test_a_report_names_a_multi_page_tiff_once(tmp_path):
    """The report's list of inputs it does not show had one identical line a page ("scan.tif: an
    image", 64 times for a 64-page TIFF), then one line for the file with its pages counted. Now each
    page is shown (its own picture), the file counted once with its pages: the header said "3
    image(s)" for one file."""
    rng = np.random.default_rng(6)
    scan = tmp_path / "scan.tif"
    assert cv2.imwritemulti(str(scan), [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(3)])
    report = tmp_path / "report.html"
    result = run("--report", str(report), str(scan))
    assert result.exit_code == 0, result.output
    data = report_data(report)
    assert [(p["source"], p["page"]) for p in data["photos"]] == [(str(scan), 1), (str(scan), 2), (str(scan), 3)]
    assert data["photos"][0]["pages"] == 3 and data["not_shown"] == []
    assert data["images"] == 1  # the header's "N photos"


def test_a_report_names_a_tiff_once_past_a_page_that_failed(tmp_path):
    """A 4-page TIFF whose page 3 is over --max-pixels: its page 4 was counted as another image file
    ("2 image(s) not shown", "an image of 2 pages" and "an image" for one file)."""
    rng = np.random.default_rng(8)
    pages = [rng.integers(0, 256, (40 if k != 2 else 400, 60, 3), dtype=np.uint8) for k in range(4)]
    scan = tmp_path / "scan.tif"
    assert cv2.imwritemulti(str(scan), pages)
    report = tmp_path / "report.html"
    result = run("--detector", "haar", "--max-pixels", "10000", "--report", str(report), str(scan))
    assert result.exit_code == 1, result.output  # the page over the limit is an error
    data = report_data(report)
    assert [(n["source"], n["why"].split(":")[0]) for n in data["not_shown"]] == [(str(scan), "too_large")]
    assert [p["page"] for p in data["photos"]] == [1, 2, 4] and data["photos"][0]["pages"] == 3
    assert data["images"] == 1


# every key a track's entry had before pages were named: none goes
ENTRY_KEYS = {"source", "track_id", "first_timestamp_s", "last_timestamp_s", "first_frame", "last_frame", "frames",
              "person", "not_person_why", "box", "mean_score", "mean_probabilities", "dominant", "dominant_emotion",
              "emotions", "episodes", "episodes_dropped", "thumbnail"}


def people_rows(table: str) -> list[str]:
    """The people table's rows of people (no header, no 'not people' line, no closing line)."""
    return [line for line in table.splitlines()[1:]
            if not line.startswith(("not people", "(no people)", "analyze:"))]


def test_a_summary_names_a_tiff_s_page_and_gives_it_no_time(tmp_path, image_path):
    """A page's faces were timed at page / 30 s, as frames of a 30 fps video (page 2's person spanned
    0.0333-0.0333 s in the JSON, "0.0-0.0" in the table), and neither the table nor the JSON said
    which page a person was on: two rows "scan.tif #0". Now each person is named by file and page,
    a still image's faces are at 0 s (as a one-page image's are) and the table says "still image"."""
    face = cv2.imread(str(image_path("single")))  # one face, a person
    noise = np.random.default_rng(7).integers(0, 256, face.shape, dtype=np.uint8)
    scan = tmp_path / "scan.tif"
    assert cv2.imwritemulti(str(scan), [face, face, noise])
    result = run(str(scan), "--summary", str(tmp_path / "out" / "s.json"))
    assert result.exit_code == 0, result.output
    rows = people_rows(result.stderr)
    assert [row.split("#0")[0].strip() for row in rows] == ["scan.tif page 1", "scan.tif page 2"], result.stderr
    assert all("still image" in row and " s " not in row and "0.0-0.0" not in row for row in rows), rows
    data = json.loads((tmp_path / "out" / "s.json").read_text())
    assert [(t["page"], t["first_frame"], t["first_timestamp_s"], t["last_timestamp_s"]) for t in data["tracks"]] \
        == [(1, 0, 0.0, 0.0), (2, 1, 0.0, 0.0)], data["tracks"]
    assert all(ENTRY_KEYS <= set(t) and t["person"] for t in data["tracks"])
    assert [(v["page"], v["tracks"]) for v in data["videos"]] == [(1, 1), (2, 1), (3, 0)]
    # its pictures are named by page, as its annotated pages are (s-scan-2 could be scan-2.tif's)
    assert [t["thumbnail"] for t in data["tracks"]] == ["s-scan-t0.jpg", "s-scan-page2-t0.jpg"]


def test_a_still_image_s_summary_gives_no_time_span(tmp_path, image_path):
    """A one-page image's person was listed with a span "0.0-0.0" seconds; it is a still image."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_path("single").read_bytes())
    result = run(str(photo), "--summary", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    [row] = people_rows(result.stderr)
    assert row.startswith("photo.jpg ") and "still image" in row and "0.0-0.0" not in row, row
    [track] = json.loads((tmp_path / "s.json").read_text())["tracks"]
    assert ENTRY_KEYS <= set(track) and (track["page"], track["first_timestamp_s"]) == (1, 0.0)


def test_a_page_or_image_without_faces_gets_no_timeline(tmp_path, image_path):
    """A timeline PNG was written for every page and image, one without faces too: "no faces" over a
    time axis a still image does not have (a 64-page scan of documents: 64 such pictures). Now a
    page or an image without tracks has none (its ``videos`` item's ``timeline`` null, its other
    keys kept); a video without faces keeps its own, its span analysed with no face in it."""
    face = cv2.imread(str(image_path("single")))  # one face, a person
    noise = np.random.default_rng(7).integers(0, 256, face.shape, dtype=np.uint8)
    scan, blank, clip = tmp_path / "scan.tif", tmp_path / "blank.png", tmp_path / "clip.avi"
    assert cv2.imwritemulti(str(scan), [face, noise, noise]) and cv2.imwrite(str(blank), noise[:, :, 0])
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), i * 8, np.uint8))
    writer.release()
    out = tmp_path / "out"
    result = run(str(scan), str(blank), str(clip), "--summary", str(out / "s.json"))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "s.json").read_text())
    assert [(v.get("page"), v["tracks"], v.get("timeline")) for v in data["videos"]] == \
        [(1, 1, "s-scan.png"), (2, 0, None), (3, 0, None), (1, 0, None), (None, 0, "s-clip.png")], data["videos"]
    assert all({"source", "frames", "tracks", "people", "timeline"} <= set(v) for v in data["videos"])
    assert sorted(p.name for p in out.iterdir()) == ["s-clip.png", "s-scan-t0.jpg", "s-scan.png", "s.json"]


def test_records_name_a_still_image_s_page_as_the_service_does(tmp_path, image_path, fixtures_dir):
    """analyze's records say which page a still image is, as a worker's results do (``page``,
    1-based; 1 for a one-page image); a video frame's record has no page."""
    scan = tmp_path / "scan.tif"
    rng = np.random.default_rng(9)
    assert cv2.imwritemulti(str(scan), [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(2)])
    result = run(str(scan), str(image_path("single")), str(fixtures_dir / "clip_360p.mp4"), "--max-frames", "2")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(r["source"]).name, r["frame"], r.get("page")) for r in records] == \
        [("scan.tif", 0, 1), ("scan.tif", 1, 2), (image_path("single").name, 0, 1), ("clip_360p.mp4", 0, None),
         ("clip_360p.mp4", 1, None)]
