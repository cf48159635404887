"""'-' given where a command writes a file or a folder: Unix tools read it as standard output, and so
did a user's `analyze clip.mp4 --summary - | jq`. moodstream wrote a file called '-' there (and
the summary's face pictures and timeline beside it as `--audience-t0.jpg` and `--audience.png`,
names `rm` itself takes for options), the records on stdout as ever. Each such flag now refuses '-'
before anything loads, saying that stdout carries the records and how to name a file called '-'
(./-). `tracks --pictures ''` wrote into the current folder: it takes no empty name now either."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from moodstream.cli import cli

OUTPUTS = [
    ["analyze", "samples/audience.jpg", "--summary", "-"],
    ["analyze", "samples/audience.jpg", "--report", "-"],
    ["analyze", "samples/audience.jpg", "--annotate", "-"],
    ["up", "samples/audience.jpg", "--summary", "-"],
    ["up", "samples/audience.jpg", "--report", "-"],
    ["tracks", "--pictures", "-"],
    ["eval", "--out", "-"],
    ["train", "--out", "-"],
    ["export", "onnx", "--out", "-"],
    ["bench", "throughput", "--out", "-"],
    ["bench", "throughput", "--markdown", "-"],
    ["bench", "iou", "--figures", "-"],
    ["bench", "shots", "--work", "-"],
]


@pytest.mark.parametrize("args", OUTPUTS, ids=lambda a: " ".join(a[:-1]))
def test_a_dash_for_an_output_is_a_usage_error_and_writes_nothing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "audience.jpg").write_bytes(b"\xff\xd8\xff")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "'-' is not standard output here" in result.output, result.output
    assert "./-" in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == ["samples"]


def test_a_file_called_dash_is_named_as_dot_slash_dash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from pathlib import Path

    from moodstream.options import NamedPath, OutputFile, OutputFolder

    for kind in (NamedPath(dir_okay=False, path_type=Path), NamedPath(file_okay=False, path_type=Path),
                 OutputFile(), OutputFolder()):
        assert kind.convert("./-", None, None).name == "-"


def test_tracks_pictures_takes_no_empty_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["tracks", "--pictures", ""])
    assert result.exit_code == 2 and "an empty name names no file or folder" in result.output, result.output
