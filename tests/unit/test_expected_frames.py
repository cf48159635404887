"""The progress bar's total (analyze's ``expected_frames``) is the number of records the inputs
give: a multi-page TIFF gives a record a page (it was counted as one image: 3/1, 64/1), and
``--fps`` above a video's own rate gives its frames, not more (a 30 fps clip at --fps 60 was
counted twice its length, the bar ending at half)."""

from __future__ import annotations

import cv2
import numpy as np

from moodstream.shared.media import iter_frames
from moodstream.worker.analyze import expected_frames


def records(spec: str, **kw) -> int:
    return sum(1 for _ in iter_frames([spec], **kw))


def test_a_multi_page_tiff_counts_a_frame_a_page(tmp_path):
    rng = np.random.default_rng(1)
    doc = tmp_path / "doc.tif"
    assert cv2.imwritemulti(str(doc), [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(3)])
    one = tmp_path / "one.tif"
    assert cv2.imwrite(str(one), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    assert expected_frames([str(doc)], 1, None, None) == records(str(doc)) == 3
    assert expected_frames([str(doc), str(one)], 1, None, None) == 4


def test_fps_above_the_video_s_rate_counts_its_frames(fixtures_dir):
    clip = str(fixtures_dir / "clip_360p.mp4")  # 12 frames at 29.97
    assert expected_frames([clip], 1, 60.0, None) == records(clip, fps=60.0) == 12
