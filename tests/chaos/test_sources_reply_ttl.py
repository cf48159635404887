"""Reply streams expire (issue 22 item 12): a `--reply-to` stream was kept for ever,
one per caller (`up` makes one per run). Real redis-server, real worker process,
real `produce`."""

from __future__ import annotations

from tests.support.expanderkit import PREFIX, REPO
from tests.support.procs import spawn_cli, spawn_double, stop, wait_until

from moodstream.shared.keys import Keys


def test_a_reply_stream_expires_after_reply_ttl_s(redis_url, client):
    keys = Keys(PREFIX)
    worker = spawn_double(redis_url, "w-reply", reply_ttl_s=300)
    try:
        proc = spawn_cli("produce", "--reply-to", "mine", str(REPO / "samples" / "street.jpg"),
                         str(REPO / "samples" / "audience.jpg"), MOODSTREAM_REDIS_URL=redis_url,
                         MOODSTREAM_PREFIX=PREFIX)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        wait_until(lambda: client.xlen(keys.reply("mine")) >= 2, 60, "2 replies")
    finally:
        stop(worker)
    assert 0 < client.ttl(keys.reply("mine")) <= 300
