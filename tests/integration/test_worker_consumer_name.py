"""`moodstream worker --consumer NAME`: the name goes into the worker's metrics info label, its
heartbeat and the consumer group. A name the metrics refuse (a URL, credentials, a control character,
over 128 characters) ended in a ValueError traceback from the metrics, after the models had loaded;
now it is a usage error naming --consumer, before anything loads. Real CLI, real Redis."""

from __future__ import annotations

import pytest
from tests.support.procs import spawn_cli, stop


@pytest.mark.parametrize("name", ["w@host", "redis://w", "w\x1b[2J", "w" * 129],
                         ids=["at", "url", "escape", "long"])
def test_a_consumer_name_the_metrics_refuse_is_a_usage_error(redis_url, name):
    proc = spawn_cli("worker", "--consumer", name, "--max-frames", "1", MOODSTREAM_REDIS_URL=redis_url,
                     MOODSTREAM_PREFIX="consumer-name")
    try:
        _, err = proc.communicate(timeout=120)
    except Exception:
        err = stop(proc)[1]
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "--consumer" in err, err
    assert "\x1b" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 3, err  # usage, try --help, the error


def test_a_plain_consumer_name_is_accepted(redis_url):
    from moodstream.worker.serve import consumer_name

    assert consumer_name(None, None, "gpu-node-3.worker_1") == "gpu-node-3.worker_1"
    assert consumer_name(None, None, None) is None  # the default, <host>-<pid>
