"""Standard output closing under a command that also writes files: `analyze clip.mp4 --summary s.json | head -1`
(a peek at the records while the summary is the point), or stdout on a full disk.

analyze stopped at the first record it could not print and wrote a summary of that one frame of 60, marked
neither interrupted nor short, exit 0; `up ... --summary s.json | head -1` wrote no summary at all (exit 1,
nothing said). Now the records go to /dev/null from there, one line on stderr says so, and the files are written
for every frame. Without a file to write, a closed pipe still stops the command at once, quietly (`| head`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from tests.support.streamkit import add_picture_summary

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"  # 60 frames
MOODSTREAM = f'"{sys.executable}" -m moodstream'


def _piped(command: str, tmp_path: Path, timeout: float = 300,
           reader: str = "head -1") -> subprocess.CompletedProcess:
    """``command | head -1``, the command's own exit status kept (PIPESTATUS). ``reader`` "true": a pipe closed
    before the command's first line (it starts in under a second), for a command that prints only a few."""
    script = f'{command} 2>"{tmp_path}/err" | {reader} > "{tmp_path}/out"; exit ${{PIPESTATUS[0]}}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout)


def test_analyze_writes_its_files_whole_when_stdout_closes(tmp_path):
    summary, annotated = tmp_path / "s.json", tmp_path / "ann"
    proc = _piped(f'{MOODSTREAM} analyze "{CLIP}" --summary "{summary}" --annotate "{annotated}"', tmp_path)
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 0, err
    assert len((tmp_path / "out").read_text().splitlines()) == 1
    written = json.loads(summary.read_text())
    assert [v["frames"] for v in written["videos"]] == [60] and written["interrupted"] is False
    assert int(cv2.VideoCapture(str(annotated / "hamilton_clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    assert "standard output closed" in err and "analyze: 60 frames" in err, err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_analyze_without_files_still_stops_at_once(tmp_path):
    proc = _piped(f'{MOODSTREAM} analyze "{CLIP}" --batch-max 1', tmp_path)
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 0, err
    assert "analyze: 60 frames" not in err and "standard output closed" not in err, err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_analyze_on_a_full_disk_stdout_writes_its_summary_whole_and_says_so(tmp_path):
    summary = tmp_path / "s.json"
    proc = subprocess.run(["bash", "-c", f'{MOODSTREAM} analyze "{CLIP}" --summary "{summary}" > /dev/full'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert [v["frames"] for v in json.loads(summary.read_text())["videos"]] == [60]
    assert "cannot write to standard output" in proc.stderr and "Traceback" not in proc.stderr


def test_up_writes_its_summary_whole_when_stdout_closes(tmp_path):
    summary = tmp_path / "s.json"
    proc = _piped(f'{MOODSTREAM} up "{CLIP}" --summary "{summary}" --no-dashboard', tmp_path)
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 0, err
    written = json.loads(summary.read_text())
    assert [v["frames"] for v in written["videos"]] == [60] and written["interrupted"] is False, err
    assert "standard output closed" in err and "Traceback" not in err, err


def test_tracks_writes_every_run_s_pictures_when_stdout_closes(tmp_path, redis_url, client, keys):
    """`tracks --from-start --pictures DIR | head -1`: the pictures of the runs after the pipe closed were never
    written (click ended the command at the closed pipe, exit 1, nothing said). Here the pipe is closed before
    the first line, so that none is printed and every picture is at stake."""
    for i in range(3):
        add_picture_summary(client, keys, f"/data/cam{i}/video.mp4", b"\xff\xd8 picture %d" % i)
    pictures = tmp_path / "pics"
    proc = _piped(f'{MOODSTREAM} tracks --from-start --json --pictures "{pictures}" --redis-url {redis_url} '
                  f'--prefix {keys.prefix}', tmp_path, reader="true")
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 0, err
    assert sorted(p.read_bytes() for p in pictures.iterdir()) == [b"\xff\xd8 picture %d" % i for i in range(3)]
    assert "standard output closed" in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["results --from-start", "status", "status --json", "tracks --from-start --json",
                                     "--version"])
def test_a_full_disk_under_stdout_is_one_line_not_a_traceback(redis_url, client, keys, command):
    """`moodstream results --from-start > /dev/full` (stdout on a full disk, a quota) ended in an OSError
    traceback (ENOSPC) from click.echo; so did `status`, `--version` and `--help`. Now one line, exit 1, as
    analyze says it."""
    from moodstream.shared.record import FrameResult
    from moodstream.shared.wire import FIELD, encode_result

    client.xadd(keys.results, {FIELD: encode_result(FrameResult(source="s", frame=0, job_id="j0"))})
    add_picture_summary(client, keys, "cam.mp4", b"\xff\xd8 picture")
    flags = "" if command == "--version" else f" --redis-url {redis_url} --prefix {keys.prefix}"
    proc = subprocess.run(["bash", "-c", f"{MOODSTREAM} {command}{flags} > /dev/full"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Error: cannot write to standard output: No space left on device" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_produce_sends_every_frame_when_stdout_closes(tmp_path, redis_url, client, keys):
    """`produce clip.mp4 | head -1` (the first job's id is all a script wanted): click ended the command at the
    closed pipe, exit 1, nothing said, with 1 of the 60 frames sent. The frames are the point: all are sent."""
    proc = _piped(f'{MOODSTREAM} produce "{CLIP}" --redis-url {redis_url} --prefix {keys.prefix}', tmp_path,
                  reader="true")
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 0, err
    assert client.llen(keys.intake) == 60, err
    assert "standard output closed" in err and "produced 60 jobs" in err and "Traceback" not in err, err


@pytest.mark.parametrize("fmt", ["csv", "table", "jsonl"])
def test_analyze_whose_pipe_closed_before_its_first_line_writes_its_summary_whole(tmp_path, fmt):
    """The pipe closed before anything was printed (`| true`): a CSV's or a table's header is the first line,
    printed before the first record, and its failure stopped analyze with a summary of no frame."""
    summary = tmp_path / "s.json"
    proc = _piped(f'{MOODSTREAM} analyze "{CLIP}" --format {fmt} --summary "{summary}"', tmp_path, reader="true")
    err = (tmp_path / "err").read_text()
    assert proc.returncode == 0, err
    assert [v["frames"] for v in json.loads(summary.read_text())["videos"]] == [60], err
    assert "standard output closed" in err and "Traceback" not in err, err
