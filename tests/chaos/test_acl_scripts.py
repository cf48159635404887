"""Issue 22 item 7: a producer credential could stall Redis. The producer ACL user
could EVAL (the backlog count ran a Lua script): a long script made KEDA's PING
wait 4 s (BUSY). No role but the admin may load scripts or functions now, and
none but the admin and the worker (its intake mover, worker/intake.py) may run
one; the backlog is read without any (shared/transport.group_backlog).

Against the real redis-server started by deploy/k8s/base/redis/start-redis.sh
with the repo's ACL rules (tests/support/aclkit.py)."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from tests.support.aclkit import PREFIX, USERS, acl_server, client, denials, url
from tests.support.procs import measure
from tests.support.streamkit import settings_for, tiny_jpeg

from moodstream.shared.keys import Keys

__all__ = ["acl_server"]  # a fixture, used by name

BUSY_S = 3.0  # about how long the script below keeps Redis busy (Redis answers BUSY to others after 5 s)
SPIN = "local i = 0 while i < 150000000 do i = i + 1 end return i"  # no command: any user's script can do it
SPIN_FUNCTION = f"#!lua name=spin\nredis.register_function('spin', function() {SPIN} end)"
ROLES = [u for u in USERS if u != "default"]


def _ping_while(port, pw, spin) -> tuple[float, object]:
    """(longest PING of the keda user while ``spin`` runs in a thread, what spin returned or raised)."""
    outcome: list = []

    def run():
        try:
            outcome.append(spin())
        except redis.RedisError as exc:
            outcome.append(exc)

    with client(port, pw, "keda") as keda:
        keda.ping()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        worst, t_end = 0.0, time.monotonic() + BUSY_S + 1
        while time.monotonic() < t_end and (t.is_alive() or not outcome):
            t0 = time.monotonic()
            try:
                keda.ping()
            except redis.RedisError:  # BUSY: as bad as a wait
                worst = max(worst, BUSY_S)
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.05)
        t.join(BUSY_S + 5)
    return worst, outcome[0] if outcome else None


def test_a_producer_credential_cannot_stall_redis_with_a_script(acl_server):
    port, pw = acl_server
    with client(port, pw, "moodstream-producer") as producer:
        worst, outcome = _ping_while(port, pw, lambda: producer.eval(SPIN, 0))
    measure("acl_producer_script_stall", keda_ping_worst_s=round(worst, 3),
            script=type(outcome).__name__ if isinstance(outcome, Exception) else "ran")
    assert isinstance(outcome, redis.exceptions.NoPermissionError), outcome
    assert worst < 1.0, f"KEDA's PING waited {worst:.2f}s while a producer's script ran"


@pytest.mark.parametrize("user", ROLES)
def test_no_role_may_run_or_load_code(acl_server, user):
    port, pw = acl_server
    with client(port, pw, "default") as admin:
        sha = admin.script_load("return 1")
    attempts = {
        "EVAL": ("EVAL", "return 1", "0"),
        "EVAL_RO": ("EVAL_RO", "return 1", "0"),
        "EVALSHA": ("EVALSHA", sha, "0"),
        "SCRIPT LOAD": ("SCRIPT", "LOAD", "return 1"),
        "FUNCTION LOAD": ("FUNCTION", "LOAD", SPIN_FUNCTION),
        "FUNCTION FLUSH": ("FUNCTION", "FLUSH"),
    }
    allowed = []
    with client(port, pw, user) as c:
        for name, command in attempts.items():
            try:
                c.execute_command(*command)
                allowed.append(name)
            except redis.exceptions.NoPermissionError:
                pass
    # the worker runs its mover's script (worker/intake.py): EVAL / EVALSHA, never load code
    expected = ["EVAL", "EVALSHA"] if user == "moodstream-worker" else []
    assert allowed == expected, f"{user} may {', '.join(allowed)}"


def test_backlog_and_drop_mode_as_the_producer_need_no_script(acl_server):
    """The producer's backlog (on the path Redis's lag is trusted, and on the counting
    path after an XDEL) and both backpressure modes, as moodstream-producer: no refusal."""
    from moodstream.producer.client import Producer
    from moodstream.shared.transport import group_backlog

    port, pw = acl_server
    keys = Keys(PREFIX)
    with client(port, pw, "default") as admin:
        admin.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
    for mode, n in (("wait", 10), ("drop", 40)):  # no worker: wait stays under the limit
        producer = Producer(settings_for(url(port, pw, "moodstream-producer"), prefix=PREFIX, lag_limit=20,
                                         backpressure=mode), notice=lambda m: None)
        for i in range(n):
            producer.submit_image(tiny_jpeg(i), source=mode)
        producer.close()
    with client(port, pw, "default") as admin:  # what a mover does: the frames into the stream
        for message in admin.lrange(keys.intake, 0, -1):
            admin.xadd(keys.frames, {b"msg": message})
        admin.delete(keys.intake)
        ids = [eid for eid, _ in admin.xrange(keys.frames, count=3)]
        admin.xdel(keys.frames, *ids)  # an operator deletes unread entries: Redis's lag is no longer trusted
        length = admin.xlen(keys.frames)
    with client(port, pw, "moodstream-producer") as c:
        b = group_backlog(c, keys)
    assert (b.lag, b.pending, b.exact) == (length, 0, True)
    assert denials(port, pw) == []
