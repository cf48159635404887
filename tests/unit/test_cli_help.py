"""Every command and subcommand answers --help with a description and option help."""

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from moodstream.cli import COMMANDS, cli
from moodstream.shared.settings import Settings
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


def _command(*names):
    ctx = cli.make_context("moodstream", [], resilient_parsing=True)
    cmd = cli
    for name in names:
        cmd = cmd.get_command(ctx, name)
    return cmd


def _option(cmd, flag):
    """The option whose shown spelling is ``flag`` (old spellings after it are hidden aliases)."""
    return next((p for p in cmd.params if isinstance(p, click.Option) and p.opts[0] == flag), None)


# --device: where a command cannot run anywhere but the CPU it says so with its choices
CPU_ONLY = {"bench profile"}
LEFT: set[str] = set()


@pytest.mark.parametrize("args", ALL, ids=" ".join)
def test_one_name_and_one_default_per_concept(args):
    """--every is "keep every Nth frame" and --device defaults to auto in every command
    (issue 23 item 6: bench video took --every as a detect-every list, bench encoding
    said --every-n, and some benchmarks defaulted to cpu)."""
    cmd = _command(*args)
    every, device = _option(cmd, "--every"), _option(cmd, "--device")
    if every is not None:
        assert isinstance(every.type, click.IntRange) and re.search(r"every N-?th frame", every.help), \
            (args, every.help)
    assert "--every-n" not in cmd.get_help(click.Context(cmd))
    if device is not None and " ".join(args) not in CPU_ONLY | LEFT:
        # None: the device setting (MOODSTREAM_DEVICE), itself auto by default
        assert device.default == "auto" or (device.default is None and Settings().device == "auto"), \
            (args, device.default)


def test_old_spellings_still_parse_but_are_not_shown():
    video, encoding = _command("bench", "video"), _command("bench", "encoding")
    assert "--detect-every" in video.get_help(click.Context(video))
    videos = ["--videos", str(Path(__file__).parent)]  # an existing folder (the default lies in ../shared)
    assert video.make_context("video", ["--every", "1,2", *videos]).params["detect_every"] == (1, 2)
    assert video.make_context("video", ["--detect-every", "1,4", *videos]).params["detect_every"] == (1, 4)
    for bad in ("1,x", "0,2", ""):  # a usage error naming the flag, not a traceback
        with pytest.raises(click.BadParameter, match="comma-separated"):
            video.make_context("video", ["--detect-every", bad, *videos])
    help_text = encoding.get_help(click.Context(encoding))
    assert "--every " in help_text and "--every-n" not in help_text
    assert encoding.make_context("encoding", ["--every-n", "3"]).params["every_n"] == 3
    assert encoding.make_context("encoding", ["--every", "2"]).params["every_n"] == 2


def test_bench_tracking_without_the_checkout_fixture_names_the_flag(monkeypatch, tmp_path):
    """An installed package has no tests/fixtures: the default --data is one line naming
    the flag, before any model loads (it failed deep in load_split)."""
    from moodstream.trainer.bench import tracking

    monkeypatch.setattr(tracking, "REPO", tmp_path)  # where an installed package has no tests/
    res = CliRunner().invoke(cli, ["bench", "tracking", "--part", "tracks"])
    assert res.exit_code == 2 and "--data" in res.output and "Traceback" not in res.output, res.output


def test_bench_tracking_people_without_its_folders_names_the_flag(tmp_path):
    # in an installed package ../shared/data is not beside it: say which flag, before any model loads
    from moodstream.cli import cli

    res = CliRunner().invoke(cli, ["bench", "tracking", "--part", "people", "--wider", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "--wider" in res.output and "Traceback" not in res.output, res.output


def test_produce_help_says_a_video_may_come_on_stdin():
    # `produce -` reads a video piped on stdin as `analyze -` does (shared.media sniffs its first bytes, mp4 to
    # wmv); its help said "image bytes on stdin" only
    res = CliRunner().invoke(cli, ["produce", "--help"])
    assert res.exit_code == 0
    assert "- for an image or a video on stdin" in " ".join(res.output.split())
