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
