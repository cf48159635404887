"""Bench commands name a bad argument in one line, not a traceback (found by an audit): a folder
that is not FER+ (FileNotFoundError), a detections file that is an image or JSON of another shape
(UnicodeDecodeError, AttributeError), a Redis that is not there (ConnectionError)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.embedded import free_port

REPO = Path(__file__).resolve().parents[2]


def one_line_error(args: list[str], *expect: str) -> None:
    result = CliRunner().invoke(cli, ["bench", *args])
    assert result.exit_code == 1 and "Traceback" not in result.output, (result.output, result.exception)
    assert all(e in result.output for e in expect), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def test_framing_on_a_folder_that_is_not_ferplus(tmp_path):
    one_line_error(["framing", "--data", str(tmp_path)], "not a FER+ folder")


@pytest.mark.parametrize("content", [b"\xff\xd8garbage", b"[1, 2]", b"{}"])
def test_iou_with_a_detections_file_of_another_kind(shared_data, tmp_path, content):
    (tmp_path / "d.json").write_bytes(content)
    one_line_error(["iou", "--data", str(shared_data / "wider_val_416"), "--limit", "2", "--detectors", "haar",
                    "--detections", str(tmp_path / "d.json")], "not a detections file")


def test_stream_against_a_redis_that_is_not_there():
    one_line_error(["stream", "--video", str(REPO / "samples" / "hamilton_clip.mp4"), "--no-spawn",
                    "--redis-url", f"redis://127.0.0.1:{free_port()}/0"], "cannot reach Redis")


@pytest.mark.parametrize("out, why", [("", "names no file"), ("/dev/full", "not a regular file"),
                                      ("a-file/x.json", "cannot be written"), ("r.md", "its table")])
def test_an_out_a_bench_cannot_write_is_refused_before_it_runs(tmp_path, out, why):
    """Each was a traceback after the benchmark had run (its results lost); an .md --out lost the
    JSON under the table written beside it."""
    (tmp_path / "a-file").write_text("x")
    result = CliRunner().invoke(cli, ["bench", "encoding", "--max-frames", "1", "--out",
                                      out if out.startswith("/") or not out else str(tmp_path / out)])
    assert result.exit_code == 2 and why in result.output and "Traceback" not in result.output, result.output


def test_eval_will_not_write_its_report_over_the_checkpoint(tmp_path):
    import shutil

    from moodstream.shared.models import SHIPPED_CHECKPOINT

    ckpt = tmp_path / "m.pt"
    shutil.copy(SHIPPED_CHECKPOINT, ckpt)
    result = CliRunner().invoke(cli, ["eval", "--data", str(tmp_path), "--checkpoint", str(ckpt), "--out", str(ckpt)])
    assert result.exit_code == 2 and "checkpoint itself" in result.output, result.output
    assert ckpt.read_bytes() == SHIPPED_CHECKPOINT.read_bytes()
