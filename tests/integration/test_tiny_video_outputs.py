"""A video one pixel wide or high (a sensor's line, a test pattern), or of a few pixels: FFmpeg's
MPEG-4 encoder refuses a side of 1 pixel, and VP8's WebM of 4x3 opens but reads back as no video,
so the annotated copy and the report's clip were not
written: exit 1, the report blaming the OpenCV build ("cannot write VP80 WebM ... needs its
FFmpeg backend with libvpx"), which writes any other size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner


@pytest.mark.parametrize("size", [(1, 1), (1, 40), (40, 1), (4, 3)])
def test_a_one_pixel_video_gets_its_annotated_copy_and_clip(tmp_path, size):
    from moodstream.worker.analyze import analyze_cmd as analyze

    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for i in range(10):
        writer.write(np.full((size[1], size[0], 3), i * 20, np.uint8))
    writer.release()
    out = tmp_path / "out"
    ran = CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", str(path), "--annotate",
                                       str(out / "ann"), "--report", str(out / "r.html")])
    assert ran.exit_code == 0, ran.output
    for clip in (out / "ann" / "line.mp4", out / "r-line.webm"):
        cap = cv2.VideoCapture(str(clip))
        frames = 0
        while cap.read()[0]:
            frames += 1
        cap.release()
        assert frames == 10, clip
