"""``moodstream produce`` and ``moodstream results``: the client side of the service.

Neither imports torch. Output contracts (for scripts):

* ``produce`` prints one JSON line per job: ``{"job_id", "source", "frame"}``
  (with ``--rq``, one line per rq job, ``frame`` null).
* ``results --count N --timeout-s T`` prints N results as JSON Lines and exits 0,
  or exits 1 when fewer arrived in time.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from moodstream.options import (FiniteRange, Printing, check_stdin_usage, follow_notice, setting_option,
                                stop_ends_command, to_stderr)
from moodstream.producer.results import is_stream_id
from moodstream.shared.record import FrameResult
from moodstream.shared.stop_signals import Stopped, exit_code, hold_stop_signals, restore_stop_signals, stopped_by
from moodstream.shared.settings import Settings
from moodstream.shared.table import CsvPrinter, error_cell, faces_cell, plural, source_cell

FORMATS = ("jsonl", "table", "csv")


def _settings(**flags) -> Settings:
    return Settings.from_env(**flags)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--every", "every_n", type=click.IntRange(min=1), default=1, show_default=True,
              help="Videos, cameras and stream URLs: keep every Nth frame (--fps, where given, decides instead).")
@click.option("--fps", type=FiniteRange(min=0, min_open=True),
              help="Videos, cameras and stream URLs: keep about F frames per second (a live source: at most F).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Videos and cameras: at most this many frames each.")
@setting_option("encoding", "--encode")  # --encode: the flag's first name
@click.option("--rq", "use_rq", is_flag=True,
              help="Enqueue each PATH (video or folder) as ONE rq job that `moodstream expander` expands into frames (a relative "
                   "PATH is taken under the expander's --media-root).")
@click.option("--reply-to", help="Also add results to the stream <prefix>:reply:NAME.")
@setting_option("redis_url")
@setting_option("prefix")
@setting_option("lag_limit", type=click.IntRange(min=1))
@setting_option("backpressure")
def produce(paths, every_n, fps, max_frames, encoding, use_rq, reply_to, redis_url, prefix, lag_limit, backpressure):
    """Enqueue images, folders, videos, a camera (0) or a stream URL as frame jobs.

    PATHS are image files (a multi-page TIFF: a job per page), folders (searched
    recursively), video files, camera indexes, rtsp:// or http(s):// URLs (an
    http(s) one that serves an image is sent as that photo), or - for an image
    or a video on stdin (a camera piped in, Motion-JPEG, H.264 / H.265 or
    MPEG-TS, is sent as it comes). An image's job carries its page (1-based):
    the track stage makes each a run of its own, as analyze does. Prints one
    JSON line per job; progress and backpressure notices go to stderr. Ctrl-C or
    SIGTERM: what was read is sent (without waiting for workers) and nothing more
    read, the count said, exit 130 / 143; a second one stops at once.
    """
    from moodstream.producer.client import Producer
    from moodstream.shared.keys import Keys
    from moodstream.shared.retry import RedisGone
    from moodstream.shared.transport import check_connection, connect

    if use_rq and reply_to is not None:
        raise click.UsageError("--reply-to does not go with --rq: the expander's frame jobs carry no reply stream "
                               "(read the shared results stream, e.g. `moodstream results --source ...`)")
    if not use_rq:  # --rq's paths are the expander's, under its --media-root
        from moodstream.shared.media import expand_paths, no_media

        check_stdin_usage(paths, "produce")
        if next(expand_paths(list(paths)), None) is None:  # folders without media: as analyze, not "0 jobs", 0
            raise click.ClickException(no_media(paths))
    settings = _settings(redis_url=redis_url, prefix=prefix, lag_limit=lag_limit, backpressure=backpressure,
                         encoding=encoding)
    encoding = settings.encoding  # the flag, else MOODSTREAM_ENCODING, else png
    client = connect(settings.redis_url)
    check_connection(client, settings.redis_url, settings.redis_wait_s, notice=to_stderr)
    if use_rq:
        from moodstream.producer.rq_jobs import enqueue_source
        from moodstream.shared.media import source_name

        for spec in paths:
            job = enqueue_source(settings, client, spec, every_n=every_n, fps=fps, max_frames=max_frames,
                                 encoding=encoding)
            click.echo(json.dumps({"job_id": job.id, "source": source_name(spec), "frame": None}))
        return
    keys = Keys.from_settings(settings)
    import redis

    from moodstream.producer.status import live_workers

    try:
        serving = live_workers(client, keys)
    except redis.exceptions.NoPermissionError:  # an ACL user that may not read heartbeats (moodstream-producer)
        serving = None
    if serving == []:
        to_stderr(f"produce: no live worker serves {keys.frames} (no heartbeat under {settings.prefix!r}); "
                f"jobs wait in {keys.intake} until one starts and moves them (`moodstream worker`, or "
                "`moodstream status`)")
    reply = keys.reply(reply_to) if reply_to else None
    producer = Producer(settings, client=client, encoding=encoding, reply_to=reply, notice=to_stderr,
                        reached=True)  # checked above: an outage from here on is waited out (retry_for_s)
    stopping, interrupted_by = _StopOnSignal(producer.stop), None
    printing = Printing("produce", ["the frames it sends"])  # `produce clip.mp4 | head -1`: all are sent
    try:
        for ref in producer.produce(list(paths), every_n=1 if fps is not None else every_n, fps=fps,  # --fps decides
                                    max_frames=max_frames):
            def line(ref=ref) -> None:
                click.echo(json.dumps(ref.to_json()))
                sys.stdout.flush()

            printing(line)
    except KeyboardInterrupt as exc:  # a second signal (or the first, where no handler could be installed)
        interrupted_by = exit_code(exc)
    except RedisGone:  # stopped while Redis was unreachable
        pass
    except BaseException:  # a failure, said by click (a key of another type...): the signals given back first
        stopping.restore()  # (held and never given back, Ctrl-C stayed ignored in a program running produce)
        raise
    stopping.hold()
    st = producer.stats
    try:
        to_stderr(f"produced {plural(st.sent, 'job')}" + (f", dropped {st.dropped}" if st.dropped else "")
                  + (f", waited {st.waited_s:.1f}s for workers" if st.waited_s else ""))
    finally:
        stopping.restore()
    if stopping.signum is not None:  # 128 + the first signal, as a shell reports it (analyze's too)
        click.get_current_context().exit(128 + stopping.signum)
    if interrupted_by is not None or st.interrupted:
        click.get_current_context().exit(interrupted_by or 130)
    if printing.error is not None:  # a full disk under the job lines: every frame sent, then said
        raise click.ClickException(printing.error)
    if st.failed_inputs:
        raise click.ClickException(f"{plural(len(st.failed_inputs), 'input')} failed: "  # names from a folder:
                                   + ", ".join(f"{src} ({reason})"  # escaped by the root (lazy.escape_shown)
                                               for src, reason in st.failed_inputs[:5]))


class _StopOnSignal:
    """`produce`'s Ctrl-C and SIGTERM, as the worker takes them: the first stops the producer, which
    sends what it read (a live source's frame held for its shot, the frame in hand, without waiting
    for workers) and reads nothing more; the second stops at once. Either way the count is said and
    the exit is 128 + the first signal. (Ctrl-C raised wherever the main thread was: in a push or a
    wait for workers, most of the time with 720p frames, it was click's 'Aborted!', exit 1, the count
    unsaid and the frames read unsent.) Main thread only; elsewhere nothing is installed."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop):
        self.stop = stop
        self.signum: int | None = None
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)
        self.signum = signum
        self.stop.set()
        to_stderr(f"produce: {stopped_by(128 + signum)}: sending what was read, then stopping (again: at once)")
        media = sys.modules.get("moodstream.shared.media")
        if media is not None and media.in_pipe_wait():  # waiting in C for a pipe's writer or bytes (`sleep 1000 |
            raise media.PipeWaitStopped()  # produce -`): a flag alone was not heard; that input ends, unread

    def hold(self) -> None:
        """While the count is said: a signal then does not cut it short."""
        hold_stop_signals(self.previous)

    def restore(self) -> None:
        restore_stop_signals(self.previous)


@click.command()
@setting_option("media_root", type=click.Path(file_okay=False, exists=True))
@click.option("--allow-url-host", "url_hosts", multiple=True,
              help="A host whose rtsp/http(s) URLs jobs may name (repeatable; default: $MOODSTREAM_ALLOWED_URL_HOSTS).")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty (tests, batch runs).")
@setting_option("job_max_frames", type=click.IntRange(min=1))
@setting_option("job_max_bytes", type=click.IntRange(min=1))
@setting_option("redis_url")
@setting_option("prefix")
def expander(media_root, url_hosts, burst, job_max_frames, job_max_bytes, redis_url, prefix):
    """Expand `produce --rq` jobs (whole videos and folders) into frame jobs.

    An rq worker on the <prefix>-coarse queue that runs moodstream's expansion
    and nothing else: jobs naming any other function are refused, and a job may
    open only files under --media-root (no symlink leads out) and URLs on
    --allow-url-host (redirects and playlist entries included), as the
    operator of this expander decides (a job cannot widen it). The first
    SIGTERM or Ctrl-C stops the running job within seconds and puts it back in
    the queue to resume; a second one exits at once. With --burst it exits 1
    when a job it ran failed (each named, with why).
    """
    from moodstream.producer.rq_jobs import burst_failures, run_expander
    from moodstream.shared.transport import check_connection, connect

    settings = _settings(redis_url=redis_url, prefix=prefix, media_root=media_root,
                         allowed_url_hosts=",".join(url_hosts) or None, job_max_frames=job_max_frames,
                         job_max_bytes=job_max_bytes)
    client = connect(settings.redis_url)
    check_connection(client, settings.redis_url, settings.redis_wait_s)
    to_stderr(f"expander: serving {settings.prefix} jobs; files under {settings.media_root or '(none)'}, "
            f"URL hosts: {settings.allowed_url_hosts or '(none)'}")
    if not burst:
        run_expander(settings, client)
        return
    failed = burst_failures(settings, client, lambda: run_expander(settings, client, burst=True))
    if failed:  # a batch run that failed says so (it exited 0, a WARNING in its log the only trace)
        raise click.ClickException(f"{plural(len(failed), 'job')} failed: " + "; ".join(failed[:5]))  # a job's words


@click.command()
@click.option("--from-start", is_flag=True, help="Every result still in the stream.")
@click.option("--from-id", help="Results after this stream id (the 'id' of a printed result).")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new results (default when reading from now).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after N results; exit 1 if fewer arrive in time.")
@click.option("--timeout-s", type=FiniteRange(min=0), help="Stop waiting after T seconds.")
@click.option("--source", help="Only results for this source, named as it was sent (the path given to produce, a "
                                "camera index, a URL); where none is, the sources read are named.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl: one JSON object per result; table: a live readable table; csv: a header, then a "
                   "row per face (the columns of `analyze --format csv`, with job_id), a result without faces "
                   "a row of its own.")
@click.option("--reply-to", help="Read the stream <prefix>:reply:NAME instead of the shared results.")
@click.option("--keep-duplicates", is_flag=True,
              help="Print every result, also a job's second answer (delivery is at least once); "
                   "by default each job is printed, and counted by --count, once.")
@setting_option("redis_url")
@setting_option("prefix")
def results(from_start, from_id, follow, count, timeout_s, source, fmt, reply_to, keep_duplicates, redis_url, prefix):
    """Print results: from now (default, follows), --from-start, or --from-id ID.

    JSON Lines (one result object per line, with id, job_id, faces, error...),
    --format table or csv. Without --follow or --count, reading from the start or
    an id stops at the end of the stream; following, it says so once on stderr
    where that is a terminal. Ctrl-C (SIGTERM, SIGHUP) stops it, exit 130 (143,
    129).
    """
    from moodstream.producer.results import FROM_NOW, FROM_START, ResultReader
    from moodstream.shared.keys import Keys
    from moodstream.shared.transport import check_connection, connect

    if from_start and from_id is not None:
        raise click.UsageError("--from-start and --from-id exclude each other")
    if from_id is not None and not is_stream_id(from_id):
        raise click.BadParameter(f"{from_id[:60]!r} is not a stream id (MS or MS-SEQ, e.g. 1733390000000-0: the "
                                 "'id' of a printed result)", param_hint="'--from-id'")
    settings = _settings(redis_url=redis_url, prefix=prefix)
    stream = Keys.from_settings(settings).reply(reply_to) if reply_to else None
    client = connect(settings.redis_url)
    check_connection(client, settings.redis_url, settings.redis_wait_s, notice=to_stderr)
    reader = ResultReader(settings, client=client, stream=stream)
    start = FROM_START if from_start else from_id or FROM_NOW
    follow = follow or start == FROM_NOW
    printer = printer_for(fmt)
    if follow:
        since = "now" if start == FROM_NOW else "the start" if from_start else f"after {from_id}"
        follow_notice(f"results: following {reader.stream} from {since}: each result as it comes (Ctrl-C stops)")
    n = 0
    with stop_ends_command():
        for r in reader.read(start=start, follow=follow, count=count, timeout_s=timeout_s, source=source,
                             unique=not keep_duplicates):
            if printer is not None:
                printer.row(r)
            else:
                click.echo(json.dumps(r.to_json(), allow_nan=False))
            sys.stdout.flush()
            n += 1
    if n == 0 and source is not None and reader.other_sources.total:  # a typo, or the path it was sent as
        to_stderr(reader.other_sources.line("results", "result", "results", reader.stream, source))
    elif n == 0 and not follow and count is None:  # said, not an empty output and exit 0 alone
        to_stderr(f"results: no results in {reader.stream}" + (f" after {from_id}" if from_id else "")
                  + (f" of source {source!r}" if source is not None else ""))
    if count is not None and n < count:
        click.echo(f"results: {n} of {count} arrived within {timeout_s}s", err=True)
        sys.exit(1)


def printer_for(fmt: str) -> TablePrinter | CsvPrinter | None:
    """The printer of ``--format`` (None: JSON Lines, printed by the caller)."""
    return TablePrinter() if fmt == "table" else CsvPrinter() if fmt == "csv" else None


class TablePrinter:
    """Fixed-width rows: entry id, source, frame, faces with their top emotion (as in
    `analyze --format table`), and the latency from enqueue to publish."""

    header = f"{'id':<17} {'source':<32} {'frame':>6} {'faces':>5}  {'latency_ms':>10}  emotions / error"

    def __init__(self):
        self.printed_header = False

    def row(self, r: FrameResult) -> None:
        if not self.printed_header:
            click.echo(self.header)
            self.printed_header = True
        latency: int | str = (r.published_at_ms - r.enqueued_at_ms) if r.enqueued_at_ms and r.published_at_ms else 0
        if not 0 <= latency < 10**10:  # a producer's clock far off, or a field set by hand
            latency = "?"
        what = error_cell(r.error) if r.error is not None else faces_cell(r.faces)
        click.echo(f"{r.id or '':<17} {source_cell(r.source, 32):<32} {r.frame:>6} {len(r.faces):>5}  "
                   f"{latency:>10}  {what}")
