"""A key of another type under a name moodstream reads: `status`, `results` and `tracks` say which key,
and what it holds, in one line (exit 1).

They said "a key moodstream keeps a stream in is not a stream ... delete or rename it": which key, of
the five `status` reads, the operator was left to guess (and the intake, a list, is no stream)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli  # the root group: an error is one line there, as a user sees it


def env(redis_url: str, keys) -> dict[str, str]:
    return {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}


@pytest.mark.parametrize("name, wanted", [("dead", "stream"), ("intake", "list"), ("frames", "stream"),
                                          ("results", "stream")])
def test_status_names_the_key_of_another_type(redis_url, client, keys, name, wanted):
    key = getattr(keys, name)
    client.set(key, "another program's")
    out = CliRunner().invoke(cli, ["status"], env=env(redis_url, keys))
    assert out.exit_code == 1, out.output
    said = out.stderr.strip().splitlines()
    assert len(said) == 1 and repr(key) in said[0] and "holds a string" in said[0], said
    assert f"is not a {wanted}" in said[0], said


def test_results_names_the_key_of_another_type(redis_url, client, keys):
    client.hset(keys.results, "a", "b")
    out = CliRunner().invoke(cli, ["results", "--from-start"], env=env(redis_url, keys))
    assert out.exit_code == 1, out.output
    assert repr(keys.results) in out.stderr and "holds a hash" in out.stderr, out.stderr

    client.hset(keys.reply("mine"), "a", "b")
    out = CliRunner().invoke(cli, ["results", "--from-start", "--reply-to", "mine"], env=env(redis_url, keys))
    assert out.exit_code == 1 and repr(keys.reply("mine")) in out.stderr, out.stderr


def test_result_reader_names_the_key_of_another_type(redis_url, client, keys):
    from moodstream.producer.results import FROM_START, ResultReader
    from moodstream.shared.errors import ConfigError
    from tests.support.streamkit import settings_for

    client.rpush(keys.results, "x")
    reader = ResultReader(settings_for(redis_url), client=client)
    with pytest.raises(ConfigError, match=r"'t:results' is not a stream \(it holds a list\)"):
        list(reader.read(start=FROM_START))


@pytest.mark.parametrize("args", [["--from-start"], ["--follow", "--timeout-s", "0.2"]])
def test_tracks_names_the_key_of_another_type(redis_url, client, keys, args):
    client.set(keys.summaries, "x")
    out = CliRunner().invoke(cli, ["tracks", *args], env=env(redis_url, keys))
    assert out.exit_code == 1, out.output
    assert repr(keys.summaries) in out.stderr and "holds a string" in out.stderr, out.stderr
