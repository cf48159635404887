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

Anyone who can write to Redis can enqueue an rq job, so the expander trusts
no job: ``moodstream expander`` runs an rq worker whose jobs can call
:func:`expand_source` and nothing else (no other callable, no callbacks), and
:func:`expand_source` opens only what the expander's operator allows, from the
expander's own settings, never the job's: files under ``media_root``, and
rtsp/http(s) URLs on ``allowed_url_hosts``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import redis
from rq import Queue, Worker, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

from moodstream.producer.client import ENCODINGS
from moodstream.shared.errors import BadInputError, ConfigError
from moodstream.shared.keys import Keys
from moodstream.shared.media import is_stream_spec
from moodstream.shared.settings import Settings

log = logging.getLogger(__name__)

# settings the submitter states; kept in the job for the record, never obeyed (see expand_source)
_FORWARDED = ("prefix", "stream_maxlen", "lag_limit", "backpressure")
EXPAND = "moodstream.producer.rq_jobs.expand_source"  # the one callable an expander runs
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")

# the expander's own settings, set by run_expander before it forks job processes
_expander_settings: Settings | None = None


class ExpansionJob(Job):
    """An rq job that can run :func:`expand_source` only.

    rq resolves ``func_name`` with ``import_attribute``, which would import any
    module and call any function a Redis writer names (``os.makedirs``...):
    here a job naming anything else fails before anything is imported, and
    callbacks (also imported by name) are ignored.
    """

    @property
    def func(self):
        if self.func_name != EXPAND or self.instance is not None:
            raise PermissionError(f"refused: this expander runs {EXPAND} only, not {str(self.func_name)[:200]!r}")
        return expand_source

    def _no_callback(self, kind: str, name: str | None):
        if name:
            log.warning("expander: job %s names a %s callback %r; ignored", self.id, kind, name[:200])
        return None

    @property
    def success_callback(self):
        return self._no_callback("success", self._success_callback_name)

    @property
    def failure_callback(self):
        return self._no_callback("failure", self._failure_callback_name)

    @property
    def stopped_callback(self):
        return self._no_callback("stopped", getattr(self, "_stopped_callback_name", None))


def run_expander(settings: Settings, client: redis.Redis, burst: bool = False) -> bool:
    """Serve the coarse queue with :class:`ExpansionJob` (what ``moodstream expander`` runs)."""
    global _expander_settings
    _expander_settings = settings
    queue = coarse_queue(settings, client)
    worker = Worker([queue], connection=client, serializer=JSONSerializer, job_class=ExpansionJob)
    return worker.work(burst=burst)


def check_source(spec: str, settings: Settings) -> str:
    """The local path or URL an expander may open for ``spec``, or BadInputError.

    Files and folders: relative specs are taken under ``media_root``; the
    resolved path (symlinks followed) must stay inside it. URLs: rtsp/http(s)
    on a host in ``allowed_url_hosts``. Camera indexes: never (the camera of
    the expander's machine is not the submitter's).
    """
    if not isinstance(spec, str) or not spec or len(spec) > 4096:
        raise BadInputError("bad_field", "the source must be a non-empty path or URL")
    if is_stream_spec(spec):
        if spec.isdigit():
            raise BadInputError("unsupported", "camera indexes are not expanded by rq jobs; run `moodstream produce 0` "
                                               "on the machine with the camera")
        parts = urlsplit(spec)
        hosts = {h.strip().lower() for h in settings.allowed_url_hosts.split(",") if h.strip()}
        if parts.scheme.lower() not in URL_SCHEMES or (parts.hostname or "").lower() not in hosts:
            raise BadInputError("unsupported", f"URL {parts.scheme}://{parts.hostname}/... is not allowed here "
                                               "(allowed_url_hosts on the expander names the hosts it may open)")
        return spec
    if settings.media_root is None:
        raise BadInputError("unsupported", "this expander opens no local files (set media_root on the expander)")
    root = Path(settings.media_root).resolve()
    path = (root / spec).resolve()  # an absolute spec replaces root here; checked below
    if not path.is_relative_to(root):
        raise BadInputError("unsupported", f"{spec} is outside the expander's media_root")
    return str(path)


def coarse_queue(settings: Settings, client: redis.Redis) -> Queue:
    return Queue(Keys.from_settings(settings).rq_queue, connection=client, serializer=JSONSerializer)


def enqueue_source(settings: Settings, client: redis.Redis, spec: str, every_n: int = 1,
                   fps: float | None = None, max_frames: int | None = None, encoding: str = "png",
                   job_timeout_s: int = 6 * 3600) -> Job:
    """Enqueue one rq job that will expand ``spec`` (a video file or a folder) into frame jobs."""
    forwarded = {name: getattr(settings, name) for name in _FORWARDED}
    return coarse_queue(settings, client).enqueue(
        expand_source, kwargs={"spec": spec, "settings": forwarded, "every_n": every_n, "fps": fps,
                               "max_frames": max_frames, "encoding": encoding},
        job_timeout=job_timeout_s, result_ttl=7 * 24 * 3600, description=f"moodstream expand {spec}")


def expand_source(spec: str, settings: dict | None = None, every_n: int = 1, fps: float | None = None,
                  max_frames: int | None = None, encoding: str = "png") -> dict:
    """rq job body: add every (sampled) frame of ``spec`` to the frames stream,
    on the Redis this rq worker serves. Frame job ids are ``<rq job id>-<n>``.

    ``settings`` (what the submitter had) is ignored: prefix, limits and what
    may be opened are the expander's own (:func:`run_expander`)."""
    from moodstream.producer.client import Producer

    job = get_current_job()
    if job is None:
        raise RuntimeError("expand_source runs inside an rq worker")
    if _expander_settings is None:
        raise ConfigError("expand_source runs under `moodstream expander` only (it decides what jobs may open)")
    cfg = _expander_settings
    _check_args(every_n, fps, max_frames, encoding)
    path = check_source(spec, cfg)
    producer = Producer(cfg, client=job.connection, encoding=encoding)
    first = last = None
    for ref in producer.produce([path], every_n=every_n, fps=fps, max_frames=max_frames, job_id_prefix=job.id):
        first = first or ref.job_id
        last = ref.job_id
    stats = producer.stats
    log.info("rq job %s: %s expanded into %d frame jobs", job.id, spec, stats.sent)
    return {"source": spec, "frames": stats.sent, "first_job_id": first, "last_job_id": last,
            "dropped": stats.dropped, "failed_inputs": [list(f) for f in stats.failed_inputs]}


def _check_args(every_n, fps, max_frames, encoding) -> None:
    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)
    if not whole(every_n) or every_n < 1:
        raise BadInputError("bad_field", f"every_n must be an integer >= 1, got {every_n!r}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000):
        raise BadInputError("bad_field", f"fps must be in (0, 1000], got {fps!r}")
    if max_frames is not None and (not whole(max_frames) or max_frames < 1):
        raise BadInputError("bad_field", f"max_frames must be an integer >= 1, got {max_frames!r}")
    if encoding not in ENCODINGS:
        raise BadInputError("bad_field", f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
