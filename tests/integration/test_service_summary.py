"""The service's per-person answer equals ``analyze``'s (issue 24): a real redis-server, a real
``moodstream worker`` process, the real ``moodstream track`` process and ``moodstream produce``
of the fixture clip, twice (a second run of a file is a new run, never duplicates); each run's
summary, read back with ``moodstream tracks --json``, must hold the tracks ``analyze --summary``
writes for the same file, key for key, with a face picture for every track on both sides.
``moodstream up --summary`` must write the same file as analyze."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.streamkit import wait_for

REPO = Path(__file__).resolve().parents[2]
CONTRACT = ("source", "track_id", "first_timestamp_s", "last_timestamp_s", "frames", "person", "box",
            "mean_probabilities", "episodes", "thumbnail")


def spawn(*args: str, url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MOODSTREAM_REDIS_URL=url, MOODSTREAM_PREFIX="t",
               MOODSTREAM_DEVICE="cpu")
    return subprocess.Popen([sys.executable, "-m", "moodstream", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def analyze_summary(clip: str, folder: Path) -> dict:
    from moodstream.worker.analyze import analyze_cmd

    ran = CliRunner().invoke(analyze_cmd, ["--device", "cpu", clip, "--summary", str(folder / "s.json")])
    assert ran.exit_code == 0, ran.output
    return json.loads((folder / "s.json").read_text())


def assert_same_tracks(got: list[dict], got_dir: Path, want: list[dict], want_dir: Path) -> None:
    assert len(got) == len(want) > 0, (got, want)
    for g, w in zip(got, want):
        assert set(CONTRACT) <= set(g) and set(CONTRACT) <= set(w)
        for key in ("source", "track_id", "frames", "person"):
            assert g[key] == w[key], (key, g[key], w[key])
        for key in ("first_timestamp_s", "last_timestamp_s"):
            assert g[key] == pytest.approx(w[key], abs=1e-3)
        assert g["box"] == pytest.approx(w["box"], abs=0.2)
        assert g["mean_probabilities"] == pytest.approx(w["mean_probabilities"], abs=2e-3)
        assert [e["emotion"] for e in g["episodes"]] == [e["emotion"] for e in w["episodes"]]
        for ge, we in zip(g["episodes"], w["episodes"]):
            assert [ge[k] for k in ("start_s", "end_s", "peak_s")] == pytest.approx(
                [we[k] for k in ("start_s", "end_s", "peak_s")], abs=1e-3)
            assert ge["peak"] == pytest.approx(we["peak"], abs=2e-3)
        assert w["thumbnail"] and (want_dir / w["thumbnail"]).is_file()
        assert g["thumbnail"] and (got_dir / g["thumbnail"]).is_file(), g


@pytest.mark.slow
def test_the_service_summary_equals_analyze_on_the_same_file(redis_url, client, keys, fixtures_dir, tmp_path):
    from moodstream.producer.cli import produce
    from moodstream.worker.tracking.reader import tracks

    clip = str(fixtures_dir / "clip_360p.mp4")
    want = analyze_summary(clip, tmp_path / "analyze")
    worker = spawn("worker", "--consumer", "w1", url=redis_url)
    stage = spawn("track", "--source-idle-s", "3", "--reorder-wait-ms", "1000", url=redis_url)
    env = {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    try:
        for _ in range(2):  # the same file twice, the second right after the first: two runs
            sent = CliRunner().invoke(produce, [clip], env=env)
            assert sent.exit_code == 0, sent.output
        wait_for(lambda: client.exists(keys.summaries) and client.xlen(keys.summaries) >= 2, 300,
                 poll_s=0.5, what="two run summaries")
        assert worker.poll() is None and stage.poll() is None
    finally:
        for proc in (stage, worker):
            proc.terminate()
        err = {name: proc.communicate(timeout=60)[1] for name, proc in (("track", stage), ("worker", worker))}
    assert "Traceback" not in err["track"], err["track"][-3000:]

    pictures = tmp_path / "service"
    out = CliRunner().invoke(tracks, ["--from-start", "--json", "--pictures", str(pictures)], env=env)
    assert out.exit_code == 0, out.output
    summaries = [json.loads(line) for line in out.stdout.splitlines()]
    assert [s["run"] for s in summaries] == [1, 2]
    for s in summaries:
        assert s["source"] == clip and s["frames"] == 12
        assert_same_tracks(s["tracks"], pictures, want["tracks"], tmp_path / "analyze")
    table = CliRunner().invoke(tracks, ["--from-start"], env=env)
    assert table.exit_code == 0 and table.stdout.count("clip_360p.mp4 (run") == 2, table.output


@pytest.mark.slow
def test_up_summary_equals_analyze(tmp_path, monkeypatch):
    from moodstream.up import up

    clip = str(REPO / "samples" / "hamilton_clip.mp4")  # 2 s: one person with episodes, one track that is not
    want = analyze_summary(clip, tmp_path / "analyze")
    assert [t["person"] for t in want["tracks"]].count(True) == 1 and any(t["episodes"] for t in want["tracks"])
    monkeypatch.delenv("MOODSTREAM_REDIS_URL", raising=False)  # an embedded server
    ran = CliRunner().invoke(up, [clip, "--device", "cpu", "--format", "jsonl", "--summary",
                                  str(tmp_path / "up" / "s.json")])
    assert ran.exit_code == 0, ran.output
    assert len(ran.stdout.splitlines()) == 60  # every frame answered, then it exited
    got = json.loads((tmp_path / "up" / "s.json").read_text())
    assert_same_tracks(got["tracks"], tmp_path / "up", want["tracks"], tmp_path / "analyze")
    assert "TRACK" in ran.stderr  # the people table


@pytest.fixture
def no_settings(monkeypatch):
    """No MOODSTREAM_* from the caller's environment: `up` starts its own redis-server."""
    for name in list(os.environ):
        if name.startswith("MOODSTREAM_"):
            monkeypatch.delenv(name)


def test_up_summary_lists_runs_in_analyze_s_order(no_settings, fixtures_dir, tmp_path):
    """A video, then a photo: analyze lists the video's run first (the order of the inputs); `up` listed
    the photo's first, in the order its stage ended the runs (a photo's at once, the video's when the
    stage stopped), so its tracks, videos and people table were in another order than analyze's."""
    from moodstream.up import up
    from moodstream.worker.analyze import analyze_cmd

    inputs = [str(fixtures_dir / "clip_360p.mp4"), str(fixtures_dir / "images" / "wider_1_Handshaking_Handshaking_1_158.jpg")]
    written = {}
    for name, command, extra in (("analyze", analyze_cmd, []), ("up", up, ["--no-dashboard"])):
        ran = CliRunner().invoke(command, [*inputs, "--device", "cpu", "--format", "jsonl", *extra,
                                           "--summary", str(tmp_path / name / "s.json")])
        assert ran.exit_code == 0, ran.output
        written[name] = json.loads((tmp_path / name / "s.json").read_text())
    assert [v["source"] for v in written["analyze"]["videos"]] == inputs
    assert [v["source"] for v in written["up"]["videos"]] == inputs
    # each run's figures, key for key: analyze has no late frames, and up had none here
    assert [sorted(v) for v in written["up"]["videos"]] == [sorted(v) for v in written["analyze"]["videos"]]
    late = {name: [v["late_frames"] for v in w["videos"]] for name, w in written.items()}
    assert late == {"analyze": [0, 0], "up": [0, 0]}
    assert [(t["source"], t["track_id"], t["thumbnail"]) for t in written["up"]["tracks"]] == \
        [(t["source"], t["track_id"], t["thumbnail"]) for t in written["analyze"]["tracks"]]


def test_up_summary_says_faces_were_detected_on_every_frame(no_settings, fixtures_dir, tmp_path, monkeypatch):
    """MOODSTREAM_DETECT_EVERY=3 (set for analyze) reaches `up`, whose worker detects faces on every frame
    (detect-every-N stays in-process): its summary said "detect_every": 3 all the same."""
    from moodstream.up import up

    monkeypatch.setenv("MOODSTREAM_DETECT_EVERY", "3")
    ran = CliRunner().invoke(up, [str(fixtures_dir / "clip_360p.mp4"), "--max-frames", "4", "--device", "cpu",
                                  "--no-dashboard", "--format", "jsonl", "--summary", str(tmp_path / "s.json")])
    assert ran.exit_code == 0, ran.output
    assert json.loads((tmp_path / "s.json").read_text())["detect_every"] == 1
    assert "detect_every 3 is analyze's alone" in ran.stderr, ran.stderr
