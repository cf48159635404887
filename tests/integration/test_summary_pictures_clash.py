"""A user's photo named as a summary's picture or a report's clip (found by a hunt): `analyze photos
--summary photos/s.json` (and `up`) left `photos/s-street-t0.jpg`, the user's own photo, out of the
inputs as if the run before had written it (worker/own_outputs.py goes by the name), then wrote
street.jpg's face picture over it: the photo was lost. `--report photos/page.html` did the same to a
user's `page-clip.webm`. A file is now this command's own only where it says so (the pictures and
timelines carry moodstream's mark; a clip is one the page beside it lists); any other is read as an
input and never written over, the output takes another name."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import cv2
from click.testing import CliRunner

from moodstream.worker.analyze import analyze_cmd as analyze

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"


def invoke(*args: str):
    return CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--max-frames", "3", *args])


def sources(result) -> list[str]:
    return sorted({json.loads(line)["source"] for line in result.stdout.splitlines() if line.startswith("{")})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def user_photos(photos: Path) -> dict[str, str]:
    """street.jpg, and the user's own photos named as street.jpg's face picture and timeline would be."""
    photos.mkdir()
    shutil.copy(SAMPLES / "street.jpg", photos / "street.jpg")
    shutil.copy(SAMPLES / "audience.jpg", photos / "s-street-t0.jpg")
    cv2.imwrite(str(photos / "s-street.png"), cv2.imread(str(SAMPLES / "audience.jpg")))
    return {name: digest(photos / name) for name in ("s-street-t0.jpg", "s-street.png")}


def thumbnails(summary: Path) -> set[str]:
    data = json.loads(summary.read_text())
    return {t["thumbnail"] for t in data["tracks"] if t.get("thumbnail")} | {
        v["timeline"] for v in data["videos"] if v.get("timeline")}


def test_analyze_reads_and_spares_a_user_s_photo_named_as_a_summary_picture(tmp_path):
    photos = tmp_path / "photos"
    mine = user_photos(photos)
    first = invoke(str(photos), "--summary", str(photos / "s.json"))
    assert first.exit_code == 0, first.output
    assert {n: digest(photos / n) for n in mine} == mine  # not written over
    assert sources(first) == [str(photos / n) for n in ("s-street-t0.jpg", "s-street.png", "street.jpg")]
    written = thumbnails(photos / "s.json")
    assert written and not written & set(mine), written  # street.jpg's pictures took another name
    assert all((photos / n).is_file() for n in written)
    after = files(photos)

    second = invoke(str(photos), "--summary", str(photos / "s.json"))  # a rerun: the same inputs, the same files
    assert second.exit_code == 0, second.output
    assert sources(second) == sources(first)
    assert files(photos) == after and {n: digest(photos / n) for n in mine} == mine


def test_a_rerun_takes_the_pictures_an_earlier_version_wrote_for_its_own(tmp_path):
    """Pictures written before the mark (by an earlier moodstream) are named by the summary beside them:
    a rerun leaves them out of its inputs (they were read as photos, their faces counted as people) and
    writes over them under the same names (not s-street-2-t0.jpg beside the old ones)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLES / "street.jpg", photos / "street.jpg")
    first = invoke(str(photos), "--summary", str(photos / "s.json"))
    assert first.exit_code == 0, first.output
    written = thumbnails(photos / "s.json")
    assert written
    for name in written:  # as an earlier version wrote them: the same pictures, no mark
        cv2.imwrite(str(photos / name), cv2.imread(str(photos / name)))
    after = files(photos)
    second = invoke(str(photos), "--summary", str(photos / "s.json"))
    assert second.exit_code == 0, second.output
    assert sources(second) == [str(photos / "street.jpg")]
    assert thumbnails(photos / "s.json") == written and files(photos) == after


def test_analyze_writes_over_no_file_beside_a_summary_outside_the_inputs(tmp_path):
    """The summary's folder is not an input folder: its look-alike is no input, and is still not written over."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(SAMPLES / "audience.jpg", out / "s-street-t0.jpg")
    before = digest(out / "s-street-t0.jpg")
    ran = invoke(str(SAMPLES / "street.jpg"), "--summary", str(out / "s.json"))
    assert ran.exit_code == 0, ran.output
    assert digest(out / "s-street-t0.jpg") == before
    assert "s-street-t0.jpg" not in thumbnails(out / "s.json")


def test_analyze_reads_and_spares_a_user_s_video_named_as_a_report_clip(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(CLIP, clips / "clip.mp4")
    shutil.copy(SAMPLES / "hamilton_clip.mp4", clips / "page-clip.webm")  # the user's, named as the clip would be
    mine = digest(clips / "page-clip.webm")
    page = clips / "page.html"
    first = invoke(str(clips), "--report", str(page))
    assert first.exit_code == 0, first.output
    assert digest(clips / "page-clip.webm") == mine
    assert sources(first) == [str(clips / "clip.mp4"), str(clips / "page-clip.webm")]
    shown = json.loads(re.search(r'id="report-data">(.*?)</script>', page.read_text(), re.S).group(1))
    clip_of = {v["source"]: v["video"] for v in shown["videos"]}
    assert clip_of[str(clips / "clip.mp4")] != "page-clip.webm", clip_of
    after = files(clips)

    second = invoke(str(clips), "--report", str(page))
    assert second.exit_code == 0, second.output
    assert sources(second) == sources(first) and files(clips) == after
    assert digest(clips / "page-clip.webm") == mine


def test_up_reads_and_spares_a_user_s_photo_named_as_a_summary_picture(tmp_path, embedded):
    from moodstream.up import up

    photos = tmp_path / "photos"
    mine = user_photos(photos)
    ran = CliRunner().invoke(up, [str(photos), "--device", "cpu", "--detector", "haar", "--no-dashboard",
                                  "--format", "jsonl", "--timeout-s", "300", "--summary", str(photos / "s.json")])
    assert ran.exit_code == 0, ran.output
    assert {n: digest(photos / n) for n in mine} == mine
    assert sources(ran) == [str(photos / n) for n in ("s-street-t0.jpg", "s-street.png", "street.jpg")]
    written = thumbnails(photos / "s.json")
    assert written and not written & set(mine), written
