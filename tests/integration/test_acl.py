"""Least-privilege Redis users, against a real redis-server.

The server is started by the same script and ACL rules the Kubernetes Redis
uses (deploy/k8s/base/redis/start-redis.sh and redis/acl/<user>.rules), with
throwaway passwords. A real producer, worker and result reader then run as
their own users and every frame must get a result, with no command refused
(checked in ACL LOG, since some callers swallow errors); and each user is
refused what lies outside its set.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.backoff
import redis.retry
from tests.support.aclkit import PREFIX, REPO, RULES_DIR, USERS, acl_server, start_script
from tests.support.aclkit import client as _client
from tests.support.aclkit import denials as _denials
from tests.support.aclkit import url as _url
from tests.support.streamkit import settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.shared.embedded import free_port
from moodstream.shared.keys import Keys
from moodstream.shared.wire import FIELD, decode_frame

__all__ = ["acl_server"]  # a fixture, used by name


def _rules(user: str) -> str:
    """A rules file as one line, as start-redis.sh reads it (comments dropped)."""
    lines = (RULES_DIR / f"{user}.rules").read_text().splitlines()
    return " ".join(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def test_rules_cover_each_role_and_are_documented():
    assert {"default", "moodstream-worker", "moodstream-producer", "moodstream-reader", "moodstream-dashboard",
            "moodstream-track", "moodstream-tracks", "keda"} <= set(USERS)
    readme = (REPO / "deploy" / "README.md").read_text()
    for user in USERS:  # deploy/README.md, "Redis users and passwords", shows the rules in force
        assert f"user {user} on >PASSWORD {_rules(user)}\n" in readme, f"deploy/README.md: rules of {user}"
    # its `kubectl create secret` makes a password for each user (5 of 8 once: Redis refused to start)
    import re

    loop = re.search(r"for u in ([^;]+); do", readme)
    assert loop and set(loop.group(1).split()) - {"\\"} == set(USERS), loop and loop.group(1)


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
    producer.backlog()  # XINFO GROUPS / STREAM + XPENDING as the producer
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
    """backpressure=drop reads the backlog and sheds new frames; it deletes nothing."""
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
        assert admin.llen(keys.intake) == 60 - producer.stats.dropped and admin.xlen(keys.frames) == 0
    assert _denials(port, pw) == []


# What one XADD could do to the frames stream as moodstream-producer while its ACL granted XADD (no ACL
# binds XADD's options, so MAXLEN / MINID / an explicit id came with it): now refused, the producer
# only RPUSHes to the intake list, and these are what a fix must answer.
WIPE_QUEUE = {
    "maxlen-0": ("XADD", "moodstream:frames", "MAXLEN", "0", "*", "msg", "x"),
    "minid-far-future": ("XADD", "moodstream:frames", "MINID", "99999999999999", "*", "msg", "x"),
    "xtrim": ("XTRIM", "moodstream:frames", "MAXLEN", "0"),
    "ltrim-intake": ("LTRIM", "moodstream:intake", "1", "0"),
    "lpop-intake": ("LPOP", "moodstream:intake", "100"),
    "rpop-intake": ("RPOP", "moodstream:intake", "100"),
    "del-intake": ("DEL", "moodstream:intake"),
    "unlink-intake": ("UNLINK", "moodstream:intake"),
    "lset-intake": ("LSET", "moodstream:intake", "0", "x"),
    "lrem-intake": ("LREM", "moodstream:intake", "0", "x"),
    "rename-intake": ("RENAME", "moodstream:intake", "moodstream:other"),
    "lmove-intake": ("LMOVE", "moodstream:intake", "moodstream:intake", "LEFT", "RIGHT"),
    "xadd-intake": ("XADD", "moodstream:intake", "*", "msg", "x"),
    "del-frames": ("DEL", "moodstream:frames"),
    "expire-intake": ("EXPIRE", "moodstream:intake", "1"),
}
MAX_ID = "18446744073709551615-18446744073709551615"  # the largest stream id: no `*` comes after it


def _attack(port, pw, command) -> None:
    """One command as moodstream-producer: refused (NOPERM), as every one here must be."""
    with _client(port, pw, "moodstream-producer") as attacker:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attacker.execute_command(*command)


@pytest.mark.parametrize("attack", list(WIPE_QUEUE))
def test_a_producer_credential_cannot_delete_other_producers_frames(acl_server, attack):
    """Frames another producer queued and no worker has read survive whatever one producer
    credential sends (while producers XADDed, one XADD with MAXLEN 0 or a far MINID deleted
    all of them): they wait in the intake list, which the producer user may only append to."""
    from moodstream.producer.client import Producer

    port, pw = acl_server
    keys = Keys(PREFIX)
    with _client(port, pw, "default") as admin:
        admin.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
        admin.xadd(keys.frames, {"msg": "moved before"})  # the stream's own entries stay too
    producer = Producer(settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX))
    queued = [producer.submit_image(tiny_jpeg(i), source="victim").job_id for i in range(5)]
    producer.close()
    _attack(port, pw, WIPE_QUEUE[attack])
    with _client(port, pw, "default") as admin:
        left = [decode_frame(m).job_id for m in admin.lrange(keys.intake, 0, -1)]
        assert admin.xlen(keys.frames) == 1
    assert left == queued, f"{attack}: the victim's queue changed"


def test_a_producer_credential_cannot_stop_every_later_frame(acl_server):
    """An XADD with the largest id, as moodstream-producer, must not stop the intake: it is
    refused, and another producer's next frame reaches the frames stream (moved by a worker's
    mover; while producers XADDed, every later XADD * failed: 'exhausted the last possible ID')."""
    from moodstream.producer.client import Producer
    from moodstream.shared.errors import ConfigError
    from moodstream.worker.intake import Mover

    port, pw = acl_server
    keys = Keys(PREFIX)
    _attack(port, pw, ("XADD", "moodstream:frames", MAX_ID, "msg", "x"))
    producer = Producer(settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX))
    try:
        ref = producer.submit_image(tiny_jpeg(1), source="after")
    except (redis.ResponseError, ConfigError) as exc:
        pytest.fail(f"a producer cannot queue a frame after the attack: {exc}")
    finally:
        producer.close()
    mover = Mover(settings_for(_url(port, pw, "moodstream-worker"), prefix=PREFIX), name="acl-mover")
    mover.start()
    with _client(port, pw, "default") as admin:
        try:
            wait_for(lambda: admin.xlen(keys.frames) >= 1, 30, what="the frame moved")
        finally:
            mover.stop()
        assert [decode_frame(f[FIELD]).job_id for _, f in admin.xrange(keys.frames)] == [ref.job_id]
        assert admin.llen(keys.intake) == 0
    assert mover.error is None
    assert _denials(port, pw) == ["moodstream-producer: xadd (command)"]


@pytest.mark.parametrize("user, command", [
    ("moodstream-worker", ("FLUSHALL",)),
    ("moodstream-worker", ("CONFIG", "GET", "requirepass")),
    ("moodstream-worker", ("KEYS", "*")),
    ("moodstream-worker", ("ACL", "LIST")),
    ("moodstream-worker", ("XADD", "other:frames", "*", "f", "1")),  # a key outside the prefix
    ("moodstream-worker", ("GET", "moodstream:frames")),  # a command outside the set
    ("moodstream-worker", ("SCRIPT", "LOAD", "return 1")),  # EVAL / EVALSHA only: the mover's script
    ("moodstream-worker", ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() end)")),
    ("moodstream-worker", ("RPUSH", "moodstream:intake", "x")),  # producers push, workers take
    ("moodstream-producer", ("XREADGROUP", "GROUP", "moodstream:workers", "x", "STREAMS", "moodstream:frames", ">")),
    ("moodstream-producer", ("XADD", "moodstream:results", "*", "f", "1")),
    ("moodstream-producer", ("XDEL", "moodstream:frames", "1-1")),  # it never deletes a frame
    ("moodstream-producer", ("EVAL", "return 1", "0")),  # no scripts (issue 22 item 7; tests/chaos/test_acl_scripts)
    ("moodstream-producer", ("XADD", "moodstream:frames", "*", "f", "1")),  # the intake list only
    ("moodstream-producer", ("BLMOVE", "moodstream:intake", "moodstream:intake", "LEFT", "LEFT", "0.01")),
    ("keda", ("LPOP", "moodstream:intake")),
    ("moodstream-dashboard", ("RPUSH", "moodstream:intake", "x")),
    ("moodstream-reader", ("XADD", "moodstream:results", "*", "f", "1")),
    ("moodstream-reader", ("XREAD", "STREAMS", "moodstream:frames", "0")),
    ("keda", ("XADD", "moodstream:frames", "*", "f", "1")),
    ("keda", ("XRANGE", "moodstream:frames", "-", "+")),
    ("moodstream-track", ("XADD", "moodstream:frames", "*", "f", "1")),  # frames: read only
    ("moodstream-track", ("XREADGROUP", "GROUP", "moodstream:workers", "x", "STREAMS", "moodstream:frames", ">")),
    ("moodstream-track", ("XDEL", "moodstream:results", "1-1")),
    ("moodstream-track", ("XADD", "moodstream:results", "*", "f", "1")),  # XADD only where it publishes
    ("moodstream-track", ("XRANGE", "moodstream:results", "-", "+")),  # XRANGE only on frames
    ("moodstream-track", ("XADD", "moodstream:dead", "*", "f", "1")),
    ("moodstream-track", ("EVAL", "return 1", "0")),
    ("moodstream-track", ("RENAME", "moodstream:track:runs", "moodstream:frames")),  # only to the generation before
    ("moodstream-track", ("DEL", "moodstream:track:runs")),
    ("moodstream-track", ("HSET", "moodstream:track:stats", "late", "0")),  # counts are added to, never set
    ("moodstream-tracks", ("XADD", "moodstream:summaries", "*", "f", "1")),
    ("moodstream-tracks", ("XREAD", "STREAMS", "moodstream:results", "0")),
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
        admin.rpush(keys.intake, "a", "b")
    with _client(port, pw, "keda") as c:
        assert c.xinfo_groups(keys.frames)[0]["lag"] == 1  # lagCount
        assert c.xpending(keys.frames, keys.group)["pending"] == 0  # pendingEntriesCount
        assert c.xlen(keys.frames) == 1  # streamLength
        assert c.llen(keys.intake) == 2  # the redis (list) scaler's listLength
    assert _denials(port, pw) == []


def test_the_dashboard_finds_workers_in_their_index_as_its_user(acl_server):
    """The worker's beat writes the heartbeats' index (ZADD, ZREMRANGEBYSCORE in its MULTI) and the
    dashboard's user reads it (ZRANGE, then HGETALL): refused by the rules of before, which granted
    only SCAN + HGETALL of the heartbeats. The beat failed as a whole, the fleet panel with it."""
    from types import SimpleNamespace

    from moodstream.producer.status import live_workers
    from moodstream.worker.service import Worker

    port, pw = acl_server
    keys = Keys(PREFIX)
    serve = settings_for(_url(port, pw, "moodstream-worker"), prefix=PREFIX)
    worker = Worker(serve, SimpleNamespace(model_version="none"), name="acl-beat", handle_signals=False)
    worker.heartbeat()
    with _client(port, pw, "moodstream-dashboard") as dashboard:
        assert [w["worker"] for w in live_workers(dashboard, keys)] == ["acl-beat"]
    worker.client.close()
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
    proc = start_script(tmp_path, passwords, "--port", str(free_port()), "--bind", "127.0.0.1")
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert says in out and "moodstream-worker" in out
    assert bad not in out  # the message names the user, never the password
    assert not (tmp_path / "users.acl").exists()


def test_start_script_needs_every_password(tmp_path):
    passwords = {user: secrets.token_hex(8) for user in USERS if user != "keda"}
    proc = start_script(tmp_path, passwords, "--port", str(free_port()))
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "keda" in out


def _produce_as_producer(port, pw, path) -> subprocess.CompletedProcess:
    """`moodstream produce PATH` in a process of its own, as moodstream-producer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_REDIS_URL=_url(port, pw, "moodstream-producer"), MOODSTREAM_PREFIX=PREFIX)
    return subprocess.run([sys.executable, "-m", "moodstream", "produce", str(path)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_produce_command_as_its_user(acl_server, tmp_path):
    """`moodstream produce` as moodstream-producer: the user may not read heartbeats, so the
    'no live worker' notice is skipped (it crashed with a traceback), and the job goes."""
    port, pw = acl_server
    (tmp_path / "a.jpg").write_bytes(tiny_jpeg(1))
    out = _produce_as_producer(port, pw, tmp_path / "a.jpg")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "produced 1 job\n" in out.stderr and len(out.stdout.splitlines()) == 1
    with _client(port, pw, "default") as admin:
        assert admin.llen(Keys(PREFIX).intake) == 1
    # only the heartbeat check was refused (TIME / SCAN / HGETALL), nothing the producer needs
    assert all(d.split(": ")[1].split(" ")[0] in ("time", "scan", "hgetall") for d in _denials(port, pw))


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


def test_track_and_tracks_commands_as_their_users(acl_server, checkpoint):
    """`moodstream track` as moodstream-track (its group on the results stream, tracked results,
    run summaries with face pictures read back from the frames) and `moodstream tracks` as
    moodstream-tracks, as real processes on the server of the repo's rules: nothing refused."""
    from moodstream.producer.client import Producer

    port, pw = acl_server
    keys = Keys(PREFIX)
    producer = Producer(settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX))
    n = 6
    for i in range(n):
        producer.submit_image(tiny_jpeg(i, size=(160, 120)), source="acl-track", frame=i)
    producer.close()
    worker = start_worker(settings_for(_url(port, pw, "moodstream-worker"), prefix=PREFIX), checkpoint, "acl-w")
    admin = _client(port, pw, "default")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_PREFIX=PREFIX, MOODSTREAM_RECLAIM_IDLE_MS="2000", PYTHONPATH=str(REPO))
    moodstream = [sys.executable, "-c", "from moodstream.cli import main; main()"]
    stage = subprocess.Popen([*moodstream, "track", "--reorder-wait-ms", "200"], cwd=REPO, text=True,
                             env={**env, "MOODSTREAM_REDIS_URL": _url(port, pw, "moodstream-track")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: admin.xlen(keys.tracked) >= n, 120, what="every result tracked")
        stage.send_signal(signal.SIGTERM)  # publishes the run's summary, then exits
        _, err = stage.communicate(timeout=60)
    finally:
        worker.stop()
        if stage.poll() is None:
            stage.kill()
            stage.communicate()
    assert stage.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert pw["moodstream-track"] not in err
    assert admin.xpending(keys.results, keys.track_group)["pending"] == 0  # acked as the track user
    (summary,) = [json.loads(f[b"msg"]) for _, f in admin.xrange(keys.summaries)]
    assert summary["source"] == "acl-track" and summary["frames"] == n
    assert summary["thumbnails"], "no face picture: the frames were not read back"
    assert json.loads(admin.hget(keys.track_runs, "acl-track"))[0] == 1  # kept for a restarted stage
    out = subprocess.run([*moodstream, "tracks", "--from-start", "--json"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**env, "MOODSTREAM_REDIS_URL": _url(port, pw, "moodstream-tracks")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert [json.loads(line)["source"] for line in out.stdout.splitlines()] == ["acl-track"]
    admin.close()
    assert _denials(port, pw) == []


def test_a_reply_to_outside_the_prefix_is_dead_lettered_under_the_acl(acl_server, checkpoint):
    """A producer's job naming a reply_to outside <prefix>:reply: once made the worker XADD there:
    refused by its ACL (NOPERM), the whole MULTI failed, the entry stayed pending and every worker
    that took it back stopped. Now: dead-lettered, the frames around it served, nothing refused."""
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader
    from moodstream.shared.record import FrameJob
    from moodstream.shared.wire import FIELD, encode_frame

    port, pw = acl_server
    keys = Keys(PREFIX)
    producer = Producer(settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX))
    before = producer.submit_image(tiny_jpeg(1), source="acl").job_id
    with _client(port, pw, "moodstream-producer") as as_producer:
        as_producer.rpush(keys.intake, encode_frame(FrameJob("hostile", "acl", 0, image=tiny_jpeg(2),
                                                             reply_to="other:stream")))
    after = producer.submit_image(tiny_jpeg(3), source="acl").job_id
    producer.close()
    worker = start_worker(settings_for(_url(port, pw, "moodstream-worker"), prefix=PREFIX), checkpoint, "acl-w")
    try:
        got = list(ResultReader(settings_for(_url(port, pw, "moodstream-reader"), prefix=PREFIX))
                   .read(start=FROM_START, count=3, timeout_s=60))
    finally:
        worker.stop()
    assert {r.job_id: r.ok for r in got} == {before: True, "hostile": False, after: True}
    with _client(port, pw, "default") as admin:
        assert admin.xpending(keys.frames, keys.group)["pending"] == 0
        assert [d[b"reason"] for _, d in admin.xrange(keys.dead)] == [b"bad_field"]
        assert not admin.exists("other:stream")
    assert _denials(port, pw) == []


def test_track_stage_puts_back_what_it_could_not_publish_as_its_user(acl_server):
    """The tracked stream turned into another type under a running stage: Redis runs the rest of
    the MULTI, the XACK too, so the stage puts the acked results back before it stops. It did so
    with XADD to the results stream, which its user may not (NOPERM): reported lost. Now XCLAIM
    ... FORCE makes the same entries pending again, and the next start publishes them."""
    from moodstream.shared.errors import ConfigError
    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import FIELD, decode_result, encode_result
    from moodstream.worker.tracking.stage import TrackStage

    port, pw = acl_server
    keys = Keys(PREFIX)
    admin = _client(port, pw, "default")
    stage = TrackStage(settings_for(_url(port, pw, "moodstream-track"), prefix=PREFIX), name="tracker",
                       reorder_wait_ms=0, block_ms=20, source_idle_s=0.5, pictures=False)
    stage._ensure_group()
    for frame in range(3):
        face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0})
        admin.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=f"j{frame}", source="cam", frame=frame,
                                                                   worker="w", faces=[face], timestamp_s=frame))})
    admin.set(keys.tracked, "not a stream")
    with pytest.raises(ConfigError, match="not a stream") as exc:
        for t in (100.0, 100.1, 101.0, 102.0):
            stage.step(now_s=t)
        stage.flush()
    assert "3 results acked without it were put back" in str(exc.value), str(exc.value)
    assert admin.xpending(keys.results, keys.track_group)["pending"] == 3  # pending again, not lost
    admin.delete(keys.tracked)
    again = TrackStage(settings_for(_url(port, pw, "moodstream-track"), prefix=PREFIX), name="tracker",
                       reorder_wait_ms=0, block_ms=20, source_idle_s=0.5, pictures=False)
    for t in (200.0, 200.1, 201.0, 202.0):
        again.step(now_s=t)
    again.flush()
    assert sorted(decode_result(f[FIELD]).frame for _, f in admin.xrange(keys.tracked)) == [0, 1, 2]
    assert admin.xpending(keys.results, keys.track_group)["pending"] == 0
    admin.close()
    assert _denials(port, pw) == []


# The rules of the release before the intake list (a rolling upgrade: Redis's users not yet changed)
RULES_BEFORE = {
    "moodstream-worker": "resetkeys ~moodstream:* resetchannels -@all +ping +xgroup|create +xreadgroup +xautoclaim "
                         "+xpending +xgroup|delconsumer +xinfo|consumers +exists +xadd +xack +multi +exec +type "
                         "+hset +expire +del +zadd +zremrangebyscore +hmget +hincrby +hdel",
    "moodstream-producer": "resetkeys ~moodstream:frames resetchannels -@all +ping +xadd +xinfo|groups "
                           "+xinfo|stream +xpending +xrange",
    # before <prefix>:track:stats
    "moodstream-track": "resetkeys %R~moodstream:frames resetchannels -@all +ping +xrange (~moodstream:results "
                        "+xgroup|create +xreadgroup +xautoclaim +xclaim +xpending +xack +type) "
                        "(~moodstream:tracked ~moodstream:summaries +xadd +type) +multi +exec",
}


# The producer's rules of the release before the light backlog read (no XLEN)
RULES_BEFORE_XLEN = {
    "moodstream-producer": "resetkeys ~moodstream:intake %R~moodstream:frames resetchannels -@all +ping +rpush +llen "
                           "+xinfo|groups +xinfo|stream +xpending +xrange",
}


def _rules_before(port, pw, user: str, rules: dict[str, str] = RULES_BEFORE) -> None:
    with _client(port, pw, "default") as admin:
        admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{pw[user]}", *rules[user].split())


def test_track_stage_counts_late_results_as_its_user_and_on_the_rules_of_before(acl_server, caplog):
    """A late result counted in <prefix>:track:stats (for `moodstream status`) as moodstream-track: nothing
    refused. A user on the rules of before (no HINCRBY there) costs the count, said once, not the results."""
    import logging

    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result
    from moodstream.worker.tracking.stage import TrackStage

    port, pw = acl_server
    keys = Keys(PREFIX)
    admin = _client(port, pw, "default")

    def late_run(source: str) -> TrackStage:  # frames 0, 2, then 1: late
        stage = TrackStage(settings_for(_url(port, pw, "moodstream-track"), prefix=PREFIX), name="tracker",
                           reorder_wait_ms=300, block_ms=1, pictures=False)
        stage._ensure_group()
        for frames, t in (((0, 2), 100.0), ((), 100.31), ((1,), 100.4)):
            for frame in frames:
                face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0})
                admin.xadd(keys.results, {FIELD: encode_result(FrameResult(
                    job_id=f"{source}{frame}", source=source, frame=frame, worker="w", faces=[face], timestamp_s=frame))})
            stage.step(now_s=t)
        stage.flush()
        return stage

    assert late_run("cam").late == 1
    assert admin.hget(keys.track_stats, "late") == b"1"
    assert _denials(port, pw) == []
    admin.execute_command("ACL", "SETUSER", "moodstream-track", "reset", "on", f">{pw['moodstream-track']}",
                          *RULES_BEFORE["moodstream-track"].split())
    with caplog.at_level(logging.WARNING, logger="moodstream.worker.tracking.stage"):
        assert late_run("door").late == 1
    assert admin.xlen(keys.tracked) == 6 and admin.hget(keys.track_stats, "late") == b"1"
    said = [r.getMessage() for r in caplog.records if keys.track_stats in r.getMessage()]
    assert len(said) == 1 and "moodstream-track.rules" in said[0], said
    admin.close()


# The track stage's rules of the release before its run numbers were kept in Redis
RULES_BEFORE_RUNS = {
    "moodstream-track": RULES_BEFORE["moodstream-track"].replace(
        " +multi +exec", " (~moodstream:track:stats +hincrby +hsetnx) +multi +exec"),
}


def test_track_stage_keeps_run_numbers_as_its_user_and_on_the_rules_of_before(acl_server, caplog):
    """Run numbers in <prefix>:track:runs as moodstream-track: a restarted stage numbers the source's
    next run 2, nothing refused. A user on the rules of before (no HMGET, HSET there) costs the numbers
    (runs from 1 again after a restart, as before), said once, not the results nor their summaries."""
    import logging

    from moodstream.shared.record import Face, FrameResult
    from moodstream.shared.wire import encode_result
    from moodstream.worker.tracking.stage import TrackStage

    port, pw = acl_server
    keys = Keys(PREFIX)
    admin = _client(port, pw, "default")

    def one_run() -> None:  # a stage started, two frames of "cam", stopped (its summary out)
        stage = TrackStage(settings_for(_url(port, pw, "moodstream-track"), prefix=PREFIX), name="tracker",
                           reorder_wait_ms=0, block_ms=1, pictures=False)
        stage._ensure_group()
        for frame in (0, 1):
            face = Face((10.0, 10.0, 50.0, 50.0), 0.99, emotion="happiness", probabilities={"happiness": 1.0})
            admin.xadd(keys.results, {FIELD: encode_result(FrameResult(
                job_id=f"j{admin.xlen(keys.results)}", source="cam", frame=frame, worker="w", faces=[face],
                timestamp_s=frame))})
        stage.step(now_s=100.0)
        stage.flush()

    def runs() -> list[int]:
        return [json.loads(f[FIELD])["run"] for _, f in admin.xrange(keys.summaries)]

    one_run()
    one_run()
    assert runs() == [1, 2] and _denials(port, pw) == []
    _rules_before(port, pw, "moodstream-track", RULES_BEFORE_RUNS)
    with caplog.at_level(logging.WARNING, logger="moodstream.worker.tracking.stage"):
        one_run()
    assert runs() == [1, 2, 1] and admin.xlen(keys.tracked) == 6
    said = [r.getMessage() for r in caplog.records if keys.track_runs in r.getMessage()]
    assert len(said) == 1 and "moodstream-track.rules" in said[0], said
    admin.close()


def test_a_worker_on_the_rules_of_before_serves_the_stream_and_says_once(acl_server, checkpoint, caplog):
    """A new worker whose user may not run the mover (the rules of before): it serves what old
    producers XADD to the frames stream, as before, and says once which rules to grant."""
    import logging

    from moodstream.producer.results import FROM_START, ResultReader
    from moodstream.shared.record import FrameJob
    from moodstream.shared.wire import encode_frame

    port, pw = acl_server
    keys = Keys(PREFIX)
    _rules_before(port, pw, "moodstream-worker")
    with _client(port, pw, "default") as admin:  # an old producer's frame, and a new one's
        admin.xadd(keys.frames, {FIELD: encode_frame(FrameJob("old", "acl", 0, image=tiny_jpeg(1)))})
        admin.rpush(keys.intake, encode_frame(FrameJob("new", "acl", 1, image=tiny_jpeg(2))))
    with caplog.at_level(logging.WARNING, logger="moodstream.worker.intake"):
        worker = start_worker(settings_for(_url(port, pw, "moodstream-worker"), prefix=PREFIX), checkpoint,
                              "acl-old")
        try:
            got = list(ResultReader(settings_for(_url(port, pw, "moodstream-reader"), prefix=PREFIX))
                       .read(start=FROM_START, count=1, timeout_s=60))
            time.sleep(1.0)  # the mover had its tries
        finally:
            worker.stop()
    assert [r.job_id for r in got] == ["old"] and got[0].ok
    said = [r.getMessage() for r in caplog.records if r.name == "moodstream.worker.intake"]
    assert len(said) == 1 and "moodstream-worker.rules" in said[0] and "+evalsha" in said[0], said
    with _client(port, pw, "default") as admin:
        assert admin.llen(keys.intake) == 1  # left for a worker that may move it


def test_a_producer_on_the_rules_of_before_fails_in_one_line(acl_server, tmp_path):
    """A new producer whose user may not RPUSH to the intake (the rules of before): one line that
    names the rules, from the API (ConfigError) and from `moodstream produce` (exit 1)."""
    from moodstream.producer.client import Producer
    from moodstream.shared.errors import ConfigError

    port, pw = acl_server
    _rules_before(port, pw, "moodstream-producer")
    producer = Producer(settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX))
    with pytest.raises(ConfigError, match="moodstream-producer.rules") as exc:
        producer.submit_image(tiny_jpeg(1), source="old-rules")
    producer.close()
    assert "+rpush" in str(exc.value) and "\n" not in str(exc.value)
    (tmp_path / "a.jpg").write_bytes(tiny_jpeg(1))
    out = _produce_as_producer(port, pw, tmp_path / "a.jpg")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "moodstream-producer.rules" in lines[0], out.stderr
    assert pw["moodstream-producer"] not in out.stderr


def test_a_producer_on_the_rules_before_xlen_measures_by_full_reads_and_says_once(acl_server, caplog):
    """The backlog's light read sends XLEN, which the producer's rules of the release before lack (Redis's
    users upgraded after the producers): the producer still measures and drops as before, by full reads
    (XINFO STREAM), and says once what to grant; XLEN is refused once, nothing else."""
    import logging

    from moodstream.producer.client import SHED_CHECK_S, Producer

    port, pw = acl_server
    keys = Keys(PREFIX)
    with _client(port, pw, "default") as admin:
        admin.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
    _rules_before(port, pw, "moodstream-producer", RULES_BEFORE_XLEN)
    producer = Producer(settings_for(_url(port, pw, "moodstream-producer"), prefix=PREFIX, lag_limit=5,
                                     backpressure="drop"), notice=lambda m: None)
    with caplog.at_level(logging.WARNING, logger="moodstream.shared.transport"):
        refs = []
        for i in range(12):
            refs.append(producer.submit_image(tiny_jpeg(i), source="old-rules", frame=i))
            time.sleep(SHED_CHECK_S)  # each a measure (a full read)
    producer.close()
    assert [r.dropped for r in refs] == [False] * 6 + [True] * 6  # over lag_limit 5 from the 7th
    said = [r.getMessage() for r in caplog.records if "+xlen" in r.getMessage()]
    assert len(said) == 1 and "moodstream-producer.rules" in said[0] and "XINFO STREAM" in said[0], said
    assert _denials(port, pw) == ["moodstream-producer: xlen (command)"]
    with _client(port, pw, "default") as admin:
        xlen = [int(e["count"]) for e in admin.acl_log() if e["object"] in (b"xlen", "xlen")]
        assert xlen == [1]  # refused once: not tried again


def test_status_as_the_dashboard_user_shows_the_track_stage_s_line(acl_server):
    """moodstream-dashboard reads the fleet's figures as `moodstream status` takes them, and status
    ran as it. <prefix>:track:stats, which status reads since, was not among its keys: status
    ended at once with "refused us: this user has no permissions ...", exit 1, nothing shown; then it
    showed the rest without the track stage's line. The page says that line too now (its late results,
    its results trimmed before it read them), and the user may read the key: status shows it all."""
    from click.testing import CliRunner

    from moodstream.cli import cli

    port, pw = acl_server
    keys = Keys(PREFIX)
    with _client(port, pw, "default") as admin:
        admin.hset(keys.track_stats, mapping={"late": 2, "late_after_run_ended": 1})
    ran = CliRunner().invoke(cli, ["status", "--redis-url", _url(port, pw, "moodstream-dashboard"),
                                   "--prefix", PREFIX])
    assert ran.exit_code == 0, ran.output
    assert "workers: " in ran.output and "dead letters: 0" in ran.output
    assert "track stage: 2 late results published untracked" in ran.output, ran.output
    # (its EVAL of the frames/s count is refused, as before: status counts without it)
    assert {d.split(" (")[0] for d in _denials(port, pw)} <= {"moodstream-dashboard: eval"}
