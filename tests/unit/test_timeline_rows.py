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
