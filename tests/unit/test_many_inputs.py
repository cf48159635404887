"""``analyze FOLDER`` on a folder of thousands of photos: what each input costs must not grow with
how many came before. A dataset of per-person folders (``p00001/0.jpg``, ``p00001/1.jpg``, ...)
gives thousands of inputs of one name: the annotated copies and the summary's pictures are named
``0.jpg``, ``0-2.jpg``, ... ``0-k.jpg``, and each name was found by trying 1, 2, ... k again
(20,000 such photos: 16 s of the annotator's names alone, 100,000: about 7 minutes)."""

from __future__ import annotations

import sys
from pathlib import Path

import moodstream
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.worker.annotate import Annotator
from moodstream.worker.tracking.summary import Summarizer, write_summary

PACKAGE = str(Path(moodstream.__file__).resolve().parent)


class LineCount:
    """Lines of moodstream's own code run inside the block (sys.settrace): an operation count
    that does not depend on the machine's load."""

    def __enter__(self):
        self.lines = 0

        def local(frame, event, arg):
            if event == "line":
                self.lines += 1
            return local

        def tracer(frame, event, arg):
            return local if frame.f_code.co_filename.startswith(PACKAGE) else None

        self._previous = sys.gettrace()
        sys.settrace(tracer)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._previous)


def same_named(n: int) -> list[str]:
    return [f"/photos/p{i // 2:05d}/{i % 2}.jpg" for i in range(n)]


def test_annotated_names_cost_the_same_for_the_thousandth_photo_of_a_name(tmp_path):
    annotator = Annotator(tmp_path / "ann")
    sources = iter(same_named(800))

    def lines_per_name(n):
        with LineCount() as count:
            for _ in range(n):
                annotator._path(next(sources), ".jpg")
        return count.lines / n

    small = lines_per_name(100)  # names 1..100: up to 50 of one name
    large = lines_per_name(700)  # names 101..800: up to 400 of one name
    assert large < 2 * small, (small, large)  # was 8x (quadratic: 86 -> 686 lines a name)
    names = sorted(annotator.taken)
    assert len(names) == 800 and {"0.jpg", "0-2.jpg", "0-400.jpg", "1-400.jpg"} <= set(names)


def still(source: str) -> FrameResult:
    p = {k: (0.7 if k == "neutrality" else 0.3 / (len(LABELS) - 1)) for k in LABELS}
    return FrameResult(source=source, frame=0, size=[64, 64],
                       faces=[Face((10.0, 10.0, 40.0, 40.0), 0.99, emotion="neutrality", probabilities=p,
                                   track_id=0)])


def test_summary_names_cost_the_same_for_the_thousandth_photo_of_a_name(tmp_path):
    def names_of(n):
        summary = Summarizer()
        for source in same_named(n):
            summary.add(still(source), None, page=1)
        with LineCount() as count:
            write_summary(tmp_path / f"s{n}.json", summary, timelines=False)
        return count.lines / n

    small, large = names_of(100), names_of(800)
    assert large < 2 * small, (small, large)  # was 3.3x (230 -> 755 lines a photo)
