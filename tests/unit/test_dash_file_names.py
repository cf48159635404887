"""A file whose name starts with '-' (`-street.jpg`, a camera's `-20261207.mp4`), named as a path: click reads
it as options and said only "No such option '-s'", leaving the user to guess. Where such a token is a file
that exists, the error now says how to name it (./-street.jpg)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli


@pytest.mark.parametrize("command", ["analyze", "produce", "up"])
def test_a_file_starting_with_a_dash_is_named_in_the_error(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-street.jpg").write_bytes(b"\xff\xd8\xff")
    result = CliRunner().invoke(cli, [command, "-street.jpg"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "No such option" in result.output
    assert "-street.jpg is a file here: name it ./-street.jpg" in result.output, result.output


def test_no_hint_where_no_such_file_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["analyze", "-street.jpg"])
    assert result.exit_code == 2 and "No such option" in result.output and "./" not in result.output
