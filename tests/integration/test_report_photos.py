"""`analyze PHOTOS --report page.html` shows the photos: each annotated (its boxes and labels, as
`--annotate` draws them), scaled down to at most ``PHOTO_MAX_PX`` on its longer side, written as a
JPEG in ``page-photos/`` beside the page as it is added (the page refers to it by a relative URL),
and per face its box, emotion and probabilities in the page's data. It listed each photo as "an
image (the report shows videos)" and showed none of them.

A folder of thousands of photos keeps the run's memory and the page small: the report holds no
image after its JPEG is written, only a few hundred bytes of each photo's faces."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.table import face_label
from moodstream.worker.analyze import analyze_cmd
from moodstream.worker.annotate import COLORS
from moodstream.worker.report import PHOTO_MAX_PX, Report
from tests.support.memory import Kept

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"
PHOTOS = [SAMPLES / "street.jpg", SAMPLES / "audience.jpg",
          *sorted((REPO / "tests" / "fixtures" / "images").glob("*.jpg"))]


def run(*args: str):
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def page_data(page: Path) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page.read_text(encoding="utf-8"), re.S).group(1))


def plain_resize(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The photo scaled to ``size`` (W, H) without any drawing, as BGR."""
    original = cv2.imread(str(path))
    return original if original.shape[1::-1] == size else cv2.resize(original, size, interpolation=cv2.INTER_AREA)


def test_each_photo_is_shown_annotated_with_its_faces(tmp_path):
    page = tmp_path / "out" / "r.html"
    result, records = run(*map(str, PHOTOS), "--report", str(page))
    assert result.exit_code == 0, result.output
    data = page_data(page)
    photos = data["photos"]
    assert data["images"] == len(PHOTOS) and data["not_shown"] == []
    assert [(p["source"], p["page"]) for p in photos] == [(r["source"], r["page"]) for r in records]
    assert sum(len(r["faces"]) for r in records) >= 10  # the samples have faces to draw
    for photo, record in zip(photos, records):
        # the faces as the JSONL record has them: box, emotion, probabilities (in `labels` order, rounded)
        assert photo["size"] == record["size"]
        assert len(photo["faces"]) == len(record["faces"])
        for shown, face in zip(photo["faces"], record["faces"]):
            assert shown["track_id"] == face["track_id"] and shown["emotion"] == face["emotion"]
            assert shown["label"] == face_label(msgspec.convert(face, Face))[1]  # the page's line, as drawn
            assert shown["box"] == pytest.approx(face["box"], abs=0.06)
            assert shown["probabilities"] == pytest.approx([face["probabilities"][k] for k in data["labels"]],
                                                           abs=6e-4)
        # the JPEG beside the page, its longer side at most PHOTO_MAX_PX, with the boxes drawn on it
        file = page.parent / photo["image"]
        assert file.parent.name == "r-photos" and file.read_bytes()[:3] == b"\xff\xd8\xff"
        annotated = cv2.imread(str(file))
        assert annotated is not None and max(annotated.shape[:2]) <= PHOTO_MAX_PX
        assert list(annotated.shape[1::-1]) == photo["shown"]
        w, h = record["size"]
        assert photo["shown"] == ([w, h] if max(w, h) <= PHOTO_MAX_PX else
                                  [round(w * PHOTO_MAX_PX / max(w, h)), round(h * PHOTO_MAX_PX / max(w, h))])
        changed = np.abs(annotated.astype(int) - plain_resize(Path(record["source"]), tuple(photo["shown"]))).max(2)
        share = float((changed > 60).mean())
        if record["faces"]:
            assert share > 0.002, (file.name, share)  # boxes and labels, not JPEG's noise
        else:
            assert share < 0.002, (file.name, share)
    assert len({p["image"] for p in photos}) == len(photos)  # one file each
    # the label strip above the parade's largest face is filled with its emotion's colour
    parade = next(p for p in photos if "Parade_0_545" in p["source"])
    face = max(parade["faces"], key=lambda f: f["box"][2] - f["box"][0])
    x1, y1 = (int(v) for v in face["box"][:2])
    strip = cv2.imread(str(page.parent / parade["image"]))[y1 - 12:y1 - 3, x1 + 2:x1 + 40].reshape(-1, 3)
    r, g, b = COLORS[face["emotion"]]
    near = np.abs(strip.astype(int) - [b, g, r]).max(1) < 40
    assert near.mean() > 0.4, (face["emotion"], strip.mean(0))


def test_a_multi_page_tiff_shows_each_page(tmp_path, image_path):
    face = cv2.imread(str(image_path("single")))
    noise = np.random.default_rng(3).integers(0, 256, face.shape, dtype=np.uint8)
    scan = tmp_path / "scan.tif"
    assert cv2.imwritemulti(str(scan), [face, noise, face])
    page = tmp_path / "r.html"
    result, records = run(str(scan), "--report", str(page))
    assert result.exit_code == 0, result.output
    data = page_data(page)
    assert [(p["source"], p["page"], len(p["faces"])) for p in data["photos"]] == \
        [(str(scan), 1, 1), (str(scan), 2, 0), (str(scan), 3, 1)]
    assert data["photos"][0]["pages"] == 3 and data["images"] == 1
    names = [p["image"] for p in data["photos"]]
    assert len(set(names)) == 3 and all((tmp_path / n).stat().st_size > 1000 for n in names)


def test_videos_and_photos_in_one_call_give_both(tmp_path):
    page = tmp_path / "r.html"
    result, records = run(str(CLIP), str(PHOTOS[0]), "--max-frames", "5", "--report", str(page))
    assert result.exit_code == 0, result.output
    data = page_data(page)
    assert [v["source"] for v in data["videos"]] == [str(CLIP)] and len(data["videos"][0]["times"]) == 5
    assert (tmp_path / data["videos"][0]["video"]).stat().st_size > 0
    assert [p["source"] for p in data["photos"]] == [str(PHOTOS[0])]
    assert (tmp_path / data["photos"][0]["image"]).is_file()


def test_a_photo_folder_that_cannot_be_written_leaves_the_page_and_fails_the_run(tmp_path):
    page = tmp_path / "r.html"
    (tmp_path / "r-photos").write_text("a file where the photos' folder goes")
    result, records = run(str(PHOTOS[0]), str(PHOTOS[1]), "--report", str(page))
    assert len(records) == 2
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "r-photos" in result.stderr and "cannot write the report" in result.stderr, result.stderr
    data = page_data(page)  # the page is there, its photos named and their faces listed
    assert [p["image"] for p in data["photos"]] == [None, None]
    assert len(data["photos"][0]["faces"]) == len(records[0]["faces"])


def test_one_photo_that_cannot_be_written_is_named_and_the_others_are_shown(tmp_path):
    page = tmp_path / "r.html"
    (tmp_path / "r-photos" / "0001-street.jpg").mkdir(parents=True)  # where the first photo goes
    result, records = run(str(PHOTOS[0]), str(PHOTOS[1]), "--report", str(page))
    assert result.exit_code == 1 and "0001-street.jpg" in result.stderr, result.output
    data = page_data(page)
    assert data["photos"][0]["image"] is None and (tmp_path / data["photos"][1]["image"]).is_file()


def test_a_rerun_into_the_photos_folder_does_not_analyse_its_own_photos(tmp_path):
    """`analyze event --report event/report.html` twice: the second run read the first run's annotated
    photos (boxes on boxes) and showed each photo twice; now it reads the inputs only and writes the
    same files again."""
    folder = tmp_path / "event"
    folder.mkdir()
    for src in PHOTOS[:3]:
        shutil.copy(src, folder / src.name)
    page = folder / "report.html"
    first, records = run(str(folder), "--report", str(page))
    assert first.exit_code == 0, first.output
    files = sorted(p.name for p in (folder / "report-photos").iterdir())
    assert len(records) == 3 and len(files) == 3
    second, again = run(str(folder), "--report", str(page))
    assert second.exit_code == 0, second.output
    assert [r["source"] for r in again] == [r["source"] for r in records]
    assert sorted(p.name for p in (folder / "report-photos").iterdir()) == files
    # named directly, the folder is read, and its photos written over by none of the outputs
    before = {p.name: p.read_bytes() for p in (folder / "report-photos").iterdir()}
    third, named = run(str(folder / "report-photos"), "--report", str(page))
    assert third.exit_code == 0 and len(named) == 3, third.output
    assert all((folder / "report-photos" / n).read_bytes() == b for n, b in before.items())


def _photo(i: int) -> tuple[FrameResult, np.ndarray]:
    rng = np.random.default_rng(i)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    faces = []
    for k in range(2):
        p = rng.dirichlet(np.ones(len(LABELS)))
        faces.append(Face((40.0 + 150 * k, 60.0, 140.0 + 150 * k, 180.0), 0.99, emotion=LABELS[int(p.argmax())],
                          probabilities={lab: float(v) for lab, v in zip(LABELS, p)}, track_id=k))
    return FrameResult(source=f"/event/p{i:04d}/0.jpg", frame=0, page=1, size=(400, 300), faces=faces), image


def held_arrays(root) -> int:
    """Bytes of the numpy arrays reachable from ``root`` through containers and instances' attributes."""
    seen, total, todo = set(), 0, [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type(None), type, type(sys))):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += obj.nbytes
            continue
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif hasattr(obj, "__dict__"):
            todo.extend(vars(obj).values())
    return total


def test_many_photos_hold_no_image_and_keep_the_page_small(tmp_path):
    """300 photos of 400x300 (360 KB each as arrays, 108 MB in all): the report holds none of them and
    grows by about 2 KB a photo of two faces (its name, sizes and the faces' boxes and probabilities as
    Python objects: 40 MB for 20,000 such photos), the page by under 1 KB a photo."""
    page = tmp_path / "r.html"
    report = Report(page)
    report.add(*_photo(0), False)  # the first: the folder made, imports and caches warmed
    with Kept(__file__) as kept:
        for i in range(1, 300):
            report.add(*_photo(i), False)
    grown = kept.grown
    print(f"299 photos: {grown / 1024:.0f} KiB more, {grown / 299:.0f} bytes a photo "
          f"(elsewhere in the process: {kept.elsewhere / 1024:.0f} KiB)")
    assert held_arrays(report) == 0
    assert grown < 299 * 3072, f"{grown / 299:.0f} bytes a photo; {kept.where()}"
    report.close()
    data = page_data(page)
    assert len(data["photos"]) == 300 and len(list((tmp_path / "r-photos").iterdir())) == 300
    assert page.stat().st_size < 300 * 1024 + 200_000, page.stat().st_size
