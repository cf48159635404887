"""The ``moodstream`` command: a click group whose subcommands live with the
package that owns them and are imported only when run (so ``moodstream
produce`` never imports torch).
"""

from __future__ import annotations

import logging
import signal
import sys

import click

from moodstream import __version__, _stopped_while_loading
from moodstream.lazy import LazyGroup

# name -> "module:attribute"; each module owns its commands
COMMANDS = {
    "analyze": ("moodstream.worker.analyze:analyze_cmd", "Detect faces and classify emotions in images, folders and videos (no Redis)."),
    "worker": ("moodstream.worker.serve:worker", "Serve frame jobs from Redis: batch, detect, classify, publish results."),
    "produce": ("moodstream.producer.cli:produce", "Enqueue images, folders, videos or a camera as frame jobs in Redis."),
    "results": ("moodstream.producer.cli:results", "Read the results stream (from the start, now, or an id)."),
    "expander": ("moodstream.producer.cli:expander", "Expand `produce --rq` jobs (whole videos, folders) into frame jobs; nothing else."),
    "track": ("moodstream.worker.tracking.stage:track", "Track faces along each source in the results stream (frame order)."),
    "tracks": ("moodstream.worker.tracking.reader:tracks", "Print who felt what, when: the per-person summary of each source run."),
    "status": ("moodstream.producer.status:status", "One screen for operators: live workers, backlog, results and dead letters, frames/s."),
    "dashboard": ("moodstream.producer.dashboard.server:dashboard", "Serve a live web page over the streams: sources, people, fleet."),
    "up": ("moodstream.up:up", "Start Redis (embedded if none is set), a worker, a producer and a track stage; show tracked results."),
    "train": ("moodstream.trainer.cli:train", "Train an emotion classifier on FER+ or a folder-per-class dataset."),
    "eval": ("moodstream.trainer.cli:eval_cmd", "Evaluate an emotion checkpoint on a dataset split."),
    "balance": ("moodstream.trainer.cli:balance_cmd", "Fit a checkpoint's class-prior adjustment on Valid (rare emotions)."),
    "bench": ("moodstream.trainer.cli:bench", "Benchmarks that write JSON and a table: accuracy, speed, the service, tracking (bench --help lists them)."),
    "export": ("moodstream.trainer.export:export", "Export the shipped models to ONNX (the torch-free CPU backend) and the int8 emotion net (OpenVINO)."),
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moodstream")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Emotion recognition on faces in images and video streams.

    Faces are found with MTCNN (or OpenCV's Haar cascade) and each face is
    classified into 8 emotions by a CNN shipped with the package. Runs in one
    process (`analyze`) or as a service over Redis (`produce`, `worker`,
    `results`, or all at once with `up`). Every setting can also come from a
    MOODSTREAM_* environment variable (e.g. MOODSTREAM_REDIS_URL).
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    from moodstream.options import log_to_stderr

    log_to_stderr(level, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose >= 2:
        native_logs_on()
    _say_unknown_variables()


# MOODSTREAM_* variables that are no setting but are read: the test suite's (tests/README.md)
NOT_SETTINGS = {"MOODSTREAM_TEST_SHARED_DATA", "MOODSTREAM_TEST_CHROMIUM", "MOODSTREAM_TEST_CHROMEDRIVER",
                "MOODSTREAM_SCREENSHOTS", "MOODSTREAM_CHAOS_REPORT"}


def _say_unknown_variables() -> None:
    """Each MOODSTREAM_* variable that is no setting, said once with the setting it is closest to (a typo,
    MOODSTREAM_BACTH_MAX; MOODSTREAM_REDIS for MOODSTREAM_REDIS_URL): it was ignored without a word."""
    import os
    from dataclasses import fields

    from moodstream.shared.settings import ENV_PREFIX, Settings

    names = [ENV_PREFIX + f.name.upper() for f in fields(Settings)]
    unknown = sorted(n for n in os.environ if n.startswith(ENV_PREFIX) and n not in names and n not in NOT_SETTINGS)
    if unknown:  # (difflib only then: every command starts here)
        import difflib

        from moodstream.options import to_stderr

        for name in unknown:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
            to_stderr(f"moodstream: {name} is no setting (ignored{'; ' + close[0] + '?' if close else ''})")


def main() -> None:
    from moodstream.options import GuardedStdout, StdoutError, stdout_to_null

    quiet_native_logs()
    if sys.stdout is not None:  # a full disk under stdout: one line, exit 1, not an OSError traceback
        sys.stdout = GuardedStdout(sys.stdout)
    try:
        cli(prog_name="moodstream")
    except StdoutError as exc:  # (a command that writes files too goes on without stdout: options.Printing)
        stdout_to_null()
        click.echo(f"Error: cannot write to standard output: {exc.strerror}", err=True)
        sys.exit(1)
    except SystemExit as exc:
        past_a_stdin_reader(exc.code)
        raise


def past_a_stdin_reader(code) -> None:
    """The command's end, where another thread still waits in standard input's read (`up -` fed by a camera
    that has sent nothing, stopped by Ctrl-C): the interpreter's shutdown would wait for that read's lock and
    abort (exit 134, a core file). Its outputs flushed, the process ends here with the command's code."""
    import os

    media = sys.modules.get("moodstream.shared.media")
    if media is None or not media.stdin_in_use():
        return
    if not isinstance(code, int):
        if code is not None:
            click.echo(str(code), err=True)
        code = 0 if code is None else 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


# OpenCV's and FFmpeg's own messages ("[mov,mp4,...] moov atom not found" on a truncated
# mp4) are off by default: the error record already names the problem. A variable the
# user set wins; -vv turns them on.
NATIVE_LOG_QUIET = {"OPENCV_LOG_LEVEL": "SILENT", "OPENCV_FFMPEG_LOGLEVEL": "-8"}  # -8: AV_LOG_QUIET


def quiet_native_logs() -> None:
    """Before cv2 loads: OpenCV reads OPENCV_LOG_LEVEL once, at load (FFmpeg's level
    when the first video opens)."""
    import os

    for name, value in NATIVE_LOG_QUIET.items():
        os.environ.setdefault(name, value)


def native_logs_on() -> None:
    """-vv: OpenCV's and FFmpeg's warnings too. Our quiet levels are unset, not raised:
    with OPENCV_FFMPEG_LOGLEVEL set, OpenCV prints FFmpeg's messages on stdout (among
    the records); unset, FFmpeg prints them on stderr. cv2 may be loaded by now (the
    command's module is imported before this group's callback runs)."""
    import os

    for name, value in NATIVE_LOG_QUIET.items():
        if os.environ.get(name) == value:
            del os.environ[name]
    if "cv2" in sys.modules:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)


# the command's imports are done (moodstream/__init__.py quieted a Ctrl-C in them): a Ctrl-C is a
# KeyboardInterrupt again, which each command handles (LazyGroup.invoke one as a command loads)
if signal.getsignal(signal.SIGINT) is _stopped_while_loading:
    signal.signal(signal.SIGINT, signal.default_int_handler)
