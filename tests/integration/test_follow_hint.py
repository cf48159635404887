"""`moodstream results` and `moodstream tracks` follow their streams by default (from now), as `tail -f`
does: a newcomer who typed either at a terminal, as the README says, saw nothing at all until a result or a
run's summary came, with no sign that the command was waiting rather than stuck. At a terminal each now says
once, on stderr, what it follows and how to stop it; in a pipe or a log (stderr not a terminal) it says
nothing, as before."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from moodstream.shared.keys import Keys
from moodstream.shared.record import FrameResult
from moodstream.shared.wire import FIELD, encode_result
from tests.support.streamkit import add_picture_summary


def _follow(command: list[str], redis_url: str, client, *, terminal: bool, wait_for: str):
    """Runs ``moodstream COMMAND`` with stderr on a pseudo-terminal (or a pipe) until ``wait_for`` is in what
    it printed (stdout and stderr: a pipe's command is caught up once it prints the entry added every
    0.5 s meanwhile), then stops it; returns (stderr's words, whether it was still running)."""
    env = dict(os.environ, MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    if terminal:
        primary, secondary = pty.openpty()
        err_to, reader = secondary, primary
    else:
        reader, err_to = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", *command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=err_to, env=env)
    os.close(err_to)
    os.set_blocking(proc.stdout.fileno(), False)
    said, out = b"", b""
    try:
        deadline, added = time.monotonic() + 60, 0.0
        while time.monotonic() < deadline and wait_for not in (said + out).decode(errors="replace"):
            if not terminal and time.monotonic() - added > 0.5:
                _add_entry(client, command[0])
                added = time.monotonic()
            ready, _, _ = select.select([reader, proc.stdout], [], [], 0.2)
            if reader in ready:
                try:
                    chunk = os.read(reader, 4096)
                except OSError:  # the terminal's other side closed: the command ended
                    chunk = b""
                said += chunk
                if not chunk:
                    break
            if proc.stdout in ready:
                out += proc.stdout.read() or b""
            if proc.poll() is not None:
                break
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        os.close(reader)
    return said.decode(errors="replace"), alive


def _add_entry(client, command: str) -> None:
    keys = Keys("t")
    if command == "results":
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id="j1", source="cam", frame=0,
                                                                      worker="w"))})
    else:
        add_picture_summary(client, keys, "cam", b"")


@pytest.mark.parametrize("command, stream, words", [
    (["results"], "results", "each result as it comes"),
    (["results", "--from-start", "--follow"], "results", "each result as it comes"),
    (["tracks"], "summaries", "a run's summary comes when the run ends"),
])
def test_a_following_command_at_a_terminal_says_it_waits(redis_url, client, command, stream, words):
    said, alive = _follow(command, redis_url, client, terminal=True, wait_for="Ctrl-C stops")
    assert alive, f"`moodstream {' '.join(command)}` ended: {said!r}"
    name = getattr(Keys("t"), stream)
    assert f"following {name}" in said and words in said and "Ctrl-C stops" in said, said
    assert said.count("following") == 1 and "Traceback" not in said


@pytest.mark.parametrize("command", [["results"], ["tracks"]])
def test_in_a_pipe_it_says_nothing(redis_url, client, command):
    said, alive = _follow(command, redis_url, client, terminal=False, wait_for="cam")  # the entry printed
    assert alive and said == "", said


def test_reading_to_the_end_says_no_wait(redis_url, client):
    """Without --follow, `results --from-start` stops at the end of the stream: nothing to say of a wait."""
    said, _ = _follow(["results", "--from-start"], redis_url, client, terminal=True, wait_for="no results")
    assert "following" not in said and "no results in t:results" in said, said
