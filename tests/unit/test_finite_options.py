"""Numbers a command takes are finite: click's FloatRange takes "nan" and "inf" (its bounds compare
false with NaN), and they ended in tracebacks (cannot convert float NaN to integer, OverflowError)
or silently changed the work (`produce --fps nan` sent one frame of 60, `--fps inf` all)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.errors import ConfigError
from moodstream.shared.settings import Settings


@pytest.mark.parametrize("args", [
    ["results", "--timeout-s", "nan", "--count", "1"],
    ["results", "--timeout-s", "inf", "--count", "1", "--from-start"],
    ["tracks", "--timeout-s", "nan", "--follow"],
    ["status", "--window-s", "nan"],
    ["analyze", "--fps", "nan", "samples"],
    ["produce", "--fps", "inf", "samples"],
    ["produce", "--fps", "-inf", "samples"],
    ["track", "--source-idle-s", "inf"],
])
@pytest.mark.parametrize("case", ["lower", "upper"])
def test_a_number_that_is_not_finite_is_a_usage_error(args, case):
    args = [a.upper() if case == "upper" and a.lstrip("-") in ("nan", "inf") else a for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert "not a finite number" in result.output or "is not in the range" in result.output


@pytest.mark.parametrize("args", [["status", "--window-s", "1e308"], ["status", "--watch", "1e308"],
                                  ["results", "--timeout-s", "1e308", "--count", "1"],
                                  ["tracks", "--timeout-s", "1e308", "--follow"]])
def test_a_finite_number_past_any_use_is_a_usage_error(args):
    """1e308 is finite: `status --window-s 1e308`, `--watch 1e308` and `results --timeout-s 1e308`
    ended in OverflowError tracebacks (a timer or a millisecond count past what they take)."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "at most 1e+09" in result.output, (result.output, result.exception)


@pytest.mark.parametrize("name", ["MOODSTREAM_STATS_INTERVAL_S", "MOODSTREAM_MIN_PERSON_S",
                                  "MOODSTREAM_TRACK_MAX_MISSED_S", "MOODSTREAM_LIVE_BACKOFF_CAP_S"])
def test_a_float_setting_that_is_not_finite_is_refused(name):
    for value in ("nan", "inf"):
        with pytest.raises(ConfigError, match=name.removeprefix("MOODSTREAM_").lower()):
            Settings.from_env({name: value})
