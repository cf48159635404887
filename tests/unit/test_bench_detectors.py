"""The benches that measure a detector against faces (WIDER's boxes, FER+'s framing, faces pasted on a
canvas) offer the detectors that find faces: `none` (each image one face, the whole of it) is no such
detector (the paper's table and the calibration's features have no entry for it)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from moodstream.cli import cli


@pytest.mark.parametrize("args", [["iou", "--detectors", "none"], ["framing", "--detector", "none"],
                                  ["e2e", "--detector", "none"]])
def test_the_face_benches_refuse_the_whole_image_detector(tmp_path, args):
    result = CliRunner().invoke(cli, ["bench", args[0], "--data", str(tmp_path), *args[1:]])
    assert result.exit_code in (1, 2), result.output  # refused before any data is read
    assert "none" in result.output and "mtcnn" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
