"""`results --count N` counts jobs, not deliveries (issue 12, item 7): it exited 0
with 200 lines when 147 unique jobs had answers."""

from __future__ import annotations

import json

from click.testing import CliRunner

from moodstream.producer.cli import results
from moodstream.shared.record import FrameResult
from moodstream.shared.wire import FIELD, encode_result


def _add(client, keys, job_id: str) -> None:
    client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=job_id, source="s", frame=0, worker="w"))})


def test_duplicate_answers_are_printed_and_counted_once(redis_url, client, keys):
    for job_id in ("a", "b", "a", "c", "b"):  # at-least-once delivery: a and b answered twice
        _add(client, keys, job_id)
    env = {"MOODSTREAM_REDIS_URL": redis_url, "MOODSTREAM_PREFIX": keys.prefix}
    runner = CliRunner()
    out = runner.invoke(results, ["--from-start", "--count", "3", "--timeout-s", "2"], env=env)
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["job_id"] for line in out.stdout.splitlines()] == ["a", "b", "c"]
    short = runner.invoke(results, ["--from-start", "--count", "4", "--timeout-s", "1"], env=env)
    assert short.exit_code == 1 and len(short.stdout.splitlines()) == 3  # 3 jobs, not 5 deliveries
    every = runner.invoke(results, ["--from-start", "--keep-duplicates"], env=env)
    assert len(every.stdout.splitlines()) == 5
