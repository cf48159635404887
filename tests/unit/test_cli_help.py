"""Every command and subcommand answers --help with a description and option help."""

import click
import pytest
from click.testing import CliRunner

from moodstream.cli import COMMANDS, cli
from moodstream.trainer.cli import BENCHES

ALL = [[name] for name in COMMANDS] + [["bench", name] for name in BENCHES]


@pytest.mark.parametrize("args", ALL, ids=" ".join)
def test_help(args):
    res = CliRunner().invoke(cli, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Usage: ")
    body = res.output.split("Options:")[0]
    assert len(body.splitlines()) >= 3  # usage line plus a description
    ctx = cli.make_context("moodstream", list(args[:-1]) or [], resilient_parsing=True)
    cmd = cli
    for name in args:
        cmd = cmd.get_command(ctx, name)
    undocumented = [p.name for p in cmd.params if isinstance(p, click.Option) and not p.help]
    assert not undocumented, f"options without help text: {undocumented}"


def test_top_level_help_lists_every_command():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in res.output


def test_unknown_command_is_a_usage_error():
    res = CliRunner().invoke(cli, ["analyse"])
    assert res.exit_code == 2 and "No such command" in res.output


def test_python_dash_m_runs_the_cli():
    """`python -m moodstream` is the command (deploy/gpu/*.sh run it that way, uninstalled)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "moodstream", "--version"], cwd=repo, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "moodstream, version" in out.stdout, out.stdout + out.stderr
