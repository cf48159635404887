"""``analyze --summary``'s timeline picture on long videos: the summary kept every face's time and
probabilities of every frame for it (``series=True``: about 180 bytes a face a frame, 56 MiB for an
hour of three faces at 30 frames/s, and every frame's time besides), for a picture 1,200 pixels
wide. A track's timeline now keeps at most ``TIMELINE_BUCKETS`` buckets of time (two a pixel);
a short video's bucket is one frame, drawn as before."""

from __future__ import annotations


import cv2
import numpy as np
from tests.support.memory import Kept

from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.annotate import COLORS
from moodstream.worker.tracking.summary import SourceSummary, Summarizer, write_summary

FPS = 30.0


def _probs(top: str) -> dict[str, float]:
    return {k: (0.86 if k == top else 0.02) for k in LABELS}


def _frame(i: int, tracks: tuple[int, ...], top: str = "neutrality") -> FrameResult:
    faces = [Face((100.0 + 200 * k, 50.0, 180.0 + 200 * k, 130.0), 0.97, emotion=top, probabilities=_probs(top),
                  track_id=k) for k in tracks]
    return FrameResult(source="lecture.mp4", frame=i, timestamp_s=i / FPS, faces=faces)


def test_a_long_runs_timeline_does_not_grow_with_its_frames():
    summary = SourceSummary("lecture.mp4")  # series=True: analyze --summary's
    for i in range(3000):  # warm up: the tracks, their first buckets
        summary.add(_frame(i, (0, 1, 2)))
    with Kept(collect=False) as kept:
        for i in range(3000, 23_000):
            summary.add(_frame(i, (0, 1, 2)))
    grown = kept.grown
    print(f"20,000 frames x 3 faces: {grown / 2**20:.2f} MiB more")
    assert grown < 2 * 2**20, f"{grown / 2**20:.2f} MiB for 20,000 frames of 3 faces; {kept.where()}"


def _row_colours(png, row: int = 0) -> np.ndarray:
    """The timeline's first row's band, one RGB a pixel column (the middle of the band)."""
    img = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    plot_x, top, band_h = 16 + 56 + 8 + 40, 34, 56 - 8
    return img[top + row * 66 + band_h // 2 + 10, plot_x + 1:1200 - 16 - 1].astype(int)


def test_a_long_runs_timeline_shows_its_emotions_and_its_gaps(tmp_path):
    """Track 0 happy for 100 s, gone for 100 s, sad for 100 s (9,000 frames): the picture's first
    third is happiness's colour, its middle blank, its last third sadness's."""
    summarizer = Summarizer()
    for i in range(9000):
        part = i * 3 // 9000
        faces = (0,) if part != 1 else ()
        summarizer.add(_frame(i, faces, "happiness" if part == 0 else "sadness"))
    write_summary(tmp_path / "people.json", summarizer)
    band = _row_colours(tmp_path / "people-lecture.png")
    third = len(band) // 3
    colour = {name: np.array(COLORS[name]) for name in ("happiness", "sadness")}

    def share(cols: np.ndarray, rgb: np.ndarray) -> float:
        return float(np.mean(np.abs(cols - rgb).max(axis=1) < 40))

    assert share(band[4:third - 4], colour["happiness"]) > 0.95
    assert share(band[third + 4:2 * third - 4], np.array([255, 255, 255])) > 0.95, "the gap stays blank"
    assert share(band[2 * third + 4:-4], colour["sadness"]) > 0.95
