"""shared/retry.py against a real redis-server: which errors are fatal, which are
waited out, which mean "recreate and carry on" (issue 22 item 2, issue 23 item 1)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.errors import ConfigError
from moodstream.shared.keys import Keys
from moodstream.shared.retry import RedisGone, RedisRetry, is_busy, is_missing_key
from moodstream.shared.transport import ensure_group

KEYS = Keys("rt")


def _blocked_read(client: redis.Redis, retry: RedisRetry, out: dict) -> threading.Thread:
    """A consumer blocked on XREADGROUP (as an idle worker is), through ``retry``."""

    def read():
        try:
            out["reply"] = retry.call(lambda: client.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=1,
                                                                block=4000))
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            out["error"] = exc

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def _wait_blocked(admin: redis.Redis, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(c.get("cmd") == "xreadgroup" for c in admin.client_list()):
            return
        time.sleep(0.02)
    raise AssertionError("the reader never blocked")


@pytest.mark.parametrize("operator", ["flushall", "flushdb", "del_stream", "xgroup_destroy"])
def test_a_blocked_read_survives_operator_commands_on_its_keys(redis_url, operator, caplog):
    admin = redis.Redis.from_url(redis_url)
    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    ensure_group(client, KEYS)
    retry = RedisRetry("reader t", redis_url, recreate=lambda: ensure_group(client, KEYS))
    out: dict = {}
    t = _blocked_read(client, retry, out)
    _wait_blocked(admin)
    {"flushall": admin.flushall, "flushdb": admin.flushdb, "del_stream": lambda: admin.delete(KEYS.frames),
     "xgroup_destroy": lambda: admin.xgroup_destroy(KEYS.frames, KEYS.group)}[operator]()
    _wait_blocked(admin)  # recreated, and blocked again on the new group
    admin.xadd(KEYS.frames, {"msg": b"x"})
    t.join(10)
    assert "error" not in out, out.get("error")
    assert out["reply"] and out["reply"][0][1][0][1] == {b"msg": b"x"}
    assert retry.recreated == 1
    gone = [r for r in caplog.records if "recreating" in r.getMessage()]
    assert len(gone) == 1 and "reader t" in gone[0].getMessage()


def test_xtrim_to_nothing_leaves_a_blocked_read_waiting(redis_url):
    admin = redis.Redis.from_url(redis_url)
    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    ensure_group(client, KEYS)
    admin.xadd(KEYS.frames, {"msg": b"old"})
    admin.xreadgroup(KEYS.group, "other", {KEYS.frames: ">"})
    retry = RedisRetry("reader t", redis_url, recreate=lambda: ensure_group(client, KEYS))
    out: dict = {}
    t = _blocked_read(client, retry, out)
    _wait_blocked(admin)
    admin.xtrim(KEYS.frames, maxlen=0, approximate=False)
    admin.xadd(KEYS.frames, {"msg": b"new"})
    t.join(10)
    assert "error" not in out and out["reply"][0][1][0][1] == {b"msg": b"new"}
    assert retry.recreated == 0


def test_nogroup_is_recreated_and_other_errors_are_raised(redis_url):
    client = redis.Redis.from_url(redis_url)
    retry = RedisRetry("reader t", redis_url, recreate=lambda: ensure_group(client, KEYS))
    assert retry.call(lambda: client.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=1)) == []
    assert retry.recreated == 1
    with pytest.raises(redis.ResponseError, match="unknown command"):
        retry.call(lambda: client.execute_command("NOSUCHCOMMAND"))
    no_recreate = RedisRetry("reader t", redis_url)
    client.delete(KEYS.frames)
    with pytest.raises(redis.ResponseError, match="NOGROUP"):
        no_recreate.call(lambda: client.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=1))


def test_a_refused_password_is_one_config_error_at_once():
    with EmbeddedRedis(extra_args=["--requirepass", "right"]) as server:
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(url)
        t0 = time.monotonic()
        with pytest.raises(ConfigError) as err:
            RedisRetry("reader t", url).call(client.ping)
        assert time.monotonic() - t0 < 2
        assert "wrong" not in str(err.value) and "***" in str(err.value) and "\n" not in str(err.value)


def test_redis_down_is_waited_out_and_a_stop_ends_the_wait():
    server = EmbeddedRedis().start()
    try:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
        seen: list[str] = []
        retry = RedisRetry("reader t", server.url, cap_s=0.5, on_down=lambda e: seen.append("down"),
                           on_up=lambda: seen.append("up"))
        server.stop()
        threading.Timer(1.5, server.start).start()
        assert retry.call(client.ping) is True
        assert "down" in seen and seen[-1] == "up" and not retry.down

        server.stop()
        stop = threading.Event()
        stopping = RedisRetry("reader t", server.url, stop, cap_s=5)
        threading.Timer(0.7, stop.set).start()
        t0 = time.monotonic()
        with pytest.raises(RedisGone):
            stopping.call(client.ping)
        assert time.monotonic() - t0 < 3 and stopping.down

        with pytest.raises(ConfigError, match="cannot reach Redis"):
            RedisRetry("reader t", server.url, cap_s=0.2, deadline_s=1).call(client.ping)
    finally:
        server.stop()


def test_busy_script_is_ridden_out():
    # A script that runs 1.5 s; Redis answers BUSY to everyone else after busy-reply-threshold
    script = ("local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end "
              "local t0 = now() while now() - t0 < 1500000 do end return 1")
    with EmbeddedRedis(extra_args=["--busy-reply-threshold", "100"]) as server:
        admin = redis.Redis.from_url(server.url)
        client = redis.Redis.from_url(server.url)
        runner = threading.Thread(target=lambda: admin.eval(script, 0), daemon=True)
        runner.start()
        time.sleep(0.3)
        with pytest.raises(redis.ResponseError) as busy:
            client.ping()
        assert is_busy(busy.value) and not is_missing_key(busy.value)
        seen: list[BaseException] = []
        retry = RedisRetry("reader t", server.url, cap_s=0.3, on_down=seen.append)
        assert retry.call(lambda: client.xadd("k", {"a": 1})) is not None
        assert seen and is_busy(seen[0])
        runner.join(5)


def test_busygroup_and_busykey_are_not_busy():
    assert not is_busy(redis.ResponseError("BUSYGROUP Consumer Group name already exists"))
    assert not is_busy(redis.ResponseError("BUSYKEY Target key name already exists."))
    assert is_missing_key(redis.ResponseError("UNBLOCKED the stream key no longer exists"))
    assert not is_missing_key(redis.ResponseError("UNBLOCKED client unblocked via CLIENT UNBLOCK"))


def test_errors_inside_a_pipeline_are_classed_too(redis_url):
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    pipe.xack(KEYS.frames, KEYS.group, "1-0")
    pipe.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"})
    with pytest.raises(redis.ResponseError) as err:
        pipe.execute()
    assert "of pipeline caused error" in str(err.value) and is_missing_key(err.value)
    assert is_busy(redis.ResponseError("Command # 1 (XADD t:results) of pipeline caused error: BUSY Redis is busy"))


def test_redis_out_of_memory_is_ridden_out():
    """Redis at its maxmemory refuses writes ("OOM command not allowed", or EXECABORT for a MULTI):
    the track stage died with a traceback. Freeing memory heals it: waited out like BUSY."""
    from moodstream.shared.retry import is_transient

    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        for i in range(40):  # in small writes: no large query buffer counted in used_memory below
            admin.set(f"ballast{i}", "x" * 100_000)
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used - 100_000)  # every write refused until the ballast goes
        client = redis.Redis.from_url(server.url)
        with pytest.raises(redis.ResponseError) as oom:
            client.xadd("k", {"a": "y"})
        assert is_transient(oom.value)
        pipe = client.pipeline(transaction=True)
        pipe.xadd("k", {"a": "y"})
        with pytest.raises(redis.ResponseError) as aborted:
            pipe.execute()
        assert is_transient(aborted.value), aborted.value
        threading.Timer(0.5, lambda: admin.delete(*(f"ballast{i}" for i in range(40)))).start()
        seen: list[BaseException] = []
        retry = RedisRetry("track t", server.url, cap_s=0.3, on_down=seen.append)
        assert retry.call(lambda: client.xadd("k", {"a": "y"})) is not None
        assert seen


def test_giving_up_on_a_full_redis_says_full_not_unreachable():
    """A Redis at its maxmemory answers every write with OOM: after the deadline `produce` said
    "cannot reach Redis at URL for 60 s", sending the user after a network fault; it was reached
    all along. Now the last line says what the server answered, and what to do."""
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        for i in range(40):
            admin.set(f"ballast{i}", "x" * 100_000)
        admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 100_000)
        client = redis.Redis.from_url(server.url)
        with pytest.raises(ConfigError) as err:
            RedisRetry("producer", server.url, cap_s=0.2, deadline_s=1).call(lambda: client.xadd("k", {"a": "y"}))
        said = str(err.value)
        assert "cannot reach" not in said and "out of memory" in said and "maxmemory" in said, said
        admin.flushall()
