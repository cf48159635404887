"""Security defaults: `moodstream up` keeps its Redis on loopback, and a password
in MOODSTREAM_REDIS_URL shows up in no log line, heartbeat, stream entry or error."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from tests.support.streamkit import settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.errors import ConfigError
from moodstream.shared.keys import Keys
from moodstream.shared.transport import connect


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).is_file():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            if width == 8:  # little-endian IPv4
                found.add(".".join(str(int(addr_hex[i:i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.add("::1" if addr_hex == "00000000000000000000000001000000" else f"ipv6:{addr_hex}")
    return found


@pytest.fixture
def bind_report(monkeypatch):
    """Spies on EmbeddedRedis.start (the real one runs): what each server it started listens on."""
    reports: list[dict] = []
    real_start = EmbeddedRedis.start

    def start(self, *args, **kwargs):
        out = real_start(self, *args, **kwargs)
        with redis.Redis(port=self.port) as c:
            reports.append({"bind": c.config_get("bind")["bind"], "listening": _listening_addresses(self.port),
                            "argv": list(self.proc.args)})
        return out

    monkeypatch.setattr(EmbeddedRedis, "start", start)
    return reports


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads listening sockets from Linux's /proc/net/tcp")
def test_up_keeps_its_embedded_redis_on_loopback(bind_report, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from moodstream.up import up

    for name in list(os.environ):  # `up` starts the embedded server only without a configured one
        if name.startswith("MOODSTREAM_"):
            monkeypatch.delenv(name)
    image = tmp_path / "frame.jpg"
    image.write_bytes(tiny_jpeg(1, (96, 96)))
    result = CliRunner().invoke(up, [str(image), "--detector", "haar", "--device", "cpu", "--format", "jsonl",
                                     "--timeout-s", "120"])
    assert result.exit_code == 0, result.output
    assert len(bind_report) == 1, "up did not start an embedded redis-server"
    report = bind_report[0]
    assert report["bind"] == "127.0.0.1"
    assert report["listening"] == {"127.0.0.1"}  # nothing on 0.0.0.0, :: or another interface
    assert report["argv"][report["argv"].index("--bind") + 1] == "127.0.0.1"


@pytest.fixture
def password_user(redis_url):
    """(url with user and password, password): an ACL user on the test server, removed after."""
    password = "pw-" + secrets.token_hex(12)
    user = "sec-" + secrets.token_hex(4)
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
                      commands=["+@all"])
    host_part = redis_url.split("://", 1)[1]
    try:
        yield f"redis://{user}:{password}@{host_part}", password
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_password_stays_out_of_logs_heartbeats_and_streams(password_user, checkpoint, caplog):
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader

    url, password = password_user
    settings = settings_for(url)
    keys = Keys.from_settings(settings)
    caplog.set_level(logging.DEBUG)
    producer = Producer(settings)
    sent = [producer.submit_image(tiny_jpeg(i), source="sec").job_id for i in range(4)]
    producer.client.xadd(keys.frames, {b"msg": b"not msgpack"})  # a dead letter, logged as a warning
    worker = start_worker(settings, checkpoint, "sec-worker")
    try:
        got = list(ResultReader(settings).read(start=FROM_START, count=len(sent), timeout_s=60))
        beat = wait_for(lambda: producer.client.hgetall(keys.heartbeat("sec-worker")), 10, what="a heartbeat")
        # drop the worker's connections: its reconnect path logs too
        with redis.Redis.from_url(url) as other:
            other.client_kill_filter(_type="normal", skipme=True)
        producer.submit_image(tiny_jpeg(99), source="sec")
        wait_for(lambda: list(ResultReader(settings).read(start=FROM_START, count=5, timeout_s=1)), 30,
                 what="a result after the reconnect")
        wait_for(lambda: producer.client.xlen(keys.dead) >= 1, 30, what="the dead letter")
    finally:
        worker.stop()
    assert sorted(r.job_id for r in got) == sorted(sent)
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "sec-worker" in logged  # the worker's lines were captured
    assert password not in logged
    assert not any(password.encode() in v or password.encode() in k for k, v in beat.items())
    for stream in (keys.results, keys.dead):
        for _, fields in producer.client.xrange(stream):
            assert not any(password.encode() in v for v in fields.values()), stream
    producer.close()


@pytest.mark.parametrize("url", [
    "redis://user:{pw}@localhost:notaport/0",
    "redis://user:{pw}@localhost:99999/0",
    "redis://user:{pw}@[::1/0",
    "redis://user:{pw}@localhost:6379/0?socket_timeout=abc",
    "http://user:{pw}@localhost:6379/0",
])
def test_bad_url_error_hides_the_password(url):
    password = "pw-" + secrets.token_hex(12)
    with pytest.raises(ConfigError) as err:
        connect(url.format(pw=password)).ping()
    assert password not in str(err.value)


def test_cli_error_hides_the_password(tmp_path):
    """`moodstream results` with a URL it cannot use: one line on stderr, no password."""
    password = "pw-" + secrets.token_hex(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env["MOODSTREAM_REDIS_URL"] = f"redis://user:{password}@localhost:notaport/0"
    command = Path(sys.executable).parent / "moodstream"
    if not command.is_file():
        pytest.skip(f"no moodstream command beside {sys.executable}")
    out = subprocess.run([str(command), "results", "--count", "1", "--timeout-s", "1"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0 and "notaport" in out.stderr  # it did get to the URL
    assert password not in out.stdout + out.stderr


def test_producer_stops_at_once_when_its_password_is_revoked(password_user):
    """A refused password is not a network blip: the producer says so in one error at once,
    as the worker and the results reader do, instead of retrying for `retry_for_s`."""
    import time

    from moodstream.producer.client import Producer
    from moodstream.shared.errors import ConfigError

    url, password = password_user
    producer = Producer(settings_for(url), retry_for_s=30)
    producer.submit_image(tiny_jpeg(0), source="revoke")
    user = url.split("://", 1)[1].split(":", 1)[0]
    with redis.Redis.from_url(url) as conn:
        conn.acl_setuser(user, enabled=True, passwords=[f"-{password}", "+another-one"], keys=["*"],
                         channels=["*"], commands=["+@all"])
        conn.client_kill_filter(_type="normal", skipme=False)  # its next call must authenticate again
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        producer.submit_image(tiny_jpeg(1), source="revoke")
    assert time.monotonic() - started < 5
    assert "refused" in str(err.value) and password not in str(err.value)
