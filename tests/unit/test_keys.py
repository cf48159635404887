"""Every Redis name comes from shared.keys, under the configured prefix."""

from __future__ import annotations

import pytest

from moodstream.shared.errors import ConfigError
from moodstream.shared.keys import Keys
from moodstream.shared.settings import Settings


def test_default_names():
    k = Keys()
    assert (k.frames, k.group, k.results, k.dead) == (
        "moodstream:frames", "moodstream:workers", "moodstream:results", "moodstream:dead")
    assert k.heartbeat("w1") == "moodstream:heartbeat:w1"
    assert k.heartbeat_pattern == "moodstream:heartbeat:*"
    assert k.heartbeats == "moodstream:heartbeats"  # their index: not a key SCAN of the pattern finds
    assert k.reply("me") == "moodstream:reply:me" and k.reply("me").startswith(k.reply_prefix)
    assert k.rq_queue == "moodstream-coarse"


def test_prefix_from_settings_separates_deployments():
    a = Keys.from_settings(Settings.from_env(env={}, prefix="staging"))
    b = Keys.from_settings(Settings.from_env(env={"MOODSTREAM_PREFIX": "prod:eu"}))
    assert a.frames == "staging:frames" and b.frames == "prod:eu:frames"
    assert ":" not in b.rq_queue  # rq queue names cannot hold ':'
    names = [a.frames, a.results, a.dead, a.heartbeat("x"), a.reply("y")]
    assert all(n.startswith("staging:") for n in names)


@pytest.mark.parametrize("prefix", ["", "has space", "a" * 65, "star*"])
def test_bad_prefix(prefix):
    with pytest.raises(ConfigError):
        Keys(prefix)


def test_connect_urls():
    """redis-py parses the URL forms we document: password, TLS, database number."""
    import redis

    from moodstream.shared.transport import connect

    c = connect("rediss://:s3cret@example.com:6380/2")
    kw = c.connection_pool.connection_kwargs
    assert c.connection_pool.connection_class is redis.SSLConnection
    assert (kw["password"], kw["host"], kw["port"], kw["db"]) == ("s3cret", "example.com", 6380, 2)
    with pytest.raises(ConfigError):
        connect(None)


@pytest.mark.parametrize("url", ["redis://:s3cret@host:6379/0", "rediss://user:s3cret@host:6380/1",
                                 "redis://:s3cret@host:notaport/0"])
def test_passwords_never_reach_errors_or_logs(url):
    from moodstream.shared.transport import connect, redact

    assert "s3cret" not in redact(url) and "***" in redact(url)
    try:
        connect(url)
    except ConfigError as exc:  # the bad-port URL: the error names it without the password
        assert "s3cret" not in str(exc)
    assert redact("redis://localhost:6379/0") == "redis://localhost:6379/0"


@pytest.mark.parametrize("prefix", ["moodstream:reply:cam", "moodstream:reply", "a:reply:", "x:reply:y:z"])
def test_a_prefix_inside_another_deployment_s_replies_is_refused(prefix):
    """`--prefix moodstream:reply:cam` was taken: its keys lay in deployment moodstream's reply streams,
    so a job of that deployment with reply_to 'cam:intake' (producers name it) had a worker XADD there
    and put a 24 h TTL on the other deployment's queue (the WRONGTYPE XADD failed, the EXPIRE in its
    MULTI ran); 'cam:frames' would have added a result to its frames stream."""
    with pytest.raises(ConfigError, match="reply"):
        Keys(prefix)
    for fine in ("reply", "replies:a", "a:replying", "a:reply_b"):
        assert Keys(fine).prefix == fine
