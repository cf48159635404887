"""A library user's max_pixels reaches decoding (issue 23 item 5): OpenCV's own pixel limit is
set in one place (the package's __init__, before any of its modules loads cv2) to the setting's ceiling, so any valid
max_pixels is the limit that holds, checked on the image header."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moodstream.shared.errors import ConfigError
from moodstream.shared.settings import MAX_PIXELS_CEILING, Settings

ROOT = Path(__file__).resolve().parents[2]


def fresh_python(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``script`` in a new interpreter, as a library user's process starts (cv2 not loaded yet)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MOODSTREAM_", "OPENCV_IO_"))}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**clean, **(env or {})})


def test_a_larger_max_pixels_reaches_decoding():
    # 7500 x 7000 = 52.5 M pixels: over the default 50 M, under this user's 60 M. OpenCV's
    # limit was the default's, set at import, so OpenCV refused what the user allowed.
    script = ("import numpy as np\n"
              "from moodstream.shared.media import decode_image\n"
              "from moodstream.shared.settings import Settings\n"
              "import cv2\n"
              "settings = Settings(max_pixels=60_000_000)\n"
              "data = cv2.imencode('.png', np.zeros((7000, 7500, 3), np.uint8))[1].tobytes()\n"
              "print(decode_image(data, settings.max_pixels).shape)\n")
    out = fresh_python(script)
    assert out.returncode == 0 and out.stdout.split("\n")[0] == "(7000, 7500, 3)", out.stderr[-2000:]
    assert Settings.max_pixels < 7500 * 7000 < 60_000_000


def test_max_pixels_above_the_ceiling_is_a_config_error():
    with pytest.raises(ConfigError, match="max_pixels must be"):
        Settings.from_env(env={"MOODSTREAM_MAX_PIXELS": str(MAX_PIXELS_CEILING + 1)})
    assert Settings(max_pixels=MAX_PIXELS_CEILING).max_pixels == MAX_PIXELS_CEILING


def test_opencv_limit_is_set_in_one_place_whatever_the_environment():
    script = ("import os\n"
              "assert 'OPENCV_IO_MAX_IMAGE_PIXELS' not in os.environ\n"
              "import moodstream\n"  # the package itself: before any of its modules imports cv2
              "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])\n")
    for env in ({}, {"MOODSTREAM_MAX_PIXELS": "10000"}):
        out = fresh_python(script, env)
        assert out.stdout.split() == [str(MAX_PIXELS_CEILING)], out.stderr[-2000:]


@pytest.mark.parametrize("module", ["moodstream.worker.analyze", "moodstream.producer.live",
                                    "moodstream.worker.annotate", "moodstream.shared.shots"])
def test_opencv_limit_holds_whichever_module_loads_cv2_first(module):
    """`moodstream analyze` imports worker.analyze, which imported cv2 before shared.media set the
    limit: OpenCV loaded with its own default (2**30 pixels) and decoded a 30000 x 30000 PNG bomb."""
    script = (f"import {module}\n"
              "import cv2, numpy as np\n"
              "from tests.support.corpus import bombs\n"
              "try:\n"
              "    cv2.imdecode(np.frombuffer(bombs()['png'], np.uint8), cv2.IMREAD_UNCHANGED)\n"
              "    print('decoded')\n"
              "except cv2.error as e:\n"
              "    print('refused' if 'MAX_IMAGE_PIXELS' in str(e) else 'other')\n")
    out = fresh_python(script)
    assert out.stdout.split() == ["refused"], out.stderr[-2000:]
