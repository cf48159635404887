"""Benchmarks: commands that write JSON and a readable table, kept apart from tests.

``moodstream bench --help`` lists them all; the table that registers them
(``BENCHES`` in :mod:`moodstream.trainer.cli`) names each module. Accuracy
(``iou``, ``e2e``, ``framing``) and tracking (``tracking``, ``video``) need the
trainer; the service benchmarks (``stream``, ``scaling``, ``encoding``) and
``throughput`` measure what a worker install ships. Shared parts:
:mod:`trainer.bench.wider` (WIDER FACE ground truth and scaling),
:mod:`trainer.bench.calibration_fit` (box calibration), :func:`emit_json`.
"""

from __future__ import annotations

import json
from pathlib import Path


def emit_json(report: dict, out: Path | None) -> None:
    """A benchmark's JSON report on stdout (indented), and also in ``out`` where given."""
    import click

    text = json.dumps(report, indent=1)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    click.echo(text)
