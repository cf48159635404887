"""A FIFO named like a video in a folder (`b.ts`; a tar of anyone's upload holds FIFOs too): its name
alone does not tell a `.ts` (an MPEG transport stream, or TypeScript), so its first bytes were read,
and opening a FIFO waits for a writer: `moodstream analyze folder/` hung forever, and so did the
expander's folder job, its worker with it. Now a `.ts` is read to be told only when it is a regular
file (opened without waiting); a FIFO is left out by `analyze`, refused in its place by the expander."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "samples" / "audience.jpg"

LIST = """
import json, sys
from moodstream.producer.sources import file_items, media_files
from moodstream.shared.media import expand_paths
folder = sys.argv[1]
print(json.dumps({"analyze": list(expand_paths([folder])),
                  "expander": [[p, e and e.detail] for p, e in media_files(folder, folder)],
                  "items": [[i.source, i.error and i.error.detail] for i in file_items(folder, folder)]}))
"""


def test_a_fifo_named_ts_is_not_waited_on(tmp_path):
    shutil.copy(PHOTO, tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "b.ts")
    try:  # in a child: a hang is a timeout here, not a suite that never ends
        out = subprocess.run([sys.executable, "-c", LIST, str(tmp_path)], capture_output=True, text=True,
                             timeout=60, cwd=REPO)
    except subprocess.TimeoutExpired:
        raise AssertionError("listing the folder waited on the FIFO") from None
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed["analyze"] == [str(tmp_path / "a.jpg")]
    assert [p for p, _ in listed["expander"]] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.ts")]
    assert listed["items"] == [[str(tmp_path / "a.jpg"), None],
                               [str(tmp_path / "b.ts"), f"{tmp_path / 'b.ts'} is not a regular file"]]
