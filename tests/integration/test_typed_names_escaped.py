"""Error and notice lines that name what the user typed (a path, a Redis URL) print it escaped: a name
holding a newline forged a second line (an "Error:" that was not one, a line a script reads as
output), and on a terminal ESC [2J cleared the screen. The CLI's tests run with color on: click
strips escape sequences from a pipe, not from a terminal."""

from __future__ import annotations

import os
import shutil
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
