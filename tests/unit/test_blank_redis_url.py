"""A Redis URL of only spaces (`MOODSTREAM_REDIS_URL=" "`, a YAML value with a stray space) was parsed as a
URL: the error quoted redis-py's message with every space in it masked as the URL ("Redis***URL***must***
specify..."). Blank is no URL: said as an empty one is; a real bad URL is still quoted, redacted."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.errors import ConfigError
from moodstream.shared.transport import connect


@pytest.mark.parametrize("url", ["", " ", "\t \n"])
def test_a_blank_url_is_no_redis_configured(url):
    with pytest.raises(ConfigError, match="^no Redis configured"):
        connect(url)


def test_a_bad_url_is_said_without_masking_its_words():
    with pytest.raises(ConfigError) as caught:
        connect("http://user:secret@host:6379/0")
    said = str(caught.value)
    assert said.startswith("bad Redis URL ") and "secret" not in said and "must specify one of" in said, said


def test_status_on_a_blank_url_says_it_in_one_line():
    res = CliRunner().invoke(cli, ["status"], env={"MOODSTREAM_REDIS_URL": " "})
    assert res.exit_code == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: no Redis configured"), res.stderr
