"""`ResultReader.read` as a program calls it (README "From Python"): what it is handed is checked at
the call, and a read that does not wait gives up on a Redis that is gone instead of retrying for ever."""

from __future__ import annotations

import math
import threading
import time

import pytest
from tests.support.streamkit import settings_for

from moodstream import ResultReader
from moodstream.producer.client import JobRef
from moodstream.producer.results import FROM_START
from moodstream.shared.errors import ConfigError
from moodstream.shared.record import FrameResult
from moodstream.shared.wire import FIELD, encode_result


@pytest.fixture
def reader(redis_url, client, keys):
    for i in range(3):
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(source="s", frame=i, job_id=f"job-{i}"))})
    r = ResultReader(settings_for(redis_url))
    yield r
    r.close()


@pytest.mark.parametrize("kwargs, error, match", [
    # a TypeError from a comparison inside the generator ("'<' not supported between 'int' and 'str'")
    ({"count": "2"}, TypeError, "count must be a whole number"),
    # taken: -1 read nothing, 2.5 read 3 results, True read 1
    ({"count": -1}, ValueError, "count must be a whole number from 0"),
    ({"count": 2.5}, TypeError, "count must be a whole number"),
    ({"count": True}, TypeError, "count must be a whole number"),
    # 'cannot convert float NaN to integer'; an OverflowError, and a Timer thread's traceback, for inf
    ({"timeout_s": math.nan, "count": 5}, ValueError, "timeout_s must be a finite number of seconds"),
    ({"timeout_s": math.inf, "count": 5}, ValueError, "None: no limit"),
    ({"timeout_s": "1", "count": 5}, TypeError, "timeout_s must be a finite number of seconds"),
    ({"timeout_s": -1, "count": 5}, ValueError, "timeout_s must be a finite number of seconds"),
    # redis-py's ResponseError ('Invalid stream ID specified as stream command argument'), DataError for None
    ({"start": "abc"}, ValueError, "start must be FROM_START"),
    ({"start": None}, TypeError, "start must be FROM_START"),
    # a str is a Container: job_ids="job-1" matched every job id inside the string
    ({"job_ids": "job-1"}, TypeError, r"job_ids must be a set of job ids.*\{job_id\}"),
    # a generator was used up by the first lookup: later results never matched, silently
    ({"job_ids": (j for j in ["job-1"])}, TypeError, "a generator"),
    # JobRefs never equal a result's job id: a count=1 read waited its whole timeout and gave nothing
    ({"job_ids": [JobRef("job-1", "s", 1, None)]}, TypeError, r"ref\.job_id"),
    ({"job_ids": [7]}, TypeError, "must hold job id strings, got int$"),  # said 'got a int'
    ({"source": 5}, TypeError, "source must be a string"),
])
def test_what_read_cannot_use_is_refused_at_the_call(reader, kwargs, error, match):
    with pytest.raises(error, match=match):
        reader.read(**{"start": FROM_START, **kwargs})


def test_job_ids_as_a_list_and_count_zero(reader):
    assert [r.job_id for r in reader.read(start=FROM_START, job_ids=["job-2", "job-0"])] == ["job-0", "job-2"]
    assert [r.job_id for r in reader.read(start=FROM_START, job_ids={"job-1"})] == ["job-1"]
    assert list(reader.read(start=FROM_START, count=0)) == []  # nothing asked for, nothing waited for


def test_a_read_that_does_not_wait_gives_up_on_a_redis_that_is_gone():
    """Without follow, count or a timeout a read "stops at the end of the stream"; with Redis gone it
    retried for ever (its backoff grew to 10 s a try, nothing said to the caller). It now gives up after
    redis_wait_s, as the commands do at start, with one ConfigError."""
    from moodstream.shared.embedded import free_port

    settings = settings_for(f"redis://127.0.0.1:{free_port()}/0", redis_wait_s=1.0)  # nothing listens there
    outcome: list = []

    def read():
        try:
            outcome.append(list(ResultReader(settings).read(start=FROM_START)))
        except ConfigError as exc:
            outcome.append(exc)

    t0 = time.monotonic()
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(8)
    assert not thread.is_alive(), "the read still retries after 8 s"
    assert isinstance(outcome[0], ConfigError) and "cannot reach Redis" in str(outcome[0])
    assert time.monotonic() - t0 < 4


def test_from_now_is_the_call_not_the_first_next(redis_url, client, keys):
    """`results = reader.read(count=1, timeout_s=5)`, then a job submitted and answered, then `next(results)`:
    FROM_NOW was fixed at the first next(), after the answer: the result was never seen and the read
    waited out its timeout, which also began only then. README: results added after the call."""
    reader = ResultReader(settings_for(redis_url))
    try:
        results = reader.read(count=1, timeout_s=3)
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(source="s", frame=0, job_id="after-the-call"))})
        time.sleep(0.3)
        started = time.monotonic()
        assert [r.job_id for r in results] == ["after-the-call"]
        assert time.monotonic() - started < 2
        late = reader.read(count=1, timeout_s=1)
        time.sleep(1.5)
        started = time.monotonic()
        assert list(late) == [] and time.monotonic() - started < 0.5  # its time began at the call
    finally:
        reader.close()


def test_a_timeout_past_what_a_timer_takes_is_no_thread_s_traceback(reader, recwarn):
    """timeout_s=1e10 (finite, past threading.TIMEOUT_MAX): the Timer thread died with 'OverflowError:
    timestamp out of range for platform time_t', and with it the end of a wait for Redis at the deadline."""
    errors = []
    old = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_type)
    try:
        assert [r.job_id for r in reader.read(start=FROM_START, count=1, timeout_s=1e10)] == ["job-0"]
        time.sleep(0.2)
    finally:
        threading.excepthook = old
    assert errors == []
