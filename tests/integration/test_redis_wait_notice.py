"""A command started against a Redis that refuses connections waits up to 10 s for it (it may be
starting). It was silent all that time (the wait was logged at INFO, which the CLI does not show),
then printed its one-line error: a user thought it hung. Interactive commands now say at once, on
stderr, that they wait and for what; the error line follows as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.procs import spawn_cli, stop

from moodstream.shared.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
CLIP = str(REPO / "samples" / "hamilton_clip.mp4")

# command -> its arguments, how long it waits for Redis (s)
INTERACTIVE = {
    "status": (["status"], 10),
    "status --watch": (["status", "--watch", "1"], 10),
    "produce": (["produce", str(REPO / "samples" / "street.jpg")], 10),
    "results": (["results", "--count", "1", "--timeout-s", "1"], 10),
    "tracks": (["tracks"], 10),
    "dashboard": (["dashboard"], 10),
    "up": (["up", str(REPO / "samples" / "street.jpg"), "--no-dashboard"], 10),  # MOODSTREAM_REDIS_URL names it
    "bench stream": (["bench", "stream", "--video", CLIP, "--no-spawn"], 10),
}


@pytest.mark.parametrize("command", list(INTERACTIVE))
def test_a_command_waiting_for_redis_says_so_before_it_waits(command):
    """The first line about Redis is the wait (naming the URL without its password, and why), before
    any error: read up to it, then the process is stopped (no 10 s wait). The whole run, the wait
    and then the error: test_status.py::test_status_without_redis_is_one_line_and_exit_1."""
    port = free_port()  # nothing listens there
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    args, wait_s = INTERACTIVE[command]
    args = args + (["--redis-url", url] if command != "up" else [])
    proc = spawn_cli(*args, MOODSTREAM_REDIS_URL=url, MOODSTREAM_DEVICE="cpu")
    seen = []
    try:
        for line in proc.stderr:  # up names the Redis it uses first; then the wait
            seen.append(line.rstrip("\n"))
            if line.startswith(("waiting", "Error")):
                break
    finally:
        out, err = stop(proc)
    assert seen and f"waiting up to {wait_s} s for Redis at redis://***@127.0.0.1:{port}/0 (connection refused)" \
        in seen[-1], (seen, err[-2000:])
    assert "s3cret" not in "\n".join(seen) + out + err


def test_a_wrong_password_says_no_wait():
    """What no wait heals is one line at once, as before: no "waiting" line first."""
    from moodstream.shared.embedded import EmbeddedRedis

    with EmbeddedRedis(extra_args=["--requirepass", "right-one"]) as server:
        proc = spawn_cli("status", MOODSTREAM_REDIS_URL=f"redis://:wrong-one@127.0.0.1:{server.port}/0")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and "waiting" not in err, err


@pytest.mark.parametrize("command", [["status"], ["worker", "--device", "cpu"], ["track"],
                                     ["bench", "stream", "--video", CLIP, "--no-spawn"]])
def test_how_long_a_command_waits_for_redis_is_a_setting(command, monkeypatch):
    """The wait was 10 s, whatever the deployment: a pod whose Redis starts later exited and was
    restarted in a loop, a script that wants to fail fast waited 10 s. MOODSTREAM_REDIS_WAIT_S sets it,
    for the service's commands (worker, track) as for the interactive ones."""
    import time

    from click.testing import CliRunner

    from moodstream.cli import cli

    monkeypatch.setenv("MOODSTREAM_REDIS_WAIT_S", "0.5")
    url = f"redis://127.0.0.1:{free_port()}/0"
    began = time.monotonic()
    res = CliRunner().invoke(cli, [*command, "--redis-url", url])
    took = time.monotonic() - began
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert f"Error: cannot reach Redis at {url}: " in res.stderr and took < 5, (took, res.stderr)
    if command[0] in ("status", "bench"):  # bench stream waited 5 s whatever the setting
        assert f"waiting up to 0.5 s for Redis at {url}" in res.stderr


def test_a_command_waits_the_whole_wait_for_redis():
    """A wait of 2 s gave up after 1.2-1.5 s: the last retry's backoff would have ended past the
    deadline, so none was made, and a Redis up at 1.8 s was never asked. The last try is now at the
    deadline (the wait's sleep cut to it)."""
    import time

    from moodstream.shared.errors import ConfigError
    from moodstream.shared.transport import check_connection, connect

    url = f"redis://127.0.0.1:{free_port()}/0"
    began = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach Redis"):
        check_connection(connect(url), url, wait_s=2.0)
    took = time.monotonic() - began
    assert 2.0 <= took < 3.0, took
