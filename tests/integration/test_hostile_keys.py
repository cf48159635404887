"""The worker against hostile producer messages and keys of the wrong type, on a real redis-server
(found by an audit): a job's rejected ``reply_to`` must touch no key (it once got the error result
and an EXPIRE: one message put a 24-hour TTL on the results or frames stream, or on any key of the
database); a results stream that is not a stream must lose no frame (they were acked without a
result, then the worker died with a traceback, batch after batch at each restart); a frames key that
is not a stream is one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.streamkit import (all_results, dead_letters, pending_count, settings_for, start_worker, tiny_jpeg,
                                     wait_for)

from moodstream.producer.client import Producer
from moodstream.shared.record import FrameJob
from moodstream.shared.wire import FIELD, encode_frame

REPO = Path(__file__).resolve().parents[2]


def test_a_rejected_reply_to_touches_no_key(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url)
    producer = Producer(settings)
    first = producer.submit_image(tiny_jpeg(1), source="good").job_id  # the results stream exists
    client.set("victim:key", "kept")
    targets = [keys.results, keys.frames, "victim:key", keys.dead]
    for i, target in enumerate(targets):
        client.xadd(keys.frames, {FIELD: encode_frame(FrameJob(f"bad-{i}", "hostile", 0, image=tiny_jpeg(2),
                                                               reply_to=target))})
    last = producer.submit_image(tiny_jpeg(3), source="good").job_id
    w = start_worker(settings, checkpoint, "w-reply")
    try:
        wait_for(lambda: pending_count(client, keys) == 0 and client.xlen(keys.dead) >= len(targets), 60,
                 what="all entries served")
    finally:
        w.stop()
    for key in (keys.results, keys.frames, keys.dead, "victim:key"):
        assert client.ttl(key) == -1, key  # no EXPIRE on a key the reply did not write
    assert client.get("victim:key") == b"kept"
    results = all_results(client, keys)
    by_job: dict[str, list] = {}
    for r in results:
        by_job.setdefault(r.job_id, []).append(r)
    for i in range(len(targets)):  # one error result each, on the shared results stream only
        assert [r.error.reason for r in by_job[f"bad-{i}"]] == ["bad_field"]
    assert by_job[first][0].ok and by_job[last][0].ok
    assert sorted(d["reason"] for d in dead_letters(client, keys)) == [b"bad_field"] * len(targets)
    assert client.xlen(keys.frames) == len(targets) + 2  # nothing added to the frames stream


def _cli(env: dict, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moodstream", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _env(redis_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t", MOODSTREAM_DEVICE="cpu", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    return env


def _mend_and_serve(settings, checkpoint, client, keys, sent: list[str], name: str) -> None:
    """The results key deleted (mended): every frame sent is still there to serve."""
    client.delete(keys.results)
    w = start_worker(settings, checkpoint, name)
    try:
        wait_for(lambda: client.exists(keys.results) and client.xlen(keys.results) >= len(sent), 60, what="results")
    finally:
        w.stop()
    assert sorted(r.job_id for r in all_results(client, keys)) == sorted(sent)


def test_a_results_key_of_another_type_stops_the_worker_before_it_takes_a_frame(redis_url, client, keys,
                                                                                  checkpoint):
    settings = settings_for(redis_url)
    producer = Producer(settings)
    sent = [producer.submit_image(tiny_jpeg(i), source="held").job_id for i in range(3)]
    client.set(keys.results, "blocker")
    out = _cli(_env(redis_url), "worker", "--detector", "haar", "--threads", "1")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and f"{keys.results!r} is not a stream" in out.stderr, out.stderr[-2000:]
    assert client.llen(keys.intake) == 3 and not client.exists(keys.frames)  # none moved, none taken
    _mend_and_serve(settings, checkpoint, client, keys, sent, "w-after")


# the worker's thread ends on the expected ConfigError (asserted below through w.error)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_results_key_turned_to_another_type_under_a_worker_loses_no_frame(redis_url, client, keys, checkpoint):
    """The batch's XADD to results fails inside the MULTI while its XACK runs: the frames are put
    back on the frames stream, and the worker stops with one line."""
    settings = settings_for(redis_url)
    producer = Producer(settings)
    producer.submit_image(tiny_jpeg(0), source="before")
    w = start_worker(settings, checkpoint, "w-turned")
    wait_for(lambda: client.exists(keys.results) and client.xlen(keys.results) == 1, 60, what="the first result")
    client.delete(keys.results)
    client.set(keys.results, "blocker")
    sent = [producer.submit_image(tiny_jpeg(i), source="held").job_id for i in range(1, 4)]
    w.thread.join(60)
    assert not w.thread.is_alive() and len(w.error) == 1 and "is not a stream" in w.error[0], w.error
    assert "put back" in w.error[0]
    _mend_and_serve(settings, checkpoint, client, keys, sent, "w-mended")


def test_a_frames_key_of_another_type_is_one_line(redis_url, client, keys):
    client.set(keys.frames, "notastream")
    out = _cli(_env(redis_url), "worker", "--detector", "haar", "--threads", "1")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"{keys.frames!r} is not a stream" in out.stderr
    assert client.get(keys.frames) == b"notastream"  # left as it is


def test_a_frames_stream_at_the_largest_id_does_not_stop_produce(redis_url, client, keys):
    """An entry with the largest id (one XADD with an explicit id: an admin's now, a producer's
    credential may not XADD) makes every later XADD * fail. `produce` said so with a traceback,
    later in one line; now it pushes to the intake list, which takes it: the movers meet the stream's
    refusal, keep the frame there and say what to do (tests/integration/test_intake.py)."""
    client.xadd(keys.frames, {"msg": "x"}, id="18446744073709551615-18446744073709551615")
    out = _cli(_env(redis_url), "produce", "samples/street.jpg")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert client.llen(keys.intake) == 1
    assert client.xlen(keys.frames) == 1  # left as it is: only an admin may decide what to do with it


def test_malformed_messages_among_good_ones_hold_no_old_batch(redis_url, client, keys, checkpoint):
    """One malformed message a batch made the worker's memory grow for as long as they came (149 ->
    2,523 MiB in 80 s): the MessageError stored on its entry kept, through the __context__ that
    `raise ... from None` leaves, a traceback reaching the serve() frame of the batch that read it,
    with its decoded frames; the entry was served in the next batch, whose own bad entry held that
    one, and so on. After the batches: no serve() frame is left."""
    import gc
    import types

    settings = settings_for(redis_url, batch_max=4, batch_wait_ms=50)
    producer = Producer(settings)
    w = start_worker(settings, checkpoint, "w-chain")
    try:
        for i in range(40):
            if i % 4 == 0:
                client.xadd(keys.frames, {FIELD: b"\xc1"})  # not msgpack
            else:
                producer.submit_image(tiny_jpeg(i, (320, 240)), source="good")
        wait_for(lambda: pending_count(client, keys) == 0 and w.worker.served >= 40, 120, what="all served")
        gc.collect()
        serving = [f for f in gc.get_objects() if type(f) is types.FrameType and f.f_code.co_name == "serve"]
        assert len(serving) <= 1, f"{len(serving)} serve() frames still reachable"
    finally:
        w.stop()


def test_a_destroyed_group_is_recreated_where_the_worker_was(redis_url, client, keys, checkpoint):
    """After XGROUP DESTROY the group came back at id 0: every entry still in the frames stream was
    served again (30 answered frames, 30 more results; up to stream_maxlen of them)."""
    import time

    settings = settings_for(redis_url)
    producer = Producer(settings)
    w = start_worker(settings, checkpoint, "w-destroy")
    try:
        for i in range(6):
            producer.submit_image(tiny_jpeg(i), source="before")
        wait_for(lambda: client.xlen(keys.results) >= 6 and pending_count(client, keys) == 0, 60, what="6 served")
        client.xgroup_destroy(keys.frames, keys.group)
        wait_for(lambda: any(g["name"].decode() == keys.group for g in client.xinfo_groups(keys.frames)), 30,
                 what="the group recreated")
        for i in range(2):
            producer.submit_image(tiny_jpeg(10 + i), source="after")
        wait_for(lambda: client.xlen(keys.results) >= 8, 60, what="the 2 new frames served")
        time.sleep(1.0)  # any re-served old entry would land now
        sources = sorted(r.source for r in all_results(client, keys))
        assert sources == ["after"] * 2 + ["before"] * 6, sources
    finally:
        w.stop()


def test_frames_put_back_trim_no_unread_frame(redis_url, client, keys):
    """The frames a worker puts back (its batch's results could not be added) went with XADD
    MAXLEN ~ stream_maxlen, which trims the stream's oldest entries whether read or not: 300 unread
    frames over a stream_maxlen of 2 lost 200 of them. Only the movers trim, below what the group
    acknowledged."""
    import time

    import redis

    from moodstream.shared.errors import ConfigError
    from moodstream.worker.service import Entry, Outcome, Worker

    class NoPipeline:
        model_version = "none"

    settings = settings_for(redis_url, stream_maxlen=2)
    client.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
    for i in range(300):
        client.xadd(keys.frames, {FIELD: b"unread %d" % i})
    worker = Worker(settings, NoPipeline(), name="w-back", client=client, handle_signals=False)
    held = Outcome(Entry("1-1", b"held", 1, time.monotonic()), None)
    with pytest.raises(ConfigError, match="put back"):
        worker._put_back({0: (keys.results, held)}, [redis.ResponseError("WRONGTYPE Operation against a key")])
    assert client.xlen(keys.frames) == 301


@pytest.mark.parametrize("which, holds", [("attempts", "hash"), ("heartbeats", "sorted set")])
def test_a_worker_s_other_keys_of_another_type_are_one_line_naming_them_before_a_frame(redis_url, client, keys,
                                                                                        which, holds):
    """`SET <prefix>:attempts x` (an operator's mistake, another program's key): the worker started,
    served one batch, then exited 1 with 'a key moodstream keeps a stream in is not a stream', naming
    no key (the key is a hash), and each restart served one more batch before it exited again;
    `<prefix>:heartbeats` stopped it at start with the same words. Checked at start now, with the
    key's name and what it should hold; nothing is taken. (An intake that is no list is said and waited
    out by the movers: producers push there, tests/integration/test_intake.py.)"""
    sent = Producer(settings_for(redis_url)).submit_image(tiny_jpeg(0), source="held").job_id
    key = getattr(keys, which)
    client.set(key, "blocker")
    out = _cli(_env(redis_url), "worker", "--detector", "haar", "--threads", "1")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"Redis key {key!r} is not a {holds} (it holds a string)" in out.stderr, out.stderr[-2000:]
    assert not client.exists(keys.results) and client.get(key) == b"blocker"
    assert sent
