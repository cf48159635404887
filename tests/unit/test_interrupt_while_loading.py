"""A Ctrl-C in the first second of any `moodstream` command, while Python imports the command
(`results --follow` started and stopped at once, measured on a 2-core Xeon: 0.03-0.06 s after the
start a KeyboardInterrupt traceback, 0.1-0.6 s click's "Aborted!" and exit 1, the code of a failed
run). Both now end quietly with 130, as a command interrupted later does."""

from __future__ import annotations

import importlib
import subprocess
import sys

from click.testing import CliRunner


def test_ctrl_c_while_a_command_module_loads_exits_130_quietly(monkeypatch):
    from moodstream.cli import cli

    real = importlib.import_module

    def interrupted(name, *args, **kwargs):
        if name == "moodstream.producer.cli":  # `results`' module, as a Ctrl-C lands in its imports
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", interrupted)
    ran = CliRunner().invoke(cli, ["results", "--follow"])
    assert ran.exit_code == 130, (ran.exit_code, ran.output)
    assert "Aborted" not in ran.output and "Traceback" not in ran.output, ran.output


# as a terminal starts a command: Ctrl-C Python's KeyboardInterrupt, whatever the suite's process left (a
# test that held the stop signals in-process passed SIGINT ignored on to the children: seen in a full run)
INTERACTIVE = "signal.signal(signal.SIGINT, signal.default_int_handler)"


def run_as(script, on_import: tuple[str, str], last: str, first: str = INTERACTIVE, args=()):
    """Python on ``script`` (its name: the command's, or not), which runs ``first``, then ``last`` with
    ``on_import[1]`` run as the module ``on_import[0]`` starts to import (once)."""
    module, action = on_import
    script.write_text(
        f"import builtins, os, signal, sys\n{first}\n"
        "real = builtins.__import__\n"
        "seen = []\n"
        "def imp(name, *args, **kwargs):\n"
        f"    if name == {module!r}:\n"
        "        builtins.__import__ = real\n"
        f"        {action}\n"
        "    return real(name, *args, **kwargs)\n"
        f"builtins.__import__ = imp\n{last}\n")
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)


def test_ctrl_c_while_the_command_itself_loads_exits_130_without_a_traceback(tmp_path):
    """The SIGINT lands while the package imports its settings, then while ``moodstream.cli`` imports
    click, as for a console script started and stopped at once (before any command's own handling)."""
    for module in ("moodstream.shared.settings", "click"):
        # the console script's name: the quiet start is only for the command
        ran = run_as(tmp_path / "moodstream", (module, "os.kill(os.getpid(), signal.SIGINT)"),
                     "from moodstream.cli import main\nsys.exit(main())", args=["--help"])
        assert ran.returncode == 130, (module, ran.returncode, ran.stderr[-2000:])
        assert "Traceback" not in ran.stderr and "KeyboardInterrupt" not in ran.stderr, ran.stderr[-2000:]


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """The command started with SIGINT ignored (`nohup`, a background job of a script) must not get a
    handler for it from its start: a Ctrl-C meant for its shell does not stop it."""
    ran = run_as(tmp_path / "moodstream", ("click", "seen.append(signal.getsignal(signal.SIGINT))"),
                 "import moodstream.cli\nprint(seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN)",
                 first="signal.signal(signal.SIGINT, signal.SIG_IGN)")
    assert ran.stdout.strip() == "True", (ran.stdout, ran.stderr[-2000:])


def test_a_program_importing_moodstream_keeps_python_s_own_ctrl_c(tmp_path):
    """A program that imports the package (or the CLI, as a test does) keeps its KeyboardInterrupt,
    during the import too: the quiet exit is only for the command's own start."""
    ran = run_as(tmp_path / "program.py", ("click", "seen.append(signal.getsignal(signal.SIGINT))"),
                 "import moodstream.cli\n"
                 "print(seen == [signal.default_int_handler] and signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    assert ran.stdout.strip() == "True", (ran.stdout, ran.stderr[-2000:])


def test_ctrl_c_before_a_command_handles_it_exits_130_quietly(monkeypatch):
    """`up` stopped 0.2-1.0 s after its start (a loaded machine: its own imports, its settings, before its
    handling of a stop begins) said click's "Aborted!" and exited 1. Anything a command does not handle
    itself ends with 130 at the top; a group that says its stop (`bench`) still says it."""
    from moodstream.cli import cli
    from moodstream.shared.settings import Settings

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Settings, "from_env", classmethod(lambda cls, *a, **k: interrupted()))
    ran = CliRunner().invoke(cli, ["up", "--no-dashboard"])
    assert ran.exit_code == 130, (ran.exit_code, ran.output)
    assert "Aborted" not in ran.output and "Traceback" not in ran.output, ran.output
