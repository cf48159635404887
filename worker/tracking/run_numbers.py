"""Run numbers that outlive the track stage (:mod:`worker.tracking.stage`): ``<prefix>:track:runs``.

The stage numbers a source's runs 1, 2, ... in memory; its summaries and tracked
results carry the number, and readers tell runs apart by (source, run):
``moodstream tracks --pictures`` names the face pictures by it, the dashboard
starts a source's people afresh when it changes. A stage restarted (a deploy, a
pod moved, a crash, an OOM kill) while a source was live numbered that source's
next run 1 again, as it had numbered the first: two runs, one for every reader.

So each source's last run number is kept in a Redis hash, with that run's span
(:class:`~moodstream.worker.tracking.runs.EnqueueSpan`, without the frames it
answered) once it ended (:func:`run_record`): written (HSET) before anything that
shows it is published, read (HMGET) for a source the stage does not know. A
result of the run the stage summarised as it stopped (SIGTERM) is that run's
straggler after the restart, as it would have been before it. A stage killed
(SIGKILL) wrote the numbers of the runs it held, never their spans: a late result
of one of them starts the next run.

**Bounded.** When the hash holds ``generation`` sources it becomes
``<prefix>:track:runs:old`` (RENAME; the one there before is dropped), read too, and
the runs going on are written to the new one: Redis keeps the runs going on and the
last ``generation`` to ``2 x generation`` sources whose runs started or ended (the
stage's ``RUN_NUMBERS_KEPT / 2``: by the time a source is forgotten, its summaries
have long left the summaries stream). A key of another type, or a user whose ACL
lacks HMGET / HSET / HLEN / RENAME there (the rules of before), is said once: the
stage then numbers runs in memory only, from 1 after a restart, as before.
"""

from __future__ import annotations

import json
import logging

import redis

from moodstream.shared.keys import Keys
from moodstream.shared.record import MAX_TIME_MS
from moodstream.shared.retry import RedisRetry
from moodstream.worker.tracking.runs import EnqueueSpan

log = logging.getLogger(__name__)


def run_record(number: int, span: EnqueueSpan | None) -> str:
    """What the hash keeps of a source's last run (JSON): its number, and once it ended where its
    results were enqueued (its stragglers after a restart are told by it)."""
    return json.dumps([number] if span is None else
                      [number, span.first_ms, span.first_frame, span.last_ms, span.last_frame])


def read_run_record(raw: bytes | str | None) -> tuple[int, EnqueueSpan | None] | None:
    """:func:`run_record` read back: (number, span or None); None for none, or for what no stage wrote
    (the hash is any Redis writer's: a value that is not this is ignored, never a crash)."""
    if raw is None or len(raw) > 200:
        return None
    try:
        v = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(v, list) and len(v) in (1, 5) and all(type(x) is int and 0 <= x <= MAX_TIME_MS for x in v)):
        return None
    return v[0], EnqueueSpan(*v[1:]) if len(v) == 5 else None


class RunNumbers:
    """The hash of a deployment's run numbers, as one track stage reads and writes it."""

    def __init__(self, client: redis.Redis, keys: Keys, actor: str, retry: RedisRetry, generation: int, rules: str):
        """``generation``: sources a hash holds before it becomes the one before; ``rules``: the ACL rules
        file that grants what this needs (said when refused)."""
        self.client, self.key, self.old_key = client, keys.track_runs, keys.track_runs_old
        self.actor, self.retry, self.generation, self.rules = actor, retry, max(1, generation), rules
        self.on = True
        self.unsent: dict[str, str] = {}  # source -> run_record, not yet written

    def recall(self, sources: list[str]) -> dict[str, tuple[int, EnqueueSpan | None]]:
        """What the hash (or the one before) holds of ``sources``. Waits for Redis (through the stage's
        retry): the results read are in hand, a read failed here would leave them to be taken back, late."""
        if not self.on or not sources:
            return {}

        def read():
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(self.key, sources)
            pipe.hmget(self.old_key, sources)
            return pipe.execute(raise_on_error=False)

        answers = self.retry.call(read)
        if self._refused(answers):
            return {}
        found = {}
        for source, now, before in zip(sources, *answers):
            record = read_run_record(now) or read_run_record(before)
            if record is not None:
                found[source] = record
        return found

    def keep(self, source: str, number: int, span: EnqueueSpan | None) -> None:
        """Queue ``source``'s last run (its number; its span once it ended) for :meth:`send`."""
        if self.on:
            self.unsent[source] = run_record(number, span)

    def send(self) -> bool:
        """Write what was kept since the last call (HSET); a connection error raises and keeps it (the
        stage publishes nothing before this went through). True when the hash became the one before:
        the caller keeps its runs going on again."""
        if not self.unsent or not self.on:
            return False
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key, mapping=self.unsent)
        pipe.hlen(self.key)
        answers = pipe.execute(raise_on_error=False)
        if self._refused(answers):
            return False
        self.unsent = {}
        if answers[1] < self.generation:
            return False
        try:
            self.client.rename(self.key, self.old_key)
        except redis.ResponseError as exc:
            self._refused([exc])
            return False
        log.info("%s: %s holds %d sources: it is now %s, the generation before", self.actor, self.key, answers[1],
                 self.old_key)
        return True

    def _refused(self, answers: list) -> bool:
        """A key of another type, or a user on the rules of before: said once, no more tried."""
        refused = next((a for a in answers if isinstance(a, Exception)), None)
        if refused is not None:
            log.warning("%s: cannot keep run numbers in %s (%s): no more tried; restarted, the stage numbers each "
                        "source's runs from 1 again, as a run before the restart was (a reader keying runs by source "
                        "and run mixes the two). A key of another type: delete it; a user without HMGET, HSET, HLEN "
                        "and RENAME there: grant what %s grants", self.actor, self.key, refused, self.rules)
            self.on, self.unsent = False, {}
        return refused is not None
