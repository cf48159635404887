"""``moodstream track``: face tracks through the service, in per-source frame order.

Workers serve the frames of one source in parallel, so their results reach
``<prefix>:results`` out of order. This stage reads the results stream with
its own consumer group (``<prefix>:trackers``), puts each source's results
back in frame order, runs the same :class:`worker.tracking.TrackState` as
``moodstream analyze`` (so the ids and smoothed emotions are the ones analyze
gives for the same frames), and adds each tracked result, with the ``run`` of
its source it was tracked in (below), to ``<prefix>:tracked``; an entry is
acked in the same MULTI as that XADD.

**When a frame is released.** Frame indexes of a sampled video are not
contiguous (``--every 3``: 0, 3, 6...; ``--fps``: gaps of 2 or 3), and a frame
may never come (dropped under backpressure, dead-lettered). A source's
smallest buffered frame is released as soon as it is the *expected* next one:

* frame 0 when nothing of the source was released yet;
* the last released frame + 1;
* the last released frame + at most the smallest gap seen so far between
  released frames of this source, once ``STRIDE_EVIDENCE`` gaps were seen
  (``--every N``: after three frames every frame goes at once; a frame
  between would need a gap smaller than any seen);

otherwise once the oldest buffered frame of the source has waited
``reorder_wait_ms`` (a lost frame, or the first frames of a sampled video).
Error results keep their place and pass through. A result for a frame older
than the last released one is *late* (its worker took longer than
``reorder_wait_ms``): it is published with ``track_id`` null and
``smoothed`` equal to the raw values, and logged; it is in no track, and its
run's summary counts it in ``late_frames`` (each part the count so far: it
never goes down). So the latency a tracked result adds is at most
``reorder_wait_ms``, usually none. Frames its producer never sent (``--backpressure
drop``, the backlog over ``lag_limit``) are counted in ``dropped_frames`` the same way,
from the next frame it sent of the source (its ``dropped_before``; a producer reading
a source sends its last frame, where dropped, when it ends: ``Producer.end_source``).

**Runs, not sources.** A source's results belong to a *run*: one pass of a
producer over it, enqueued in frame order (as ``produce``, the expander and
``up`` do; the stream order may differ). A result whose frame number is at or
below the highest frame of the current run which was enqueued after every
result of that run (``enqueued_at_ms``), or which the run has answered under
another job (a producer whose clock is behind; a result without enqueue time)
starts the frame numbers again: the current run ends (its buffer is released, its tracks
end) and a new one starts, with ids from 0 again. A second answer to a job
(at-least-once delivery: a reclaimed frame served twice) is recognised by what
the worker copies from the message (:func:`answer_key`: source, job id and
frame; a job id alone is the producer's to choose and comes again in another
source), acked, dropped and logged at once,
also after its run ended (the last ``ENDED_JOBS`` answers of ended runs are kept). A *straggler*
of a run that ended (idle, evicted, or followed by the next pass) is late for
that run: published untracked, it starts no run of its own. That run's summary
is out, so it is counted in ``<prefix>:track:stats`` instead
(``late_after_run_ended``, beside ``late``, every late result: HINCRBY, so every
stage of the deployment adds to them and a restart loses none; ``moodstream
status`` shows them). A straggler is told
by its place in that run (:class:`EnqueueSpan`): enqueued between its earliest
and latest answered results, its frame number between theirs, and not a frame
the run answered; an enqueue time alone is not enough (a producer whose clock
went back, a second producer on the source name, one forged time at the end of
time would have a whole new run published untracked).

**A still image is a run of its own.** A result with a ``page`` (an image file,
each page of a multi-page TIFF: ``produce`` and the expander set it, 1-based)
is tracked alone (ids from 0) beside the source's sequence, if any (a camera's
run of that name goes on, as in ``analyze``; one that failed is no run), and
its run ends at once, its summary queued after it, with ``page`` on the summary
and on each entry, as ``analyze --summary`` gives them: one photo waits for nothing (not ``source_idle_s``),
and a TIFF's pages are no frames 1/30 s apart with faces linked across them.
Results without a page (video frames, frames sent without one, untimed ones
too) keep the rules above.

**Nothing stays pending.** A publish that fails on a connection error is kept
and retried once Redis is back, publishing only what is still pending (the
XADD and XACK share one MULTI, so a pending entry was not published). Entries
pending in the group longer than ``reclaim_idle_ms`` that the stage does not
hold (a read whose reply was lost when Redis died, a previous stage under
another name) are taken back with XAUTOCLAIM, as workers do; at start it
first re-reads its own pending entries. A stream or group deleted by an
operator (FLUSHALL, DEL, XGROUP DESTROY) is recreated after the last entry
read, with one log line (:mod:`moodstream.shared.retry`).

**One stage per deployment.** Order needs one reader per source: run one
``moodstream track`` (a second one in the same group would split sources
between them). Its state (tracks, buffers) is in memory: after a restart,
tracks start afresh (ids from 0 again for sources in mid-flight), in a new run.
A source idle for ``source_idle_s`` ends its run. Needs scipy (the ``worker``
extra), not torch.

**Runs are never numbered twice across restarts.** Each source's last run
number, and once that run ended where its results were enqueued, are kept in
``<prefix>:track:runs`` (:mod:`worker.tracking.run_numbers`), written before
anything that shows them is published and read for a source the stage does not
know. A stage restarted (a deploy, a crash, an OOM kill) while a source is live
numbers its next run after the one before: it numbered it 1 again, as the
first, so ``moodstream tracks --pictures`` wrote both runs' faces to one file,
the dashboard showed their people as one, and any reader keying runs by
(source, run) mixed the two. A result of a run the stage summarised as it
stopped (SIGTERM) is that run's straggler after the restart (it became a run
of one frame); one of a run it held when killed (SIGKILL) starts the next run.
``up``'s own stage keeps none: its runs are its inputs', numbered from 1.

**Bounded, however long a run.** A live camera's run never ends: a track the
tracker lets go is made final at once (its entry and its picture as JPEG are
kept, its running state freed) and every ``PART_TRACKS`` (1000) such tracks
go out as a part of the run's summary (``part`` 1, 2, ..., ``last_part``
false; the one published when the run ends has the rest). At most ``MAX_RUNS``
(10,000) runs are held: a producer naming a new source in every message ends
the least recently seen one (its summary goes out). Run numbers are
remembered for the ``RUN_NUMBERS_KEPT`` (100,000) sources seen most recently, and in
Redis for the runs going on and the last 50,000 to 100,000 sources whose runs started
or ended (two generations of a hash: by the time a source is forgotten there, its
summaries have long left the summaries stream, ``SUMMARIES_MAXLEN``).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import signal
import threading
import time
from collections import Counter, OrderedDict

import click
import redis

from moodstream.options import FiniteRange, setting_option
from moodstream.shared.errors import ConfigError, MessageError
from moodstream.shared.keys import Keys
from moodstream.shared.recent import Recent
from moodstream.shared.record import FrameResult
from moodstream.shared.retry import RedisGone, RedisRetry
from moodstream.shared.settings import Settings
from moodstream.shared.stop_signals import handling
from moodstream.shared.table import plural, printable
from moodstream.shared.transport import (as_str, check_connection, check_streams, connect, ensure_group, find_group,
                                         probe_usable, trimmed_past)
from moodstream.shared.wire import FIELD, decode_result, encode_result, now_ms
from moodstream.worker.tracking.pictures import FramePictures
from moodstream.worker.tracking.run_numbers import RunNumbers
from moodstream.worker.tracking.runs import (EnqueueSpan, Pending, SourceRun, answer_key, summary_message,
                                            thumbnail_b64, untracked)
from moodstream.worker.tracking.summary import SourceSummary, SummaryConfig
from moodstream.worker.tracking.tracker import TrackerConfig, TrackState

log = logging.getLogger(__name__)

ENDED_JOBS = 50_000  # answers of runs that ended, remembered (all sources together) for the same
READ_COUNT = 500  # entries per read
SUMMARIES_MAXLEN = 10_000  # approximate MAXLEN of the summaries stream
PART_TRACKS = 1000  # ended tracks of a run that still goes on, published as a part of its summary
MAX_RUNS = 10_000  # runs held at once: past it, the least recently seen ends (its summary goes out)
RUN_NUMBERS_KEPT = 100_000  # source names whose run count is remembered (the least recently seen forgotten)
STATS_RULES = "deploy/k8s/base/redis/acl/moodstream-track.rules"  # what lets its user add to <prefix>:track:stats
# (and keep run numbers in <prefix>:track:runs)


class TrackStage:
    """Results stream -> per-source frame order -> TrackState -> ``<prefix>:tracked``."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None, *, name: str = "tracker",
                 reorder_wait_ms: int | None = None, block_ms: int = 200, source_idle_s: float = 300.0,
                 tracker: TrackerConfig | None = None, results: str | None = None, tracked: str | None = None,
                 summaries: str | None = None, pictures: bool = True, keep_summaries: bool = False,
                 expire_s: int | None = None, stats: bool = True, run_numbers: bool = True):
        """``results`` / ``tracked`` / ``summaries``: other streams than the prefix's (``up`` reads its
        own reply stream); ``expire_s``: the tracked and summaries streams expire this long after their
        last entry (``up``'s, as the worker expires its reply stream; a deployment's are trimmed); ``pictures``: read frames back for the face pictures; ``keep_summaries``:
        keep each ended run's :class:`SourceSummary`, with its series for timelines, in :attr:`ended` (in the
        order the runs were enqueued, as ``analyze`` lists them); ``stats``: add the late results counted
        to ``<prefix>:track:stats`` (``up``'s own stage does not: it says them itself); ``run_numbers``: keep
        each source's last run number in ``<prefix>:track:runs``, so a restarted stage goes on from it (``up``'s
        own stage does not: its runs are its inputs', numbered from 1);
        ``reorder_wait_ms`` / ``tracker``: None takes them from the settings."""
        self.settings = settings
        self.keys = Keys.from_settings(settings)
        self.results_key = results or self.keys.results
        self.tracked_key = tracked or self.keys.tracked
        self.summaries_key = summaries or self.keys.summaries
        self.stats_key: str | None = self.keys.track_stats if stats else None
        self.expire_s = expire_s
        self.client = client if client is not None else connect(settings.redis_url)
        self.name = name
        self.actor = f"track {printable(name)}"
        self.wait_s = (settings.reorder_wait_ms if reorder_wait_ms is None else reorder_wait_ms) / 1000
        self.block_ms = block_ms
        self.source_idle_s = source_idle_s
        self.tracker_config = tracker or TrackerConfig.from_settings(settings)
        self.summary_config = SummaryConfig.from_settings(settings)
        self.pictures = FramePictures(self.client, self.keys.frames, settings.max_pixels) if pictures else None
        self.keep_summaries = keep_summaries
        self.ended: list[SourceSummary] = []  # with keep_summaries: in the order the runs were enqueued
        self._ended_at: list[float] = []  # ... each one's first enqueue time (ms), to keep that order
        self.runs: OrderedDict[str, SourceRun] = OrderedDict()  # least recently seen first
        # source -> [its last run's number, that run's EnqueueSpan once it ended], least recently
        # seen first: a result enqueued during that run, after it ended, is a straggler of it
        self._run_numbers: OrderedDict[str, list] = OrderedDict()
        self._ended_jobs = Recent(ENDED_JOBS)  # answer_key -> results entry, of ended runs
        self.published = self.late = self.duplicates = self.skipped = self.taken_back = self.read = 0
        self.late_after_run_ended = 0  # of the late results, those whose run's summary was out: in no summary
        # results trimmed from the stream before the group read them: the gaps seen, and the results in them
        # where Redis 7 counts them (the group's entries-read); off for a user refused XINFO (said once)
        self.trimmed_gaps = self.trimmed_unread = 0
        self._trim_checks = True
        self._stats_unsent: Counter = Counter()  # late counts not yet added to stats_key
        self.summaries_published = 0
        self.summary_ms = 0.0  # time spent summarising (pictures included)
        self._stop = threading.Event()
        self.retry = RedisRetry(self.actor, settings.redis_url, self._stop, recreate=self._recreate_group)
        self.run_numbers = RunNumbers(self.client, self.keys, self.actor, self.retry, RUN_NUMBERS_KEPT // 2,
                                      STATS_RULES) if run_numbers else None
        self._recover_from: str | None = "0"  # first re-read our own unacked entries after this id, then ">"
        self._last_read = "0"  # the newest results entry read: a recreated group starts after it
        self._outbox: list[tuple[str, FrameResult]] = []  # released, not yet published
        self._ack_outbox: list[str] = []  # to ack without publishing (duplicates, undecodable)
        self._summary_outbox: list[bytes] = []  # summaries of ended runs, published after their results
        self._outbox_unsure = False  # a publish failed midway: check what is still pending before retrying
        self._claim_every_s = min(5.0, max(0.05, settings.reclaim_idle_ms / 2000))
        self._next_claim = 0.0
        self._claim_cursor = "0-0"

    # --- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until :meth:`request_stop`; then release what is buffered. Returns results published."""
        try:
            self.retry.call(lambda: check_streams(self.client, self.results_key, self.tracked_key, self.summaries_key))
            self.retry.call(self._ensure_group)
            log.info("%s: reading %s as group %s, publishing to %s", self.actor, self.results_key,
                     self.keys.track_group, self.tracked_key)
            while not self._stop.is_set():
                self.retry.call(self.step)
            self.retry.call(self.flush)
        except RedisGone:
            log.warning("%s: stopping while Redis is unreachable; %d results not yet published stay pending "
                        "there (re-read at the next start)", self.actor, self.held())
        log.info("%s: stopped; %d published, %d late (%d after their run's summary was out), %d duplicates, "
                 "%d skipped, %d taken back; %d summaries (%.0f ms summarising, face pictures: %s)", self.actor,
                 self.published, self.late, self.late_after_run_ended, self.duplicates, self.skipped,
                 self.taken_back, self.summaries_published, self.summary_ms,
                 self.pictures.figures() if self.pictures is not None else "off")
        return self.published

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def held(self) -> int:
        """Results read and not yet published (buffered or waiting to be published)."""
        return sum(len(r.order.buffered) for r in self.runs.values()) + len(self._outbox)

    def step(self, now_s: float | None = None) -> int:
        """Read what arrived (waiting up to ``block_ms``), release what is ready, publish it."""
        self._send()  # what a failed publish left (Redis is back, or this raises again)
        entries = self._take_back(now_s)
        taken_back = {eid for eid, _ in entries}
        entries += self._read()
        out: list[tuple[str, FrameResult]] = []
        decoded = []
        for entry_id, fields in entries:
            try:
                decoded.append((entry_id, decode_result(fields.get(FIELD))))
            except MessageError as exc:
                log.warning("%s: skipping undecodable results entry %s: %s", self.actor, entry_id, exc)
                self.skipped += 1
                self._ack_outbox.append(entry_id)
        self._recall_runs({r.source for _, r in decoded})
        for entry_id, result in decoded:
            now = time.monotonic() if now_s is None else now_s
            self.read += 1
            out += self._accept(entry_id, result, now, entry_id in taken_back)
        out += self._release(time.monotonic() if now_s is None else now_s)
        self._publish(out)
        self._send_stats()
        return len(out)

    def flush(self) -> int:
        """Release and publish everything buffered, in order, and each run's summary (shutdown)."""
        out = [item for run in list(self.runs.values()) for item in self._end_run(run, "the track stage stopped")]
        self._publish(out)
        self._send_stats()
        return len(out)

    def end_unpublished(self, why: str) -> list[FrameResult]:
        """Once :meth:`run` returned with Redis unreachable (its runs not ended, nothing more published):
        every run it holds ended here, in memory, without face pictures (their frames are in that Redis);
        returns the results it tracked and could not publish, in the order it would have published them
        (with ``keep_summaries`` the runs' summaries are in :attr:`ended`). For ``up``, whose rows and summary
        keep what was answered when its Redis is gone (the summary said ``"videos": []``)."""
        self.pictures = None
        for run in list(self.runs.values()):
            self._outbox += self._end_run(run, why)
        out, self._outbox = [r for _, r in self._outbox], []
        return out

    # --- one result -----------------------------------------------------------------

    def _accept(self, entry_id: str, r: FrameResult, now_s: float, taken_back: bool) -> list[tuple[str, FrameResult]]:
        """Buffer ``r`` in its run; returns what must be published at once (a run's end, a late result)."""
        out: list[tuple[str, FrameResult]] = []
        run = self.runs.get(r.source)
        answered = run.answered_by(r) if run is not None else None
        if answered is None and r.job_id:  # answered in a run that ended (the next run's, or none, now)
            answered = self._ended_jobs.get(answer_key(r))
        if answered is not None and answered != entry_id:
            self._drop(entry_id, r, f"a second answer to job {printable(r.job_id)} (first: entry {answered})")
            return out
        if r.page is not None:  # a still image: a run of its own, nothing follows it
            return self._still(entry_id, r, now_s)
        if run is None and self._straggler(r):  # its run ended (idle, evicted): no run of one late frame
            self._remember_ended([(answer_key(r), entry_id)])  # its job's second answer is dropped too
            self._count_late(None)
            log.warning("%s: result for %s frame %d came after its run ended (over reorder_wait_ms); published "
                        "untracked, in no summary", self.actor, printable(r.source), r.frame)
            r.faces, r.run = untracked(r.faces), None
            return [(entry_id, r)]
        if run is None or (answered is None and not run.straggler(r) and run.restarts(r)):
            after = None
            if run is not None:
                out += self._end_run(run, "its frame numbers started again")
                after = run.span(answered=True)
            while len(self.runs) >= MAX_RUNS:  # bounded, whatever names a producer sends
                out += self._end_run(next(iter(self.runs.values())),
                                     f"over {MAX_RUNS} sources at once: the least recently seen ends")
            run = self._new_run(r.source, after)
        self.runs.move_to_end(r.source)
        self._run_numbers.move_to_end(r.source)  # forgotten last by the sources still sending
        late = run.straggler(r)
        run.note(entry_id, r)
        verdict = "late" if late else run.order.add(Pending(entry_id, r, now_s))
        if verdict != "duplicate" and not late and r.dropped_before:  # its producer's drops before it: the run's
            run.summary.dropped_frames += r.dropped_before  # (once: a result taken back is a duplicate here)
        if verdict == "duplicate" and taken_back:  # pending, so never published (XADD and XACK are one MULTI)
            verdict = "late"
        if verdict == "duplicate":
            self._drop(entry_id, r, f"frame {r.frame} was answered before (job {printable(r.job_id or '-')})")
        elif verdict == "late":
            self._count_late(None if late else run)  # a straggler of the run before: that one's summary is out
            log.warning("%s: result for %s frame %d came after frame %s was released (over reorder_wait_ms)%s; "
                        "published untracked", self.actor, printable(r.source), r.frame, run.order.last_released,
                        " (or to the run before, in no summary)" if late else "")
            r.faces, r.run = untracked(r.faces), None if late else run.number
            out.append((entry_id, r))
        return out

    def _count_late(self, run: SourceRun | None) -> None:
        """A result published untracked because it came late: counted in its ``run``'s summary
        (``late_frames``) while the run goes on; with None (its run ended, its summary out) only in
        the stage's figures (:meth:`_send_stats`)."""
        self.late += 1
        self._stats_unsent["late"] += 1
        if run is None:
            self.late_after_run_ended += 1
            self._stats_unsent["late_after_run_ended"] += 1
        else:
            run.summary.late_frames += 1

    def _still(self, entry_id: str, r: FrameResult, now_s: float) -> list[tuple[str, FrameResult]]:
        """A still image (a result with a ``page``): a run of its own beside the source's sequence,
        tracked and ended at once, its summary queued: its one frame has nothing to wait for, and a
        TIFF's pages are not frames 1/30 s apart (their faces are no one track). A sequence of that
        name goes on, as in analyze's Summarizer (ending it made a camera's person two at each
        snapshot, the frames enqueued before the snapshot a run of their own). A still that failed (an
        error result) is no run, as in analyze: it passes through (its second answer still dropped)."""
        if r.error is not None:
            self._remember_ended([(answer_key(r), entry_id)])
            r.run = None
            return [(entry_id, r)]
        run = self._new_run(r.source, page=r.page)
        run.note(entry_id, r)
        run.order.add(Pending(entry_id, r, now_s))
        return self._end_run(run, "its one frame was tracked")

    def _straggler(self, r: FrameResult) -> bool:
        """Enqueued during the source's last run, which ended (idle, or evicted)."""
        last = self._run_numbers.get(r.source)
        return last is not None and last[1] is not None and last[1].holds(r)

    def _remember_ended(self, answers) -> None:
        """(answer_key, entry id) of runs that ended, the last ``ENDED_JOBS`` kept."""
        self._ended_jobs.put_all((key, eid) for key, eid in answers if key is not None)

    def _drop(self, entry_id: str, r: FrameResult, why: str) -> None:
        self.duplicates += 1
        self._ack_outbox.append(entry_id)
        log.warning("%s: dropped results entry %s for %s frame %d: %s", self.actor, entry_id, printable(r.source),
                    r.frame, why)

    def _new_run(self, source: str, after: EnqueueSpan | None = None, page: int | None = None) -> SourceRun:
        last = self._run_numbers.pop(source, [0, None])
        number = last[0] + 1  # a still's run keeps the span of the sequence's last run (its stragglers)
        self._run_numbers[source] = [number, None if page is None else last[1]]
        self._keep_run_number(source)
        while len(self._run_numbers) > RUN_NUMBERS_KEPT:
            self._run_numbers.popitem(last=False)
        summary = SourceSummary(source, self.summary_config, series=self.keep_summaries, page=page)
        state = TrackState(self.tracker_config, name=f"{self.actor}: run {number} of source {printable(source)}")
        run = SourceRun(source, number, state, summary, after=after)
        if page is None:  # a still's run is not held: it ends at once
            self.runs[source] = run
        if number > 1:
            log.info("%s: run %d of source %s starts", self.actor, number, printable(source))
        return run

    def _end_run(self, run: SourceRun, why: str) -> list[tuple[str, FrameResult]]:
        """Release what the run still buffers (in order), queue its summary after it, forget it."""
        out = [self._tracked(run, p) for p in run.order.drain()]
        if run.summary.page is None:  # the source's sequence (a still's run beside it takes a number)
            del self.runs[run.source]
            last = self._run_numbers.get(run.source)
            if last is not None:
                last[1] = run.span()
                self._keep_run_number(run.source)  # with its span: its stragglers after a restart
        self._remember_ended(((run.source, *key), eid) for key, eid in run.jobs.items())  # one source str
        message = self._queue_summary(run, why, last=True)
        if message is not None and self.keep_summaries:
            self._keep_ended(run)
        if message is not None:
            log.info("%s: run %d of source %s ended (%s): %s, %s; summary to %s", self.actor,
                     run.number, printable(run.source), why, plural(len(message["tracks"]), "track"),
                     plural(sum(t["person"] for t in message["tracks"]), "person", "people"), self.summaries_key)
        return out

    def _keep_ended(self, run: SourceRun) -> None:
        """Keep the run's summary in :attr:`ended` in the order the runs were enqueued (by their first
        result's enqueue time; ties, and runs without one, last, in the order they ended), as ``analyze``
        lists its inputs' runs: a photo's run ends as soon as it is tracked, the video's sent before it only
        when the stage stops (``up --summary`` listed the photo first)."""
        at_ms = float(run.first[0]) if run.first is not None else math.inf
        k = bisect.bisect_right(self._ended_at, at_ms)
        self._ended_at.insert(k, at_ms)
        self.ended.insert(k, run.summary)

    def _queue_summary(self, run: SourceRun, why: str, last: bool) -> dict | None:
        """The run's summary (or a part of it) made and queued to publish after its results; None
        when it could not be made (logged: never a crash at every restart over one summary)."""
        t0 = time.perf_counter()
        try:
            message = summary_message(run, why, last)
            text = json.dumps(message, allow_nan=False).encode()
        except (ValueError, OverflowError, TypeError) as exc:
            log.error("%s: the summary of run %d of source %s could not be made (%s): not published (its results "
                      "are)", self.actor, run.number, printable(run.source), exc)
            return None
        finally:
            self.summary_ms += (time.perf_counter() - t0) * 1000
        self._summary_outbox.append(text)
        run.parts = message["part"]  # (one that could not be made takes no number: parts go 1, 2, 3)
        return message

    def _retire(self, run: SourceRun) -> None:
        """Tracks the tracker let go: final entries, their pictures as JPEG, their read counts gone;
        every PART_TRACKS of them published as a part of the run's summary."""
        for tid in run.summary.retire({tr.track_id for tr in run.state.tracks}):
            picture = run.summary.pictures.best.pop(tid, None)
            if picture is not None:
                run.thumbnails[tid] = thumbnail_b64(picture[1])
            run.picture_best.pop(tid, None)
        if len(run.summary.retired) >= PART_TRACKS:
            message = self._queue_summary(run, f"part {run.parts + 1}: {len(run.summary.retired)} tracks that "
                                               "ended (the run goes on)", last=False)
            if message is None:  # not made: what it held is not kept either
                run.summary.take_retired()
                run.thumbnails.clear()
            else:
                log.info("%s: run %d of source %s goes on: part %d of its summary (%d tracks) to %s", self.actor,
                         run.number, printable(run.source), message["part"], len(message["tracks"]),
                         self.summaries_key)

    def _release(self, now_s: float) -> list[tuple[str, FrameResult]]:
        out = []
        for run in list(self.runs.values()):
            out += [self._tracked(run, p) for p in run.order.ready(now_s, self.wait_s)]
            if not run.order.buffered and now_s - run.order.last_seen_s > self.source_idle_s:
                out += self._end_run(run, f"idle for {self.source_idle_s:.0f} s")
        return out

    def _tracked(self, run: SourceRun, p: Pending) -> tuple[str, FrameResult]:
        r = p.result
        r.run = run.number
        if r.error is None:
            r.faces = run.state.update(r.frame, r.timestamp_s, r.faces, r.shot)
            t0 = time.perf_counter()
            run.summary.add(r)
            if self.pictures is not None:
                try:
                    self.pictures.offer(run.summary, run.picture_best, r)
                except (ValueError, OverflowError, ArithmeticError, redis.RedisError) as exc:
                    # a picture is never worth a crash, nor a lost track: a connection error here unwound
                    # the step after the frames had left the reorder buffer (published untracked later)
                    log.warning("%s: no face picture from frame %d of %s: %s", self.actor, r.frame,
                                printable(r.source), exc)
            self.summary_ms += (time.perf_counter() - t0) * 1000
            self._retire(run)
        return p.entry_id, r

    def _keep_run_number(self, source: str) -> None:
        """The source's last run number (and span) for ``<prefix>:track:runs``, written at the next publish."""
        if self.run_numbers is not None:
            self.run_numbers.keep(source, *self._run_numbers[source])

    # --- Redis ----------------------------------------------------------------------

    def _recall_runs(self, sources: set[str]) -> None:
        """The last run number (and span, if that run ended) of each of ``sources`` this stage does not
        know, from ``<prefix>:track:runs``: a restarted stage numbers their next run after it."""
        if self.run_numbers is not None:
            for source, record in self.run_numbers.recall([s for s in sources if s not in self._run_numbers]).items():
                self._run_numbers[source] = list(record)
            while len(self._run_numbers) > RUN_NUMBERS_KEPT:
                self._run_numbers.popitem(last=False)

    def _send_runs(self) -> None:
        """The run numbers given, and the spans of runs ended, since the last call, to ``<prefix>:track:runs``
        before what is published shows them; when that hash turned into the one before, the runs going on
        (at most MAX_RUNS) again: a camera whose one run outlives two generations is not forgotten."""
        if self.run_numbers is not None and self.run_numbers.send():
            for source in self.runs:
                if source in self._run_numbers:
                    self._keep_run_number(source)

    def _read(self) -> list[tuple[str, dict]]:
        """Entries to handle: first our own unacked ones (after a restart), then new ones."""
        if self._recover_from is not None:
            entries = self._xreadgroup(self._recover_from, None)
            if entries:
                self._recover_from = entries[-1][0]
                held = self._held_ids()
                return [e for e in entries if e[0] not in held]
            self._recover_from = None  # none left: on to new entries
        return self._xreadgroup(">", self.block_ms)

    def _xreadgroup(self, start: str, block_ms: int | None) -> list[tuple[str, dict]]:
        if start == ">" and self._trim_checks:  # new entries: first, in the same round trip, whether any were trimmed
            pipe = self.client.pipeline(transaction=False)
            pipe.xinfo_stream(self.results_key)
            pipe.xinfo_groups(self.results_key)
            pipe.xreadgroup(self.keys.track_group, self.name, {self.results_key: start}, count=READ_COUNT,
                            block=block_ms)
            info, groups, resp = pipe.execute(raise_on_error=False)
            if isinstance(resp, Exception):
                raise resp
            self._check_trimmed(info, groups)
        else:
            resp = self.client.xreadgroup(self.keys.track_group, self.name, {self.results_key: start},
                                          count=READ_COUNT, block=block_ms)
        # no fields: an entry trimmed from the stream while pending; skipped and acked
        entries = [(as_str(eid), fields or {}) for eid, fields in (resp[0][1] if resp else [])]
        if entries and start == ">":
            self._last_read = entries[-1][0]
        return entries

    def _check_trimmed(self, info: object, groups: object) -> None:
        """Whether the results stream was trimmed past the group's position before it read on (the stage
        down, or slower than the fleet, by more than ``results_maxlen``): those results are in no track.
        Logged, and counted in ``<prefix>:track:stats`` for `moodstream status` (how many where Redis 7
        tells, from the group's ``entries-read``). A user refused XINFO: said once, checked no more."""
        try:
            if not probe_usable(info, groups):
                return  # no stream yet
        except redis.exceptions.NoPermissionError as refused:
            self._trim_checks = False
            log.warning("%s: this Redis user may not run XINFO on %s (%s), so results trimmed from it before they "
                        "were tracked cannot be told; what %s grants lets it", self.actor, self.results_key,
                        refused, STATS_RULES)
            return
        group = find_group(groups, self.keys.track_group)
        delivered = as_str(group.get("last-delivered-id")) if group else None
        if not delivered or delivered == "0-0":
            return  # a new group reads from the start of what is held
        read = group.get("entries-read")
        trimmed = trimmed_past(info, delivered, int(read) if read is not None else None)
        if trimmed is None:
            return
        through, count = trimmed
        self.trimmed_gaps += 1
        self._stats_unsent["trimmed_gaps"] += 1
        if count:
            self.trimmed_unread += count
            self._stats_unsent["trimmed_unread"] += count
        what = f"{plural(count, 'result')} {'was' if count == 1 else 'were'}" if count else "results may have been"
        log.warning("%s: %s trimmed from %s before they were tracked (after %s, before %s; the stream keeps about "
                    "results_maxlen=%d): their frames are in no track, no summary. Run the stage beside the "
                    "workers, or raise MOODSTREAM_RESULTS_MAXLEN", self.actor, what, self.results_key, delivered,
                    through, self.settings.results_maxlen)

    def _take_back(self, now_s: float | None) -> list[tuple[str, dict]]:
        """Entries pending longer than reclaim_idle_ms that we do not hold (XAUTOCLAIM), every
        ``reclaim_idle_ms / 2`` (at most 5 s)."""
        now = time.monotonic()
        if now < self._next_claim or self._recover_from is not None:
            return []
        self._next_claim = now + self._claim_every_s
        resp = self.client.xautoclaim(self.results_key, self.keys.track_group, self.name,
                                      min_idle_time=self.settings.reclaim_idle_ms, start_id=self._claim_cursor,
                                      count=READ_COUNT)
        self._claim_cursor = as_str(resp[0]) or "0-0"
        deleted = resp[2] if len(resp) > 2 else []
        if deleted:  # trimmed while pending: Redis dropped them from the group's pending list
            log.warning("%s: %d pending results entries were trimmed from %s before they were tracked",
                        self.actor, len(deleted), self.results_key)
            self.skipped += len(deleted)
        entries = [(as_str(eid), fields or {}) for eid, fields in resp[1] if eid is not None]
        held = self._held_ids()
        fresh = [(eid, f) for eid, f in entries if eid not in held]
        if fresh:
            self.taken_back += len(fresh)
            log.warning("%s: took back %d results entries pending longer than %d ms (read, never published)",
                        self.actor, len(fresh), self.settings.reclaim_idle_ms)
        return fresh

    def _held_ids(self) -> set[str]:
        """The results entries read and not yet published (once per read: not a scan per entry)."""
        return ({p.entry_id for run in self.runs.values() for p in run.order.buffered.values()}
                | {eid for eid, _ in self._outbox})

    def _publish(self, out: list[tuple[str, FrameResult]]) -> None:
        self._outbox += out
        self._send()

    def _send(self) -> None:
        """XADD the outbox to the tracked stream and XACK it, in one MULTI. After a failed
        attempt, only entries still pending are sent (the others went through). The run numbers
        given since the last call are written first (:meth:`_send_runs`)."""
        self._send_runs()
        if not self._outbox and not self._ack_outbox and not self._summary_outbox:
            return
        if self._outbox_unsure and self._outbox:
            pending = self._still_pending([eid for eid, _ in self._outbox])
            if not pending:  # the whole MULTI went through, summaries too
                self.published += len(self._outbox)
                self.summaries_published += len(self._summary_outbox)
                self._outbox, self._summary_outbox = [], []
            self._outbox = [(eid, r) for eid, r in self._outbox if eid in pending]
            if not self._outbox and not self._ack_outbox and not self._summary_outbox:
                self._outbox_unsure = False
                return
        self._outbox_unsure = True
        pipe = self.client.pipeline(transaction=True)
        for _, r in self._outbox:
            r.published_at_ms = now_ms()
            pipe.xadd(self.tracked_key, {FIELD: encode_result(r)}, maxlen=self.settings.results_maxlen,
                      approximate=True)
        for message in self._summary_outbox:
            pipe.xadd(self.summaries_key, {FIELD: message}, maxlen=SUMMARIES_MAXLEN, approximate=True)
        acks = [eid for eid, _ in self._outbox] + self._ack_outbox
        if acks:
            pipe.xack(self.results_key, self.keys.track_group, *acks)
        n_sent = len(self._outbox) + len(self._summary_outbox) + bool(acks)
        if self.expire_s is not None:  # after the XACK: a failed EXPIRE loses nothing (it is only logged)
            for key, added in ((self.tracked_key, self._outbox), (self.summaries_key, self._summary_outbox)):
                if added:
                    pipe.expire(key, self.expire_s)
        answers = pipe.execute(raise_on_error=False)
        for answer in answers[n_sent:]:
            if isinstance(answer, Exception):
                log.warning("%s: could not set the expiry of its streams: %s", self.actor, answer)
        answers = answers[:n_sent]
        failed = [i for i, answer in enumerate(answers) if isinstance(answer, Exception)]
        if failed:
            self._put_back(failed, answers)
        self.published += len(self._outbox)
        self.summaries_published += len(self._summary_outbox)
        self._outbox, self._ack_outbox, self._summary_outbox, self._outbox_unsure = [], [], [], False

    def _send_stats(self) -> None:
        """Add the late results counted since the last call to ``<prefix>:track:stats`` (HINCRBY: every
        stage of the deployment adds to the same figures, a restart loses none), after the results are
        published. A connection error keeps them for the next call (a reply lost after Redis ran it
        counts them twice: figures for an operator, not data). A key of another type, or a user on the
        rules of before, is said once; the counts stay in the log lines."""
        if not self._stats_unsent or self.stats_key is None:
            return
        pipe = self.client.pipeline(transaction=False)
        for name, n in self._stats_unsent.items():
            pipe.hincrby(self.stats_key, name, n)
        pipe.hsetnx(self.stats_key, "since_ms", now_ms())
        answers = pipe.execute(raise_on_error=False)
        self._stats_unsent.clear()
        refused = next((a for a in answers if isinstance(a, Exception)), None)
        if refused is not None:
            log.warning("%s: cannot count late or trimmed results in %s (%s): no more tried; they are in this log "
                        "only. A key "
                        "of another type: delete it; a user without HINCRBY there: grant what %s grants",
                        self.actor, self.stats_key, refused, STATS_RULES)
            self.stats_key = None

    def _put_back(self, failed: list[int], answers: list) -> None:
        """A command of the publishing MULTI failed (a key of another type: Redis runs the rest,
        the XACK too). Results acked without being published are made pending again under this
        stage's name (XCLAIM ... FORCE: the same entries, re-read at the next start; no XADD to the
        results stream, which its ACL user may not write), a summary that could not be added is
        named; then the stage stops, one line."""
        n_tracked, n_summaries = len(self._outbox), len(self._summary_outbox)
        lost = [self._outbox[i][0] for i in failed if i < n_tracked]
        lost_summaries = [i for i in failed if n_tracked <= i < n_tracked + n_summaries]
        done = ""
        if lost:
            try:
                back = self.client.xclaim(self.results_key, self.keys.track_group, self.name, 0, lost,
                                          force=True, justid=True)
                gone = len(lost) - len(back)  # trimmed from the stream meanwhile: nothing to claim
                done = (f"; {len(back)} results acked without it were put back (pending again on "
                        f"{self.results_key}, read at the next start)" + (f", {gone} trimmed meanwhile" if gone else ""))
            except redis.RedisError as exc:
                done = f"; {len(lost)} results acked without it could NOT be put back ({exc})"
        if lost_summaries:
            n = len(lost_summaries)
            done += f"; {n} run summar{'y' if n == 1 else 'ies'} lost"
        key = (self.tracked_key if failed[0] < n_tracked else
               self.summaries_key if failed[0] < n_tracked + n_summaries else self.results_key)
        answer = answers[failed[0]]
        why = "not a stream" if str(answer).startswith("WRONGTYPE") else str(answer)
        self._outbox, self._ack_outbox, self._summary_outbox, self._outbox_unsure = [], [], [], False
        raise ConfigError(f"{self.actor}: cannot add to {key!r}: {why}{done}. Delete or rename that key, or use "
                          "another prefix")

    def _still_pending(self, entry_ids: list[str]) -> set[str]:
        pipe = self.client.pipeline(transaction=False)
        for eid in entry_ids:
            pipe.xpending_range(self.results_key, self.keys.track_group, eid, eid, 1)
        return {eid for eid, found in zip(entry_ids, pipe.execute()) if found}

    def _ensure_group(self) -> None:
        ensure_group(self.client, self.keys, stream=self.results_key, group=self.keys.track_group)

    def _recreate_group(self) -> None:
        """After FLUSHALL / DEL / XGROUP DESTROY: the group again, after the last entry read
        (what was read is in hand; what comes next is read once)."""
        ensure_group(self.client, self.keys, stream=self.results_key, group=self.keys.track_group,
                     start_id=self._last_read)
        self._claim_cursor = "0-0"
        self._recover_from = None


@click.command()
@setting_option("redis_url")
@setting_option("prefix")
@click.option("--consumer", default="tracker", show_default=True,
              help="Consumer name in the track group (keep it across restarts: unacked entries are re-read).")
@setting_option("reorder_wait_ms", type=click.IntRange(min=0))
@setting_option("track_iou_min", type=FiniteRange(0, 1, min_open=True))
@setting_option("track_max_missed", type=click.IntRange(min=0))
@setting_option("track_max_missed_s", type=FiniteRange(min=0))
@setting_option("track_smoothing_tau_s", type=FiniteRange(min=0, min_open=True))
@setting_option("track_shot_cuts")
@click.option("--source-idle-s", type=FiniteRange(min=0), default=300.0, show_default=True,
              help="End a source's run (its tracks; its summary is published) after this long without results "
                   "(a still image's run ends as soon as it is tracked).")
@click.option("--pictures/--no-pictures", default=True, show_default=True,
              help="Read frames back from <prefix>:frames for the summaries' face pictures.")
@setting_option("reclaim_idle_ms", type=int)  # its floor (1000, above batch_wait_ms): Settings says it
def track(consumer, source_idle_s, pictures, **flags):
    """Track faces along each source: results stream in, <prefix>:tracked out.

    Reads the results stream (its own consumer group), puts each source's
    results back in frame order, gives every face a track_id and a smoothed
    emotion (as `moodstream analyze` does in one process) and adds the result
    to <prefix>:tracked. When a source run ends (the same source starts again
    from its first frames, or is idle for --source-idle-s) its per-person
    summary goes to <prefix>:summaries (`moodstream tracks` prints them), with
    late_frames: its results that came after --reorder-wait-ms, published
    untracked (those of a run already summarised are counted in
    <prefix>:track:stats, which `moodstream status` shows), and
    dropped_frames: those its producer did not send (--backpressure drop); a
    still image (a result with a page: an image file, a TIFF's page) is a run
    of its own, its summary published as soon as it is tracked; a
    run that goes on (a live camera) publishes its ended tracks there in
    parts, 1000 at a time. Run one per deployment; restarted, it numbers
    each source's next run after the one before (kept in
    <prefix>:track:runs). The first SIGTERM/SIGINT publishes what is buffered
    and exits (at once while Redis is down: the results stay pending there);
    a second exits at once.
    """
    settings = Settings.from_env(**flags)
    client = connect(settings.redis_url)
    check_connection(client, settings.redis_url, settings.redis_wait_s)  # one line for a bad URL, password, host or db
    stage = TrackStage(settings, client, name=consumer, source_idle_s=source_idle_s, pictures=pictures)

    def on_signal(signum, frame):
        if stage.stopping:
            raise SystemExit(1)
        click.echo(f"track: {signal.Signals(signum).name}: publishing what is buffered, then exiting "
                   "(again to exit now)", err=True)
        stage.request_stop()

    with handling(on_signal):
        published = stage.run()
    click.echo(f"track: published {published} tracked results ({stage.late} late: untracked, "
               f"{stage.late_after_run_ended} of them after their run's summary was out; "
               f"{stage.duplicates} duplicates dropped)", err=True)
