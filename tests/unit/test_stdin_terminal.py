"""`-` reads one image or video from stdin. Typed at a terminal (`moodstream analyze -`, nothing piped
in), every command that takes it waited silently for bytes from the keyboard, after loading its models;
`analyze - -` read the one stdin twice, the second time "empty: zero bytes". Both are usage errors now,
said before anything loads or connects (exit 2)."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.media import stdin_refusal


class _Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_refusal_names_the_terminal_and_the_repeat(monkeypatch):
    assert stdin_refusal(["a.jpg", "folder"], stdin=_Terminal()) is None  # no "-": stdin is not read
    assert stdin_refusal(["-"], stdin=io.BytesIO(b"x")) is None  # a pipe or a file
    said = stdin_refusal(["-"], stdin=_Terminal(), command="analyze")
    assert "terminal" in said and "cat photo.jpg | moodstream analyze -" in said
    said = stdin_refusal(["-", "a.jpg", "-"], stdin=io.BytesIO(b"x"))
    assert "named 2 times" in said
    monkeypatch.setattr(sys, "stdin", None)  # `<&-`: no stdin at all
    assert "closed" in stdin_refusal(["-"])


@pytest.mark.parametrize("command", ["analyze", "produce", "up"])
def test_a_command_reading_stdin_from_a_terminal_stops_at_once(command):
    """A real pseudo-terminal on stdin: before, each of these waited for ever (produce after connecting
    to Redis, analyze and up after loading the models)."""
    primary, secondary = pty.openpty()
    env = dict(os.environ, MOODSTREAM_REDIS_URL="redis://127.0.0.1:1/0")  # never reached: said before
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", command, "-"], stdin=secondary,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"`moodstream {command} -` still waited on the terminal after 60 s")
    finally:
        os.close(primary)
    assert proc.returncode == 2, err.decode()
    text = err.decode()
    assert "stdin is a terminal" in text and "Traceback" not in text
    assert time.monotonic() - began < 60


@pytest.mark.parametrize("command", ["analyze", "produce", "up"])
def test_stdin_named_twice_is_a_usage_error(command):
    result = CliRunner().invoke(cli, [command, "-", "-"], input=b"\xff\xd8\xff")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "named 2 times" in result.output
