"""A `Producer` whose Redis was never reached (README "From Python": `Producer(settings).submit_image(...)`
with a mistyped URL) retried for `retry_for_s`, 60 s by default, before its ConfigError, where a
`ResultReader` read and every command (`produce` included) give up after `redis_wait_s`. A Redis never
reached is more likely a wrong URL than an outage: it now gives up after `redis_wait_s` too, with one
line naming the URL (password hidden). A Redis it has reached and lost is still waited for
`retry_for_s`, as is one the caller has reached already (`reached=True`: the CLI, the expander)."""

from __future__ import annotations

import threading
import time

import pytest
from tests.support.streamkit import settings_for, tiny_jpeg

from moodstream.producer.client import Producer
from moodstream.shared.embedded import EmbeddedRedis, free_port
from moodstream.shared.errors import ConfigError


def _submit_in_thread(producer: Producer, frame: int) -> tuple[threading.Thread, list]:
    """``submit_image`` in a thread (a wait that does not end fails the test, not the run); its
    outcome, the JobRef or the exception, in the list."""
    outcome: list = []

    def submit():
        try:
            outcome.append(producer.submit_image(tiny_jpeg(frame), source="first-connect", frame=frame))
        except Exception as exc:  # noqa: BLE001  (handed to the test)
            outcome.append(exc)

    thread = threading.Thread(target=submit, daemon=True)
    thread.start()
    return thread, outcome


def test_a_producer_that_never_reached_redis_gives_up_after_redis_wait_s():
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    producer = Producer(settings_for(url, redis_wait_s=1.0))  # retry_for_s: its default, 60 s
    t0 = time.monotonic()
    thread, outcome = _submit_in_thread(producer, 0)
    thread.join(10)
    took = time.monotonic() - t0
    producer.stop.set()  # (a thread still retrying ends)
    assert not thread.is_alive(), "still retrying a Redis never reached after 10 s (redis_wait_s is 1 s)"
    (error,) = outcome
    assert isinstance(error, ConfigError), error
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert f"cannot reach Redis at redis://***@127.0.0.1:{port}/0" in str(error), error
    assert "s3cret" not in str(error) and "\n" not in str(error)
    assert 1.0 <= took < 4, took  # the whole wait, then at once
    assert producer.stats.sent == 0


def _waits_out_an_outage(server: EmbeddedRedis, producer: Producer, frame: int) -> None:
    """``server`` down for 2.5 s (5 times the tests' redis_wait_s) while ``producer`` sends ``frame``:
    the send waits it out and succeeds."""
    server.stop()
    restart = threading.Timer(2.5, server.start)
    restart.start()
    thread, outcome = _submit_in_thread(producer, frame)
    thread.join(30)
    restart.join()
    assert not thread.is_alive() and not isinstance(outcome[0], Exception), outcome


@pytest.mark.slow
def test_a_producer_that_reached_redis_still_waits_retry_for_s_for_it():
    """An outage after the first push is waited out (retry_for_s), as before, though longer than redis_wait_s."""
    with EmbeddedRedis() as server:
        producer = Producer(settings_for(server.url, redis_wait_s=0.5), retry_for_s=30)
        producer.submit_image(tiny_jpeg(0), source="first-connect", frame=0)
        _waits_out_an_outage(server, producer, 1)
        assert producer.stats.sent == 2


@pytest.mark.slow
def test_a_producer_whose_caller_reached_redis_waits_retry_for_s_from_its_first_push():
    """The CLI checks the connection before it makes its Producer, the expander's rq job fetched its
    job over the client it hands over: Redis gone before the first push is an outage, not a wrong URL."""
    with EmbeddedRedis() as server:
        producer = Producer(settings_for(server.url, redis_wait_s=0.5), retry_for_s=30, reached=True)
        _waits_out_an_outage(server, producer, 0)
        assert producer.stats.sent == 1
