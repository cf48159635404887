"""Least-privilege Redis users, against a real redis-server.

The server is started by the same script and ACL rules the Kubernetes Redis
uses (deploy/k8s/base/redis/start-redis.sh and redis/acl/<user>.rules), with
throwaway passwords. A real producer, worker and result reader then run as
their own users and every frame must get a result, with no command refused
(checked in ACL LOG, since some callers swallow errors); and each user is
refused what lies outside its set.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.backoff
import redis.retry
from streamkit import settings_for, start_worker, tiny_jpeg

from moodstream.shared.embedded import find_redis_server, free_port
from moodstream.shared.keys import Keys

REPO = Path(__file__).resolve().parents[2]
REDIS_DIR = REPO / "deploy" / "k8s" / "base" / "redis"
RULES_DIR = REDIS_DIR / "acl"
USERS = sorted(p.stem for p in RULES_DIR.glob("*.rules"))
PREFIX = "moodstream"  # the rules name the default prefix's keys


def _redis_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    return tuple(int(x) for x in found.groups()) if found else (0, 0)


def _start_script(tmp_path: Path, passwords: dict[str, str], *redis_args: str) -> subprocess.Popen:
    """start-redis.sh with the repo's rules and these passwords (files, as the Secret is mounted)."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    for user, pw in passwords.items():
        (secrets_dir / user).write_text(pw + "\n")
    env = {**os.environ, "ACL_RULES_DIR": str(RULES_DIR), "REDIS_SECRETS_DIR": str(secrets_dir),
           "ACL_FILE": str(tmp_path / "users.acl"), "REDIS_SERVER": find_redis_server()}
    return subprocess.Popen(["sh", str(REDIS_DIR / "start-redis.sh"), *redis_args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def acl_server(tmp_path):
    """(port, {user: password}): a redis-server on a free port with every user of the rules."""
    binary = find_redis_server()
    if _redis_version(binary) < (7, 0):
        pytest.skip(f"{binary} is older than Redis 7.0, which read-only key patterns (%R~) need")
    passwords = {user: secrets.token_hex(16) for user in USERS}
    port = free_port()
    proc = _start_script(tmp_path, passwords, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--dir", str(tmp_path))
    admin = redis.Redis(port=port, password=passwords["default"])
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"start-redis.sh exited {proc.returncode}: {proc.stdout.read()[-500:]}")
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        admin.acl_log_reset()
        yield port, passwords
    finally:
        admin.close()
        proc.terminate()
        proc.wait(5)


def _url(port: int, passwords: dict[str, str], user: str) -> str:
    return f"redis://{user}:{passwords[user]}@127.0.0.1:{port}/0"


def _client(port: int, passwords: dict[str, str], user: str) -> redis.Redis:
    return redis.Redis.from_url(_url(port, passwords, user))


def _denials(port: int, passwords: dict[str, str]) -> list[str]:
    """ACL LOG entries, as 'user: object (reason)'. CLIENT SETINFO is left out: redis-py
    sends it on connect and ignores a refusal; Redis 7.0 does not know the subcommand,
    so the rules cannot grant it there."""
    with _client(port, passwords, "default") as admin:
        entries = admin.acl_log(count=100)
    out = []
    for e in entries:
        obj = e["object"].decode() if isinstance(e["object"], bytes) else e["object"]
        if obj.lower() == "client|setinfo":
            continue
        user = e["username"].decode() if isinstance(e["username"], bytes) else e["username"]
        out.append(f"{user}: {obj} ({e['reason']})")
    return out


def _rules(user: str) -> str:
    """A rules file as one line, as start-redis.sh reads it (comments dropped)."""
    lines = (RULES_DIR / f"{user}.rules").read_text().splitlines()
    return " ".join(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def test_rules_cover_each_role_and_are_documented():
    assert {"default", "moodstream-worker", "moodstream-producer", "moodstream-reader", "keda"} <= set(USERS)
    readme = (REPO / "deploy" / "README.md").read_text()
    for user in USERS:  # deploy/README.md, "Redis users and passwords", shows the rules in force
        assert f"user {user} on >PASSWORD {_rules(user)}\n" in readme, f"deploy/README.md: rules of {user}"


def test_producer_worker_reader_as_their_users(acl_server, checkpoint):
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader

    port, pw = acl_server
    keys = Keys(PREFIX)
    produce = settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX, lag_limit=50)
    serve = settings_for(_url(port, pw, "moodstream-worker"), prefix=PREFIX)
    read = settings_for(_url(port, pw, "moodstream-reader"), prefix=PREFIX)

    n = 12
    producer = Producer(produce)
    reply = keys.reply("acl-test")
    sent = [producer.submit_image(tiny_jpeg(i), source="acl", reply_to=reply if i % 2 else None).job_id
            for i in range(n)]
    producer.backlog()  # XINFO GROUPS + XRANGE / XLEN as the producer
    worker = start_worker(serve, checkpoint, "acl-worker")
    try:
        got = list(ResultReader(read).read(start=FROM_START, count=n, timeout_s=60))
        replies = list(ResultReader(read, stream=reply).read(start=FROM_START, count=n // 2, timeout_s=30))
    finally:
        worker.stop()
        producer.close()
    assert sorted(r.job_id for r in got) == sorted(sent)
    assert all(r.ok and r.faces for r in got), [r.error for r in got if not r.ok]
    assert sorted(r.job_id for r in replies) == sorted(sent[1::2])
    with _client(port, pw, "default") as admin:
        assert admin.xpending(keys.frames, keys.group)["pending"] == 0  # acked as the worker
        assert not admin.keys(keys.heartbeat("*"))  # removed in teardown
    assert _denials(port, pw) == []


def test_producer_drop_mode_as_its_user(acl_server):
    """backpressure=drop deletes undelivered frames (XDEL) and reads the group (XINFO GROUPS)."""
    from moodstream.producer.client import Producer

    port, pw = acl_server
    keys = Keys(PREFIX)
    with _client(port, pw, "default") as admin:
        admin.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
    settings = settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX, lag_limit=20,
                            backpressure="drop")
    producer = Producer(settings)
    for i in range(60):
        producer.submit_image(tiny_jpeg(i), source="drop")
    producer.close()
    assert producer.stats.dropped > 0
    with _client(port, pw, "default") as admin:
        assert admin.xlen(keys.frames) == 60 - producer.stats.dropped
    assert _denials(port, pw) == []


@pytest.mark.parametrize("user, command", [
    ("moodstream-worker", ("FLUSHALL",)),
    ("moodstream-worker", ("CONFIG", "GET", "requirepass")),
    ("moodstream-worker", ("KEYS", "*")),
    ("moodstream-worker", ("ACL", "LIST")),
    ("moodstream-worker", ("XADD", "other:frames", "*", "f", "1")),  # a key outside the prefix
    ("moodstream-worker", ("GET", "moodstream:frames")),  # a command outside the set
    ("moodstream-worker", ("EVAL", "return 1", "0")),
    ("moodstream-producer", ("XREADGROUP", "GROUP", "moodstream:workers", "x", "STREAMS", "moodstream:frames", ">")),
    ("moodstream-producer", ("XADD", "moodstream:results", "*", "f", "1")),
    ("moodstream-reader", ("XADD", "moodstream:results", "*", "f", "1")),
    ("moodstream-reader", ("XREAD", "STREAMS", "moodstream:frames", "0")),
    ("keda", ("XADD", "moodstream:frames", "*", "f", "1")),
    ("keda", ("XRANGE", "moodstream:frames", "-", "+")),
])
def test_users_are_refused_outside_their_set(acl_server, user, command):
    port, pw = acl_server
    with _client(port, pw, user) as c:
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.execute_command(*command)


def test_keda_reads_what_its_scaler_needs(acl_server):
    port, pw = acl_server
    keys = Keys(PREFIX)
    with _client(port, pw, "default") as admin:
        admin.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
        admin.xadd(keys.frames, {"f": "1"})
    with _client(port, pw, "keda") as c:
        assert c.xinfo_groups(keys.frames)[0]["lag"] == 1  # lagCount
        assert c.xpending(keys.frames, keys.group)["pending"] == 0  # pendingEntriesCount
        assert c.xlen(keys.frames) == 1  # streamLength
    assert _denials(port, pw) == []


def test_default_user_needs_its_password(acl_server):
    port, _ = acl_server
    no_retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)  # a refusal is final
    with redis.Redis(port=port, retry=no_retry) as anonymous:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()


@pytest.mark.parametrize("bad, says", [("CHANGE_ME-worker", "placeholder"), ("pass word", "URL-safe"),
                                       ("p@ss", "URL-safe")])
def test_start_script_refuses_bad_passwords(tmp_path, bad, says):
    passwords = {user: secrets.token_hex(8) for user in USERS}
    passwords["moodstream-worker"] = bad
    proc = _start_script(tmp_path, passwords, "--port", str(free_port()), "--bind", "127.0.0.1")
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert says in out and "moodstream-worker" in out
    assert bad not in out  # the message names the user, never the password
    assert not (tmp_path / "users.acl").exists()


def test_start_script_needs_every_password(tmp_path):
    passwords = {user: secrets.token_hex(8) for user in USERS if user != "keda"}
    proc = _start_script(tmp_path, passwords, "--port", str(free_port()))
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "keda" in out


@pytest.mark.parametrize("script", ["return redis.call('FLUSHALL')",
                                    "return redis.call('XADD', 'moodstream:results', '*', 'f', '1')",
                                    "return redis.call('SET', 'other', '1')"])
def test_producer_scripts_keep_the_producers_rights(acl_server, script):
    """+eval lets the producer count its backlog in Redis; what a script calls is
    still checked against the producer's commands and keys."""
    port, pw = acl_server
    with _client(port, pw, "moodstream-producer") as c:
        with pytest.raises(redis.ResponseError, match="(?i)no permissions|can't run this command|can't access"):
            c.eval(script, 0)
    with _client(port, pw, "default") as admin:
        assert admin.dbsize() == 0


def test_worker_command_as_its_user(acl_server, tmp_path):
    """`moodstream worker`, as the pods run it: start-up checks, serving, teardown, all as moodstream-worker."""
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader

    command = Path(sys.executable).parent / "moodstream"
    if not command.is_file():
        pytest.skip(f"no moodstream command beside {sys.executable}")
    port, pw = acl_server
    produce = settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX)
    producer = Producer(produce)
    sent = [producer.submit_image(tiny_jpeg(i), source="acl-cli").job_id for i in range(3)]
    producer.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_REDIS_URL=_url(port, pw, "moodstream-worker"), MOODSTREAM_PREFIX=PREFIX,
               MOODSTREAM_DEVICE="cpu", MOODSTREAM_METRICS_PORT="0", OMP_NUM_THREADS="1")
    out = subprocess.run([str(command), "worker", "--detector", "haar", "--max-frames", str(len(sent))],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert pw["moodstream-worker"] not in out.stdout + out.stderr
    read = settings_for(_url(port, pw, "moodstream-reader"), prefix=PREFIX)
    got = list(ResultReader(read).read(start=FROM_START, count=len(sent), timeout_s=10))
    assert sorted(r.job_id for r in got) == sorted(sent) and all(r.ok for r in got)
    assert _denials(port, pw) == []
