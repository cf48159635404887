"""`--checkpoint "$MODEL"` with MODEL unset gave an empty name, and the run served the shipped model
without a word: a user who meant their own checkpoint read the shipped one's emotions as theirs. An
empty checkpoint given is refused; an empty MOODSTREAM_CHECKPOINT stays what an empty variable is for
every setting, unset."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.errors import ConfigError
from moodstream.shared.settings import Settings

SAMPLE = "samples/street.jpg"


@pytest.mark.parametrize("name", ["", " "])
def test_an_empty_checkpoint_is_refused(name):
    with pytest.raises(ConfigError, match="checkpoint is empty"):
        Settings(checkpoint=name)


def test_an_empty_variable_is_unset_as_for_every_setting():
    assert Settings.from_env(env={"MOODSTREAM_CHECKPOINT": ""}).checkpoint is None


def test_analyze_with_an_empty_checkpoint_flag_says_it_in_one_line():
    res = CliRunner().invoke(cli, ["analyze", SAMPLE, "--device", "cpu", "--checkpoint", ""], env={})
    assert res.exit_code != 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "checkpoint is empty" in lines[0], res.stderr
