"""``moodstream up``: the whole service in one command, for a demo or a laptop.

Without MOODSTREAM_REDIS_URL it starts an embedded redis-server (a child
process on a free port, nothing persisted); with it, it uses that server. Then
a worker (a thread here; run ``moodstream worker`` elsewhere to add more), a
producer on the given paths (default: the bundled sample clip) and a track
stage, until every frame is answered. The track stage reads only this
command's results (its reply stream) and publishes them tracked beside it
(``<reply>:tracked``); those are what ``up`` prints, as the stage publishes
them, each once: faces with ``track_id`` and ``smoothed``, in the table as
``#0 happiness 87%`` with ``analyze --format table``'s legend on stderr.
Completion is counted on the reply stream, one per job (a result the stage
drops as a second answer cannot make it wait, nor end it before every frame is
answered); once every frame is answered the stage is
stopped, and the rows it publishes then are printed too. Should the stage
die, that is one line and the worker's results it did not publish are printed
untracked. With ``--summary FILE``, its per-person summary is written as
``analyze --summary`` writes it (a CSV of its tracks for a name ending in
``.csv``; each run's ``late_frames``: its results that
came after ``--reorder-wait-ms``, published untracked, in no track; said on
stderr when any). With ``--report FILE``, the page ``analyze --report`` writes, from
the results printed and the inputs read again once every frame is answered
(files and folders only). With the ``dashboard`` extra it also serves
the live page over this command's streams (``moodstream dashboard``) and
prints its URL; ``--stay-open`` keeps it open once every frame is answered.
Ctrl-C stops everything cleanly, also with its Redis gone (the summary's
``incomplete`` says why it is not the whole run).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from collections import OrderedDict, deque
from contextlib import ExitStack, closing
from pathlib import Path
from typing import TYPE_CHECKING

import click

from moodstream.options import FiniteRange, NamedPath, Printing, check_stdin_usage, setting_option, to_stderr
from moodstream.shared.errors import ConfigError, MoodstreamError
from moodstream.shared.recent import Recent
from moodstream.shared.stop_signals import (Stopped, exit_code, hold_stop_signals, raise_dropped_stop,
                                            restore_stop_signals, stopped_by, take_stop_signals)
from moodstream.shared.settings import MAX_THREADS, Settings
from moodstream.shared.table import legend, plural, printable
from moodstream.worker.report import check_report_usage, report_options

if TYPE_CHECKING:
    from moodstream.producer.results import ResultReader
    from moodstream.shared.record import FrameResult

log = logging.getLogger(__name__)

PRINTED_KEPT = 100_000  # job ids remembered to count and print each job once; results held for the stage, at most
GONE_S = 5.0  # reading what the stage published without waiting: how long an unreachable Redis is retried


def default_sample() -> str:
    """The sample clip: ``samples/`` of a checkout, or ``moodstream/samples`` of an
    install (in the repo a link to ``samples/``, which the wheel stores as files)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "samples" / "hamilton_clip.mp4", here / "samples" / "hamilton_clip.mp4"):
        if candidate.is_file():
            return str(candidate)
    raise click.UsageError("no sample clip found; pass image / video paths")


@click.command()
@click.argument("paths", nargs=-1)
@click.option("--every", "every_n", type=click.IntRange(min=1), default=1, show_default=True,
              help="Videos: keep every Nth frame.")
@click.option("--fps", type=FiniteRange(min=0, min_open=True), help="Videos: keep about F frames per second.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Videos: at most this many frames each.")
@setting_option("device")
@setting_option("detector")
@setting_option("backend")
@setting_option("precision")
@setting_option("threads", type=click.IntRange(min=0, max=MAX_THREADS))
@setting_option("batch_max", type=click.IntRange(min=1))
@setting_option("track_shot_cuts")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True,
              help="table: one readable line per tracked result, each face as `analyze --format table` shows it "
                   "(#track smoothed emotion; a legend on stderr); jsonl: one JSON object per tracked result "
                   "(faces with track_id and smoothed); csv: a row per face, as `analyze --format csv`.")
@click.option("--timeout-s", type=FiniteRange(min=1), default=3600, show_default=True,
              help="Give up waiting for results after this long.")
@click.option("--summary", "summary_path", type=NamedPath(dir_okay=False, path_type=Path), default=None,
              help="Write the per-person summary (tracks, episodes, face pictures) as JSON to this file (as CSV "
                   "where its name ends in .csv), as `analyze --summary` does, and print the people table on stderr.")
@report_options(" Written once every frame is answered, from the results printed and the inputs read again: "
                "files and folders, not a camera, a stream or a URL.")
@click.option("--dashboard/--no-dashboard", "with_dashboard", default=None,
              help="Serve the live page over this run's streams and print its URL (default: on when the "
                   "'dashboard' extra is installed).")
@setting_option("dashboard_port", type=click.IntRange(0, 65535))
@click.option("--stay-open", is_flag=True,
              help="Once every frame is answered, keep the dashboard open until Ctrl-C instead of exiting.")
def up(paths, every_n, fps, max_frames, fmt, timeout_s, summary_path, report_path, report_clip_px, with_dashboard,
       stay_open, **flags):
    """Start Redis (embedded if none is set), a worker, a producer and a track stage; print tracked results.

    PATHS default to the bundled sample clip. Each frame's result is printed
    once, as the track stage publishes it: its faces with their track ids and
    smoothed emotions, as `analyze` gives them (should the stage stop, one
    line says so and the rest are printed untracked). Exits 0 once every
    frame has a result; 1 when a result is an error record (an unreadable
    input: printed, summarised, counted in the last line), one never comes
    (timeout, the worker stopped), an input cannot be sent at all (not
    found, unreadable: its error record printed in its place, as analyze
    prints it) or a --summary or --report file cannot be written; 130 on Ctrl-C
    (143 on SIGTERM, 129 on SIGHUP: stopped the same way, the summary of
    what was answered written and marked "interrupted"). Should its Redis go
    (yours unreachable, the embedded one ended), a Ctrl-C, the timeout or, for
    the embedded one, at once, stops it in one line, the summary of what was
    answered written all the same, its "incomplete" saying why. A Ctrl-C in
    the clean-up at the end lets it finish (a second stops at once).
    """
    if stay_open and with_dashboard is False:
        raise click.UsageError("--stay-open keeps the dashboard open: it cannot go with --no-dashboard")
    if every_n != 1 and fps is not None:  # (--every was dropped without a word; analyze refuses the two too)
        raise click.UsageError("use either --every or --fps, not both")
    check_report_usage(summary_path, report_path, report_clip_px)
    check_stdin_usage(paths, "up")
    from moodstream.producer.cli import printer_for
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader
    from moodstream.worker.tracking.stage import TrackStage
    from moodstream.shared.embedded import EmbeddedRedis
    from moodstream.shared.keys import Keys
    from moodstream.shared.transport import check_connection, connect
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.serve import detect_every_frame
    from moodstream.worker.service import Worker

    settings = detect_every_frame(Settings.from_env(**flags), "up")  # the summary says what ran
    from moodstream.shared.media import input_files
    from moodstream.worker.analyze import this_run_writes
    from moodstream.worker.own_outputs import expand_inputs, no_inputs

    # a folder's files, without the summary's pictures or the report's clips of a run before (a rerun sent
    # them as photos and videos)
    named = list(paths) or [default_sample()]
    specs = expand_inputs(named, this_run_writes(None, summary_path, report_path), "up")
    if not specs:  # an empty folder: said before Redis starts, exit 1 as analyze's (was "0 results", 0)
        raise click.ClickException(no_inputs(named, "--summary, --report"))
    inputs = input_files(specs)  # never written over by the summary or the report
    report = _report(report_path, report_clip_px, specs, settings, inputs)  # checked now, not after every frame
    if summary_path is not None:  # found out now, not after every frame
        from moodstream.worker.tracking.summary import check_writable

        try:
            check_writable(summary_path, "summary", inputs)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    with _Stops() as stops, ExitStack() as stack:
        previous = take_stop_signals()  # SIGTERM and SIGHUP as Ctrl-C: the embedded server is stopped too
        stack.callback(restore_stop_signals, previous)
        server = None  # the embedded redis-server, where this run started one
        if settings.redis_url is None:
            server = stack.enter_context(EmbeddedRedis())
            settings = settings.replace(redis_url=server.url)
            click.echo(f"up: embedded redis-server at {server.url} (set MOODSTREAM_REDIS_URL to use yours)", err=True)
        else:
            click.echo(f"up: using Redis from MOODSTREAM_REDIS_URL, prefix {settings.prefix!r}", err=True)
            try:  # one line now, not a minute of retries and a producer's traceback
                with closing(connect(settings.redis_url)) as probe:
                    check_connection(probe, settings.redis_url, settings.redis_wait_s, notice=to_stderr)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        # a reply stream of our own: other producers' results on a shared server are not ours to print
        reply = Keys.from_settings(settings).reply(f"up-{uuid.uuid4().hex[:12]}")
        pipeline = Pipeline(settings)
        worker = Worker(settings, pipeline, name=f"up-{uuid.uuid4().hex[:6]}", handle_signals=False,
                        device=str(pipeline.device))
        worker_thread = threading.Thread(target=worker.run, name="worker", daemon=True)
        feed = _Feed(Producer(settings, reply_to=reply, notice=to_stderr, reached=True),  # started or checked
                     specs, every_n, fps, max_frames)
        reader = ResultReader(settings, stream=reply)
        # its own track stage on the reply stream: never a deployment's sources, nor its group, nor its run numbers
        # its streams expire as its reply stream does: a SIGKILLed `up` leaves none
        tracking = _Tracking(TrackStage(settings, name="up", results=reply, tracked=f"{reply}:tracked",
                                        summaries=f"{reply}:summaries", keep_summaries=summary_path is not None,
                                        expire_s=settings.reply_ttl_s, stats=False, run_numbers=False))
        stack.callback(_cleanup, worker, worker_thread, feed, reader, tracking.stage, tracking.thread)
        board = _dashboard(settings, with_dashboard, stay_open, {"results": reply, "tracked": f"{reply}:tracked",
                                                                 "summaries": f"{reply}:summaries"})
        if board is not None:
            stack.callback(board.stop)
        worker_thread.start()
        tracking.thread.start()
        feed.thread.start()
        # printed: the stage's tracked results; counted: the worker's, on the reply stream
        rows = _Rows(printer_for(fmt),  # one outage for the two readers: their waits grow together, one warning a try
                     ResultReader(settings, client=reader.client, stream=tracking.stage.tracked_key,
                                  outage=reader.outage), report,
                     files=[flag for flag, path in (("--summary", summary_path), ("--report", report_path)) if path],
                     unread=feed.unread)
        received, last, deadline = 0, FROM_START, time.monotonic() + timeout_s  # received: jobs answered
        answers_read = 0  # entries of the reply stream read, second answers too: what the stage must read
        errors = 0  # jobs answered with an error record (an unreadable input): exit 1 at the end, as analyze's
        jobs = Recent(PRINTED_KEPT)  # the job ids answered
        interrupted, stop_code, failure = False, 130, None
        try:
            while not (feed.done.is_set() and received >= feed.sent):
                raise_dropped_stop()  # a SIGTERM whose raise a finalizer dropped (the models loading): not lost
                if time.monotonic() > deadline:
                    gone = _unreachable(server, settings.redis_url, reader, feed)
                    raise click.ClickException(f"up: {gone + ': stopped with ' if gone else ''}"
                                               f"{max(received, rows.shown)} of {feed.sent} results after "
                                               f"{timeout_s:.0f}s")
                if server is not None and server.ended() is not None:  # retried for ever: --timeout-s, an hour
                    raise click.ClickException(f"up: {_unreachable(server, settings.redis_url, reader, feed)}: "
                                               f"stopped with {max(received, rows.shown)} of {feed.sent} results")
                if not worker_thread.is_alive():
                    raise click.ClickException("up: the worker stopped (see the log above)")
                if feed.error is not None:
                    raise click.ClickException(f"up: producer failed: {feed.error}")
                rows.print_unread()  # inputs not sent: printed in their place, once the rows before them are
                if not rows.raw and (why := tracking.failed()) is not None:
                    rows.fall_back(why)
                if rows.raw:  # the stage stopped: wait on the reply stream, its results printed as they come
                    answers = reader.read(start=last, follow=True, timeout_s=0.5,
                                          count=max(1, feed.sent - received) if feed.done.is_set() else None)
                else:  # wait on the tracked stream, printed as the stage publishes it; then count the answers
                    rows.follow(wait_s=0.25)
                    answers = reader.read(start=last, timeout_s=0.5)  # no wait: the timeout bounds retries
                for r in answers:
                    last = r.id
                    answers_read += 1
                    if not jobs.first_time(r.job_id):  # a second answer (a frame served twice) answers no other frame
                        continue
                    received += 1
                    errors += r.error is not None
                    rows.answered(r)
            # held from here, inside the try: a signal as the loop ends is an interrupt (outputs finished, 130),
            # never one that escapes before the hold (it stopped Redis, 'Aborted!', the held rows unprinted)
            hold_stop_signals(previous)  # a signal from here on does not cut the rows or the summary short
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: the summary of what was answered is still written
            hold_stop_signals(previous)
            interrupted, stop_code = True, exit_code(exc)
            feed.stop.set()
        except click.ClickException as exc:  # said after the rows the stage still holds are printed
            hold_stop_signals(previous)
            failure = exc
            feed.stop.set()
        # Redis gone (yours unreachable, the embedded server ended): said, the stage not waited for, and the
        # outputs of what was answered written all the same, marked incomplete
        gone = _unreachable(server, settings.redis_url, reader, feed) if interrupted or failure is not None else None
        if feed.error is not None and not interrupted and failure is None:  # it failed before sending: loop ended
            failure = click.ClickException(f"up: producer failed: {feed.error}")
        # a row printed was answered, whether or not the loop had counted its answer (Redis gone in between)
        answered = max(received, rows.shown)
        if failure is None:
            stopped = f"interrupted ({stopped_by(stop_code)}) after " if interrupted else ""
            staying = board is not None and stay_open and not interrupted  # the page goes on: not "shutting down"
            dropped = feed.producer.stats.dropped  # --backpressure drop: not sent, said by the run's summary too
            shed = f" ({dropped} more dropped: backlog over lag_limit or stream_max_mb)" if dropped else ""
            erred = f" ({plural(errors, 'error')})" if errors else ""
            click.echo(f"up: {stopped}{plural(answered, 'result')} for {plural(feed.sent, 'frame')}{erred}{shed}"
                       f"{', ' + gone if gone else ''}; "
                       f"{'the worker and track stage stop' if staying else 'shutting down'}", err=True)
        why = tracking.stop(answers_read, hurry=interrupted or failure is not None)
        held = tracking.unpublished()  # stopped with Redis unreachable: what it tracked, from memory
        if interrupted or failure is not None:  # the stage, the producer may have found it since
            gone = _unreachable(server, settings.redis_url, reader, feed, tracking.stage)
        rows.finish(why, held, published=gone is None)  # what the stage published as it stopped; raw what it did not
        rows.print_unread(rest=True)  # every input has its row, the frames before it answered or not
        if fmt == "table" and rows.faces:
            click.echo(legend(tracking.stage.tracker_config.smoothing_tau_s), err=True)
        if failure is None or gone is not None:  # the outputs of what was answered
            answered = max(answered, rows.shown)  # (and those the stage held, printed since)
            incomplete = (f"{gone} ({answered} of {plural(feed.sent, 'frame')} answered)" if gone else
                          f"interrupted ({stopped_by(stop_code)}) after {answered} of {plural(feed.sent, 'frame')}"
                          if interrupted else None)
            unwritten = report.write(every_n, fps, max_frames) if report is not None else None
            problems = [p for p in (_summary_problem(tracking, answers_read, summary_path, pipeline, settings,
                                                     inputs, interrupted, incomplete),
                                    unwritten, rows.printing.error)  # a full disk under the rows: said last
                        if p is not None]
            if problems and failure is None:
                failure = click.ClickException(problems[0])
            elif problems:  # the run's own failure is the exit's line
                for problem in problems:
                    to_stderr(problem)
        staying_open = board is not None and stay_open and failure is None and not interrupted
        if staying_open:  # SIGTERM and SIGHUP as Ctrl-C while the page stays open, taken straight from held:
            take_stop_signals()  # restored first, a SIGTERM in between ended `up` and left its Redis running
        else:  # the clean-up (the stack): a signal is said and it goes on; a second stops at once
            stops.finishing(previous, interrupted)
        if failure is not None:
            raise failure
        if interrupted:
            click.get_current_context().exit(stop_code)  # 128 + the signal, as a shell reports it (analyze's too)
        if staying_open:
            try:
                # the line above said the worker stops: it beat on until the page closed, and a Ctrl-C that
                # also reached the embedded redis-server left it warning "Redis unreachable"
                worker.request_stop()
                worker_thread.join(timeout=60)
                click.echo(f"up: every frame answered; the dashboard stays open at {board.url} (Ctrl-C stops it)",
                           err=True)
                board.wait()
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: the page closes, the stack stops Redis
                hold_stop_signals(previous)
    if feed.failed:
        raise click.ClickException(f"up: {plural(len(feed.failed), 'input')} could not be read: "
                                   + ", ".join(f"{s} ({r})" for s, r in feed.failed[:5]))
    if errors:  # every row and the summary are out: the code says the run had failed inputs, as analyze's
        click.get_current_context().exit(1)


def _unreachable(server, url: str, reader: ResultReader, feed: _Feed, stage=None) -> str | None:
    """Why this run's Redis is gone, or None: its embedded server ended, or the last try of its reader
    (of its producer, stopped while it waited; of its track ``stage``) found it unreachable."""
    from moodstream.shared.transport import redact

    if server is not None and (ended := server.ended()) is not None:
        return f"its embedded redis-server at {url} {ended}"
    if reader.outage.down or feed.gone is not None or (stage is not None and stage.retry.down):
        return f"Redis at {redact(url)} unreachable"
    return None


class _Stops:
    """Stop signals where the run's loop does not take them (as KeyboardInterrupt) itself.

    Before it (Redis starting, the models loading): what was started is stopped (the stack inside),
    then exit 130 / 143 / 129 as the help says, not click's 'Aborted!' and 1, the code of a failed run.
    Once the outputs are written (:meth:`finishing`), the clean-up: the worker's goodbye (its heartbeat
    and consumer), this run's streams, the embedded server. A signal there was raised out of it ("while
    starting", the clean-up cut short: on your Redis the heartbeat, the consumer and the streams were
    left); now the first is said and the clean-up goes on, exit 128 + it; a second (the loop's interrupt
    counts as the first) stops at once."""

    def __init__(self):
        self.cleaning = False
        self.code: int | None = None  # the signal taken while cleaning up
        self.forcing = False  # a signal was taken: the next one stops at once

    def __enter__(self) -> _Stops:
        return self

    def finishing(self, previous: dict, interrupted: bool) -> None:
        """The clean-up begins (signals held until now: the rows and the summary are out)."""
        self.cleaning, self.forcing = True, interrupted
        for signum in previous:  # (none: not the main thread, where none was taken)
            signal.signal(signum, self._take)

    def _take(self, signum: int, frame) -> None:
        if self.forcing:
            raise Stopped(signum) if signum != signal.SIGINT else KeyboardInterrupt
        self.code, self.forcing = 128 + signum, True
        to_stderr(f"up: interrupted ({stopped_by(self.code)}) while finishing: cleaning up first "
                  f"({stopped_by(self.code)} again stops at once)")

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, KeyboardInterrupt):
            code = exit_code(exc)
            click.echo(f"up: interrupted ({stopped_by(code)}) "
                       f"{'again while cleaning up: stopped at once' if self.cleaning else 'while starting'}",
                       err=True)
            raise click.exceptions.Exit(code) from None
        if self.code is not None and exc is None:  # cleaned up: the code says it was interrupted
            raise click.exceptions.Exit(self.code)
        return False


def _dashboard(settings: Settings, wanted: bool | None, stay_open: bool, streams: dict[str, str]):
    """The dashboard over ``streams``, started, or None (not wanted, or no extra and not asked for)."""
    if wanted is False:
        return None
    from moodstream.shared.errors import ConfigError

    try:
        from moodstream.producer.dashboard.server import Dashboard

        try:
            board = Dashboard(settings, streams).start()
        except ConfigError as exc:
            if "could not listen" not in str(exc):
                raise
            board = Dashboard(settings.replace(dashboard_port=0), streams).start()  # the port is taken
    except ConfigError as exc:
        if wanted or stay_open:
            raise click.ClickException(f"up: no dashboard: {exc}") from None
        to_stderr(f"up: no dashboard ({exc})")
        return None
    click.echo(f"up: dashboard at {board.url}", err=True)
    return board


class _Feed:
    """The producer, in a thread so backpressure waits do not stop the printing."""

    def __init__(self, producer, specs, every_n, fps, max_frames):
        self.producer = producer
        self.sent = 0
        self.failed: list[tuple[str, str]] = []
        self.error: Exception | None = None
        self.gone: Exception | None = None  # stopped while Redis was unreachable (RedisGone): no failure of its own
        self.stop = producer.stop  # the producer's: set, a live source ends too, its stalled read or not (held `up` 5 s)
        # an input the producer could not read (a video no reader opens, a file it may not read): its error
        # record, as analyze prints it, with the jobs sent before it (where its row goes); appended by the
        # producer's thread, read by the main thread (which only reads up to the length it sees)
        self.unread: list[tuple[int, FrameResult]] = []
        self._submit_item = producer.submit_item
        producer.submit_item = self._kept_unread  # (the producer says it on stderr and counts it; nothing is sent)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(specs, every_n, fps, max_frames),
                                       name="producer", daemon=True)

    def _kept_unread(self, item, job_id: str | None = None):
        """The producer's ``submit_item``; an item it does not send for its error (unreadable, not
        encodable) is kept as its error record."""
        from moodstream.worker.analyze import error_record

        ref = self._submit_item(item, job_id=job_id)
        if ref is None and item.error is not None:
            self.unread.append((self.sent, error_record(item, item.error)))
        return ref

    def _run(self, specs, every_n, fps, max_frames) -> None:
        from moodstream.shared.retry import RedisGone

        try:
            for _ in self.producer.produce(specs, every_n=every_n, fps=fps, max_frames=max_frames):
                self.sent += 1
                if self.stop.is_set():
                    break
        except RedisGone as exc:  # stopped (Ctrl-C, the timeout) while Redis was unreachable: the main thread says it
            self.gone = exc  # (logged as "up: producer failed" with its traceback)
        except MoodstreamError as exc:  # reported by the main thread, one line
            self.error = exc
        except Exception as exc:  # reported by the main thread
            log.exception("up: producer failed")
            self.error = exc
        finally:
            self.failed = list(self.producer.stats.failed_inputs)
            self.done.set()


class _Tracking:
    """The track stage, in a thread; a failure is kept for the main thread to say in one line."""

    def __init__(self, stage):
        self.stage = stage
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name="track-stage", daemon=True)

    def _run(self) -> None:
        try:
            self.stage.run()
        except MoodstreamError as exc:  # a key of another type, a refused password: its own words
            self.error = exc
        except Exception as exc:
            log.exception("up: the track stage failed")
            self.error = exc

    def failed(self) -> str | None:
        """Why the stage stopped before it was asked to; None while it runs."""
        if self.error is not None:
            return f"the track stage stopped: {self.error}"
        if self.thread.ident is not None and not self.thread.is_alive() and not self.stage.stopping:
            return "the track stage stopped (see the log above)"
        return None

    def stop(self, answers: int, hurry: bool = False) -> str | None:
        """Once the stage has read the reply stream's ``answers`` entries (second answers too):
        stop it (it publishes what it holds and the runs' summaries). ``hurry`` (interrupted, failed):
        not waited for while it finds Redis unreachable (it waited 60 s for reads that could not come).
        Returns why it may not have published all of them, None when it did."""
        stage = self.stage
        deadline = time.monotonic() + 60
        while stage.read < answers and self.thread.is_alive() and time.monotonic() < deadline \
                and not (hurry and stage.retry.down):
            time.sleep(0.05)
        stage.request_stop()
        self.thread.join(timeout=60)
        if self.thread.is_alive():
            return "the track stage did not stop within 60 s"
        if self.error is not None:
            return f"the track stage stopped: {self.error}"
        if stage.read < answers:
            return f"the track stage read {stage.read} of {answers} results"
        return None

    def unpublished(self) -> list[FrameResult]:
        """Once it stopped with Redis unreachable (its runs not ended, what it tracked not published):
        its runs ended in memory (their summaries for --summary) and what it tracked, in order."""
        if self.thread.is_alive() or self.error is not None:
            return []
        return self.stage.end_unpublished("the track stage stopped with Redis unreachable")


class _Rows:
    """What ``up`` prints: the stage's tracked results, in the order it publishes them, one per
    job (a job answered twice is printed once), and the worker's raw result only where the
    stage did not publish it (it stopped). Jobs on the reply stream always carry a job id (a
    message without one has no reply stream either)."""

    def __init__(self, printer, tracked: ResultReader, report: _UpReport | None = None, files: list[str] = (),
                 unread: list[tuple[int, FrameResult]] | None = None):
        from moodstream.producer.results import FROM_START

        self.printer = printer  # a TablePrinter or CsvPrinter, or None for JSON Lines
        self.printing = Printing("up", list(files))  # the files this run writes: a stdout that fails does not stop them
        self.report = report  # given what is printed: the tracked results (raw where the stage stopped)
        self.tracked = tracked
        self.tracked_last = FROM_START
        self.waiting: OrderedDict[str, FrameResult] = OrderedDict()  # job id -> answered, not yet printed
        self.printed = Recent(PRINTED_KEPT)  # the job ids printed
        self.raw = False  # the stage stopped: the worker's results are printed as they come
        self.faces = 0
        self.shown = 0  # jobs printed: answered, counted on the reply stream or not yet
        # inputs the producer could not read (never sent, so never answered): (jobs sent before it, its error
        # record), printed once the rows of those jobs are (its place among the inputs, as analyze prints it)
        self.unread_fed = unread if unread is not None else []  # the feed's list (its thread appends to it)
        self.unread: deque[tuple[int, FrameResult]] = deque()
        self.unread_taken = 0  # of the feed's list

    def answered(self, r: FrameResult) -> None:
        """A result on the reply stream: printed now once the stage stopped, else held until
        the stage publishes it."""
        if self.raw:
            self._print(r)
        elif r.job_id not in self.printed:
            self.waiting.setdefault(r.job_id, r)
            if len(self.waiting) > PRINTED_KEPT:  # bounded: a stage that holds this many is stuck
                job_id, oldest = self.waiting.popitem(last=False)
                log.warning("up: the track stage has not published job %s of %s frame %d among the last %d "
                            "results: printed untracked", job_id, printable(oldest.source), oldest.frame, PRINTED_KEPT)
                self._print(oldest)

    def follow(self, wait_s: float = 0.0) -> None:
        """Print what the stage published, waiting up to ``wait_s`` for more (0: none; then a
        Redis gone for ``GONE_S`` ends it, as the wait does). A tracked stream that cannot be read
        (a key of another type there: the stage cannot publish to it either) is the fall-back."""
        try:
            for r in self.tracked.read(start=self.tracked_last, follow=wait_s > 0, timeout_s=wait_s or GONE_S):
                self.tracked_last = r.id
                self.waiting.pop(r.job_id, None)
                self._print(r)
        except ConfigError as exc:  # a refused password fails the reply stream's reads next, in one line
            self._raw(f"cannot read what the track stage published: {exc}")

    def fall_back(self, why: str) -> None:
        """The stage stopped: what it published first, then the rest of the worker's results raw."""
        self.follow()
        if not self.raw:
            self._raw(why)

    def _raw(self, why: str) -> None:
        self.raw = True
        to_stderr(f"up: {why}; the results it did not publish are printed untracked")  # why: an exception's words
        for r in self.waiting.values():
            self._print(r)
        self.waiting.clear()

    def finish(self, why: str | None, held: list[FrameResult] = (), published: bool = True) -> None:
        """After the stage stopped: the rows it published as it stopped (unless not ``published``: Redis
        is gone, not waited for), then those it tracked and ``held`` (Redis unreachable as it stopped);
        raw, what it did not."""
        if self.raw:
            return
        if published:
            self.follow()  # what it published as it stopped (its last runs' frames) comes first
        if self.raw:
            return
        for r in held:
            self.waiting.pop(r.job_id, None)
            self._print(r)
        if why is None and self.waiting:
            why = f"the track stage did not publish {len(self.waiting)} of the results"
        if why is not None:  # read above: what is left is printed raw
            self._raw(why)

    def print_unread(self, rest: bool = False) -> None:
        """The error records of the inputs the producer could not read, each once the rows of the jobs
        sent before it are printed; ``rest``: the run is over, what is left now (the rows before it never
        come: interrupted, Redis gone)."""
        while self.unread_taken < len(self.unread_fed):  # the feed's list only grows
            self.unread.append(self.unread_fed[self.unread_taken])
            self.unread_taken += 1
        while self.unread and (rest or self.unread[0][0] <= self.shown):
            self._emit(self.unread.popleft()[1])

    def _print(self, r: FrameResult) -> None:
        if not self.printed.first_time(r.job_id):  # a job's second answer
            return
        # an input not sent before this job (the producer reads in order: said before this job was sent)
        self.print_unread()
        self.shown += 1
        self.faces += len(r.faces)
        if self.report is not None:
            self.report.answered(r)
        self._emit(r)
        self.print_unread()  # one not sent right after this one: its row next

    def _emit(self, r: FrameResult) -> None:
        if self.printer is not None:  # `up ... --summary s.json | head`: the rows stop, the run and its files go on
            self.printing(lambda: self.printer.row(r))
        else:
            self.printing(lambda: click.echo(json.dumps(r.to_json())))


def _report(path: Path | None, clip_px: int | None, specs: list[str], settings: Settings,
            inputs: frozenset[str]) -> _UpReport | None:
    """``--report``'s page, checked before anything starts: it can be written, and every input can be
    read again once the run is answered (a file or folder; not a camera, a stream or a URL)."""
    if path is None:
        return None
    from moodstream.shared.media import is_pipe, is_stream_spec
    from moodstream.worker.report import CLIP_MAX_PX, Report
    from moodstream.worker.tracking.summary import SummaryConfig

    live = [s for s in specs if s == "-" or is_stream_spec(s) or is_pipe(s)]
    if live:
        raise click.UsageError(f"--report reads the inputs again once every frame is answered: {printable(live[0])} "
                               "is a live source, a pipe or a URL, which cannot be read twice (analyze --report reads "
                               "it once)")
    try:
        page = Report(path, SummaryConfig.from_settings(settings), inputs=inputs,
                      clip_max_px=CLIP_MAX_PX if clip_px is None else clip_px)
    except MoodstreamError as exc:
        raise click.ClickException(str(exc)) from None
    return _UpReport(page, specs, settings)


class _UpReport:
    """``up --report``: the results printed (tracked) kept by frame as they come; once every frame is answered,
    the inputs read again in order (as the producer read them) and each frame given to the page with
    its result, as ``analyze --report`` gives it its own (:class:`worker.report.Report`)."""

    def __init__(self, page, specs: list[str], settings: Settings):
        self.page, self.specs, self.settings = page, specs, settings
        # each as its wire bytes: about 1.5 KB a frame of two faces (the objects took 5 KB), 130 MB an hour at 25 fps
        self.results: dict[tuple[str, int, int | None], bytes] = {}

    def answered(self, r: FrameResult) -> None:
        from moodstream.shared.wire import encode_result

        key = (r.source, r.frame, r.page)
        if key not in self.results:
            self.results[key] = encode_result(r)

    def write(self, every_n: int, fps: float | None, max_frames: int | None) -> str | None:
        """The page, from the frames answered (an interrupted run's too); why it could not be written, or None."""
        from moodstream.shared.errors import BadInputError
        from moodstream.shared.media import iter_frames
        from moodstream.shared.wire import decode_result
        from moodstream.worker.analyze import error_record

        to_stderr(f"up: writing the report (reading {plural(len(self.specs), 'input')} again)")
        items = iter_frames(self.specs, every_n, fps, max_frames, max_pixels=self.settings.max_pixels,
                            max_image_bytes=self.settings.max_message_bytes)
        for item in items:
            video = item.timestamp_s is not None
            kept = self.results.pop((item.source, item.frame, item.page), None)
            if kept is None:  # never sent (a read error the producer said itself) or never answered (interrupted)
                if item.error is not None:
                    self.page.add(error_record(item, item.error), None, video)
                continue
            r = decode_result(kept)
            if r.error is not None:
                self.page.add(r, None, video)
                continue
            try:
                image = item.decoded(self.settings.max_pixels)
            except BadInputError as exc:  # changed since it was sent
                self.page.add(error_record(item, exc), None, video)
                continue
            self.page.add(r, image, video, item.rate)
        try:
            path = self.page.close()
        except OSError as exc:
            return f"up: cannot write the report {self.page.path}: {exc.strerror or exc}"
        to_stderr(f"up: report in {path}")
        return None


def _summary_problem(tracking: _Tracking, answers: int, summary_path: Path | None, pipeline, settings,
                     inputs: frozenset[str] = frozenset(), interrupted: bool = False,
                     incomplete: str | None = None) -> str | None:
    """:func:`_write_summary`; why it could not be written (whole), or None."""
    try:
        _write_summary(tracking, answers, summary_path, pipeline, settings, inputs, interrupted, incomplete)
    except click.ClickException as exc:
        return exc.message
    return None


def _write_summary(tracking: _Tracking, answers: int, summary_path: Path | None, pipeline, settings,
                   inputs: frozenset[str] = frozenset(), interrupted: bool = False,
                   incomplete: str | None = None) -> None:
    """The summary file, from the runs the stopped stage ended. ``incomplete``: why it is not the whole
    run (interrupted, Redis gone: then what the stage read, however much that is), None when it is."""
    if summary_path is None:
        return
    from moodstream.shared.table import missing_frames_note
    from moodstream.worker.tracking.summary import Summarizer, people_table, write_summary

    stage = tracking.stage
    if tracking.thread.is_alive() or tracking.error is not None or (stage.read < answers and incomplete is None):
        raise click.ClickException(f"up: the track stage read {stage.read} of {answers} results"
                                   f"{' and failed' if tracking.error is not None else ''}; no summary")
    summarizer = Summarizer(stage.summary_config)
    summarizer.runs.extend(stage.ended)
    failed: list[str] = []
    written = write_summary(summary_path, summarizer, {
        "detect_every": settings.detect_every, "model_version": pipeline.model_version,
        "smoothing_tau_s": stage.tracker_config.smoothing_tau_s, "interrupted": interrupted,
        "incomplete": incomplete}, inputs=inputs, failed=failed)
    click.echo(people_table(written["tracks"]), err=True)
    # frames the runs are missing: results that came after --reorder-wait-ms (a slow worker), published untracked
    late = missing_frames_note({"late_frames": sum(v["late_frames"] for v in written["videos"])
                                + stage.late_after_run_ended,
                                "dropped_frames": sum(v["dropped_frames"] for v in written["videos"])})
    to_stderr(f"up: summary in {summary_path} ({plural(len(written['tracks']), 'track')}, "
              f"{plural(sum(t['person'] for t in written['tracks']), 'person', 'people')}"
              f"{'; ' + late if late else ''}){'; incomplete: ' + incomplete if incomplete else ''}")
    if failed:
        from moodstream.worker.analyze import not_written

        raise click.ClickException(f"up: {not_written(failed, summary_path)}")


def _cleanup(worker, worker_thread, feed, reader, stage, stage_thread) -> None:
    feed.stop.set()
    worker.request_stop()
    stage.request_stop()
    for thread, wait_s in ((worker_thread, 60), (stage_thread, 30), (feed.thread, 5)):
        if thread.ident is not None:  # started (a failure or Ctrl-C before the start reaches here too)
            thread.join(timeout=wait_s)
    try:  # the reply stream and what the track stage made of it were ours alone
        reader.client.delete(reader.stream, stage.tracked_key, stage.summaries_key)
    except Exception as exc:  # best effort on the way out
        log.debug("up: could not delete %s: %s", reader.stream, exc)
    reader.close()
