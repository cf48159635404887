"""Benchmarks: commands that write JSON and a readable table, kept apart from tests.

``moodstream bench --help`` lists them all; the table that registers them
(``BENCHES`` in :mod:`moodstream.trainer.cli`) names each module. Accuracy
(``iou``, ``e2e``, ``framing``) and tracking (``tracking``, ``video``) need the
trainer; ``crowd`` times the tracker alone (numpy and scipy); the service
benchmarks (``stream``, ``scaling``, ``encoding``) and ``throughput`` measure
what a worker install ships. Shared parts:
:mod:`trainer.bench.wider` (WIDER FACE ground truth and scaling),
:mod:`trainer.bench.calibration_fit` (box calibration), :func:`emit_json`.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_output(path: Path, text: str) -> None:
    """``text`` as the whole of ``path`` (its folder made), written atomically: a kill, a full disk
    or a file-size limit midway leaves the file as it was, never half a JSON that a script would
    read (:func:`shared.files.write_text_atomic`). A failure is one line, not a traceback."""
    import click

    from moodstream.shared.files import write_text_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


def distinct_outputs(out: Path | None, md_path: Path | None) -> None:
    """--out and --markdown naming one file: the table was written over the JSON (after the run)."""
    import click

    if out is not None and md_path is not None and Path(out).resolve() == Path(md_path).resolve():
        raise click.BadParameter(f"{md_path} is the --out file too: give the table a name of its own",
                                 param_hint="'--markdown'")


def table_text(lines: list[str]) -> str:
    """A benchmark's readable table (its markdown), one item of ``lines`` a line: each escaped on its
    own (:func:`~moodstream.shared.table.printable`), the newlines between them kept. A line names
    what was typed or found (the command as run, a video's file name, a --note): a newline in one
    forged a row and ESC [2J cleared the screen the table is printed on."""
    from moodstream.shared.table import printable

    return "\n".join(printable(line) for line in lines)


def write_beside(out: Path, text: str, table: str) -> None:
    """``text`` (the JSON report) as ``out``, ``table`` beside it (``.md``) and on stdout, and where
    both went on stderr, in one line (the path as typed, escaped)."""
    import click

    from moodstream.options import to_stderr

    write_output(out, text)
    write_output(out.with_suffix(".md"), table)
    click.echo(table)
    to_stderr(f"wrote {out} and {out.with_suffix('.md')}")


def emit_json(report: dict, out: Path | None) -> None:
    """A benchmark's JSON report on stdout (indented), and also in ``out`` where given."""
    import click

    text = json.dumps(report, indent=1)
    if out:
        write_output(out, text + "\n")
    click.echo(text)
