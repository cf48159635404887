"""`up --format csv / jsonl` printed no row for an input its producer could not read (a video that
cannot be opened, a file it may not read): only "producer: skipped X" on stderr and the exit code,
where `analyze` on the same inputs prints the input's error record (`analyze --format csv`: a row
with its `error` and `error_detail`). A script reading up's stdout lost the input. Now up prints the
same error record, in its place among the rows (after the rows of the frames sent before it), and
still exits 1 naming it."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from tests.support.procs import REPO, clean_env
from tests.support.unprivileged import unprivileged_prefix

STREET = REPO / "samples" / "street.jpg"


@pytest.fixture
def folder(tmp_path):
    """a_good.jpg, b_bad.mp4 (random bytes: a video no reader opens), c_good.jpg."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(STREET, inputs / "a_good.jpg")
    (inputs / "b_bad.mp4").write_bytes(bytes(range(7, 250)) * 3)
    shutil.copy(STREET, inputs / "c_good.jpg")
    return inputs


def records(fmt: str, stdout: str) -> list[dict]:
    """One dict per frame, in the order printed: a CSV's rows joined by frame (a row per face)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in stdout.splitlines()]
    frames: list[dict] = []
    for row in csv.DictReader(io.StringIO(stdout)):
        error = {"reason": row["error"], "detail": row["error_detail"]} if row["error"] else None
        if not frames or frames[-1]["source"] != row["source"]:
            frames.append({"source": row["source"], "error": error})
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_up_prints_the_row_analyze_prints_for_a_video_it_cannot_open(embedded, folder, fmt):
    from moodstream.up import up
    from moodstream.worker.analyze import analyze_cmd

    want = CliRunner().invoke(analyze_cmd, [str(folder), "--device", "cpu", "--format", fmt])
    assert want.exit_code == 1, want.output
    got = CliRunner().invoke(up, [str(folder), "--device", "cpu", "--no-dashboard", "--format", fmt,
                                  "--timeout-s", "300"])
    assert got.exit_code == 1, got.output
    assert "1 input could not be read" in got.stderr and "Traceback" not in got.output
    bad = str(folder / "b_bad.mp4")
    want_bad = [r for r in records(fmt, want.stdout) if r["source"] == bad]
    assert len(want_bad) == 1 and want_bad[0]["error"]["reason"] == "unreadable", want.stdout
    got_frames = records(fmt, got.stdout)
    assert [r["source"] for r in got_frames] == [str(folder / n) for n in ("a_good.jpg", "b_bad.mp4", "c_good.jpg")]
    assert got_frames[1]["error"] == want_bad[0]["error"]  # the same reason and detail as analyze's
    assert all(r.get("error") is None for r in (got_frames[0], got_frames[2]))


def test_up_prints_an_error_record_for_a_file_it_may_not_read(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(STREET, inputs / "a_good.jpg")
    shutil.copy(STREET, inputs / "b_locked.jpg")
    os.chmod(inputs / "b_locked.jpg", 0)
    try:
        ran = subprocess.run([*unprivileged_prefix(), sys.executable, "-c", "from moodstream.cli import main; main()",
                              "up", str(inputs), "--no-dashboard", "--format", "jsonl", "--timeout-s", "300"],
                             cwd=REPO, env=clean_env(MOODSTREAM_DEVICE="cpu"), capture_output=True, text=True,
                             timeout=300)
    finally:
        os.chmod(inputs / "b_locked.jpg", 0o644)
    assert ran.returncode == 1, ran.stderr[-2000:]
    assert "Traceback" not in ran.stderr
    got = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [r["source"] for r in got] == [str(inputs / "a_good.jpg"), str(inputs / "b_locked.jpg")], ran.stdout
    assert got[0]["error"] is None and got[0]["faces"]
    assert got[1]["error"] == {"reason": "unreadable", "detail": "Permission denied"}
    assert got[1]["faces"] == [] and got[1]["job_id"] is None  # never sent: no job
    assert "up: 1 input could not be read" in ran.stderr
