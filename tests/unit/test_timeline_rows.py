"""The summary's timeline image has a bounded number of rows: 5,754 tracks (a crowd, or noise) drew a
379,858 x 1,200 PNG (1.4 GB of pixels; the run peaked at 3.4 GB against 608 MB without --summary)."""

from __future__ import annotations

import numpy as np

from moodstream.shared.labels import LABELS
from moodstream.worker.annotate import MAX_TIMELINE_ROWS, draw_timeline


def test_the_timeline_shows_people_first_and_at_most_its_rows():
    rows = []
    for i in range(5 * MAX_TIMELINE_ROWS):
        entry = {"track_id": i, "person": i % 7 == 0, "frames": i, "episodes": []}
        p = np.full(len(LABELS), 1 / len(LABELS), np.float32)
        rows.append((entry, [(0.0, 0.5, p), (0.5, 1.0, p), (1.0, 1.5, p)], None))
    img = draw_timeline("crowd.mp4", rows, (0.0, 1.5, 0.5))
    few = draw_timeline("crowd.mp4", rows[:MAX_TIMELINE_ROWS], (0.0, 1.5, 0.5))
    assert img.shape == few.shape  # the cap, not one row a track
    assert img.shape[0] < 6000


def test_a_still_image_shows_each_face_s_probabilities_as_shares_not_over_time():
    """A photo's faces are at no time: its picture drew each face's probabilities as bands over a
    time axis of 0-0.033 s (one frame's step), every column alike. Now one bar a face, each
    emotion's width its probability, on a 0-100% axis."""
    from moodstream.worker.annotate import COLORS, MARGIN_PX, THUMB_PX, TIMELINE_WIDTH

    p = np.zeros(len(LABELS), np.float32)
    p[LABELS.index("neutrality")], p[LABELS.index("sadness")], p[LABELS.index("anger")] = 0.5, 0.3, 0.2
    entry = {"track_id": 0, "person": True, "frames": 1, "episodes": []}
    row = (entry, [(0.0, 1 / 30, p)], None)
    img = draw_timeline("street.jpg", [row], (0.0, 1 / 30, 1 / 30), still=True)
    plot_x = MARGIN_PX + THUMB_PX + 8 + 40
    plot_w = TIMELINE_WIDTH - plot_x - MARGIN_PX
    y = 34 + (THUMB_PX - 8) // 2  # the middle of the first row's bar
    line = img[y, plot_x + 2:plot_x + plot_w - 2]
    shares = {label: float(np.mean(np.all(line == np.array(color, np.uint8), axis=1)))
              for label, color in COLORS.items()}
    assert abs(shares["neutrality"] - 0.5) < 0.02 and abs(shares["sadness"] - 0.3) < 0.02, shares
    assert abs(shares["anger"] - 0.2) < 0.02, shares
    video = draw_timeline("clip.mp4", [row], (0.0, 1 / 30, 1 / 30))
    assert not np.array_equal(video, img)  # a video's one frame is still drawn over its time
