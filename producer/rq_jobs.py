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
expander's own settings, never the job's: files under ``media_root`` (each
checked by what was opened, so no symlink leads out: :mod:`producer.sources`),
and rtsp/http(s) URLs on ``allowed_url_hosts`` (http(s) through the
expander's own proxy, which checks redirects and playlist entries too:
:mod:`producer.url_guard`). A job stops at ``job_max_frames`` frames or
``job_max_bytes`` bytes read; a finite source (a file, an mp4 over http) is
read once; a live one ends with an error after ``live_max_reconnects`` failures.

Shutdown: the first SIGTERM/SIGINT stops the running job within about a
second (:class:`ExpanderWorker`): it goes back to the front of its queue with
``meta["resume_at"]``, the number of frames already read (sent, or dropped
under ``backpressure="drop"``), and the next expander sends the rest (files
and finite URLs skip what was read; frame job ids stay ``<rq job id>-<n>``).
A second signal kills it at once (rq's cold shutdown); rq then fails the job
as abandoned, as it does a job whose expander was killed; requeued (``rq
requeue``), it resumes from the count it saves as it starts and every 50
frames (``meta["sent"]``: despite its name, the frames read, sent or dropped;
the key is kept, jobs already queued hold it): a file's or finite URL's
frames after it sent again under their ids, a live source's new frames numbered past the 50
(never under an id the killed run can have used). A job that failed (a stream
gone for good, a refused redirect) saves the count it failed at, to resume there
once requeued. A saved count that is no count (meta is any Redis writer's) fails
the job in one line. A file's or folder's count is saved with what its frames were read from
(``meta["files_read"]``: each file's name, size and modification time, :class:`~producer.sources.FilesRead`):
a run that resumes where another file was saved over one of them fails the job in one line (``changed``),
rather than send the rest after the first file's frames as the same source under the same frame ids;
submitted again, it is a new job, whose ids are its own. (Restarting the job from frame 0 would answer
the old ids a second time with other pictures, and the results keep first answers.)

Drops (``backpressure="drop"``): a frame sent says how many of its source were
dropped before it, and each source's last frame, where dropped, is held and sent at
the source's end (:meth:`Producer.end_source`: at the end of each file of a folder
too) to say the drops after the last frame sent; the run's summary counts drops
only from the frames that say them. A run that is stopped or fails ends its
source the same way before it saves its count: the held frame goes (its number is
below the count, so the resumed run never sends it again), and the resumed run has
nothing of it to carry, so nothing is said twice. Redis may be why the run
failed, so that send gets one try and no backoff (a stopping expander does not
wait out ``retry_for_s``); where it fails, the log names the drops left unsaid in
the run's summary. Either way the saves count them: with each count the job's meta
keeps ``frames`` and ``dropped``, what its runs sent and dropped of the frames
before it, and the summary a job returns counts all its runs (``frames`` and
``dropped``; ``first_job_id`` is the last run's first).

Sources are named without credentials everywhere (:func:`shared.media.source_name`):
the description, the result, the log and, once the job has ended, its stored arguments.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import redis
from rq import Queue, Worker, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

from moodstream.producer.client import ENCODINGS
from moodstream.producer.sources import ByteCount, FilesRead, file_items
from moodstream.shared.errors import BadInputError, ConfigError
from moodstream.shared.keys import Keys
from moodstream.shared.media import (TOO_MANY_LINKS, is_camera_index, is_stream_spec, no_media, source_name,
                                    url_image_items)
from moodstream.shared.retry import RedisGone
from moodstream.shared.settings import Settings, is_number, is_whole
from moodstream.shared.table import plural
from moodstream.shared.transport import redact

log = logging.getLogger(__name__)

# settings the submitter states; kept in the job for the record, never obeyed (see expand_source)
_FORWARDED = ("prefix", "stream_maxlen", "stream_max_mb", "lag_limit", "backpressure")
EXPAND = "moodstream.producer.rq_jobs.expand_source"  # the one callable an expander runs
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
SAVE_EVERY = 50  # frames read between two saves of a job's count (meta["sent"]), where a killed job resumes
STOP_SIGNAL = signal.SIGUSR1  # the expander tells its work horse to stop (rq's own horse signals: SIGALRM, SIGRTMIN)

# the expander's own settings, set by run_expander before it forks job processes
_expander_settings: Settings | None = None
_stop_pending = False  # STOP_SIGNAL came before expand_source was ready for it (inherited handler)


class ExpansionJob(Job):
    """An rq job that can run :func:`expand_source` only.

    rq resolves ``func_name`` with ``import_attribute``, which would import any
    module and call any function a Redis writer names (``os.makedirs``...):
    here a job naming anything else fails before anything is imported, and
    callbacks (also imported by name) are ignored, as are webhooks (rq 3: a job
    names URLs the worker sends GET / POST requests to, with chosen headers).
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

    def send_webhooks(self, status, *, exc_string=None) -> None:
        hooks = getattr(self, "webhooks", None) or []
        if hooks:
            log.warning("expander: job %s names %d webhook(s) (%s); none is sent", self.id, len(hooks),
                        ", ".join(redact(str(getattr(h, "url", "?")))[:200] for h in hooks[:3]))


class Stopping(Exception):
    """The expander is shutting down: the job goes back to its queue, to resume."""


class ExpanderWorker(Worker):
    """rq's forking worker, with a warm shutdown that does not wait for the job.

    rq's first SIGTERM waits for the running job, which may be waiting on the
    backlog for hours (a pod's grace period ends first, and SIGKILL leaves the
    job STARTED, half sent). Here it also tells the work horse (SIGUSR1) to stop
    now: :func:`expand_source` records how far it got and the job is requeued
    (rq's retry, at the front), to resume on the next expander.
    """

    def handle_warm_shutdown_request(self):
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            try:
                os.kill(self.horse_pid, STOP_SIGNAL)
            except ProcessLookupError:
                pass

    def unsubscribe(self):
        """rq's, with the pubsub thread told to stop *before* UNSUBSCRIBE goes out. rq stops it
        after, and redis-py (8.x) joins it without a timeout: a thread that had already read
        the reply waited out its 60 s get_message first, so `expander --burst` and a shutdown
        could hang a minute after "done, quitting". Now the reply wakes a thread that is to stop."""
        thread = self.pubsub_thread
        if thread is not None:
            try:
                thread.stop(timeout=0)  # redis-py >= 8: clear the flag, no wait
            except TypeError:
                thread.stop()  # older redis-py: stop() only clears the flag
        super().unsubscribe()

    def handle_exception(self, job: Job, *exc_info):
        if exc_info and exc_info[0] is not None and issubclass(exc_info[0], (Stopping, BadInputError)):
            log.warning("expander: job %s: %s", job.id, exc_info[1])  # expected: one line, no traceback
            return
        super().handle_exception(job, *exc_info)


def run_expander(settings: Settings, client: redis.Redis, burst: bool = False) -> bool:
    """Serve the coarse queue with :class:`ExpansionJob` (what ``moodstream expander`` runs)."""
    global _expander_settings
    _expander_settings = settings
    queue = coarse_queue(settings, client)
    signal.signal(STOP_SIGNAL, _note_stop)  # work horses inherit it until expand_source takes over
    worker = ExpanderWorker([queue], connection=client, serializer=JSONSerializer, job_class=ExpansionJob)
    return worker.work(burst=burst)


def burst_failures(settings: Settings, client: redis.Redis, run) -> list[str]:
    """``run()`` (a burst of the expander), then each job it failed as "JOB: why" (the failed
    registry's new entries; the last line of what the job raised)."""
    from rq.registry import FailedJobRegistry

    registry = FailedJobRegistry(queue=coarse_queue(settings, client))
    before = set(registry.get_job_ids())
    run()
    out = []
    for job_id in registry.get_job_ids():
        if job_id in before:
            continue
        try:
            job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
            result = job.latest_result()
            lines = ((result.exc_string if result is not None else None) or job.exc_info or "").strip().splitlines()
            why = lines[-1] if lines else "failed"
        except Exception as exc:  # gone meanwhile, or not ours to read
            why = f"failed ({type(exc).__name__})"
        out.append(f"{job_id}: {why[:300]}")
    return out


def allowed_hosts(settings: Settings) -> set[str]:
    return {h.strip().lower() for h in settings.allowed_url_hosts.split(",") if h.strip()}


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
        if is_camera_index(spec):
            raise BadInputError("unsupported", "camera indexes are not expanded by rq jobs; run `moodstream produce 0` "
                                               "on the machine with the camera")
        parts = urlsplit(spec)
        if parts.scheme.lower() not in URL_SCHEMES or (parts.hostname or "").lower() not in allowed_hosts(settings):
            raise BadInputError("unsupported", f"URL {parts.scheme}://{parts.hostname}/... is not allowed here "
                                               "(allowed_url_hosts on the expander names the hosts it may open)")
        return spec
    if settings.media_root is None:
        raise BadInputError("unsupported", "this expander opens no local files (set media_root on the expander)")
    root = Path(settings.media_root).resolve()
    try:
        path = (root / spec).resolve()  # an absolute spec replaces root here; checked below
    except (RuntimeError, OSError) as exc:  # a link loop: rq's traceback and "RuntimeError: Symlink loop"
        loop = isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP  # (Python 3.13 raises ELOOP)
        raise BadInputError("unreadable", f"{spec}: {TOO_MANY_LINKS if loop else exc.strerror or exc}") from None
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
        job_timeout=job_timeout_s, result_ttl=7 * 24 * 3600, description=f"moodstream expand {source_name(spec)}")


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
    name = source_name(spec)
    _check_args(every_n, fps, max_frames, encoding)
    try:
        path = check_source(spec, cfg)
        producer = Producer(cfg, client=job.connection, encoding=encoding, reached=True)  # it fetched the job
        summary = _expand(job, cfg, producer, spec, path, every_n, fps, max_frames)
    except Stopping:
        job.retries_left = (job.retries_left or 0) + 1  # rq requeues a failed job with retries left
        job.retry_intervals = None  # at once, at the front of the queue
        job.enqueue_at_front_on_retry = True
        raise
    finally:
        if name != spec and (job.retries_left is None or job.retries_left <= 0):  # not coming back: the
            job.kwargs = {**job.kwargs, "spec": name}  # URL's password leaves the stored job (saved by rq)
    log.info("rq job %s: %s expanded into %d frame jobs%s", job.id, name, summary["frames"],
             f" ({summary['stopped']})" if summary["stopped"] else "")
    return summary


def _expand(job: Job, cfg: Settings, producer, spec: str, path: str, every_n: int, fps: float | None,
            max_frames: int | None) -> dict:
    """Send the frames; stop at the job caps or on a shutdown request (:class:`Stopping`)."""
    name = source_name(spec)
    count = ByteCount(cfg.job_max_bytes)
    resume_at, live_from = _resume_points(job.meta)
    earlier = _earlier_counts(job.meta)  # (frames sent, frames dropped) by the job's runs before this one
    # a file's or folder's: what the frames counted were read from, saved with the count; a resumed run's
    # frames, counted as far as an earlier run saved it, must be that run's files' (else the job fails)
    files = None if is_stream_spec(spec) else FilesRead(path, _files_read(job.meta) if resume_at else None)

    def counted(item) -> None:  # one more frame of a file read
        if files is not None:
            files.counted(item, name)

    def save(at: int, exact: bool = False) -> int:
        return _save_count(job, at, earlier, producer.stats, exact, files)

    n, first, last, stopped = 0, None, None, None
    start: int | None = None  # the count this run starts from, saved with its first item
    source: str | None = None  # the source name of the items sent

    def end(src: str) -> None:  # a source's end: its last frame, where dropped, goes saying the drops before it
        nonlocal first, last
        held = producer.end_source(src)
        if held is not None:
            first, last = first or held.job_id, held.job_id

    signal.signal(STOP_SIGNAL, _stop_now)
    try:
        if _stop_pending:
            raise Stopping()
        with _opened(spec, path, cfg, count, every_n, fps, max_frames, files) as (items, live, guard):
            if live is None:  # a file's (or a photo URL's) frames: encoded on the cores, a few ahead of the one sent,
                # but for those an earlier run sent, skipped below unencoded (a resumed job encoded them all)
                items = (item for item, _ in producer.encoded_ahead(_marked_sent(items, resume_at)))
            for item in items:
                if (guard is not None and guard.refused) or count.exceeded:
                    break
                if start is None:  # this run's start is a save (a URL is open now: finite or not is known)
                    start = save(resume_at if live is None or live.finite else live_from)
                if item.error is None:
                    if live is not None and max_frames is not None and n >= max_frames:
                        break
                    if n < resume_at and (live is None or live.finite):  # sent before the restart: skip
                        n += 1
                        counted(item)
                        continue
                    if n >= cfg.job_max_frames:
                        stopped = f"job_max_frames ({cfg.job_max_frames}) reached"
                        break
                    if live is not None and not live.finite:  # goes on numbering, never under an id it used
                        n = max(n, live_from)
                if source is not None and item.source != source:  # a folder's file before this one ended
                    end(source)
                ref = producer.submit_item(item, job_id=f"{job.id}-{n:06d}")
                source = item.source
                if ref is not None:
                    if not getattr(ref, "dropped", False):  # backpressure="drop" may not send it
                        first = first or ref.job_id
                        last = ref.job_id
                    n += 1
                    counted(item)
                    if n % SAVE_EVERY == 0:
                        save(n)
                elif live is not None:  # a URL that failed for good fails the job
                    raise BadInputError(item.error.reason, f"{item.source}: {item.error.detail} (after {n} frames)")
            if source is not None:
                end(source)
            if files is not None and not count.exceeded:  # fewer frames now than an earlier run read
                files.check(name)
            if guard is not None and guard.refused:  # a redirect or playlist entry off the allow-list
                raise BadInputError("unsupported", f"{name}: refused a request to {guard.refused[0]} (not on the "
                                                   f"expander's allowed_url_hosts) after {n} frames")
    except Stopping:  # (before its first frame, what earlier runs saved stays as it is)
        _end_early(job, producer, source)
        n = save(max(n, start), exact=True) if start is not None else resume_at
        # n: the frames read (where it resumes); of them sent and dropped, by this run and the earlier ones
        sent, dropped = _all_runs(earlier, producer.stats)
        raise Stopping(f"expander stopping: {n} frames of {name} read ({sent} sent, {dropped} dropped), "
                       "requeued to resume") from None
    except Exception:  # a failed job keeps its count too: requeued (`rq requeue`), it resumes there
        signal.signal(STOP_SIGNAL, signal.SIG_IGN)  # a stop now would cut the ending short: the job fails as it is
        _end_early(job, producer, source)
        try:
            if start is not None:
                save(max(n, start), exact=True)
        except redis.RedisError as exc:  # (Redis gone: the count of the last save stays)
            log.warning("rq job %s: cannot save its count (%d frames read): %s", job.id, n, exc)
        raise
    finally:
        signal.signal(STOP_SIGNAL, signal.SIG_IGN)
    if stopped is None and count.exceeded:
        stopped = f"job_max_bytes ({cfg.job_max_bytes}) reached"
    if stopped:
        log.warning("rq job %s: %s: stopped early: %s", job.id, name, stopped)
    stats = producer.stats
    if n == 0 and stats.failed_inputs:
        src, reason = stats.failed_inputs[0]
        raise BadInputError(reason, f"{src}: no frames sent; {len(stats.failed_inputs)} input(s) failed")
    if source is None and os.path.isdir(path):  # a folder of nothing finished with 0 frames, where the commands
        raise BadInputError("unreadable", no_media([spec]))  # exit 1
    sent, dropped = _all_runs(earlier, stats)
    return {"source": name, "frames": sent, "first_job_id": first, "last_job_id": last,
            "dropped": dropped, "failed_inputs": [list(f) for f in stats.failed_inputs],
            "stopped": stopped, "resumed_at": resume_at or None}


def _end_early(job: Job, producer, source: str | None) -> None:
    """A run stopped or failed ends its source as the normal end does: the held last dropped frame goes,
    saying the frames dropped since the last one sent (else said nowhere: the run's summary counts drops
    from the frames that say them). One try, no wait: a stopping expander does not wait for Redis, which
    may be why the run failed; then the log says how many are unsaid (the job's meta counts them)."""
    if source is None:
        return
    producer.stop.set()  # a Redis unreachable ends the call at once (RedisGone), no backoff
    try:
        producer.end_source(source)
    except (RedisGone, ConfigError, redis.RedisError) as exc:
        log.warning("rq job %s: %s: the last %s are not said in its run's summary (its held frame was not sent: "
                    "%s); the job's meta counts them (dropped)", job.id, source_name(source),
                    plural(producer.unsaid(source), "dropped frame"), exc)


def _marked_sent(items, resume_at: int):
    """(item, sent before) for a file's items: the first ``resume_at`` frames read (errors are not counted,
    as :func:`_expand` counts) were sent by the job's earlier runs, and are passed on unencoded."""
    read = 0
    for item in items:
        if item.error is None:
            read += 1
        yield item, item.error is None and read <= resume_at


def _resume_points(meta: dict) -> tuple[int, int]:
    """(frames a file or finite URL skips, the first frame job number of a live source) for a job
    whose earlier runs left ``meta``: ``resume_at``, the exact count a run stopped (SIGTERM) or failed
    at; else ``sent``, saved at a run's start and every ``SAVE_EVERY`` frames, from where a killed
    run's frames go again under their ids (the track stage takes a second answer for one), and past
    which a live source numbers its new frames (the killed run's own ids are not reused for other
    pictures). ``meta`` is any Redis writer's: a count that is no count is BadInputError."""
    exact, saved = _meta_count(meta, "resume_at"), _meta_count(meta, "sent")
    if exact is not None:
        return max(exact, saved or 0), max(exact, saved or 0)
    return saved or 0, 0 if saved is None else saved + SAVE_EVERY


def _earlier_counts(meta: dict) -> tuple[int, int]:
    """(frames sent, frames dropped) by the job's earlier runs, saved with their count (``frames``,
    ``dropped``: the run that resumes there adds its own, each frame counted once); 0 for a job
    whose runs saved none (of a release before)."""
    return _meta_count(meta, "frames") or 0, _meta_count(meta, "dropped") or 0


def _all_runs(earlier: tuple[int, int], stats) -> tuple[int, int]:
    """(frames sent, frames dropped) by the job's runs so far: the earlier runs' (:func:`_earlier_counts`)
    and this one's (its producer's ``stats``)."""
    return earlier[0] + stats.sent, earlier[1] + stats.dropped


def _files_read(meta: dict) -> dict | None:
    """What a file job's earlier run saved its first frames were read from (:meth:`FilesRead.state`), None
    where no run saved it (a job of a release before: resumed by its count alone, as before)."""
    value = meta.get("files_read")
    if value is not None and not (isinstance(value, dict) and isinstance(value.get("digest"), str)
                                  and type(value.get("count")) is int and value["count"] >= 0):
        raise BadInputError("bad_field", f"the job's meta files_read must be what an expander saved, got "
                                         f"{str(value)[:60]!r}: delete it (the job then resumes by its count alone), "
                                         "and requeue the job")
    return value


def _meta_count(meta: dict, key: str) -> int | None:
    value = meta.get(key)
    if value is not None and (type(value) is not int or value < 0):
        raise BadInputError("bad_field", f"the job's meta {key} must be a count of frames (an integer >= 0), "
                                         f"got {str(value)[:60]!r}: fix or delete it, and requeue the job")
    return value


def _save_count(job: Job, n: int, earlier: tuple[int, int], stats, exact: bool = False,
                files: FilesRead | None = None) -> int:
    """Where the job resumes, and what its runs sent and dropped so far: ``sent``, the frames read
    (sent or dropped, despite the key's name, kept for the jobs already queued: a killed run's job
    resumes there), with ``frames`` and ``dropped``, of them those sent and those dropped (the
    earlier runs' and this one's); ``exact``: the count a run ends with (stopped or failed), ``resume_at`` too.
    A run's first save (``exact`` False) drops the ``resume_at`` it resumed from: killed before its next
    save, the job resumes past what it can have sent. ``files`` (a file job's): what the frames it counted
    were read from (``files_read``, with its own count), once they are known to be the earlier runs' files
    (:attr:`FilesRead.trusted`: what an earlier run saved stays until then)."""
    job.meta.pop("resume_at", None)
    if exact:
        job.meta["resume_at"] = n
    frames, dropped = _all_runs(earlier, stats)
    job.meta.update(sent=n, frames=frames, dropped=dropped)
    if files is not None and files.trusted:
        job.meta["files_read"] = files.state()
    job.save_meta()
    return n


def _note_stop(signum, frame) -> None:
    global _stop_pending
    _stop_pending = True


def _stop_now(signum, frame) -> None:
    signal.signal(STOP_SIGNAL, signal.SIG_IGN)  # once
    raise Stopping()


@contextmanager
def _opened(spec: str, path: str, cfg: Settings, count: ByteCount, every_n: int, fps: float | None,
            max_frames: int | None, files: FilesRead | None = None):
    """(frame items, the LiveSource, the UrlGuard) for a checked source; files have neither (``files`` is
    told each file opened)."""
    if not is_stream_spec(spec):
        yield file_items(path, os.path.realpath(cfg.media_root), every_n=every_n, fps=fps, max_frames=max_frames,
                         max_image_bytes=cfg.max_message_bytes, count=count, max_pixels=cfg.max_pixels,
                         opened=files.opened if files is not None else None), None, None
        return
    from moodstream.producer.live import LiveConfig, LiveSource
    from moodstream.producer.url_guard import UrlGuard

    source = LiveSource(spec, LiveConfig.from_settings(cfg, max_fps=fps, every_n=every_n))
    if urlsplit(spec).scheme.lower() not in ("http", "https"):  # rtsp: FFmpeg's RTSP client takes no proxy
        yield source.frames(), source, None
        return
    with UrlGuard(allowed_hosts(cfg), count, on_stop=source.stop) as guard:
        # a photo goes as a photo (page 1, no time), as one under media_root does; asked through the guard
        still = url_image_items(spec, cfg.max_message_bytes, cfg.max_pixels, proxy=guard.proxy_url, every_n=every_n,
                                fps=fps, max_frames=max_frames)
        yield (source.frames(), source, guard) if still is None else (still, None, guard)


def _check_args(every_n, fps, max_frames, encoding) -> None:
    if not is_whole(every_n) or every_n < 1:
        raise BadInputError("bad_field", f"every_n must be an integer >= 1, got {every_n!r}")
    if fps is not None and (not is_number(fps) or not 0 < fps <= 1000):
        raise BadInputError("bad_field", f"fps must be in (0, 1000], got {fps!r}")
    if max_frames is not None and (not is_whole(max_frames) or max_frames < 1):
        raise BadInputError("bad_field", f"max_frames must be an integer >= 1, got {max_frames!r}")
    if encoding not in ENCODINGS:
        raise BadInputError("bad_field", f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
