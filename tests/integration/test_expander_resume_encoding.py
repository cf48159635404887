"""An expander job that resumes (requeued after a SIGTERM, a kill or a failure) skips the frames its
earlier runs sent; it encoded each of them first all the same (a file's frames go through
`Producer.encoded_ahead` before the skip), at 47 ms a 1080p PNG frame against 19 to read it: a job
resumed at frame 9,000 of a 10-minute video spent about 7 minutes of CPU encoding frames it then
threw away. Now only the frames it sends are encoded. The expander's own job class, in this process
(rq's SimpleWorker), so the encodes can be counted."""

from __future__ import annotations

import threading
from pathlib import Path

from rq.job import JobStatus
from tests.support.expanderkit import burst_here, settings
from tests.support.streamkit import pushed

from moodstream.producer import client as producer_client
from moodstream.producer import rq_jobs
from moodstream.shared.keys import Keys
from moodstream.shared.wire import FIELD, decode_frame

CLIP = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"  # 60 frames


def test_a_resumed_job_encodes_only_the_frames_it_sends(redis_url, client, tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(CLIP.read_bytes())
    s = settings(redis_url, media_root=str(tmp_path))
    job = rq_jobs.enqueue_source(s, client, "clip.mp4")
    job.meta["resume_at"] = 50  # a run stopped after sending frames 0-49
    job.save_meta()

    encoded, lock = [], threading.Lock()
    real = producer_client.encode_pixels

    def counting(rgb, encoding, quality=90):
        with lock:
            encoded.append(rgb.shape)
        return real(rgb, encoding, quality)

    monkeypatch.setattr(producer_client, "encode_pixels", counting)
    monkeypatch.setattr(producer_client, "ENCODE_THREADS", 2)
    burst_here(s, client, monkeypatch)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED, job.exc_info
    assert job.return_value()["resumed_at"] == 50
    sent = sorted(decode_frame(f[FIELD]).frame for _, f in pushed(client, Keys("t")))
    assert sent == list(range(50, 60))
    assert len(encoded) == 10, f"{len(encoded)} frames encoded for 10 sent"
