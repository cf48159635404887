"""Issue 22 item 9: lag_limit just below stream_maxlen still lost frames (maxlen 1000,
lag_limit 990, 4 producers: 164 of 1,600 trimmed unread). Producers then trimmed only
entries the workers' group had read and acknowledged (XADD MINID); now they only push to
the intake and the workers' movers trim so, so no setting and no number of producers
makes our own XADD trim an unread or pending entry.

Real redis-server; the real Worker and classifier in a thread behind a slow
fixed-box detector; four real producers in threads."""

from __future__ import annotations

import threading

import pytest
from tests.support.procs import measure
from tests.support.streamkit import all_results, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.transport import group_backlog

PRODUCERS, PER_PRODUCER = 4, 400


@pytest.mark.parametrize("stream_maxlen, lag_limit", [(1000, 990), (200, 400)])
@pytest.mark.slow
def test_no_unread_frame_is_trimmed_by_the_producers(redis_url, client, keys, checkpoint, stream_maxlen, lag_limit):
    from tests.support.doubles import FixedFaceDetectorTestDouble

    settings = settings_for(redis_url, stream_maxlen=stream_maxlen, lag_limit=lag_limit, batch_max=16)
    producers = [Producer(settings, notice=lambda m: None) for _ in range(PRODUCERS)]
    longest = [0]

    def feed(k: int, producer: Producer):
        for i in range(PER_PRODUCER):
            producer.submit_image(tiny_jpeg(i % 50), source=f"p{k}", frame=i, job_id=f"p{k}-{i}")
            if i % 25 == 0:
                longest[0] = max(longest[0], client.xlen(keys.frames))

    worker = start_worker(settings, checkpoint, "w-slow", detector=FixedFaceDetectorTestDouble(delay_s=0.05))
    try:
        threads = [threading.Thread(target=feed, args=(k, p), daemon=True) for k, p in enumerate(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        wait_for(lambda: group_backlog(client, keys).total == 0, 300, poll_s=0.2, what="an empty backlog")
    finally:
        worker.stop()
    served = {r.job_id for r in all_results(client, keys)}
    sent = {f"p{k}-{i}" for k in range(PRODUCERS) for i in range(PER_PRODUCER)}
    lost = len(sent - served)
    measure(f"trim_maxlen{stream_maxlen}_lag{lag_limit}", producers=PRODUCERS, sent=len(sent), lost=lost,
            max_xlen_seen=longest[0], max_backlog_seen=max(p.stats.max_backlog for p in producers))
    assert lost == 0, f"{lost} of {len(sent)} frames trimmed unread"
