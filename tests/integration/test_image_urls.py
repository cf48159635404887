"""A photo named by an http(s) URL is a photo: ``analyze URL`` read it through FFmpeg as a
one-frame video (``timestamp_s`` 0.0, ``shot`` 0, no ``page``), so its summary and people table
had "(no people)" (each face "seen in one frame only (< 0.5 s)") where the same file by its path
has 5 people, and ``produce URL`` sent it as a video frame, which the track stage summarised as
one. Now the records, the people table, ``--summary`` and ``--report`` of a photo's URL are its
path's but for its name, with or without an image extension in the URL (a server's
``/photo?id=3``), and a video's URL stays a video. A real HTTP server on 127.0.0.1 and a real Redis."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.expanderkit import CLIP, Site, body
from tests.support.streamkit import queued_jobs

from moodstream.producer.client import Producer
from moodstream.shared.settings import Settings
from moodstream.worker.analyze import analyze_cmd

REPO = Path(__file__).resolve().parents[2]
STREET = REPO / "samples" / "street.jpg"  # 5 people
NAMES = {"source", "thumbnail", "timeline", "image"}  # what a source's name decides (its files' names too)


@pytest.fixture(scope="module")
def site():
    """``/street.jpg`` and ``/photo?id=3`` serve the photo; ``/clip.mp4`` and ``/movie?id=1`` (an
    octet stream: told by its bytes) the fixture clip."""
    photo, clip = STREET.read_bytes(), CLIP.read_bytes()
    s = Site({"/street.jpg": body(photo, "image/jpeg"), "/photo": body(photo, "image/jpeg"),
              "/clip.mp4": body(clip, "video/mp4"), "/movie": body(clip, "application/octet-stream")})
    yield s
    s.close()


def url(site: Site, path: str) -> str:
    return f"http://127.0.0.1:{site.port}{path}"


def analyze(tmp_path: Path, spec: str, name: str) -> tuple[list[dict], list[str], dict, dict]:
    """(records, people table rows, --summary, the --report's data) of `analyze SPEC`."""
    out = tmp_path / name
    ran = CliRunner().invoke(analyze_cmd, [spec, "--device", "cpu", "--format", "jsonl", "--summary",
                                           str(out / "p.json"), "--report", str(out / "r.html")])
    assert ran.exit_code == 0, ran.output
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    rows = [line for line in ran.stderr.splitlines() if " #" in line]
    page = (out / "r.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                                re.S).group(1))
    return records, rows, json.loads((out / "p.json").read_text()), data


def unnamed(value):
    """``value`` without what its source's name decides (the name, and the names of its files) and
    without its timings."""
    if isinstance(value, dict):
        return {k: unnamed(v) for k, v in value.items() if k not in NAMES and k != "timings_ms"}
    if isinstance(value, list):
        return [unnamed(v) for v in value]
    return value


def after_name(row: str) -> str:
    """A people table row from its track on, its columns' widths aside (the source's column is as wide
    as its name)."""
    return " ".join(row.split(" #", 1)[1].split())


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/street.jpg", "/photo?id=3"])
def test_a_photo_s_url_is_analysed_as_its_file_is(site, tmp_path, path):
    by_path = analyze(tmp_path, str(STREET), "path")
    records, rows, summary, report = analyze(tmp_path, url(site, path), "url")
    assert [(r["source"], r.get("page"), r["timestamp_s"], "shot" in r) for r in records] == \
        [(url(site, path), 1, None, False)]
    assert len(rows) == 5 and all("still image" in row for row in rows), rows  # 5 people, as by its path
    assert [after_name(row) for row in rows] == [after_name(row) for row in by_path[1]]
    assert [v["source"] for v in summary["videos"]] == [url(site, path)]
    assert [p["source"] for p in report["photos"]] == [url(site, path)]
    assert unnamed(records) == unnamed(by_path[0])
    assert unnamed(summary) == unnamed(by_path[2])
    assert unnamed(report) == unnamed(by_path[3])


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/clip.mp4", "/movie?id=1"])
def test_a_video_s_url_stays_a_video(site, tmp_path, path):
    ran = CliRunner().invoke(analyze_cmd, [url(site, path), "--device", "cpu", "--format", "jsonl"])
    assert ran.exit_code == 0, ran.output
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert len(records) == 12 and all("page" not in r and r["shot"] == 0 for r in records), records[:2]
    assert [r["timestamp_s"] for r in records[:3]] == pytest.approx([0.0, 1 / 30, 2 / 30], abs=2e-3)


def test_produce_sends_a_photo_s_url_as_it_sends_its_file(site, redis_url, client, keys):
    """A still image's job: the file's bytes, page 1, no time and no shot (the track stage makes it
    a run of its own and summarises it as a still image); a video's URL: its frames, timed."""
    settings = Settings.from_env({}, redis_url=redis_url, prefix=keys.prefix)
    producer = Producer(settings, notice=lambda m: None)
    refs = list(producer.produce([str(STREET), url(site, "/photo?id=3"), url(site, "/movie?id=1")]))
    jobs = queued_jobs(client, keys)
    assert len(refs) == len(jobs) == 1 + 1 + 12 and producer.stats.failed_inputs == []
    by_path, by_url, video = jobs[0], jobs[1], jobs[2:]
    assert (by_url.source, by_url.frame, by_url.page, by_url.timestamp_s, by_url.shot) == \
        (url(site, "/photo?id=3"), 0, 1, None, None)
    assert (by_path.page, by_path.timestamp_s, by_path.shot, by_path.image) == (1, None, None, by_url.image)
    assert by_url.image == STREET.read_bytes()
    assert all(j.page is None and j.timestamp_s is not None for j in video)


@pytest.mark.slow
def test_up_summarises_a_photo_s_url_as_a_still_image(site, tmp_path, monkeypatch):
    """The service's track stage (``up``: producer, worker, track stage) on the photo's URL: its
    people as analyze finds them in the file, a still image's run."""
    from moodstream.up import up

    monkeypatch.delenv("MOODSTREAM_REDIS_URL", raising=False)  # up: an embedded server
    ran = CliRunner().invoke(up, [url(site, "/photo?id=3"), "--device", "cpu", "--format", "jsonl", "--no-dashboard",
                                  "--summary", str(tmp_path / "s.json")])
    assert ran.exit_code == 0, ran.output
    rows = [line for line in ran.stderr.splitlines() if " #" in line]
    assert len(rows) == 5 and all("still image" in row for row in rows), ran.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [(v["source"], v["page"], v["frames"], v["people"]) for v in summary["videos"]] == \
        [(url(site, "/photo?id=3"), 1, 1, 5)]
