"""The service's Python API at two edges the CLI does not reach.

* A database number the server does not have (``redis://host:port/99``): the CLI says so in one line at
  start (``check_connection``), but ``Producer``, ``ResultReader`` and ``Worker`` made from Settings raised
  redis-py's ``ResponseError: DB index is out of range`` at their first command. Now a ConfigError that
  names the database and the server (its password masked).
* A text field UTF-8 cannot encode (a lone surrogate: what ``os.fsdecode`` makes of a file name's bytes
  that are not UTF-8) in ``source``: refused, rightly, with words that blamed ``options`` ("options hold
  plain values"). Now the message names the field that holds it."""

from __future__ import annotations

import pytest
import redis
from tests.support.streamkit import settings_for, tiny_jpeg

from moodstream.producer.client import Producer, RefusedJob
from moodstream.producer.results import FROM_START, ResultReader
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.errors import ConfigError


class _NoPipeline:
    model_version = "none"  # the worker fails before it infers


def _db(url: str, n: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{n}"


def _says_no_database(exc: pytest.ExceptionInfo, n: int = 99) -> None:
    text = str(exc.value)
    assert f"no database {n}" in text and "DB index is out of range" in text, text


def test_a_producer_on_a_database_the_server_lacks_raises_config_error(redis_url):
    producer = Producer(settings_for(_db(redis_url, 99), redis_wait_s=0))
    with pytest.raises(ConfigError) as exc:
        producer.submit_image(tiny_jpeg(1), source="x")
    _says_no_database(exc)


def test_a_result_reader_on_a_database_the_server_lacks_raises_config_error(redis_url):
    reader = ResultReader(settings_for(_db(redis_url, 99), redis_wait_s=0))
    with pytest.raises(ConfigError) as exc:
        list(reader.read(start=FROM_START, count=1, timeout_s=1))
    _says_no_database(exc)


def test_a_worker_on_a_database_the_server_lacks_raises_config_error(redis_url):
    from moodstream.worker.service import Worker

    worker = Worker(settings_for(_db(redis_url, 99), redis_wait_s=0), _NoPipeline(), name="w-db",
                    handle_signals=False)
    with pytest.raises(ConfigError) as exc:
        worker.run()
    _says_no_database(exc)


def test_the_message_masks_the_password_and_the_last_database_works():
    with EmbeddedRedis(extra_args=["--requirepass", "s3cret-pw", "--databases", "4"]) as server:
        base = f"redis://:s3cret-pw@127.0.0.1:{server.port}"
        with pytest.raises(ConfigError) as exc:
            Producer(settings_for(f"{base}/4", redis_wait_s=0)).submit_image(tiny_jpeg(1), source="x")
        _says_no_database(exc, 4)
        assert "s3cret" not in str(exc.value) and f"127.0.0.1:{server.port}" in str(exc.value)
        assert Producer(settings_for(f"{base}/3")).submit_image(tiny_jpeg(1), source="x").job_id
        assert redis.Redis.from_url(f"{base}/3").llen("t:intake") == 1


@pytest.mark.parametrize("field, kw", [
    ("source", {"source": "\udcff"}),
    ("source", {"source": "clip-\udcffb.mp4"}),
    ("job_id", {"job_id": "job-\udcff"}),
    ("reply_to", {"reply_to": "t:reply:\udcff"}),
])
def test_an_unencodable_text_field_is_named(redis_url, client, field, kw):
    producer = Producer(settings_for(redis_url))
    kw = {"source": "x", **kw}
    with pytest.raises(RefusedJob) as exc:
        producer.submit_image(tiny_jpeg(1), **kw)
    text = str(exc.value)
    assert f"{field} " in text and "options" not in text and "not sent" in text, text
    assert client.llen("t:intake") == 0


def test_an_unencodable_array_source_is_named(redis_url):
    import numpy as np

    with pytest.raises(RefusedJob, match=r"^bad_field: source ") as exc:
        Producer(settings_for(redis_url)).submit_array(np.zeros((8, 8, 3), np.uint8), source="cam-\udcff")
    assert "options" not in str(exc.value)


def test_options_that_cannot_be_encoded_still_name_options(redis_url):
    with pytest.raises(RefusedJob, match="options") as exc:
        Producer(settings_for(redis_url)).submit_image(tiny_jpeg(1), source="x", options={"k": object()})
    assert "source" not in str(exc.value).replace("of x", "")
