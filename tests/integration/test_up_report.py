"""`up --report FILE`: the service's run on files written as the page `analyze --report` writes, so
that the one-command service has something to look at besides JSON rows. `up` had `--summary` but no
`--report` ("no such option"). The page is written once every frame is answered, from the worker's
results and the inputs read again (a live source or URL cannot be, and is refused before the run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
CLIP = str(REPO / "samples" / "hamilton_clip.mp4")
PHOTO = str(REPO / "samples" / "street.jpg")


def page_data(page: Path) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page.read_text(), re.S).group(1))


def up(*args: str):
    from moodstream.up import up as up_cmd

    return CliRunner().invoke(up_cmd, [*args, "--device", "cpu", "--no-dashboard", "--format", "jsonl",
                                       "--timeout-s", "300"])


def test_up_writes_the_page_analyze_writes_on_the_same_files(embedded, tmp_path):
    from moodstream.worker.analyze import analyze_cmd

    want_page, got_page = tmp_path / "analyze" / "r.html", tmp_path / "up" / "r.html"
    ran = CliRunner().invoke(analyze_cmd, [CLIP, PHOTO, "--max-frames", "30", "--device", "cpu",
                                           "--report", str(want_page)])
    assert ran.exit_code == 0, ran.output
    ran = up(CLIP, PHOTO, "--max-frames", "30", "--report", str(got_page))
    assert ran.exit_code == 0, ran.output
    assert f"up: report in {got_page}" in ran.output
    want, got = page_data(want_page), page_data(got_page)
    assert len(got["videos"]) == 1 and len(got["photos"]) == 1 and got["not_shown"] == []
    assert len(got["videos"][0]["times"]) == 30 and got["videos"][0]["tracks"], got["videos"][0]
    assert got == want  # the same people, episodes, charts and photo faces (the pages share a file name)
    assert (tmp_path / "up" / got["videos"][0]["video"]).stat().st_size > 10_000  # the clip beside the page
    assert (tmp_path / "up" / got["photos"][0]["image"]).is_file()


def test_an_input_that_fails_is_named_on_the_page(embedded, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    page = tmp_path / "r.html"
    ran = up(PHOTO, str(broken), "--report", str(page))
    assert ran.exit_code == 1, ran.output  # an error record, as analyze's
    data = page_data(page)
    assert len(data["photos"]) == 1 and [n["source"] for n in data["not_shown"]] == [str(broken)]


@pytest.mark.parametrize("args,said", [
    (["--report-clip-px", "480"], "--report-clip-px sizes the report's clip: give --report FILE.html too"),
    (["--report", "{tmp}/same.json", "--summary", "{tmp}/same.json"], "--summary and --report both name"),
    (["--report", "{tmp}/r.html", "rtsp://127.0.0.1:1/cam"], "rtsp://127.0.0.1:1/cam is a live source, a pipe or a URL"),
    (["--report", "{tmp}/r.html", "0"], "0 is a live source, a pipe or a URL"),
])
def test_a_report_up_cannot_write_is_refused_before_the_run(embedded, tmp_path, args, said):
    ran = up(PHOTO, *[a.format(tmp=tmp_path) for a in args])
    assert ran.exit_code == 2 and said in ran.output, ran.output
    assert "embedded redis-server" not in ran.output  # said before anything started
    assert not list(tmp_path.iterdir())
