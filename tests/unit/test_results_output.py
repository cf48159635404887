"""What `moodstream results` prints: valid JSON always, one table row per result (issue 12, item 8)."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from moodstream.producer.cli import TablePrinter
from moodstream.shared.table import printable
from moodstream.shared.record import ErrorInfo, Face, FrameResult


def _result(**kw) -> FrameResult:
    base = dict(job_id="j", source="cam", frame=0, worker="w", published_at_ms=2, enqueued_at_ms=1)
    base.update(kw)
    return FrameResult(**base)


def test_non_finite_numbers_become_null_not_nan():
    r = _result(faces=[Face((0.0, 0.0, 1.0, 1.0), float("nan"), emotion="anger",
                            probabilities={"anger": float("inf")})], timestamp_s=float("nan"))
    text = json.dumps(r.to_json(), allow_nan=False)  # would raise on NaN
    back = json.loads(text)
    assert back["timestamp_s"] is None and back["faces"][0]["score"] is None


def test_control_characters_cannot_forge_table_rows():
    assert printable("a\r\nb\x1b[2Jc") == "a\\r\\nb\\x1b[2Jc"

    @click.command()
    def show():
        p = TablePrinter()
        p.row(_result(source="evil\nFAKE ROW\r", faces=[]))
        p.row(_result(source="cam", error=ErrorInfo("unreadable", "line1\nline2")))

    out = CliRunner().invoke(show).output
    assert len(out.splitlines()) == 3  # header + two rows


def test_a_latency_no_clock_could_give_is_shown_as_unknown():
    """A job enqueued "at" 2**64 - 1 ms showed a latency of -18446742277249391055 ms."""

    @click.command()
    def show():
        p = TablePrinter()
        p.row(_result(enqueued_at_ms=2**64 - 1, published_at_ms=1_733_390_000_000))
        p.row(_result(enqueued_at_ms=1_733_390_000_000, published_at_ms=1_733_390_000_250))

    rows = CliRunner().invoke(show).output.splitlines()[1:]
    assert rows[0].split()[3] == "?" and rows[1].split()[3] == "250"  # source, frame, faces, latency
