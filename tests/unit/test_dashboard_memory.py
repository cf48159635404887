"""The dashboard's model holds a bounded number of bytes, whatever the feed: many sources, big frames,
big summaries, in any mix. The last stop measured a 200-source feed at ~650 MB RSS against the
256Mi limit of ``deploy/k8s``; these feeds reproduce where it went (evicted names and whole
frames kept in the reconnect ring, every summary's pictures) and bound it by tracemalloc."""

from __future__ import annotations

import base64
import json
import tracemalloc

import pytest

from moodstream.producer.dashboard import model as dm
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult, Smoothed

BUDGET = 64 << 20  # what the model may hold, all told (its deploy/k8s limit is 256Mi for the whole process)


def frame(source: str, n: int, faces: int = 1, track: bool = True) -> FrameResult:
    probs = {k: 0.3 if k == "happiness" else 0.1 for k in LABELS}
    return FrameResult(source=source, frame=n, timestamp_s=n / 30, size=(1920, 1080), job_id=f"{source}-{n}" * 4,
                       faces=[Face(box=(10.0 + i, 10.0, 50.0 + i, 60.0), score=0.99, emotion="happiness",
                                   probabilities=probs, track_id=i if track else None,
                                   smoothed=Smoothed("happiness", probs)) for i in range(faces)])


def summary(tracks: int, thumb_chars: int, salt: int) -> dict:
    picture = base64.b64encode(salt.to_bytes(3, "big") * (thumb_chars // 4)).decode()
    return {"tracks": [{"track_id": t, "person": True, "first_timestamp_s": 0.0, "last_timestamp_s": 9.0,
                        "frames": 300, "dominant": "happiness", "mean_probabilities": {k: 0.125 for k in LABELS},
                        "episodes": [{"emotion": "happiness", "start_s": 0.0, "end_s": 1.0, "peak": 0.9,
                                      "peak_s": 0.5}] * 2} for t in range(tracks)],
            "thumbnails": {str(t): picture[:-4] + f"{t:04d}" for t in range(tracks)}}


@pytest.fixture
def traced():
    tracemalloc.start()
    yield lambda: tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()


def test_many_sources_in_one_batch_keep_no_trail_of_names(traced):
    """A busy feed of distinct source names: each batch named every source it evicted (the last
    stop traced 79 MB of them); here 400 names of 300 characters a batch, 240 batches kept."""
    model = dm.Model()
    before = traced()
    name = "n" * (dm.TEXT_CHARS - 12)
    for b in range(dm.RING + 10):
        for i in range(400):
            model.fold("results", f"{b * 10_000 + i + 1}-0", frame(f"{name}{b:05d}-{i:05d}", 0, track=False))
        model.commit()
    held = traced() - before
    assert held < 8 << 20, f"{held / 2**20:.1f} MiB"  # 37.6 MiB before
    # a page that had a source is still told it went
    seq = model.seq
    gone = next(iter(model.sources))
    for i in range(dm.MAX_SOURCES):
        model.fold("results", f"{10**9 + i}-0", frame(f"later-{i}", 0, track=False))
    model.commit()
    (_, _, batch), = model.since(seq)
    assert gone in json.loads(batch)["evicted"]


def test_big_frames_and_summaries_stay_within_the_budget(traced):
    """Every source sends frames of 64 faces and often a new summary of 64 tracks with pictures:
    the reconnect ring kept 240 batches of whole frames and summaries, and a summary's pictures had
    no bound together (64 of 64,000 characters: 4 MB a source)."""
    model = dm.Model()
    before = traced()
    big = summary(dm.MAX_SUMMARY_TRACKS, dm.MAX_THUMB_CHARS, 0)
    for b in range(dm.RING + 10):
        for s in range(dm.MAX_SOURCES):
            model.fold("results", f"{b * 100 + s + 1}-0", frame(f"src-{s}", b + 1, faces=dm.MAX_FACES, track=False))
            if b % 10 == 0:  # a new summary every 10th batch: 25 of them a source, 1 MB of pictures each
                model.fold_summary(f"src-{s}", summary(dm.MAX_SUMMARY_TRACKS, 16_000, b * 31 + s),
                                   f"{b * 100 + s + 1}-1")
        model.commit()
    for s in range(dm.MAX_SOURCES):  # then the largest pictures a summary may carry
        model.fold_summary(f"src-{s}", big, f"{10**9 + s}-1")
    model.commit()
    held = traced() - before
    assert held < BUDGET, f"{held / 2**20:.1f} MiB"  # 684 MiB before
    assert model.ring_bytes <= dm.RING_BYTES
    snap = model.snapshot()
    assert len(snap["sources"]) == dm.MAX_SOURCES
    shown = [t for s in snap["sources"] for t in s["summary"]["tracks"]]
    assert len(shown) == dm.MAX_SOURCES * dm.MAX_SUMMARY_TRACKS  # every track listed, pictures or not
    assert any(t["thumbnail"] for t in shown)


def test_a_reconnecting_page_gets_the_batches_it_missed_as_sent(traced):
    """The ring keeps batches as the text the page reads: the same JSON as a live page got."""
    model = dm.Model()
    model.fold("tracked", "1-0", frame("a", 1, faces=2))
    model.commit()
    seq = model.seq
    model.fold("tracked", "2-0", frame("a", 2, faces=2))
    model.fold("tracked", "3-0", frame("b", 1, faces=1))
    model.commit()
    (s, bid, text), = model.since(seq)
    batch = json.loads(text)
    assert s == seq + 1 and bid == "results=0-0;tracked=3-0;summaries=0-0"
    assert [x["name"] for x in batch["sources"]] == ["a", "b"]
    assert batch["sources"][0]["latest"]["frame"] == 2
