"""The ``moodstream`` command: a click group whose subcommands live with the
package that owns them and are imported only when run (so ``moodstream
produce`` never imports torch).
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from moodstream import __version__
from shared.errors import MoodstreamError

# name -> "module:attribute"; each module owns its commands
COMMANDS = {
    "analyze": ("worker.analyze:analyze", "Detect faces and classify emotions in images, folders and videos (no Redis)."),
    "worker": ("worker.serve:worker", "Serve frame jobs from Redis: batch, detect, classify, publish results."),
    "produce": ("producer.cli:produce", "Enqueue images, folders, videos or a camera as frame jobs in Redis."),
    "results": ("producer.cli:results", "Read the results stream (from the start, now, or an id)."),
    "up": ("moodstream.up:up", "Start Redis (embedded if none is set), a worker and a producer, and show results."),
    "train": ("trainer.cli:train", "Train an emotion classifier on FER+ or a folder-per-class dataset."),
    "eval": ("trainer.cli:eval_cmd", "Evaluate an emotion checkpoint on a dataset split."),
    "bench": ("trainer.cli:bench", "Benchmarks that write JSON: detection IoU, end-to-end, throughput."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, short_help = COMMANDS[name]
        module, attr = target.split(":")
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            return _missing_extra(name, short_help, exc)
        cmd.short_help = cmd.short_help or short_help
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # from the table, so `moodstream --help` imports no command module (and no torch)
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MoodstreamError as exc:
            raise click.ClickException(str(exc)) from None


def _missing_extra(name: str, short_help: str, exc: ImportError) -> click.Command:
    @click.command(name=name, short_help=short_help, context_settings={"ignore_unknown_options": True},
                   add_help_option=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args):
        raise click.ClickException(
            f"`moodstream {name}` needs a package that is not installed ({exc.name or exc}); "
            "install the extra: pip install 'moodstream[worker]' (or [train] for train/eval/bench)")
    return unavailable


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main() -> None:
    cli(prog_name="moodstream")
