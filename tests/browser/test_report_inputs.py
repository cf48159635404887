"""`analyze --report` as a user meets it with inputs that are not a playable video: the page names each
of them (an image, an unreadable file) instead of an empty "0 video(s)", and a page path that cannot be
written is one line before any frame is analysed, never a traceback at the end."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from tests.support.browserkit import wait_js

from moodstream.worker.analyze import analyze_cmd

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "hamilton_clip.mp4"
IMAGE = REPO / "samples" / "street.jpg"


def test_the_report_names_images_and_unreadable_inputs(browser, tmp_path):
    # acceptance run: `analyze street.jpg --report r.html` and `analyze truncated.mp4 --report r.html`
    # gave a page reading only "0 video(s)": neither name, nor why nothing is shown
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(SAMPLE.read_bytes()[:150_000])
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(IMAGE), str(truncated),
                                              "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 1, result.output  # the truncated file failed
    browser.get((tmp_path / "r.html").as_uri())
    text = wait_js(browser, "const t = document.body.innerText; return t.includes('street.jpg') ? t : null")
    assert text, browser.find_element("tag name", "body").text
    assert str(IMAGE) in text and str(truncated) in text
    assert "cannot open video" in text  # the reason, as the error record gives it


def test_the_header_counts_a_multi_page_tiff_as_one_image(browser, tmp_path):
    # the header said "3 image(s) not shown" above a list naming the file once ("an image of 3 pages")
    import cv2
    import numpy as np

    scan = tmp_path / "scan.tif"
    rng = np.random.default_rng(8)
    assert cv2.imwritemulti(str(scan), [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(3)])
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(scan), str(IMAGE),
                                              "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    browser.get((tmp_path / "r.html").as_uri())
    intro = wait_js(browser, "const t = document.getElementById('intro').textContent; return t ? t : null")
    assert intro.startswith("0 video(s), 2 image(s) not shown;"), intro
    text = browser.find_element("tag name", "body").text
    assert "an image of 3 pages" in text and "street.jpg: an image (the report shows videos)" in text


def test_an_unwritable_report_path_is_one_line_before_the_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(SAMPLE), "--report",
                                              str(blocker / "r.html")])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "cannot write the report" in result.output and str(blocker / "r.html") in result.output
    assert result.output.count("\n") <= 2, result.output  # one line, and no frame was analysed first
    assert '"frame"' not in result.output


def test_a_folder_of_photos_keeps_the_failure_and_the_video_on_the_first_screen(browser, tmp_path):
    # `analyze FOLDER --report` on 2,000 photos, a clip and a broken file: the one input that failed
    # (why the run exits 1) was line 1,001 of a list of 2,001, the video below all of them
    import cv2

    folder = tmp_path / "event"
    photo = cv2.resize(cv2.imread(str(IMAGE)), (64, 36))
    for i in range(300):
        (folder / f"p{i:03d}").mkdir(parents=True)
        assert cv2.imwrite(str(folder / f"p{i:03d}" / "0.jpg"), photo)
    (folder / "p150" / "broken.mp4").write_bytes(SAMPLE.read_bytes()[:150_000])
    (folder / "p299" / "clip.mp4").write_bytes(SAMPLE.read_bytes())
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", "--detector", "haar", "--max-frames", "3",
                                              str(folder), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 1, result.output  # the broken file failed
    browser.get((tmp_path / "r.html").as_uri())
    tops = wait_js(browser, """
        const video = document.querySelector('section.video');
        const broken = [...document.querySelectorAll('li')].find((li) => li.textContent.includes('broken.mp4'));
        return video && broken ? [broken.getBoundingClientRect().top, video.getBoundingClientRect().top,
                                  window.innerHeight] : null""")
    assert tops, browser.find_element("tag name", "body").text[:500]
    broken_top, video_top, screen = tops
    assert broken_top < screen and video_top < screen, tops
    text = browser.find_element("tag name", "body").text
    assert "cannot open video" in text and "300 images" in text  # the photos: counted, listed when opened
