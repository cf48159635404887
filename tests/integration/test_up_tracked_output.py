"""`moodstream up` printed the worker's raw results (its reply stream): per-frame emotions, no track
ids ("happiness 87%"), while `analyze --format table` shows each face as `#0 happiness 87%` and says
what that means on stderr. The track stage `up` starts publishes the tracked results beside the reply
stream; those are the rows `up` prints, in the stage's order, each once, and the worker's raw ones
only where the stage could not publish them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.shared.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CLIP = str(REPO / "samples" / "hamilton_clip.mp4")
FRAMES = 6


def run_up(fmt: str):
    from moodstream.up import up

    return CliRunner().invoke(up, [CLIP, "--max-frames", str(FRAMES), "--device", "cpu", "--no-dashboard",
                                   "--format", fmt, "--timeout-s", "300"])


def test_up_jsonl_prints_each_frame_once_tracked(embedded):
    ran = run_up("jsonl")
    assert ran.exit_code == 0, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["frame"] for r in results] == list(range(FRAMES))  # the stage's order (frame order), each once
    assert len({r["job_id"] for r in results}) == FRAMES
    faces = [f for r in results for f in r["faces"]]
    assert faces and all(f.get("track_id") is not None and f.get("smoothed") for f in faces), results[0]
    assert f"up: {FRAMES} results for {FRAMES} frames" in ran.stderr
    assert "EMOTIONS:" not in ran.stderr  # the legend explains a table
    assert "untracked" not in ran.stderr  # the stage published every one (nothing fell back)


def test_up_table_shows_track_ids_and_the_legend_after_it(embedded):
    ran = run_up("table")
    assert ran.exit_code == 0, ran.output
    lines = ran.stdout.splitlines()
    assert "emotions" in lines[0] and len(lines) == FRAMES + 1, ran.stdout
    assert any("#0 " in row for row in lines[1:]), ran.stdout
    legend = [line for line in ran.stderr.splitlines() if line.startswith("EMOTIONS:")]
    assert len(legend) == 1 and "#N" in legend[0] and "smoothed" in legend[0], ran.stderr
    shown = ran.output.splitlines()  # stdout and stderr as the terminal shows them
    assert shown.index(legend[0]) > shown.index(lines[-1])


def test_a_track_stage_that_dies_loses_no_row(embedded, monkeypatch):
    """Its failure is one line; what it had not published is printed raw (untracked), each frame once."""
    from moodstream.worker.tracking.stage import TrackStage

    publish = TrackStage._publish

    def refused(self, out):
        if any(r.frame >= 3 for _, r in out):  # as _put_back raises on a key of another type
            raise ConfigError(f"{self.actor}: cannot add to 'x:tracked': not a stream")
        publish(self, out)

    monkeypatch.setattr(TrackStage, "_publish", refused)
    ran = run_up("jsonl")
    assert ran.exit_code == 0, ran.output
    assert "Traceback" not in ran.output, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert sorted(r["frame"] for r in results) == list(range(FRAMES)), ran.stdout
    assert len({r["job_id"] for r in results}) == FRAMES
    assert all(f.get("track_id") is None for r in results if r["frame"] >= 3 for f in r["faces"])
    said = [line for line in ran.stderr.splitlines() if "not a stream" in line]
    assert len(said) == 1 and "untracked" in said[0], ran.stderr


def test_second_answers_do_not_end_up_before_every_frame_is_answered(embedded, monkeypatch):
    """A worker's second answer to a job (a reclaimed frame served twice) was counted as one more
    frame answered: with the first three frames answered twice, `up` said "6 results for 6 frames",
    stopped, and frames 3-5 were never printed. Completion counts jobs answered, each once."""
    from moodstream.worker.service import Worker

    publish = Worker.publish

    def twice(self, outcomes):
        publish(self, outcomes)
        if any(o.result is not None and o.result.frame < 3 for o in outcomes):
            publish(self, outcomes)  # as a frame taken back from a stalled consumer and served again

    monkeypatch.setattr(Worker, "publish", twice)
    from moodstream.up import up

    ran = CliRunner().invoke(up, [CLIP, "--max-frames", str(FRAMES), "--device", "cpu", "--no-dashboard",
                                  "--format", "jsonl", "--batch-max", "1", "--timeout-s", "300"])
    assert ran.exit_code == 0, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["frame"] for r in results] == list(range(FRAMES)), ran.stdout
    assert f"up: {FRAMES} results for {FRAMES} frames" in ran.stderr, ran.stderr
    assert "untracked" not in ran.stderr, ran.stderr


def test_a_tracked_stream_turned_into_another_type_loses_no_row(embedded, monkeypatch):
    """What stops the stage for real (`_put_back`: its tracked stream is a key of another type) also
    stopped `up`: reading that stream raised, `up` ended on it and none of the frames it had not
    printed yet was printed, raw or tracked. Now that is the one line and they are printed untracked."""
    from moodstream.worker.tracking.stage import TrackStage

    publish = TrackStage._publish

    def overwritten(self, out):
        if any(r.frame >= 3 for _, r in out):  # the key replaced under it (another program, a hand)
            self.client.delete(self.tracked_key)
            self.client.set(self.tracked_key, "not a stream")
        publish(self, out)

    monkeypatch.setattr(TrackStage, "_publish", overwritten)
    ran = run_up("jsonl")
    assert ran.exit_code == 0, (ran.output, ran.exception)
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert sorted(r["frame"] for r in results) == list(range(FRAMES)), ran.stdout
    assert len({r["job_id"] for r in results}) == FRAMES
    said = [line for line in ran.stderr.splitlines() if "untracked" in line]
    assert len(said) == 1 and "not a stream" in said[0], ran.stderr


def test_a_signal_as_up_says_every_frame_is_answered_costs_no_row(embedded, monkeypatch):
    """Signals were held (a second one does not cut the rows short) only after the line saying every
    frame was answered: a Ctrl-C or SIGTERM arriving with that line raised out of `up`, which stopped
    its Redis, printed 'Aborted!' and exited 1 with the frames the stage still held never printed
    (1 of 12 printed in a run by hand). The signal, sent here with that line, is held as later ones are."""
    import os
    import signal

    import click

    echo = click.echo

    def echo_then_signal(message=None, *args, **kwargs):
        echo(message, *args, **kwargs)
        if isinstance(message, str) and "shutting down" in message:
            os.kill(os.getpid(), signal.SIGINT)  # as a person's Ctrl-C or a supervisor's signal, at that moment

    monkeypatch.setattr(click, "echo", echo_then_signal)
    ran = run_up("jsonl")
    assert ran.exit_code == 0, (ran.output, ran.exception)
    assert [json.loads(line)["frame"] for line in ran.stdout.splitlines()] == list(range(FRAMES)), ran.stdout


def test_up_says_one_of_one_photo_in_the_singular(embedded, tmp_path):
    """A newcomer's `up photo.jpg --summary F` of one face said "1 results for 1 frames" and
    "(1 tracks, 1 people)", where `analyze` says "1 frame, 1 face" and the report and dashboard
    "1 person" (one is one)."""
    from moodstream.up import up

    ran = CliRunner().invoke(up, [str(REPO / "samples" / "audience.jpg"), "--device", "cpu", "--no-dashboard",
                                  "--summary", str(tmp_path / "people.json"), "--timeout-s", "300"])
    assert ran.exit_code == 0, ran.output
    assert "up: 1 result for 1 frame;" in ran.stderr, ran.stderr
    assert f"up: summary in {tmp_path / 'people.json'} (1 track, 1 person)" in ran.stderr, ran.stderr



def test_an_unreadable_input_is_printed_summarised_and_exits_1(embedded, tmp_path):
    """`up` on an input the worker cannot read (a .jpg that is not an image) printed the error row and
    exited 0, where `analyze` on the same file exits 1: a script (`up x.jpg && ...`) took a run with
    failed inputs as a good one. Every row and the summary still come first; the closing line counts
    the errors and the exit code is 1, as `analyze`'s."""
    from moodstream.up import up

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    summary = tmp_path / "s.json"
    ran = CliRunner().invoke(up, [CLIP, str(bad), "--max-frames", "2", "--device", "cpu", "--no-dashboard",
                                  "--format", "jsonl", "--summary", str(summary), "--timeout-s", "300"])
    assert ran.exit_code == 1, ran.output
    assert "Traceback" not in ran.output, ran.output
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert len(results) == 3, ran.stdout  # the clip's two frames and the error, each printed
    errors = [r for r in results if r.get("error")]
    assert len(errors) == 1 and errors[0]["error"]["reason"] == "unreadable", errors
    assert "up: 3 results for 3 frames (1 error)" in ran.stderr, ran.stderr
    assert summary.is_file()  # written before the exit code says the run had an error


@pytest.mark.parametrize("files", [[], ["notes.txt"]])
def test_a_folder_without_images_fails_as_analyze_does(embedded, tmp_path, redis_url, client, keys, files):
    """`up empty/` and `produce empty/` (or a folder of notes) started the service, said "0 results for 0
    frames" / "produced 0 jobs" and exited 0, where `analyze empty/` says "no images or videos in empty/
    (looked for ...)" and exits 1: `up photos/ && next-step` went on with nothing analysed. Now the same
    line and exit 1, before any Redis starts or a job is pushed."""
    from moodstream.cli import cli

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("not media")
    ran = CliRunner().invoke(cli, ["up", str(folder), "--device", "cpu", "--no-dashboard"])
    assert ran.exit_code == 1, ran.output
    assert f"Error: no images or videos in {folder} (looked for " in ran.stderr, ran.stderr
    assert "embedded redis-server" not in ran.stderr and "Traceback" not in ran.output, ran.output
    produced = CliRunner().invoke(cli, ["produce", str(folder), "--redis-url", redis_url, "--prefix", "t"])
    assert produced.exit_code == 1, produced.output
    assert f"Error: no images or videos in {folder} (looked for " in produced.stderr, produced.stderr
    assert not client.exists(keys.intake) and not client.exists(keys.frames)
