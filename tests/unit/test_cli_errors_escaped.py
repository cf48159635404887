"""Every error the CLI prints names what a user typed, a file held or a stream sent with its control
characters escaped, wherever the message was written: click's own (a path that does not exist), a
``click.BadParameter`` raised with a path in it (`train --out` inside `--data`), a MoodstreamError. A
newline in a name forged a second line, ESC [2J cleared a terminal, ESC ] 0 ; ... BEL retitled it, a CR
wrote over the line. The runner has color on: click strips CSI sequences on a pipe, not on a terminal."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.settings import Settings
from moodstream.shared.table import printable
from tests.support.procs import REPO, spawn_cli

EVIL = "a\n\x1b[2Jforged\r\x1b]0;pwned\x07x"
ESCAPED = printable(EVIL)  # a\n\x1b[2Jforged\r\x1b]0;pwned\x07x, as typed
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # control characters but the line ends
STREET = str(REPO / "samples" / "street.jpg")
ENV = {"MOODSTREAM_DEVICE": "cpu", "MOODSTREAM_REDIS_WAIT_S": "0", "MOODSTREAM_REDIS_URL": "redis://127.0.0.1:1"}


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), color=True, env={**ENV, **(env or {})})


def _one_error_naming(res, exit_code: int) -> str:
    """The run failed with ``exit_code``; its stderr holds no raw control character, one ``Error:`` line,
    and that line names EVIL escaped. Returns the line."""
    assert res.exit_code == exit_code, res.stderr
    assert not RAW.findall(res.stderr), repr(res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and ESCAPED in errors[0], repr(res.stderr)
    assert not any(line.startswith(("[2J", "forged")) for line in res.stderr.splitlines()), repr(res.stderr)
    return errors[0]


@pytest.fixture
def evil(tmp_path):
    folder = tmp_path / EVIL
    folder.mkdir()
    return folder


def test_train_out_inside_data_names_the_folder_escaped(evil):
    """A BadParameter with the --data folder in its words."""
    line = _one_error_naming(_run("train", "--data", str(evil), "--out", str(evil / "run")), 2)
    assert "Invalid value for '--out': is inside --data" in line


def test_train_init_that_out_replaces_names_it_escaped(evil, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (evil / "emotion.pt").write_bytes(b"not read")
    line = _one_error_naming(_run("train", "--data", str(data), "--out", str(evil), "--init", str(evil / "emotion.pt")), 2)
    assert "Invalid value for '--init'" in line


def test_train_out_with_an_interrupted_run_names_it_escaped(evil, tmp_path):
    from moodstream.trainer.train import STATE_FILE

    data = tmp_path / "data"
    data.mkdir()
    (evil / STATE_FILE).write_bytes(b"not read")
    line = _one_error_naming(_run("train", "--data", str(data), "--out", str(evil)), 2)
    assert "holds an interrupted run" in line


def test_bench_markdown_over_out_names_it_escaped(evil):
    same = str(evil / "crowd.json")
    line = _one_error_naming(_run("bench", "crowd", "--out", same, "--markdown", same), 2)
    assert "is the --out file too" in line


@pytest.mark.parametrize("args, exit_code", [
    (["analyze", STREET, "--checkpoint", "{evil}/emotion.pt"], 1),  # a MoodstreamError
    (["eval", "--data", "{evil}", "--checkpoint", "{evil}/no.pt"], 2),  # click's Path
    (["produce", "{evil}"], 1),  # an empty folder
    (["analyze", STREET, "--annotate", "{evil}/file/x"], 1),  # annotated files under a file
    (["train", "--data", "{evil}", "--out", "{evil}/file/x"], 2),  # an OutputFolder under a file
    (["{EVIL}"], 2),  # no such command
    (["analyze", "--{EVIL}"], 2),  # no such option
    (["analyze", "--format", "{EVIL}", STREET], 2),  # a choice
], ids=["checkpoint", "click-path", "produce-empty", "annotate", "output-folder", "command", "option", "choice"])
def test_other_errors_naming_input_stay_escaped(evil, args, exit_code):
    (evil / "file").write_text("a file, not a folder")
    line = _one_error_naming(_run(*(a.format(evil=evil, EVIL=EVIL) for a in args)), exit_code)
    assert line.startswith("Error: ")


def test_a_bad_setting_from_the_environment_is_named_escaped():
    line = _one_error_naming(_run("analyze", STREET, env={"MOODSTREAM_BATCH_MAX": EVIL}), 1)
    assert "MOODSTREAM_BATCH_MAX=" in line


@pytest.mark.parametrize("exc, exit_code", [(click.ClickException, 1), (click.UsageError, 2),
                                            (click.BadParameter, 2)])
def test_an_error_raised_anywhere_is_escaped_at_the_root(monkeypatch, exc, exit_code):
    """A new `raise click.ClickException(f"... {name}")` is covered without escaping by hand: the root
    group escapes what click prints. The usage lines of a UsageError stay as click writes them."""
    def from_env(cls, *args, **kwargs):
        raise exc(f"cannot use {EVIL}")

    monkeypatch.setattr(Settings, "from_env", classmethod(from_env))
    res = _run("status")
    line = _one_error_naming(res, exit_code)
    assert line.endswith(f"cannot use {ESCAPED}"), line
    if exit_code == 2:
        assert res.stderr.startswith("Usage: cli status [OPTIONS]\nTry 'cli status --help' for help.\n\n"), res.stderr


def test_a_name_with_a_backslash_is_shown_once(tmp_path):
    """Escaped once, never twice: a MoodstreamError's words (escaped as the error is made) and a BadParameter's
    pass the root's escape unchanged."""
    folder = tmp_path / "back\\slash"
    folder.mkdir()
    for args, code in ((["analyze", STREET, "--checkpoint", str(folder / "c.pt")], 1),
                       (["train", "--data", str(folder), "--out", str(folder / "run")], 2)):
        res = _run(*args)
        assert res.exit_code == code and not RAW.findall(res.stderr), res.stderr
        assert f"{folder}" in res.stderr and "back\\\\slash" not in res.stderr, res.stderr


def test_a_message_of_several_lines_keeps_them(monkeypatch):
    """bench scaling's "a worker exited ...; its log ends:" and the log's lines: each line escaped, the
    newlines between kept (a newline inside one line's text is escaped as any)."""
    from moodstream.lazy import ErrorLines

    def from_env(cls, *args, **kwargs):
        raise ErrorLines("a worker exited with code 3; its log ends:", "first \x1b[2Jline", f"second {EVIL}")

    monkeypatch.setattr(Settings, "from_env", classmethod(from_env))
    res = _run("status")
    assert res.exit_code == 1 and not RAW.findall(res.stderr), repr(res.stderr)
    assert res.stderr.splitlines() == ["Error: a worker exited with code 3; its log ends:", "first \\x1b[2Jline",
                                       f"second {ESCAPED}"], repr(res.stderr)


def test_bench_scaling_says_a_dead_workers_log_line_by_line(tmp_path):
    """The log's lines stay lines; a control character inside one is escaped."""
    from moodstream.lazy import ErrorLines
    from moodstream.trainer.bench.scaling import _check_alive

    class Dead:
        returncode = 3

        def poll(self):
            return self.returncode

    log = tmp_path / "worker.log"
    log.write_text("loading\nTraceback: \x1b[2J\x1b]0;pwned\x07x\n")
    with pytest.raises(ErrorLines) as caught:
        _check_alive([(Dead(), log)])
    assert caught.value.format_message().split("\n") == [
        "a worker exited with code 3; its log ends:", "loading", "Traceback: \\x1b[2J\\x1b]0;pwned\\x07x", ""]


def test_help_and_no_arguments_are_unchanged():
    """Help is no error message: `moodstream` alone prints it (click >= 8.2: as an error, on stderr with
    exit 2), its lines kept."""
    bare = CliRunner().invoke(cli, [], color=True)
    helped = CliRunner().invoke(cli, ["--help"], color=True)
    assert helped.exit_code == 0 and bare.exit_code == (2 if hasattr(click.exceptions, "NoArgsIsHelpError") else 0)
    assert bare.output == helped.stdout and helped.stdout.startswith("Usage: cli [OPTIONS] COMMAND [ARGS]...\n")
    assert "\\n" not in helped.stdout


def test_the_installed_command_escapes_on_a_pipe(tmp_path):
    """The real process: click strips CSI sequences on a pipe but not CR, BEL, OSC or a newline."""
    folder = tmp_path / EVIL
    folder.mkdir()
    proc = spawn_cli("train", "--data", str(folder), "--out", str(folder / "run"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and not RAW.findall(err), repr(err)
    (line,) = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert "forged\\r\\x1b]0;pwned\\x07x" in line, repr(err)


def test_tracks_says_a_skipped_summary_in_one_escaped_line(monkeypatch, capsys):
    """`tracks` skips an entry that is no run summary with the exception's words: whatever they hold (a
    summary is another program's data), one line, escaped. (The exceptions of today's table repr what they
    name; the line does not count on it.)"""
    from moodstream.worker.tracking import reader, summary

    def people_table(tracks):
        raise ValueError(f"bad emotion {EVIL}")

    monkeypatch.setattr(summary, "people_table", people_table)
    assert reader._print_summary("1-0", {"source": "cam", "tracks": []}, "table", pictures_dir=None) is False
    err = capsys.readouterr().err
    assert not RAW.findall(err) and err.count("\n") == 1, repr(err)
    assert err.startswith("tracks: skipping summaries entry 1-0: not a run summary (ValueError: bad emotion a\\n"), err
