"""CLI options that mirror settings, from one source: :class:`shared.settings.Settings`.

``@setting_option("batch_max")`` is ``--batch-max`` with the setting's type
(Literal settings become a choice), its help text, and the environment
variable and default named in the help. The option's default is None, so an
absent flag leaves the value to ``MOODSTREAM_BATCH_MAX`` or the default
(:meth:`Settings.from_env` skips None overrides). Extra flag names are
aliases (``setting_option("batch_max", "--batch")``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import typing
from contextlib import contextmanager
from pathlib import Path
from dataclasses import MISSING, fields

import click

from moodstream.shared.settings import ENV_PREFIX, Settings, choices, help_of, is_device_name
from moodstream.shared.stop_signals import exit_code, restore_stop_signals, take_stop_signals
from moodstream.shared.table import printable



def to_stderr(line: str) -> None:
    """A command's notice for its user (a wait, a skipped input): one line on stderr, off its output,
    its control characters escaped (a file name with an escape or a newline cannot clear the screen
    or forge a line)."""
    click.echo(printable(line), err=True)


def follow_notice(line: str) -> None:
    """``line`` on stderr where it is a terminal: a command that follows its stream (`results`, `tracks`)
    says what it waits for, once, so a newcomer at a terminal does not take the wait for a hang; in a pipe
    or a log it says nothing, as `tail -f`."""
    try:
        terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        terminal = False
    if terminal:
        to_stderr(line)


def check_stdin_usage(paths, command: str) -> None:
    """A click.UsageError, before anything loads, where the inputs name ``-`` as it cannot be read: twice,
    or from a terminal or a closed stdin (:func:`shared.media.stdin_refusal`): analyze, produce and up."""
    from moodstream.shared.media import stdin_refusal

    if (refused := stdin_refusal(paths, command=command)) is not None:
        raise click.UsageError(refused)


class StdoutError(OSError):
    """Standard output refused a write (a full disk, a quota, an I/O error; not a closed pipe, which
    click ends quietly): the root says it in one line, exit 1, where it was an OSError traceback."""


class GuardedStdout:
    """``sys.stdout`` for the command line (:func:`moodstream.cli.main`): a write or flush that fails, but
    for a closed pipe (click ends that quietly), raises :class:`StdoutError`; whoever says it points the
    descriptor at /dev/null first (:func:`stdout_to_null`: the interpreter's flush at exit does not fail
    again). Nothing else changes: click probes a stream with writes whose failure it expects."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._guarded(self._stream.write, text)

    def flush(self):
        return self._guarded(self._stream.flush)

    @staticmethod
    def _guarded(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutError(exc.errno, exc.strerror or str(exc)) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def stdout_to_null() -> None:
    """Standard output's descriptor pointed at /dev/null: what is still buffered for it, and whatever is
    printed after, goes nowhere, without a second error."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # no descriptor (a program's own stream, a test's)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


class Printing:
    """What a command prints on standard output while it also writes files (``outputs``: their flags, e.g.
    ["--summary"], or what else it does): each print goes through :meth:`__call__`. Should stdout fail, its
    pipe's reader gone (`... --summary s.json | head -1`) or its disk full, the command goes on for the
    files, where it stopped at the first line it could not print and wrote them for what was done: from
    there what it prints goes to /dev/null (no second error, none at exit) and one line on stderr says so;
    ``error`` is then what to end with (None for a closed pipe: a reader that had enough). With no
    ``outputs`` the failure is raised, as before."""

    def __init__(self, command: str, outputs: list[str]):
        self.command, self.outputs = command, outputs
        self.on = True  # False once stdout failed under the files
        self.error: str | None = None

    def __call__(self, write):
        """``write()``'s value, printed while stdout takes it; None once it failed under the files."""
        if not self.on:
            return None
        try:
            return write()
        except OSError as exc:
            if not self.outputs:
                raise
            stdout_to_null()
            closed = isinstance(exc, BrokenPipeError)
            why = "standard output closed (its reader ended)" if closed else \
                f"cannot write to standard output ({exc.strerror or exc})"
            to_stderr(f"{self.command}: {why}: nothing more is printed; going on for {' and '.join(self.outputs)}")
            self.on, self.error = False, None if closed else f"cannot write to standard output: {exc.strerror or exc}"
            return None


class _EscapedFormatter(logging.Formatter):
    """Log lines as ``to_stderr``'s: the message's control characters escaped (``-v`` logs the folders
    and sources a user named: a newline in one forged a line, ESC [2J cleared the screen); a traceback
    after it keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def log_to_stderr(level: int, fmt: str) -> None:
    """``logging.basicConfig`` on stderr, with :class:`_EscapedFormatter` (no-op where the root
    logger has a handler already, as basicConfig is)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EscapedFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


@contextmanager
def stop_ends_command():
    """How a follower or a watch is stopped (`results --follow`, `tracks --follow`, `status --watch`):
    SIGTERM and SIGHUP taken as Ctrl-C inside; a stop ends the command with 128 + the signal (130, 143,
    129), what it printed kept, no 'Aborted!'; the handlers found given back after."""
    previous = take_stop_signals()
    try:
        yield
    except KeyboardInterrupt as exc:
        raise click.exceptions.Exit(exit_code(exc)) from None
    finally:
        restore_stop_signals(previous)


FINITE_MAX = 1e9  # no number a command takes means more (seconds: 31 years; a timer takes at most ~9.2e9)


class FiniteRange(click.FloatRange):
    """click's FloatRange for finite numbers only: its bounds compare false with NaN, so it took
    "nan" and "inf", which then ended in tracebacks or silently changed the work. Without a ``max``,
    at most ``FINITE_MAX``: 1e308 is finite and overflowed timers and millisecond counts."""

    def __init__(self, min=None, max=None, min_open=False, max_open=False, clamp=False):  # noqa: A002 (click's names)
        super().__init__(min=min, max=FINITE_MAX if max is None else max, min_open=min_open, max_open=max_open,
                         clamp=clamp)
        self._implied_max = max is None

    def _describe_range(self) -> str:  # help shows the bounds given, not the implied ceiling
        if not self._implied_max:
            return super()._describe_range()
        if self.min is None:
            return f"x<={FINITE_MAX:g}"
        return f"x{'>' if self.min_open else '>='}{self.min}"

    def convert(self, value, param, ctx):
        try:
            parsed = float(value)
        except (TypeError, ValueError):
            parsed = None  # click's own message below
        if parsed is not None and self._implied_max and math.isfinite(parsed) and parsed > FINITE_MAX:
            self.fail(f"{value!r} is past any use here (at most {FINITE_MAX:g}).", param, ctx)
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


FINITE = FiniteRange()  # any finite float


class DeviceName(click.ParamType):
    """--device: auto, cpu, cuda or cuda:N, refused as it is parsed (exit 2, the flag named) by every
    command alike: analyze, up, worker and the benchmarks took 'bogus' and failed later with exit 1."""

    name = "text"  # the help keeps saying TEXT

    def convert(self, value, param, ctx):
        if not is_device_name(value):
            self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N", param, ctx)
        return value


DEVICE = DeviceName()


def refuse_dash(kind: click.Path, value, param, ctx) -> None:
    """'-' for a file or folder a command writes: Unix tools read it as standard output, and so did a
    user's ``analyze clip.mp4 --summary - | jq``; moodstream wrote a file called '-' (its pictures
    beside it as ``--audience-t0.jpg``), the records on stdout as ever."""
    if value == "-":
        what = "folder" if not kind.file_okay else "file"
        kind.fail(f"'-' is not standard output here: that carries the command's own output. Name a {what} "
                  f"(./- for one called '-').", param, ctx)


class NamedPath(click.Path):
    """click's Path, refusing what names nothing: '' (``--annotate=`` wrote into the current folder)
    and, for a file, a name ending in '/' (``--summary=newdir/`` wrote a file called newdir); and '-'
    (:func:`refuse_dash`)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            if not value:
                self.fail("an empty name names no file or folder.", param, ctx)
            refuse_dash(self, value, param, ctx)
            if not self.dir_okay and value.endswith(("/", os.sep)):
                self.fail(f"{value!r} names a folder; give a file name.", param, ctx)
        return super().convert(value, param, ctx)


class OutputFile(click.Path):
    """A file a command writes at the end of its work, checked when the flag is read: a file name
    (not ''), not something other than a regular file (/dev/full, a FIFO), in a folder that exists
    or can be made and is writable. Found out after a benchmark ran, each was a traceback and the
    results were lost. ``table_beside``: the command also writes a markdown table beside it
    (``.md``), so an ``.md`` name would lose the JSON under the table."""

    def __init__(self, table_beside: bool = False):
        super().__init__(dir_okay=False, path_type=Path)
        self.table_beside = table_beside

    def convert(self, value, param, ctx):
        from moodstream.shared.media import unwritable  # OpenCV: only once an output flag is read

        if isinstance(value, str) and value.endswith(("/", os.sep)):  # Path("newdir/") is newdir: a file
            self.fail(f"{value!r} names a folder; give a file name.", param, ctx)
        refuse_dash(self, value, param, ctx)
        path = super().convert(value, param, ctx)
        why = unwritable(path)
        if why:
            self.fail(f"{str(value)!r} {why}.", param, ctx)
        if self.table_beside and path.suffix.lower() == ".md":
            self.fail(f"{str(path)!r}: this is the JSON; its table is written beside it as .md.", param, ctx)
        return path


class OutputFolder(NamedPath):
    """A folder a command writes into, checked when the flag is read: a name (not '', which wrote
    into the current folder), not an existing file, and the nearest existing folder above it is
    a writable folder. `train --out /etc/passwd/x` and `export onnx --out /proc/x` were a
    NotADirectoryError traceback (train's only after it had read the whole dataset)."""

    def __init__(self):
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        folder = path.absolute()
        while not os.path.lexists(folder) and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            self.fail(f"{str(value)!r} cannot be made or written ({folder} is not a writable folder).", param, ctx)
        return path


_FIELDS = {f.name: f for f in fields(Settings)}
_HINTS = typing.get_type_hints(Settings)


def setting_option(name: str, *aliases: str, **kwargs):
    """A click option for setting ``name``; ``kwargs`` go to click (e.g. ``type=click.IntRange(min=1)``)."""
    f = _FIELDS[name]
    hint = _HINTS[name]
    flag = "--" + name.replace("_", "-")
    default = f.default if f.default is not MISSING else None
    shown = "unset" if default is None else repr(default) if isinstance(default, str) else default
    help_text = f"{help_of(name)} [env {ENV_PREFIX}{name.upper()}; default {shown}]"
    allowed = choices(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if base is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text, **kwargs)
    if name == "device" and "type" not in kwargs:
        kwargs["type"] = DEVICE
    if "type" not in kwargs:
        kwargs["type"] = click.Choice(allowed) if allowed else {int: click.INT, float: FINITE}.get(base,
                                                                                                       click.STRING)
    return click.option(flag, *aliases, name, default=None, help=help_text, **kwargs)
