"""A Redis in cluster mode (what managed Redis services often give by default: "cluster mode
enabled") is not a server moodstream can use: its keys go together into scripts and
transactions (the mover's, the worker's), which a cluster refuses across hash slots. Pointed at
one, `moodstream worker` died with a traceback (``ClusterCrossSlotError`` out of a MULTI), and
`produce` pushed frames no worker could ever move. Now every command says so in one line at
start-up, and where the ACL user may not read ``INFO`` (so start-up cannot tell), the first
refused command does.

The server here is a real one-node cluster: redis-server with ``--cluster-enabled yes`` holding
every slot, which answers ``CROSSSLOT`` as a many-node one does (a many-node one also answers
``MOVED``, mapped the same way)."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import redis
from tests.support.procs import REPO, spawn_cli, stop

from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.errors import ConfigError
from moodstream.shared.keys import Keys
from moodstream.shared.retry import RedisRetry
from moodstream.shared.transport import check_connection, connect

pytestmark = pytest.mark.slow
KEYS = Keys("t")
CLIP = REPO / "samples" / "hamilton_clip.mp4"
SLOTS = 16384
BUS_OFFSET = 10000  # a cluster node also listens on its port + 10000 (its cluster bus)


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000, below 65536) is free too."""
    for _ in range(200):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port + BUS_OFFSET > 65535:
                continue
            try:
                b.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
            return port
    pytest.skip("no free pair of ports for a cluster node and its bus")


@pytest.fixture(scope="module")
def cluster():
    """A one-node Redis Cluster holding every slot; ``url`` for the default user, ``acl_url``
    for a user that may run everything but INFO (as some managed services' users)."""
    server = EmbeddedRedis(port=_cluster_port(), extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]).start()
    admin = redis.Redis.from_url(server.url)
    # CLUSTER ADDSLOTSRANGE is Redis 7's; ADDSLOTS with every slot works on 6.2 too
    admin.execute_command("CLUSTER", "ADDSLOTS", *range(SLOTS))
    deadline = time.monotonic() + 20
    while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "the one-node cluster never became ok"
        time.sleep(0.1)
    admin.execute_command("ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info")
    server.acl_url = f"redis://noinfo:pw@127.0.0.1:{server.port}/0"
    server.admin = admin
    yield server
    admin.close()
    server.stop()


def test_the_server_is_a_cluster_that_refuses_keys_across_slots(cluster):
    """What the tests below rest on: the keys moodstream uses together are in different slots."""
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        cluster.admin.exists(KEYS.intake, KEYS.frames)


def test_check_connection_refuses_a_cluster_in_one_line(cluster):
    with pytest.raises(ConfigError) as caught:
        check_connection(connect(cluster.url), cluster.url)
    assert "cluster mode" in str(caught.value) and "\n" not in str(caught.value)


def test_check_connection_does_not_ask_a_named_user(cluster):
    """An ACL user (the shipped ones may not read INFO): start-up does not ask, so the operator's
    ACL LOG gets no refusal for every command started; the first command the cluster refuses says it."""
    cluster.admin.execute_command("ACL", "LOG", "RESET")
    check_connection(connect(cluster.acl_url), cluster.acl_url)
    assert cluster.admin.execute_command("ACL", "LOG") == []


def test_the_retry_helper_turns_a_cross_slot_refusal_into_one_line(cluster):
    client = connect(cluster.acl_url)
    retry = RedisRetry("worker w1", cluster.acl_url)
    with pytest.raises(ConfigError) as caught:
        retry.call(lambda: client.exists(KEYS.intake, KEYS.frames))
    assert "cluster mode" in str(caught.value) and "pw" not in str(caught.value)


COMMANDS = {
    "worker": ["worker", "--device", "cpu"],
    "produce": ["produce", str(CLIP), "--max-frames", "3"],
    "status": ["status"],
    "results --follow": ["results", "--follow"],
    "tracks --follow": ["tracks", "--follow"],
    "track": ["track"],
    "dashboard": ["dashboard", "--port", "0"],
    "expander": ["expander", "--burst"],
    "produce --rq": ["produce", "--rq", str(CLIP)],
}


def _run(args: list[str], url: str, timeout_s: float = 90) -> tuple[int, list[str], str]:
    proc = spawn_cli(*args, MOODSTREAM_REDIS_URL=url, MOODSTREAM_PREFIX="t")
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        out, err = stop(proc)
        pytest.fail(f"`moodstream {' '.join(args)}` still running {timeout_s:g} s after start on a cluster: "
                    + err[-2000:])
    return proc.returncode, [line for line in (out + err).splitlines() if line.strip()], err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_cluster_in_one_line(cluster, command):
    cluster.admin.flushall()
    code, lines, err = _run(COMMANDS[command], cluster.url)
    assert code == 1, "\n".join(lines)
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and "cluster mode" in lines[0], "\n".join(lines)
    assert cluster.admin.llen(KEYS.intake) == 0  # produce pushed nothing no worker could move


def test_a_worker_whose_user_may_not_read_info_stops_in_one_line(cluster):
    """Start-up cannot tell; the first command the cluster refuses (the worker's group, its mover)
    does, where it was a traceback."""
    cluster.admin.flushall()
    code, lines, err = _run(COMMANDS["worker"], cluster.acl_url)
    assert code == 1, "\n".join(lines)
    assert "Traceback" not in err, err[-3000:]
    assert any("cluster mode" in line for line in lines), "\n".join(lines)
    assert "pw@" not in err


def test_the_producer_api_refuses_a_cluster_before_its_first_push(cluster):
    """From Python (README "From Python"): the first submit raised nothing and pushed a job no
    worker could ever move."""
    from moodstream import Producer, Settings

    cluster.admin.flushall()
    producer = Producer(Settings(redis_url=cluster.url, prefix="t"))
    with pytest.raises(ConfigError) as caught:
        producer.submit_image((REPO / "samples" / "street.jpg").read_bytes(), source="camera-1")
    assert "cluster mode" in str(caught.value)
    assert cluster.admin.llen(KEYS.intake) == 0 and producer.stats.sent == 0
