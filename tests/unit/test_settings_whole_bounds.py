"""Whole-number settings past what Redis takes: MOODSTREAM_HEARTBEAT_TTL_S=10000000000000000,
MOODSTREAM_BATCH_MAX or --batch-max 10000000000000000000, MOODSTREAM_RECLAIM_IDLE_MS likewise were
accepted, and the worker, its models loaded, ended in a redis ResponseError traceback ("invalid expire
time in 'expire' command", "value is not an integer or out of range", "Invalid min-idle-time argument
for XAUTOCLAIM"). Each is refused as the settings are read, one line naming it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.errors import ConfigError
from moodstream.shared.settings import MAX_WHOLE, Settings

HUGE = {
    "heartbeat_ttl_s": "10000000000000000",  # EXPIRE: invalid expire time
    "reply_ttl_s": "10000000000000000",  # EXPIRE of each reply stream
    "batch_max": "10000000000000000000",  # XREADGROUP COUNT: not an integer or out of range
    "reclaim_idle_ms": "10000000000000000000",  # XAUTOCLAIM: invalid min-idle-time
    "stream_maxlen": "100000000000000000000",
    "max_message_bytes": "100000000000000000000",
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_a_whole_number_setting_past_what_redis_takes_is_refused(name):
    with pytest.raises(ConfigError, match=rf"^{name} must be at most {MAX_WHOLE}"):
        Settings.from_env({f"MOODSTREAM_{name.upper()}": HUGE[name]})


def test_the_ceiling_itself_is_taken_and_any_expire_of_it_fits_redis():
    s = Settings.from_env({"MOODSTREAM_HEARTBEAT_TTL_S": str(MAX_WHOLE), "MOODSTREAM_BATCH_MAX": str(MAX_WHOLE)})
    assert s.heartbeat_ttl_s == s.batch_max == MAX_WHOLE
    # EXPIRE key seconds: Redis refuses seconds * 1000 + now (ms) past 2^63 - 1
    assert MAX_WHOLE * 1000 + 10 ** 13 < 2 ** 63 - 1


def test_worker_flag_past_the_ceiling_is_one_line_before_anything_loads():
    out = CliRunner().invoke(cli, ["worker", "--redis-url", "redis://127.0.0.1:1/0",
                                   "--batch-max", "10000000000000000000"])
    assert out.exit_code == 1, out.output
    assert "batch_max must be at most" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)
