"""A rerun does not analyse what the first run wrote into its input folder (found after the --annotate
fix): `analyze photos --summary photos/people.json` wrote face pictures and timelines beside the
summary, and the second run read them as photos (faces of faces, counted as people); `analyze
clips --report clips/page.html` wrote `page-<video>.webm` beside the page, and the second run
analysed the annotated clip as a video (boxes on boxes, twice the time). `up FOLDER --summary
FOLDER/s.json` read its pictures the same way. What a command writes is left out of a folder
named as an input; named directly, it is read."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from click.testing import CliRunner

from moodstream.worker.analyze import analyze_cmd as analyze

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"


def invoke(*args: str):
    return CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--max-frames", "3", *args])


def sources(result) -> list[str]:
    return sorted({json.loads(line)["source"] for line in result.stdout.splitlines() if line.startswith("{")})


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_rerun_does_not_analyse_the_summary_s_pictures_and_timelines(tmp_path, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLES / "street.jpg", photos / "street.jpg")
    shutil.copy(SAMPLES / "street.jpg", photos / "people-mine.jpg")  # the user's, its name like a picture's
    first = invoke(str(photos), "--summary", str(photos / "people.json"))
    assert first.exit_code == 0, first.output
    written = files(photos)
    assert "people-street.png" in written and any(n.startswith("people-street-t") for n in written), written
    caplog.set_level(logging.INFO, logger="moodstream")
    second = invoke(str(photos), "--summary", str(photos / "people.json"))
    assert second.exit_code == 0, second.output
    assert sources(second) == [str(photos / "people-mine.jpg"), str(photos / "street.jpg")], sources(second)
    assert files(photos) == written  # the same files again, none of a picture's picture
    n_pictures = len(written) - 3  # all but the two photos and the JSON
    said = [r.getMessage() for r in caplog.records if "this command's outputs" in r.getMessage()]
    assert len(said) == 1 and f"left out {n_pictures} files" in said[0] and "--summary" in said[0], said
    people = json.loads((photos / "people.json").read_text())["tracks"]
    assert {Path(t["source"]).name for t in people} == {"street.jpg", "people-mine.jpg"}

    picture = sorted(n for n in written if n.startswith("people-street-t"))[0]
    named = invoke(str(photos / picture), "--summary", str(tmp_path / "other.json"))  # named: read
    assert named.exit_code == 0 and sources(named) == [str(photos / picture)], named.output


def test_a_rerun_does_not_analyse_the_report_s_clips(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(CLIP, clips / "clip.mp4")
    page = clips / "page.html"
    first = invoke(str(clips), "--report", str(page))
    assert first.exit_code == 0, first.output
    assert files(clips) == ["clip.mp4", "page-clip.webm", "page.html"]
    second = invoke(str(clips), "--report", str(page))
    assert second.exit_code == 0, second.output
    assert sources(second) == [str(clips / "clip.mp4")]  # not page-clip.webm, the annotated clip
    assert files(clips) == ["clip.mp4", "page-clip.webm", "page.html"]  # no page-page-clip.webm
    shown = json.loads(page.read_text().split('type="application/json"', 1)[1].split(">", 1)[1].split("</script>")[0])
    assert [v["source"] for v in shown["videos"]] == [str(clips / "clip.mp4")]

    named = invoke(str(clips / "page-clip.webm"), "--report", str(tmp_path / "again.html"))  # named: read
    assert named.exit_code == 0 and sources(named) == [str(clips / "page-clip.webm")], named.output


def test_a_folder_named_with_the_outputs_beside_it_and_a_file_among_them_reads_that_file(tmp_path):
    """A folder and one of the run's own files named together: the folder without it, the file as named."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLES / "street.jpg", photos / "street.jpg")
    shutil.copy(SAMPLES / "street.jpg", photos / "s-street.png")  # as a timeline is named
    ran = invoke(str(photos), str(photos / "s-street.png"), "--summary", str(photos / "s.json"))
    assert ran.exit_code == 0, ran.output
    assert sources(ran) == [str(photos / "s-street.png"), str(photos / "street.jpg")], sources(ran)
    assert (photos / "s-street.png").read_bytes() == (SAMPLES / "street.jpg").read_bytes()  # an input: spared


def test_up_does_not_send_its_summary_s_pictures_on_a_rerun(tmp_path, embedded):
    from moodstream.up import up

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLES / "street.jpg", photos / "street.jpg")
    args = [str(photos), "--device", "cpu", "--detector", "haar", "--no-dashboard", "--format", "jsonl",
            "--timeout-s", "300", "--summary", str(photos / "s.json")]
    first = CliRunner().invoke(up, args)
    assert first.exit_code == 0, first.output
    written = files(photos)
    assert len(written) > 2, written
    second = CliRunner().invoke(up, args)
    assert second.exit_code == 0, second.output
    assert sources(second) == [str(photos / "street.jpg")], sources(second)
    assert files(photos) == written


def test_a_folder_of_nothing_but_its_outputs_says_so(tmp_path):
    (tmp_path / "ann").mkdir()
    shutil.copy(SAMPLES / "street.jpg", tmp_path / "ann" / "street.jpg")  # a first run's annotated copy
    ran = invoke(str(tmp_path), "--annotate", str(tmp_path / "ann"))
    assert ran.exit_code == 1
    assert "but the 1 file this command writes" in ran.stderr and "name them directly" in ran.stderr
    assert "Traceback" not in ran.output


def test_annotate_into_the_input_folder_itself_is_refused(tmp_path):
    """`analyze photos --annotate photos`: the copies went among the inputs (audience-2.jpg beside
    audience.jpg), and each rerun analysed the last run's copies and copied them again, boxes on boxes:
    2 photos, then 4, then 8, exit 0 without a word. The folder named as both is refused."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLES / "street.jpg", photos / "street.jpg")
    for named in (str(photos), str(photos) + "/", str(tmp_path / "photos" / ".." / "photos")):
        res = invoke(str(photos), "--annotate", named)
        assert res.exit_code == 2, res.output
        assert "is the input folder" in res.output and "give another folder" in res.output, res.output
        assert files(photos) == ["street.jpg"]
    res = invoke(str(photos), "--annotate", str(photos / "annotated"))  # a folder inside it: as before
    assert res.exit_code == 0, res.output
