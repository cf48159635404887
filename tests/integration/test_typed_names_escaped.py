"""Error and notice lines that name what the user typed (a path, a Redis URL) print it escaped: a name
holding a newline forged a second line (an "Error:" that was not one, a line a script reads as
output), and on a terminal ESC [2J cleared the screen. The CLI's tests run with color on: click
strips escape sequences from a pipe, not from a terminal."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from tests.support.procs import REPO, spawn_cli, stop, wait_until

from moodstream.cli import cli
from moodstream.shared.embedded import EmbeddedRedis

EVIL = "a\n\x1b[2Jforged"
ESCAPED = "a\\n\\x1b[2Jforged"
STREET = str(REPO / "samples" / "street.jpg")
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"  # 12 frames


@pytest.fixture
def evil_dir():
    """A folder named EVIL, in a short path (a unix socket's path is at most 107 bytes)."""
    top = Path(tempfile.mkdtemp(prefix="ms-evil-"))
    folder = top / EVIL
    folder.mkdir()
    yield folder
    shutil.rmtree(top)


def _said_escaped(text: str) -> None:
    """The typed name is in ``text`` escaped, and nothing of it is raw: no ESC, no forged line."""
    assert ESCAPED in text, text
    assert "\x1b" not in text and not any(line.startswith("[2J") or line.startswith("forged")
                                          for line in text.splitlines()), text


@pytest.mark.parametrize("what", ["missing", "not a checkpoint"])
def test_a_checkpoint_named_with_a_newline_is_one_error_line(evil_dir, what):
    path = evil_dir / "emotion.pt"
    if what == "not a checkpoint":
        path.write_text("hello")
    res = CliRunner().invoke(cli, ["analyze", STREET, "--checkpoint", str(path)], color=True,
                             env={"MOODSTREAM_DEVICE": "cpu"})
    assert res.exit_code == 1, res.output
    (error,) = [line for line in res.stderr.splitlines() if line.strip()]
    assert error.startswith("Error: ") and ("not found" in error or "not a moodstream emotion checkpoint" in error)
    _said_escaped(res.stderr)


def test_a_redis_url_named_with_a_newline_is_one_error_line(evil_dir):
    """`status --redis-url unix://...`: the URL, and redis-py's words that repeat the socket's path."""
    url = "unix://" + quote(str(evil_dir / "redis.sock"))  # percent-encoded as a URL holds it; redis-py decodes it
    res = CliRunner().invoke(cli, ["status", "--redis-url", url], color=True, env={"MOODSTREAM_REDIS_WAIT_S": "0"})
    assert res.exit_code == 1, res.output
    (error,) = [line for line in res.stderr.splitlines() if line.strip()]
    assert error.startswith("Error: cannot reach Redis at unix://"), error
    _said_escaped(res.stderr)


def test_status_watch_says_a_lost_redis_in_one_line(evil_dir):
    """--watch's "cannot reach Redis" line, drawn while Redis is gone, names the socket's path (its newline made
    a space already: the ESC went through; on this pipe click strips it, so the escaped form is what is looked for)."""
    real = evil_dir.parent / "real"
    real.mkdir()
    (evil_dir / "link").symlink_to(real)  # redis-server takes a plain path; the client goes through EVIL
    server = EmbeddedRedis(extra_args=["--unixsocket", str(real / "r.sock"), "--unixsocketperm", "700"]).start()
    url = "unix://" + quote(str(evil_dir / "link" / "r.sock"))
    proc = spawn_cli("status", "--watch", "0.3", MOODSTREAM_REDIS_URL=url, MOODSTREAM_PREFIX="t")
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    try:
        wait_until(lambda: any(line.startswith("backlog:") for line in lines), 30, "a first screen")
        server.kill()
        wait_until(lambda: any(line.startswith("cannot reach Redis") for line in lines), 30,
                   "the line saying Redis is gone")
    finally:
        _, err = stop(proc)
        server.stop()
    down = next(line for line in lines if line.startswith("cannot reach Redis"))
    assert "a \\x1b[2Jforged/link/r.sock" in down, down
    assert "Traceback" not in err, err[-2000:]


def _read_lines(proc, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))


def test_analyze_names_its_summary_in_one_line(evil_dir):
    """The closing line says where the summary went: the path as typed, escaped."""
    res = CliRunner().invoke(cli, ["analyze", STREET, "--summary", str(evil_dir / "people.json")], color=True,
                             env={"MOODSTREAM_DEVICE": "cpu"})
    assert res.exit_code == 0, res.output
    closing = res.stderr.splitlines()[-1]
    assert closing.startswith("analyze: 1 frame") and ESCAPED in closing, res.stderr[-2000:]
    _said_escaped(closing)
    assert "\x1b" not in res.stderr and os.path.isfile(evil_dir / "people.json")


def test_a_log_line_naming_a_typed_folder_is_one_line(evil_dir):
    """`-v`'s log lines went to stderr as logging formatted them: a folder named with a newline and
    ESC [2J (its notes left out, said at INFO) forged a line and cleared the screen, as an error did."""
    shutil.copy(STREET, evil_dir / "street.jpg")
    (evil_dir / "notes.txt").write_text("not a picture")
    proc = spawn_cli("-v", "analyze", str(evil_dir), MOODSTREAM_DEVICE="cpu")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    (said,) = [line for line in err.splitlines() if "left out" in line]
    assert "1 file left out" in said, said
    _said_escaped(said)
    assert "\x1b" not in err and not any(line.startswith("[2J") or line.startswith("forged")
                                         for line in err.splitlines()), err[-2000:]


# --- notices: a command's own lines on stderr (and the tables benches print) naming what was typed or found

def _no_raw(text: str) -> None:
    """Nothing of EVIL raw in ``text``: no ESC, no line it forged."""
    assert "\x1b" not in text and not any(line.startswith("[2J") or line.startswith("forged")
                                          for line in text.splitlines()), text


def _stream_measured(*args, **kwargs) -> dict:  # bench stream's phases, not run: its last lines are tested
    return {"throughput": None, "closed_loop": None, "worker_peak_rss_mib": None}


def _scaling_step(server_url, n, threads, *args) -> dict:  # bench scaling's step, not run
    return {"workers": n, "threads_per_worker": threads, "offered_fps": 5.0, "sent": 10, "served": 10,
            "throughput_fps": 5.0, "saturated": False, "lag_at_stop": 0, "max_lag": 0, "max_backlog": 2,
            "drained": True, "time_to_drain_s": 0.5, "producer_stop_s": 1.0,
            "series": [{"t_s": 0.0, "backlog": 0}, {"t_s": 1.5, "backlog": 2}]}


@pytest.mark.parametrize("bench", ["stream", "scaling"])
def test_bench_stream_and_scaling_say_where_they_wrote_in_one_line(evil_dir, monkeypatch, bench):
    """Their last line, "wrote OUT and OUT.md", named --out as typed, raw: a newline forged a line and
    ESC [2J cleared the screen; the table they print said the command, with that path, raw too. The
    measurement is stubbed: the lines after it are what is looked at."""
    import moodstream.trainer.bench.scaling as scaling
    import moodstream.trainer.bench.stream as stream

    out = evil_dir / "r.json"
    if bench == "stream":
        monkeypatch.setattr(stream, "_measure", _stream_measured)
        args = ["bench", "stream", "--video", str(CLIP), "--frames", "2", "--warmup", "0", "--backend", "onnx",
                "--out", str(out)]
    else:
        monkeypatch.setattr(scaling, "run_step", _scaling_step)
        args = ["bench", "scaling", "--workers", "1", "--threads", "split", "--video", str(CLIP), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["moodstream", *args])  # the report's command, as typed
    res = CliRunner().invoke(cli, args, color=True)
    assert res.exit_code == 0, (res.output, res.exception)
    wrote = res.stderr.splitlines()[-1]
    assert wrote.startswith("wrote ") and wrote.endswith(".md"), res.stderr
    _said_escaped(wrote)
    _no_raw(res.stderr)
    (command,) = [line for line in res.stdout.splitlines() if line.startswith("Command: ")]
    _said_escaped(command)
    _no_raw(res.stdout)
    assert out.is_file() and out.with_suffix(".md").is_file()


@pytest.mark.slow
def test_bench_video_says_a_skipped_video_and_the_notes_in_one_line_each(tmp_path):
    """`bench video` said a video it skipped ("skipped NAME: why") with the file's name raw, on stderr
    and in the table it prints; a --note was printed raw in the table too."""
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(CLIP, videos / "clip.mp4")
    (videos / f"{EVIL}.mp4").write_bytes(b"not a video")
    res = CliRunner().invoke(cli, ["bench", "video", "--videos", str(videos), "--frames", "2", "--detect-every",
                                   "1,2", "--device", "cpu", "--note", f"load {EVIL}"], color=True)
    assert res.exit_code == 0, (res.output, res.exception)
    (skipped,) = [line for line in res.stderr.splitlines() if "skipped" in line]
    assert skipped.startswith("bench video: skipped a\\n"), skipped
    _said_escaped(skipped)
    _no_raw(res.stderr)
    table = res.stdout
    assert f"- skipped {ESCAPED}.mp4: " in table and f"- load {ESCAPED}" in table, table
    _no_raw(table)


def test_bench_shots_names_its_work_folder_in_one_line(evil_dir, tmp_path):
    """"bench shots: writing the edits to WORK": --work as typed, raw. (Two files that are no videos:
    the bench ends, in one error line, right after saying it.)"""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("hamilton_360p.mp4", "street_1080p.mp4"):
        (videos / name).write_bytes(b"not a video")
    res = CliRunner().invoke(cli, ["bench", "shots", "--videos", str(videos), "--work", str(evil_dir / "work"),
                                   "--no-tracks", "--repeat", "0"], color=True)
    assert res.exit_code == 1 and "Traceback" not in res.output, (res.output, res.exception)
    said = res.stderr.splitlines()[0]
    assert said.startswith("bench shots: writing the edits to "), res.stderr
    _said_escaped(said)
    _no_raw(res.stderr)


def test_up_says_why_its_track_stage_stopped_in_one_line(capsys):
    """`up` said "up: WHY; the results it did not publish are printed untracked", WHY the track stage's
    exception (a Redis reply, a source's name) raw."""
    from moodstream.up import _Rows

    _Rows(None, None)._raw(f"the track stage stopped: {EVIL}")
    err = capsys.readouterr().err
    assert err.startswith("up: the track stage stopped: ") and err.count("\n") == 1, err
    _said_escaped(err)
