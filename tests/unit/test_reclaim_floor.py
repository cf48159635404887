"""``reclaim_idle_ms`` below the time a live worker holds an entry: an entry is pending (idle, to
XAUTOCLAIM) from its read to its ack, that is while its batch fills (``batch_wait_ms``) and is inferred,
so a shorter reclaim takes it from the worker serving it, and both answer it. `worker --reclaim-idle-ms 0`
was taken: two workers gave 118 results for 60 frames (100 ms on a 2-core CPU, small frames, a batch of
8: 96 for 60; 300 ms: 60). Now the setting is refused below 1 s, or where it is not more than
``batch_wait_ms``, with one line naming it, from the flag and from MOODSTREAM_RECLAIM_IDLE_MS."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.errors import ConfigError
from moodstream.shared.settings import Settings

ENV = {"MOODSTREAM_DEVICE": "cpu", "MOODSTREAM_REDIS_WAIT_S": "0", "MOODSTREAM_REDIS_URL": "redis://127.0.0.1:1"}


@pytest.mark.parametrize("ms", [0, 1, 100, 999])
def test_a_reclaim_below_the_floor_is_refused(ms):
    with pytest.raises(ConfigError, match=r"reclaim_idle_ms must be at least 1000 .* got " + str(ms)):
        Settings(reclaim_idle_ms=ms)


def test_a_reclaim_within_batch_wait_is_refused():
    with pytest.raises(ConfigError, match=r"reclaim_idle_ms .* more than batch_wait_ms \(5000\), got 5000"):
        Settings(reclaim_idle_ms=5000, batch_wait_ms=5000)
    assert Settings(reclaim_idle_ms=5001, batch_wait_ms=5000).reclaim_idle_ms == 5001


def test_the_floor_and_the_defaults_are_taken():
    from moodstream.shared.settings import MIN_RECLAIM_IDLE_MS

    assert MIN_RECLAIM_IDLE_MS == 1000
    assert Settings(reclaim_idle_ms=1000).reclaim_idle_ms == 1000
    assert Settings().reclaim_idle_ms == 30_000


def test_the_variable_is_refused_as_the_keyword_is():
    with pytest.raises(ConfigError, match="reclaim_idle_ms must be at least 1000"):
        Settings.from_env(env={"MOODSTREAM_RECLAIM_IDLE_MS": "0"})


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("command", ["worker", "track"])
def test_the_commands_say_it_in_one_line(how, command):
    args, env = [command], dict(ENV)
    if how == "flag":
        args += ["--reclaim-idle-ms", "0"]
    else:
        env["MOODSTREAM_RECLAIM_IDLE_MS"] = "0"
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code != 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: reclaim_idle_ms must be at least 1000"), res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["worker", "track"])
def test_the_help_gives_no_range_below_the_floor(command):
    # `--reclaim-idle-ms INTEGER RANGE ... [x>=0]` offered the values the setting refuses
    res = CliRunner().invoke(cli, [command, "--help"], env=dict(ENV), terminal_width=200)
    assert res.exit_code == 0, res.output
    entry = res.output[res.output.index("--reclaim-idle-ms"):].split("\n  --", 1)[0]
    assert "at least 1000" in entry and "x>=0" not in entry, entry
