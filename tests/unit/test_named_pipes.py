"""A named pipe given as a path is read as stdin is: process substitution (`moodstream analyze
<(curl -s URL)`, `<(ssh cam cat clip.mp4)`: bash names it /dev/fd/63) or a FIFO made by mkfifo.

A video through one was "unreadable: not an image (no known image signature in its first bytes)": a
pipe has no name to tell a video by and can be read only once, so neither FFmpeg nor the sniffing of
its first bytes could be used on it. Now its first bytes are read once and tell what it is; a video is
copied to a temporary file (as stdin's) and read frame by frame, named by the pipe's path. `up --report`,
which reads its inputs twice, refuses one as it refuses stdin."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.cli import cli
from moodstream.shared.errors import BadInputError
from moodstream.shared.media import iter_frames

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "hamilton_clip.mp4"
PHOTO = REPO / "samples" / "street.jpg"
MAX = 64_000_000


def _fifo_with(tmp_path: Path, data: bytes, name: str = "pipe") -> tuple[str, threading.Thread]:
    path = tmp_path / name
    os.mkfifo(path)

    def write():
        with open(path, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:  # the reader stopped early
                pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return str(path), writer


def test_a_video_through_a_named_pipe_gives_the_file_s_frames(tmp_path):
    expected = [(i.frame, i.timestamp_s, i.decoded(MAX).shape) for i in iter_frames([str(CLIP)])]
    fifo, writer = _fifo_with(tmp_path, CLIP.read_bytes())
    items = list(iter_frames([fifo]))
    writer.join(10)
    assert all(i.error is None for i in items), [i.error for i in items if i.error]
    assert [(i.frame, i.timestamp_s, i.decoded(MAX).shape) for i in items] == expected
    assert {i.source for i in items} == {fifo}


def test_a_photo_and_garbage_through_named_pipes(tmp_path):
    fifo, writer = _fifo_with(tmp_path, PHOTO.read_bytes(), "photo")
    (item,) = iter_frames([fifo])
    writer.join(10)
    assert item.error is None and item.page == 1 and item.decoded(MAX).shape == (540, 960, 3)
    fifo, writer = _fifo_with(tmp_path, b"hello, not media\n" * 10, "notes")
    (item,) = iter_frames([fifo])
    writer.join(10)
    assert item.source == fifo
    with pytest.raises(BadInputError) as refused:  # as stdin's bytes: refused when decoded, not as a file name
        item.decoded(MAX)
    assert refused.value.reason == "unreadable" and "moodstream-stdin" not in refused.value.detail


def test_analyze_reads_process_substitution():
    """What a shell user types; bash hands the command /dev/fd/63, a pipe."""
    proc = subprocess.run(["bash", "-c", f'"{sys.executable}" -m moodstream analyze <(cat "{CLIP}") --max-frames 5'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and '"error"' not in proc.stdout, proc.stdout[:500]


def test_up_report_refuses_a_named_pipe(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = CliRunner().invoke(cli, ["up", str(fifo), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 2, result.output
    assert "cannot be read twice" in result.output
