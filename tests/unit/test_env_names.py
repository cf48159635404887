"""Every setting comes from a MOODSTREAM_* variable too; a misspelled one (MOODSTREAM_BACTH_MAX=16,
MOODSTREAM_REDIS=redis://... for MOODSTREAM_REDIS_URL) was ignored without a word, the command running on
the default. Now each command says, once, which variables in that namespace are no setting, and the
setting meant where one is close."""

from __future__ import annotations

from click.testing import CliRunner

from moodstream.cli import cli


def _said(env: dict) -> str:
    result = CliRunner().invoke(cli, ["results", "--help"], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_misspelled_setting_is_said_with_the_one_meant():
    said = _said({"MOODSTREAM_BACTH_MAX": "16", "MOODSTREAM_REDIS": "redis://localhost:6379/0"})
    assert "MOODSTREAM_BACTH_MAX is no setting (ignored; MOODSTREAM_BATCH_MAX?)" in said, said
    assert "MOODSTREAM_REDIS is no setting (ignored; MOODSTREAM_REDIS_URL?)" in said, said


def test_settings_and_the_test_suite_s_own_variables_are_not_said():
    said = _said({"MOODSTREAM_BATCH_MAX": "16", "MOODSTREAM_TEST_SHARED_DATA": "/data",
                  "MOODSTREAM_SCREENSHOTS": "/tmp/s", "MOODSTREAM_CHAOS_REPORT": "/tmp/c.json"})
    assert "no setting" not in said, said


def test_a_variable_like_no_setting_is_said_without_a_guess():
    said = _said({"MOODSTREAM_ZZZ": "1"})
    assert "MOODSTREAM_ZZZ is no setting (ignored)" in said, said
