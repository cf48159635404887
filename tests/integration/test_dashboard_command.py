"""`moodstream dashboard` as a user starts it (a subprocess, a real redis-server): a port that is taken
is one line of error, not uvicorn's log line beside ours; the page asks the browser for no favicon
that the server does not have."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="needs the dashboard extra (starlette, uvicorn)")

REPO = Path(__file__).resolve().parents[2]


def test_a_taken_port_is_one_line(redis_url):
    # acceptance run: "ERROR:    [Errno 98] error while attempting to bind on address ..." (uvicorn's
    # log) came before our "Error: the dashboard could not listen on ... (in use?)"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
        done = subprocess.run([sys.executable, "-m", "moodstream", "dashboard", "--port", str(port),
                               "--redis-url", redis_url], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0] and "Traceback" not in done.stderr


def test_the_page_names_its_icon_inline():
    # acceptance run: Chromium's console showed "favicon.ico - 404 (Not Found)" on every open
    page = (REPO / "producer" / "dashboard" / "static" / "index.html").read_text()
    assert 'rel="icon" href="data:,"' in page
