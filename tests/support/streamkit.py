"""Helpers for the integration tests: tiny frames, worker threads, reading streams back."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import redis

from moodstream.shared.keys import Keys
from moodstream.shared.media import encode_jpeg
from moodstream.shared.settings import Settings
from moodstream.shared.record import FrameResult
from moodstream.shared.wire import FIELD, decode_result


def tiny_jpeg(seed: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A small noisy RGB JPEG, different per seed. size is (W, H)."""
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), quality=80)


def big_png(side: int = 200) -> bytes:
    """A black PNG of ``side`` x ``side`` pixels: over a test's max_pixels (100 x 100), it is refused,
    too_large (a JPEG over it is read at a reduced size instead: shared.media.jpeg_reduction)."""
    import cv2

    return cv2.imencode(".png", np.zeros((side, side, 3), np.uint8))[1].tobytes()


def settings_for(url: str, **kw) -> Settings:
    """Settings for a test, from explicit values only (the environment is ignored)."""
    base = {"redis_url": url, "prefix": "t", "device": "cpu", "batch_max": 8, "batch_wait_ms": 10,
            "decode_threads": 2, "heartbeat_ttl_s": 5}
    base.update(kw)
    return Settings.from_env(env={}, **base)


@dataclass
class RunningWorker:
    worker: object  # worker.service.Worker
    thread: threading.Thread
    error: list

    def stop(self, timeout_s: float = 30.0) -> None:
        self.worker.request_stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"worker {self.worker.name} did not stop"
        assert not self.error, self.error


def start_worker(settings: Settings, checkpoint, name: str, detector=None, **kw) -> RunningWorker:
    """A Worker in a thread, with the real Pipeline around ``detector`` (a test double)."""
    from tests.support.doubles import FixedFaceDetectorTestDouble
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.service import Worker

    pipeline = Pipeline(settings, detector=detector or FixedFaceDetectorTestDouble(), checkpoint=checkpoint)
    w = Worker(settings, pipeline, name=name, handle_signals=False, **kw)
    errors: list = []

    def run():
        try:
            w.run()
        except BaseException as exc:  # reported by stop()
            errors.append(repr(exc))
            raise

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return RunningWorker(w, t, errors)


def round_trip(settings: Settings, checkpoint, source: str, n: int = 5) -> tuple[list[str], list[FrameResult]]:
    """Produce ``n`` tiny frames, serve them with one worker, read ``n`` results:
    (job ids sent, results read)."""
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader

    producer = Producer(settings)
    sent = [producer.submit_image(tiny_jpeg(i), source=source).job_id for i in range(n)]
    w = start_worker(settings, checkpoint, f"w-{source}")
    try:
        got = list(ResultReader(settings).read(start=FROM_START, count=n, timeout_s=30))
    finally:
        w.stop()
    return sent, got


def move_intake(settings: Settings) -> int:
    """What a worker's mover does, once through: every frame job producers pushed to the intake
    list moved to the frames stream (worker.intake.Mover, the same script), for tests that read
    the stream, or play a worker by hand, without a worker running. Returns how many moved."""
    from moodstream.worker.intake import Mover

    mover = Mover(settings, name="test-mover")
    moved = 0
    try:
        while n := mover.move_once():
            moved += n
    finally:
        mover.client.close()
    return moved


def stream_job(client: redis.Redis, keys: Keys, job_id: str) -> tuple[str, object]:
    """(entry id, FrameJob) of ``job_id``'s entry in the frames stream (moved there by a mover).

    Read newest first, in pages that double: the job looked up is most often the one just moved,
    and reading the whole stream for each (a live source's 400 frames of 57 KB, once a track)
    took 17 of test_track_stage_memory's 26 s."""
    from moodstream.shared.wire import decode_frame

    newest, count = "+", 1
    while True:
        page = client.xrevrange(keys.frames, max=newest, count=count + 1)
        if page and page[0][0].decode() == newest:
            page = page[1:]  # the previous page's last: the range includes its end
        if not page:
            break
        for eid, fields in page:
            job = decode_frame(fields[FIELD])
            if job.job_id == job_id:
                return eid.decode(), job
        newest, count = page[-1][0].decode(), min(2 * count, 256)
    raise AssertionError(f"job {job_id} is not in {keys.frames}")


def pushed(client: redis.Redis, keys: Keys) -> list[tuple[int, dict]]:
    """The messages producers pushed to the intake list (not yet moved), oldest first, shaped as
    the frames-stream entries a mover makes of them: (position, {FIELD: message})."""
    return [(i, {FIELD: m}) for i, m in enumerate(client.lrange(keys.intake, 0, -1))]


def queued_jobs(client: redis.Redis, keys: Keys) -> list:
    """The frame jobs waiting in the intake list (pushed by producers, not yet moved), oldest first."""
    from moodstream.shared.wire import decode_frame

    return [decode_frame(m) for m in client.lrange(keys.intake, 0, -1)]


def all_results(client: redis.Redis, keys: Keys) -> list[FrameResult]:
    return [decode_result(f[FIELD]) for _, f in client.xrange(keys.results)]


def dead_letters(client: redis.Redis, keys: Keys) -> list[dict]:
    return [{k.decode(): v for k, v in f.items()} for _, f in client.xrange(keys.dead)]


def wait_for(predicate, timeout_s: float, poll_s: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def result_counts(results: list[FrameResult], sent_ids: list[str]) -> dict:
    """sent / results / unique / duplicates / lost / errors, for asserting and reporting."""
    per_job = Counter(r.job_id for r in results)
    return {"sent": len(sent_ids), "results": len(results), "unique": len(per_job),
            "duplicates": sum(n - 1 for n in per_job.values()),
            "lost": len(set(sent_ids) - set(per_job)), "errors": sum(not r.ok for r in results),
            "unexpected": len(set(per_job) - set(sent_ids))}


def report(test: str, **counts) -> None:
    """One greppable line per reliability test (visible with pytest -s)."""
    print(f"\n[reliability] {test} " + json.dumps(counts, sort_keys=True))


def pending_count(client: redis.Redis, keys: Keys) -> int:
    """Entries delivered and not acked; -1 before any worker created the group."""
    try:
        return int(client.xpending(keys.frames, keys.group)["pending"])
    except redis.ResponseError:
        return -1


def add_picture_summary(client: redis.Redis, keys: Keys, source: str, picture: bytes) -> None:
    """A run summary of ``source`` (one person, track 0) with ``picture`` as its face picture, on the
    summaries stream, as the track stage publishes one: what `tracks --pictures` writes out."""
    import base64

    summary = {"source": source, "run": 1, "frames": 3, "ended": "idle",
               "tracks": [{"track_id": 0, "source": source, "first_timestamp_s": 0.0, "last_timestamp_s": 1.0,
                           "person": True, "dominant": "happiness", "mean_probabilities": {"happiness": 1.0},
                           "episodes": []}],
               "thumbnails": {"0": base64.b64encode(picture).decode()}}
    client.xadd(keys.summaries, {FIELD: json.dumps(summary)})
