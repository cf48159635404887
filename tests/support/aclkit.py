"""A redis-server with moodstream's ACL users, as the Kubernetes Redis runs it.

Started by deploy/k8s/base/redis/start-redis.sh with the repo's rules
(redis/acl/<user>.rules) and throwaway passwords; used by
tests/integration/test_acl.py and the chaos suite's ACL tests.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import redis

from moodstream.shared.embedded import find_redis_server, free_port

REPO = Path(__file__).resolve().parents[2]
REDIS_DIR = REPO / "deploy" / "k8s" / "base" / "redis"
RULES_DIR = REDIS_DIR / "acl"
USERS = sorted(p.stem for p in RULES_DIR.glob("*.rules"))
PREFIX = "moodstream"  # the rules name the default prefix's keys


def redis_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    return tuple(int(x) for x in found.groups()) if found else (0, 0)


def start_script(tmp_path: Path, passwords: dict[str, str], *redis_args: str) -> subprocess.Popen:
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
    if redis_version(binary) < (7, 0):
        pytest.skip(f"{binary} is older than Redis 7.0, which read-only key patterns (%R~) need")
    passwords = {user: secrets.token_hex(16) for user in USERS}
    port = free_port()
    proc = start_script(tmp_path, passwords, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
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


def url(port: int, passwords: dict[str, str], user: str) -> str:
    return f"redis://{user}:{passwords[user]}@127.0.0.1:{port}/0"


def client(port: int, passwords: dict[str, str], user: str) -> redis.Redis:
    return redis.Redis.from_url(url(port, passwords, user))


def denials(port: int, passwords: dict[str, str]) -> list[str]:
    """ACL LOG entries, as 'user: object (reason)'. CLIENT SETINFO is left out: redis-py
    sends it on connect and ignores a refusal; Redis 7.0 does not know the subcommand,
    so the rules cannot grant it there."""
    with client(port, passwords, "default") as admin:
        entries = admin.acl_log(count=100)
    out = []
    for e in entries:
        obj = e["object"].decode() if isinstance(e["object"], bytes) else e["object"]
        if obj.lower() == "client|setinfo":
            continue
        user = e["username"].decode() if isinstance(e["username"], bytes) else e["username"]
        out.append(f"{user}: {obj} ({e['reason']})")
    return out
