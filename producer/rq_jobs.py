"""Coarse jobs on rq: a whole video file or folder as ONE rq job, which an rq
worker expands into frame jobs on the frames stream.

Frames are the unit the GPU workers batch; a 2-hour video is not. ``moodstream
produce --rq clip.mp4`` returns at once with one rq job id, and whichever rq
worker picks the job up reads the file and adds its frames (with the usual
backpressure), so the machine that submits needs neither the file's decoding
time nor a long-lived process. Run the expanders with::

    rq worker --url "$MOODSTREAM_REDIS_URL" --serializer rq.serializers.JSONSerializer moodstream-coarse

The queue uses rq's JSON serializer (never pickle): arguments are plain
strings and numbers, and the job's return value is a small JSON summary. The
rq worker needs the path to be readable where it runs (a shared volume).
"""

from __future__ import annotations

import logging

import redis
from rq import Queue, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

from shared.keys import Keys
from shared.settings import Settings

log = logging.getLogger(__name__)

# settings an expander needs; they travel in the job (rq workers do not read ours)
_FORWARDED = ("prefix", "stream_maxlen", "lag_limit", "backpressure")


def coarse_queue(settings: Settings, client: redis.Redis) -> Queue:
    return Queue(Keys.from_settings(settings).rq_queue, connection=client, serializer=JSONSerializer)


def enqueue_source(settings: Settings, client: redis.Redis, spec: str, every_n: int = 1,
                   fps: float | None = None, max_frames: int | None = None, encoding: str = "jpeg",
                   job_timeout_s: int = 6 * 3600) -> Job:
    """Enqueue one rq job that will expand ``spec`` (a video file or a folder) into frame jobs."""
    forwarded = {name: getattr(settings, name) for name in _FORWARDED}
    return coarse_queue(settings, client).enqueue(
        expand_source, kwargs={"spec": spec, "settings": forwarded, "every_n": every_n, "fps": fps,
                               "max_frames": max_frames, "encoding": encoding},
        job_timeout=job_timeout_s, result_ttl=7 * 24 * 3600, description=f"moodstream expand {spec}")


def expand_source(spec: str, settings: dict, every_n: int = 1, fps: float | None = None,
                  max_frames: int | None = None, encoding: str = "jpeg") -> dict:
    """rq job body: add every (sampled) frame of ``spec`` to the frames stream,
    on the Redis this rq worker serves. Frame job ids are ``<rq job id>-<n>``."""
    from producer.client import Producer

    job = get_current_job()
    if job is None:
        raise RuntimeError("expand_source runs inside an rq worker")
    cfg = Settings.from_env(env={}, **settings)  # the job's settings, not this machine's environment
    producer = Producer(cfg, client=job.connection, encoding=encoding)
    first = last = None
    for ref in producer.produce([spec], every_n=every_n, fps=fps, max_frames=max_frames, job_id_prefix=job.id):
        first = first or ref.job_id
        last = ref.job_id
    stats = producer.stats
    log.info("rq job %s: %s expanded into %d frame jobs", job.id, spec, stats.sent)
    return {"source": spec, "frames": stats.sent, "first_job_id": first, "last_job_id": last,
            "dropped": stats.dropped, "failed_inputs": [list(f) for f in stats.failed_inputs]}
