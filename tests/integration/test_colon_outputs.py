"""Outputs named with a colon, relative to the working folder (`analyze in --report run:1.html`, `--annotate
cam:1`): FFmpeg read 'run:1-cam:1.webm' as a URL of the protocol 'run:' and the writer did not open: 'cannot
write the report ... this OpenCV cannot write VP80 WebM', the page without its clip; the annotated mp4 the same."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from moodstream.worker.analyze import analyze_cmd

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"


def test_a_report_and_annotated_copies_named_with_a_colon_are_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cam:1.mp4").write_bytes(CLIP.read_bytes())
    ran = CliRunner().invoke(analyze_cmd, ["--device", "cpu", "--detector", "haar", "--max-frames", "5", "cam:1.mp4",
                                           "--report", "run:1.html", "--annotate", "ann:1"])
    assert ran.exit_code == 0, (ran.output, ran.exception)
    assert (tmp_path / "run:1-cam:1.webm").stat().st_size > 0
    assert (tmp_path / "ann:1" / "cam:1.mp4").stat().st_size > 0
