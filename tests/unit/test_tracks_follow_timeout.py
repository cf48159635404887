"""`tracks --follow --timeout-s T` ends at T while Redis is unreachable, as `results --timeout-s` does.

It retried for ever (backoff growing to 10 s): a scripted `tracks --follow --timeout-s 60` whose
Redis went away mid-read never returned. No server: the client points at a port nothing listens on."""

from __future__ import annotations

import socket
import threading

from moodstream.shared.retry import RedisGone, RedisRetry
from moodstream.shared.transport import connect
from moodstream.worker.tracking.reader import read_summaries


def closed_port_url() -> str:
    with socket.socket() as s:  # a free port, closed again: connections to it are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_read_summaries_ends_at_its_timeout_while_redis_is_unreachable():
    url = closed_port_url()
    client = connect(url, socket_timeout_s=1.0)
    stop = threading.Event()
    retry = RedisRetry("tracks", url, stop)
    outcome: list = []

    def read() -> None:
        try:
            outcome.append(list(read_summaries(client, "t:summaries", "0-0", True, 0.3, stop, retry)))
        except RedisGone:
            outcome.append("gone")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)  # a guard against a hang, not a timing: the read asked for 0.3 s
    alive = reader.is_alive()
    stop.set()  # (the thread ends if it was still retrying)
    assert not alive, "read_summaries(follow=True, timeout_s=0.3) still retrying an unreachable Redis after 60 s"
    assert outcome in ([[]], ["gone"])
