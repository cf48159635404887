"""The service answers as `analyze` does (issue 13): video frames produced with the
default encoding, served by a real worker (default pipeline), give the same faces
and top emotions as the pipeline run in-process on the decoded frames."""

from __future__ import annotations

from pathlib import Path

from tests.support.streamkit import settings_for

from moodstream.producer.client import Producer
from moodstream.producer.results import FROM_START, ResultReader
from moodstream.shared.media import iter_video
from moodstream.worker.pipeline import Pipeline
from moodstream.worker.service import Worker

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"


def test_default_encoding_gives_the_answers_of_analyze(redis_url):
    import threading

    settings = settings_for(redis_url, batch_max=16)
    pipeline = Pipeline(settings, worker=True)  # the default backend on this machine, as a worker builds it
    frames = [item.image for item in iter_video(str(CLIP), every_n=3)]
    expected = pipeline.process(frames)

    producer = Producer(settings)  # default encoding
    assert producer.encoding == "png"
    refs = list(producer.produce([str(CLIP)], every_n=3))
    worker = Worker(settings, pipeline, name="w-same", handle_signals=False, max_frames=len(refs))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    got = {r.frame: r for r in ResultReader(settings).read(start=FROM_START, count=len(refs), timeout_s=120)}
    thread.join(30)
    assert len(got) == len(refs) == len(frames)
    for ref, want in zip(refs, expected):
        have = got[ref.frame]
        assert [f.emotion for f in have.faces] == [f.emotion for f in want.faces], ref.frame
        for a, b in zip(have.faces, want.faces):
            assert a.box == b.box
