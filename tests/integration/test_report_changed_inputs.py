"""An input that changes or goes while the run goes on (found by a hunt): `up --report PAGE` reads the
inputs again for the page once every frame is answered, and drew what it found: a video replaced
meanwhile had its new frames drawn under the first video's boxes, a deleted photo was "not shown"
as any unreadable file, exit 0 and not a word on stderr. The page (worker/report.py) now keeps each
input's identity (device, inode, size, times) from when it is made, before anything is read; an input
that differs when the page reads it again is not drawn: the page says it changed (or went) during the
run, and so does a warning. `analyze --report` draws the frames it analyses, read once: a change after
they were read does not reach its page."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.shared.record import FrameResult
from moodstream.worker.report import Report

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
CLIP = SAMPLES / "hamilton_clip.mp4"
OTHER_CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"


def page_data(page: Path) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page.read_text(), re.S).group(1))


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.endswith(".report")]


def up_with(monkeypatch, meanwhile, *args: str):
    """`up ARGS`, ``meanwhile()`` run once every frame is answered, just before the page reads the inputs again."""
    from moodstream import up as up_module

    write = up_module._UpReport.write

    def after_the_run(self, *a, **kw):
        meanwhile()
        return write(self, *a, **kw)

    monkeypatch.setattr(up_module._UpReport, "write", after_the_run)
    return CliRunner().invoke(up_module.up, [*args, "--device", "cpu", "--detector", "haar", "--no-dashboard",
                                             "--format", "jsonl", "--timeout-s", "300"])


def test_up_does_not_draw_a_video_replaced_during_the_run(embedded, tmp_path, monkeypatch, caplog):
    clip, photo, page = tmp_path / "clip.mp4", tmp_path / "street.jpg", tmp_path / "r.html"
    shutil.copy(CLIP, clip)
    shutil.copy(SAMPLES / "street.jpg", photo)
    caplog.set_level(logging.WARNING)
    ran = up_with(monkeypatch, lambda: shutil.copy(OTHER_CLIP, clip), str(clip), str(photo),
                  "--max-frames", "10", "--report", str(page))
    assert ran.exit_code == 0, ran.output
    data = page_data(page)
    assert data["videos"] == [], [v["source"] for v in data["videos"]]  # not the new frames under the old boxes
    assert [n["source"] for n in data["not_shown"]] == [str(clip)], data["not_shown"]
    assert "changed during the run" in data["not_shown"][0]["why"]
    assert [p["source"] for p in data["photos"]] == [str(photo)]  # the photo that stayed is drawn
    said = warnings(caplog)
    assert len(said) == 1 and str(clip) in said[0] and "changed during the run" in said[0], said
    assert "Traceback" not in ran.output


def test_up_says_a_photo_deleted_during_the_run_went(embedded, tmp_path, monkeypatch, caplog):
    photo, other, page = tmp_path / "street.jpg", tmp_path / "audience.jpg", tmp_path / "r.html"
    shutil.copy(SAMPLES / "street.jpg", photo)
    shutil.copy(SAMPLES / "audience.jpg", other)
    caplog.set_level(logging.WARNING)
    ran = up_with(monkeypatch, photo.unlink, str(photo), str(other), "--report", str(page))
    assert ran.exit_code == 0, ran.output
    data = page_data(page)
    assert [n["source"] for n in data["not_shown"]] == [str(photo)], data["not_shown"]
    assert "deleted or moved during the run" in data["not_shown"][0]["why"]
    assert [p["source"] for p in data["photos"]] == [str(other)]
    said = warnings(caplog)
    assert len(said) == 1 and str(photo) in said[0] and "deleted or moved during the run" in said[0], said


def test_up_draws_an_input_that_stayed_as_it_was(embedded, tmp_path, monkeypatch, caplog):
    photo, page = tmp_path / "street.jpg", tmp_path / "r.html"
    shutil.copy(SAMPLES / "street.jpg", photo)
    caplog.set_level(logging.WARNING)
    ran = up_with(monkeypatch, lambda: None, str(photo), "--report", str(page))
    assert ran.exit_code == 0, ran.output
    data = page_data(page)
    assert data["not_shown"] == [] and [p["source"] for p in data["photos"]] == [str(photo)]
    assert warnings(caplog) == []


def test_analyze_draws_the_frames_it_analysed_whatever_happens_to_the_file_after(tmp_path, monkeypatch, caplog):
    from moodstream.worker.analyze import analyze_cmd

    photo, page = tmp_path / "street.jpg", tmp_path / "r.html"
    shutil.copy(SAMPLES / "street.jpg", photo)
    close = Report.close

    def after_the_run(self):
        photo.unlink()  # after its frame was drawn: the page shows what was analysed
        return close(self)

    monkeypatch.setattr(Report, "close", after_the_run)
    caplog.set_level(logging.WARNING)
    ran = CliRunner().invoke(analyze_cmd, [str(photo), "--device", "cpu", "--detector", "haar", "--report", str(page)])
    assert ran.exit_code == 0, ran.output
    data = page_data(page)
    assert data["not_shown"] == [] and [p["source"] for p in data["photos"]] == [str(photo)]
    assert warnings(caplog) == []


def photo_result(source: str, image: np.ndarray) -> FrameResult:
    return FrameResult(source=source, frame=0, page=1, size=(image.shape[1], image.shape[0]))


@pytest.mark.parametrize("change", ["rewritten", "replaced", "touched", "deleted"])
def test_the_page_made_before_the_run_knows_an_input_read_again_is_not_what_it_was(tmp_path, caplog, change):
    """The module's own API, as `up` drives it: made (the identities taken), the input changed, its frame
    read again and given, the page written."""
    photo = tmp_path / "a.jpg"
    cv2.imwrite(str(photo), np.full((40, 60, 3), 90, np.uint8))
    report = Report(tmp_path / "r.html", inputs=frozenset({os.path.realpath(photo)}))
    if change == "rewritten":  # the same file, other bytes
        cv2.imwrite(str(photo), np.full((40, 60, 3), 200, np.uint8))
    elif change == "replaced":  # another file moved over it, its times kept
        other = tmp_path / "b.jpg"
        shutil.copy2(photo, other)
        os.replace(other, photo)
    elif change == "touched":  # its bytes kept, its time not
        st = os.stat(photo)
        os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    else:
        photo.unlink()
    caplog.set_level(logging.WARNING)
    image = np.zeros((40, 60, 3), np.uint8)
    if change == "deleted":
        from moodstream.shared.record import ErrorInfo

        report.add(FrameResult(source=str(photo), frame=0, error=ErrorInfo(reason="unreadable", detail="gone")),
                   None, False)
    else:
        report.add(photo_result(str(photo), image), image, False)
    report.close()
    data = page_data(tmp_path / "r.html")
    assert data["photos"] == [] and [n["source"] for n in data["not_shown"]] == [str(photo)], data
    why = data["not_shown"][0]["why"]
    assert ("deleted or moved during the run" if change == "deleted" else "changed during the run") in why, why
    assert len(warnings(caplog)) == 1


def test_a_page_fed_the_frames_it_analyses_checks_nothing(tmp_path, caplog):
    """``read_again=False`` (analyze): the frame given is the one analysed, whatever the file is now."""
    photo = tmp_path / "a.jpg"
    cv2.imwrite(str(photo), np.full((40, 60, 3), 90, np.uint8))
    report = Report(tmp_path / "r.html", inputs=frozenset({os.path.realpath(photo)}), read_again=False)
    photo.unlink()
    caplog.set_level(logging.WARNING)
    image = np.zeros((40, 60, 3), np.uint8)
    report.add(photo_result(str(photo), image), image, False)
    report.close()
    data = page_data(tmp_path / "r.html")
    assert data["not_shown"] == [] and len(data["photos"]) == 1 and warnings(caplog) == []
