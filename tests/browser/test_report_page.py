"""`analyze VIDEO --report FILE.html` in a real browser: each person shows, the clip plays, a click seeks,
and a file name is text, never markup."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.browserkit import screenshot, wait_js

from moodstream.worker.analyze import analyze_cmd

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "hamilton_clip.mp4"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"
HOSTILE = "<img src=x onerror=window.__xss=1>"

pytestmark = pytest.mark.slow


def analyze(*args: str) -> None:
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", *args])
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory) -> tuple[Path, dict]:
    """The report and the summary of the sample clip, from one run."""
    out = tmp_path_factory.mktemp("report")
    analyze(str(SAMPLE), "--report", str(out / "clip.html"), "--summary", str(out / "clip.json"))
    return out / "clip.html", json.loads((out / "clip.json").read_text())


def test_report_shows_each_person_and_its_video_plays(browser, sample_report):
    page, summary = sample_report
    people = sorted(t["track_id"] for t in summary["tracks"] if t["person"])
    assert people, "the sample clip has a person"
    assert list(page.parent.glob("*.webm")), "the clip is written beside the page"
    browser.get(page.as_uri())
    shown = browser.execute_script(
        "return [...document.querySelectorAll('[data-track-id]')].map(e => +e.dataset.trackId)")
    assert sorted(shown) == people
    assert str(SAMPLE) in browser.find_element("tag name", "body").text  # the video's name, as text
    state = wait_js(browser, "const v = document.querySelector('video');"
                             "return v.readyState >= 2 && v.duration > 0 ? [v.readyState, v.duration] : null")
    assert state, "the WebM clip never became playable"
    assert state[1] == pytest.approx(summary["videos"][0]["frames"] / 30, rel=0.1)
    # clicking an episode seeks the clip to its start
    episodes = [e for t in summary["tracks"] if t["person"] for e in t["episodes"]]
    if episodes:
        browser.find_element("css selector", f"[data-track-id='{people[0]}'] .episodes button").click()
        t = wait_js(browser, "const v = document.querySelector('video'); return v.seeking ? null : v.currentTime")
        first = next(t for t in summary["tracks"] if t["track_id"] == people[0])["episodes"][0]
        assert t == pytest.approx(first["start_s"], abs=0.1)
    screenshot(browser, "report_page.png")


def test_two_videos_give_one_page_with_a_section_each_and_names_are_text(browser, tmp_path):
    video = tmp_path / f"{HOSTILE}.mp4"
    shutil.copy(CLIP, video)
    analyze(str(CLIP), str(video), "--report", str(tmp_path / "r.html"))
    assert len(list(tmp_path.glob("r-*.webm"))) == 2
    browser.get((tmp_path / "r.html").as_uri())
    names = wait_js(browser, "return [...document.querySelectorAll('section.video h2')].map(h => h.textContent)")
    assert names == [str(CLIP), str(video)]
    # no count of nothing: the page had said "2 videos, 0 photos" in its title and header
    assert browser.title == "moodstream report: 2 videos", browser.title
    intro = browser.find_element("id", "intro").text
    assert intro == "2 videos; click a chart or an episode to see that moment", intro
    assert HOSTILE in browser.find_element("tag name", "body").text
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert browser.execute_script("return window.__xss === undefined")
    assert wait_js(browser, "return [...document.querySelectorAll('video')].every(v => v.readyState >= 2 && v.duration > 0)")


def test_each_person_names_the_shot_it_was_seen_in(browser, tmp_path):
    cut = REPO / "tests" / "fixtures" / "cut_360p.mp4"  # the performer, then the audience from frame 21
    analyze(str(cut), "--report", str(tmp_path / "cut.html"), "--summary", str(tmp_path / "cut.json"))
    tracks = json.loads((tmp_path / "cut.json").read_text())["tracks"]
    browser.get((tmp_path / "cut.html").as_uri())
    rows = browser.execute_script(
        "return [...document.querySelectorAll('[data-track-id]')].map(e => [+e.dataset.trackId,"
        " e.querySelector('.who').textContent])")
    want = {t["track_id"]: t["shot"] for t in tracks if t["person"]}
    assert {tid: f" · shot {want[tid]} · " in text for tid, text in rows} == {tid: True for tid in want}
    assert set(want.values()) == {0, 1}
    quiet = [t for t in tracks if t["person"] and not t["episodes"] and t["dominant"] != "neutrality"]
    for t in quiet:  # a dominant emotion without an episode is not called neutral throughout
        text = browser.find_element("css selector", f"[data-track-id='{t['track_id']}'] .episodes").text
        assert "neutral throughout" not in text and t["dominant"] in text, text
    screenshot(browser, "report_shots.png")
