"""`analyze --report` as a user meets it with inputs that are not a playable video: photos are shown
(each annotated, with a line per face), an unreadable file is named with why, instead of an empty
"0 video(s)", and a page path that cannot be written is one line before any frame is analysed, never a
traceback at the end."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from click.testing import CliRunner
from tests.support.browserkit import screenshot, wait_js

from moodstream.shared.record import Face
from moodstream.shared.table import face_label
from moodstream.worker.analyze import analyze_cmd

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "hamilton_clip.mp4"
IMAGE = REPO / "samples" / "street.jpg"
FIXTURE_IMAGES = REPO / "tests" / "fixtures" / "images"
HOSTILE = "<img src=x onerror=window.__xss=1>"

# each photo card's state: its name, whether its picture is in view and loaded, its face lines
CARDS = """return [...document.querySelectorAll('figure.photo')].map((f) => {
  const img = f.querySelector('img'), r = img ? img.getBoundingClientRect() : null;
  return {name: f.querySelector('.name').textContent, meta: f.querySelector('.meta').textContent,
          faces: [...f.querySelectorAll('li.face')].map((li) => li.textContent),
          bars: f.querySelectorAll('li.face .bar i').length,
          src: img ? img.getAttribute('src') : null, lazy: img ? img.loading : null,
          visible: !!r && r.bottom > 0 && r.top < window.innerHeight,
          loaded: !!img && img.complete && img.naturalWidth > 0};
})"""


def loaded_in_view(browser) -> list[dict]:
    """The cards, once each picture in view has loaded (lazily: those below have not been asked for)."""
    cards = wait_js(browser, f"const cards = (() => {{ {CARDS} }})();"
                             "return cards.every((c) => !c.visible || c.loaded) ? cards : null")
    assert cards, [c for c in browser.execute_script(CARDS) if c["visible"] and not c["loaded"]]
    return cards


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


def test_a_run_that_shows_nothing_says_so_in_its_header_and_title(browser, tmp_path):
    # the header and the title counted "0 videos, 0 photos"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(SAMPLE.read_bytes()[:150_000])
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(truncated), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 1, result.output
    browser.get((tmp_path / "r.html").as_uri())
    intro = wait_js(browser, "const t = document.getElementById('intro').textContent; return t ? t : null")
    assert intro == "no video or photo", intro
    assert browser.title == "moodstream report: no video or photo", browser.title
    assert "Nothing in this run could be shown." in browser.find_element("tag name", "body").text


def test_the_header_counts_a_multi_page_tiff_as_one_image(browser, tmp_path):
    # the header said "3 image(s) not shown" above a list naming the file once ("an image of 3 pages");
    # its pages are now shown, each its own picture, the file counted once
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
    # a count of nothing ("0 videos, 2 photos") is left out, in the header and the title alike
    assert intro == "2 photos (4 pictures: a TIFF's pages each)", intro
    assert browser.title == "moodstream report: 2 photos", browser.title
    text = browser.find_element("tag name", "body").text
    assert "page 3 of 3" in text and "an image" not in text


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
    assert "cannot open video" in text
    # the photos below the video: the first 60 shown, the rest built when asked
    cards = loaded_in_view(browser)
    assert len(cards) == 60 and all(c["lazy"] == "lazy" for c in cards), len(cards)
    button = browser.find_element("css selector", "button.show-all")
    assert button.text == "Show all 300 photos (60 shown)"
    browser.execute_script("arguments[0].scrollIntoView()", button)
    button.click()
    assert wait_js(browser, "return document.querySelectorAll('figure.photo').length === 300")
    assert not browser.find_elements("css selector", "button.show-all")
    browser.execute_script("[...document.querySelectorAll('figure.photo')].pop().scrollIntoView()")
    cards = loaded_in_view(browser)
    assert cards[-1]["visible"] and cards[-1]["loaded"], cards[-1]
    assert cards[-1]["name"] == str(folder / "p299" / "0.jpg")


def test_photos_show_annotated_with_a_line_per_face(browser, tmp_path):
    """`analyze PHOTOS --report`: each photo is shown as --annotate draws it (a JPEG beside the page,
    loaded from disk under the page's Content-Security-Policy), its name as text, and per face its
    number, top emotion and percent, with a bar of every emotion's share."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for src in [IMAGE, REPO / "samples" / "audience.jpg", *sorted(FIXTURE_IMAGES.glob("*.jpg"))]:
        shutil.copy(src, photos / src.name)
    shutil.copy(FIXTURE_IMAGES / "wider_0_Parade_Parade_0_545.jpg", photos / f"{HOSTILE}.jpg")
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(photos), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    browser.get((tmp_path / "r.html").as_uri())
    cards = loaded_in_view(browser)
    assert [c["name"] for c in cards] == [r["source"] for r in records]
    assert sum(c["visible"] for c in cards) >= 2
    for card, record in zip(cards, records):
        assert len(card["faces"]) == min(6, len(record["faces"])) and card["bars"] >= len(card["faces"])
        for line, face in zip(card["faces"], record["faces"]):  # as the label drawn on the photo says it
            assert line == face_label(msgspec.convert(face, Face))[1]
            assert line.startswith(f"#{face['track_id']} {face['emotion']} ")
        assert card["src"].startswith("./r-photos/") and card["lazy"] == "lazy"
        n = len(record["faces"])  # counted as the people table counts: "1 face", "2 faces", not "face(s)"
        assert card["meta"].endswith(" · " + (f"{n} face{'' if n == 1 else 's'}" if n else "no face found")), card
    n_faces = sum(len(r["faces"]) for r in records)
    section = browser.execute_script("return document.querySelector('section.photos .meta').textContent")
    assert section.startswith(f"{n_faces} faces in {len(records)} pictures of {len(records)} files;"), section
    screenshot(browser, "report_photos.png")
    for i in range(len(cards)):  # every picture loads once scrolled to
        browser.execute_script(f"document.querySelectorAll('figure.photo')[{i}].scrollIntoView()")
        assert loaded_in_view(browser)[i]["loaded"], cards[i]
    assert HOSTILE in browser.find_element("tag name", "body").text
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert browser.execute_script("return window.__xss === undefined")


def test_a_clip_and_photos_named_with_a_colon_load(browser, tmp_path):
    """A video named `cam:1.mp4` (a camera's time in its name: 2024-01-01T10:30:00.mp4) or a page named
    `run:1.html`: the page set its clip's src to `page-cam:1.webm`, which a browser reads as a URL of
    the scheme 'page-cam:' (the page's policy refused it, error code 4), and the photos under
    `run:1-photos/` the same: an empty player, broken pictures. Each name is now a relative path."""
    clips = tmp_path / "in"
    clips.mkdir()
    (clips / "cam:1.mp4").write_bytes(SAMPLE.read_bytes())
    (clips / "10:30 street.jpg").write_bytes(IMAGE.read_bytes())
    page = tmp_path / "run:1.html"
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", "--max-frames", "10", str(clips),
                                              "--report", str(page)])
    assert result.exit_code == 0, result.output
    browser.get(page.as_uri())
    state = wait_js(browser, "const v = document.querySelector('video');"
                             "return v && (v.error || (v.readyState >= 2 && v.duration > 0)) ? "
                             "{error: v.error ? v.error.code : null, src: v.getAttribute('src')} : null")
    assert state and state["error"] is None, state
    cards = loaded_in_view(browser)
    assert len(cards) == 1 and cards[0]["loaded"], cards


def test_a_name_with_a_right_to_left_override_reverses_no_other_text(browser, tmp_path):
    """A file named `evil\\u202e4pm.jpg` (U+202E, RIGHT-TO-LEFT OVERRIDE: the old trick that shows
    'gpj.mp4' for a .jpg): the 'Not shown' line read 'r6/evil(setyb tsrif ...) egami na ton :elbadaernu
    :gpj.mp4', the reason after the name reversed with it. Each name and reason is its own isolated
    run of text (<bdi>) now."""
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "evil\u202e4pm.jpg"
    bad.write_bytes(b"not an image at all")
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(bad), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 1, result.output
    browser.get((tmp_path / "r.html").as_uri())
    parts = wait_js(browser, "const li = document.querySelector('.not-shown li');"
                             "return li ? [...li.querySelectorAll('bdi')].map(b => b.textContent) : null")
    assert parts and parts[0] == str(bad), parts


def test_a_photo_read_at_half_size_says_its_own_size_and_how_it_was_read(browser, tmp_path, monkeypatch):
    # a JPEG over max_pixels is read at 1/2: its card said the size it was read at (480x270 for 960x540)
    import cv2

    photo, small = tmp_path / "big.jpg", tmp_path / "small.jpg"
    assert cv2.imwrite(str(photo), cv2.resize(cv2.imread(str(IMAGE)), (960, 540)))
    assert cv2.imwrite(str(small), cv2.resize(cv2.imread(str(IMAGE)), (400, 225)))  # 90,000 pixels
    monkeypatch.setenv("MOODSTREAM_MAX_PIXELS", "200000")
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", str(photo), str(small),
                                              "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["scale"] == 0.5 and records[0]["size"] == [480, 270], records[0]
    browser.get((tmp_path / "r.html").as_uri())
    cards = loaded_in_view(browser)
    screenshot(browser, "report_photo_read_at_half")
    assert cards[0]["meta"].startswith("960x540 (read at 1/2) · "), cards[0]["meta"]
    assert cards[1]["meta"].startswith("400x225 · "), cards[1]["meta"]  # read whole: no note
