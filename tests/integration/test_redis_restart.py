"""Redis restarts under a running producer and worker: both reconnect and finish.

Phase 1 turns on RDB snapshots for this dedicated server (``CONFIG SET save``),
so the graceful shutdown of ``EmbeddedRedis.restart`` writes the data set and
the restarted server loads it: stream, consumer group, pending entries and
results survive, and every job must be answered. Phase 2 restarts WITHOUT
persistence: everything in Redis is gone, so we only claim that the worker
notices the lost group, recreates it, and serves jobs produced after the restart.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
from tests.support.streamkit import all_results, report, result_counts, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys


@pytest.mark.slow
def test_restart_during_a_run(checkpoint):
    with EmbeddedRedis() as server:
        settings = settings_for(server.url, batch_max=8)
        keys_client = redis.Redis.from_url(server.url)
        keys = Keys(settings.prefix)
        keys_client.config_set("save", "3600 1")  # snapshot on shutdown (phase 1 only)
        worker = start_worker(settings, checkpoint, "w-restart")
        sent: list[str] = []

        def produce(n: int, offset: int) -> None:
            p = Producer(settings, retry_for_s=60)
            for i in range(n):
                sent.append(p.submit_image(tiny_jpeg(offset + i), source="restart", frame=offset + i).job_id)
                time.sleep(0.01)

        feeder = threading.Thread(target=produce, args=(300, 0))
        feeder.start()
        try:
            wait_for(lambda: keys_client.xlen(keys.results) >= 60, 60, what="60 results before the restart")
            before = keys_client.xlen(keys.results)
            server.restart(down_s=1.0)
            feeder.join(90)
            assert not feeder.is_alive()
            keys_client = redis.Redis.from_url(server.url)
            wait_for(lambda: len({r.job_id for r in all_results(keys_client, keys)}) >= 300, 90,
                     what="every job of phase 1 answered")
            counts1 = result_counts(all_results(keys_client, keys), sent)
            report("redis_restart_persisted", **counts1, results_before_restart=before)
            assert counts1["lost"] == 0 and counts1["unexpected"] == 0 and counts1["errors"] == 0
            assert counts1["duplicates"] <= 2 * settings.batch_max  # at-least-once: a lost EXEC reply at most

            # phase 2: no persistence; the data set is lost, the service is not
            keys_client.config_set("save", "")
            server.stop()
            (Path(server.dir) / "dump.rdb").unlink()  # phase 1's snapshot would be loaded again
            time.sleep(0.5)
            server.start()
            keys_client = redis.Redis.from_url(server.url)
            assert keys_client.xlen(keys.results) == 0  # nothing survived
            sent.clear()
            produce(50, 1000)
            wait_for(lambda: len({r.job_id for r in all_results(keys_client, keys)}) >= 50, 60,
                     what="jobs produced after a non-persistent restart")
            counts2 = result_counts(all_results(keys_client, keys), sent)
            report("redis_restart_lost_data_then_new_jobs", **counts2)
            assert counts2["lost"] == 0 and counts2["duplicates"] == 0
        finally:
            worker.stop()
            keys_client.close()
