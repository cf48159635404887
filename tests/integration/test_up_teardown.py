"""A stop signal in `moodstream up`'s clean-up (just after it printed "summary in ..."): it said
"interrupted (Ctrl-C) while starting", exit 130, and on your Redis left its worker's consumer, its
heartbeat (about 15 s) and its reply / tracked / summaries streams (24 h). Now it says it was
interrupted while finishing, cleans up all the same, and only a second signal stops it at once.

The signal is sent as the clean-up begins (``up._cleanup`` wrapped), in this process, where `up`
takes the signals: the moment a person's Ctrl-C lands after the summary line, without a race.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
PHOTO = str(REPO / "samples" / "street.jpg")


@pytest.fixture
def your_redis(redis_url, monkeypatch) -> redis.Redis:
    """`up` on the suite's redis-server as on yours (MOODSTREAM_REDIS_URL), under the default prefix."""
    for name in list(os.environ):
        if name.startswith("MOODSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MOODSTREAM_REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _left(client: redis.Redis) -> dict[str, list[str]]:
    """What a clean end of `up` removes: its worker's heartbeat and consumer, its own streams (the
    workers' index entry stays, by design: the next beat of another worker drops it)."""
    try:
        consumers = [c["name"] for c in client.xinfo_consumers("moodstream:frames", "moodstream:workers")]
    except redis.ResponseError:  # no stream or group
        consumers = []
    return {"heartbeats": sorted(client.scan_iter("moodstream:heartbeat:*")), "consumers": consumers,
            "streams": sorted(client.scan_iter("moodstream:reply:*"))}


def _up_signalled_in_cleanup(monkeypatch, tmp_path, signals: int):
    """`up PHOTO --summary` with ``signals`` SIGINTs (as Ctrl-C) sent as its clean-up begins. Where they
    cut the clean-up short, it is run again after (its threads live in this process, not one that exits)."""
    from moodstream import up as up_module
    from moodstream.cli import cli

    cleanup, calls, done = up_module._cleanup, [], []

    def signalled(*args):
        calls.append(args)
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)
        cleanup(*args)
        done.append(True)

    monkeypatch.setattr(up_module, "_cleanup", signalled)
    summary = tmp_path / "s.json"
    try:
        ran = CliRunner().invoke(cli, ["up", PHOTO, "--device", "cpu", "--no-dashboard", "--format", "jsonl",
                                       "--summary", str(summary), "--timeout-s", "300"])
    finally:
        if calls and not done:  # its worker would serve on for the tests after this one
            cleanup(*calls[0])
    return ran, summary


@pytest.mark.slow
def test_a_clean_end_leaves_nothing_of_its_own(your_redis, monkeypatch, tmp_path):
    """The reference: what the test below expects after a signal too."""
    ran, summary = _up_signalled_in_cleanup(monkeypatch, tmp_path, signals=0)
    assert ran.exit_code == 0, ran.output
    assert json.loads(summary.read_text())["incomplete"] is None
    assert _left(your_redis) == {"heartbeats": [], "consumers": [], "streams": []}


@pytest.mark.slow
def test_ctrl_c_in_the_cleanup_says_finishing_and_cleans_up(your_redis, monkeypatch, tmp_path):
    ran, summary = _up_signalled_in_cleanup(monkeypatch, tmp_path, signals=1)
    assert ran.exit_code == 130, (ran.exit_code, ran.output)
    assert "interrupted (Ctrl-C) while finishing" in ran.stderr and "while starting" not in ran.stderr, ran.stderr
    assert "Traceback" not in ran.output, ran.output
    assert _left(your_redis) == {"heartbeats": [], "consumers": [], "streams": []}
    written = json.loads(summary.read_text())  # written before: the whole run's
    assert written["interrupted"] is False and written["incomplete"] is None and written["videos"]


@pytest.mark.slow
def test_a_second_signal_in_the_cleanup_stops_at_once(your_redis, monkeypatch, tmp_path):
    ran, _ = _up_signalled_in_cleanup(monkeypatch, tmp_path, signals=2)
    assert ran.exit_code == 130, (ran.exit_code, ran.output)
    said = [line for line in ran.stderr.splitlines() if line.startswith("up: interrupted (Ctrl-C)")]
    assert len(said) == 2 and "while finishing" in said[0] and "stopped at once" in said[1], ran.stderr
    assert "Traceback" not in ran.output, ran.output

