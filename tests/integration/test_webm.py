"""worker.webm: the report's clip is a WebM that OpenCV reads back, written without OpenCV's notice that
the VP8 tag "is not supported with codec id 139 and format 'webm / WebM'" (acceptance run: that line
came on stderr from every `analyze --report`, and reads like a failure)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, numpy as np, cv2
from moodstream.worker.webm import open_webm
w = open_webm(sys.argv[1], 10.0, (64, 48))
for i in range(5):
    w.write(np.full((48, 64, 3), 40 * i, np.uint8))
w.release()
sys.stderr.write("after\\n")
cap = cv2.VideoCapture(sys.argv[1])
print(sum(cap.read()[0] for _ in range(5)))
"""


def test_a_webm_is_written_without_opencvs_tag_notice(tmp_path):
    out = tmp_path / "clip.webm"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"  # every frame reads back
    assert "is not supported with codec id" not in done.stderr, done.stderr
    assert done.stderr.endswith("after\n")  # the process's own stderr still works afterwards
