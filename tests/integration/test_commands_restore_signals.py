"""A long-running command run in-process (a notebook, a supervisor written in Python, the test
suite) gives back the signal handlers it found: `track` and `dashboard` installed handlers that
only set a stop flag and left them, so Ctrl-C after `track` had returned no longer interrupted
the caller (a Python loop went on; a later test's Ctrl-C did nothing)."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from click.testing import CliRunner

from moodstream.cli import cli as main


@pytest.mark.parametrize("command", [
    ["track", "--no-pictures"],
    pytest.param(["dashboard", "--port", "0"], marks=pytest.mark.skipif(
        __import__("importlib").util.find_spec("uvicorn") is None, reason="needs the 'dashboard' extra")),
])
def test_a_command_stopped_by_ctrl_c_gives_back_the_handlers_it_found(redis_url, command):
    def mine(signum, frame):
        pass

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            result = CliRunner().invoke(main, [*command, "--redis-url", redis_url, "--prefix", "sig"])
        finally:
            timer.cancel()
        assert result.exit_code == 0, result.output
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
