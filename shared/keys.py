"""Every Redis key and name moodstream uses, in one place, under one prefix.

``Keys("moodstream")`` (or ``Keys.from_settings(settings)``) gives::

    moodstream:intake              list of frame jobs producers push (RPUSH) and workers' movers empty
    moodstream:intake:waiter       hash: the one mover that waits on the intake (BLMOVE), with a TTL
    moodstream:frames              stream of frame jobs (movers -> workers)
    moodstream:workers             consumer group on the frames stream
    moodstream:results             stream of results and error records
    moodstream:dead                dead-letter stream (poison and failed jobs)
    moodstream:heartbeat:<worker>  hash with TTL, one per live worker
    moodstream:heartbeats          sorted set: worker name -> its last beat (ms), the index of the hashes
    moodstream:attempts            hash: entry id -> times a worker died serving it alone
    moodstream:reply:<name>        optional per-caller result streams (a job's ``reply_to``)
    moodstream:tracked             stream of results with face tracks (``moodstream track``)
    moodstream:trackers            consumer group of the track stage on the results stream
    moodstream:summaries           per-person summary of each source run the track stage ended (JSON)
    moodstream:track:stats         hash: the track stage's late results, counted (``status`` shows them)
    moodstream:track:runs          hash: source -> its last run's number (and span), so a restarted stage goes on
    moodstream:track:runs:old      ... the generation before (two, each at most half the sources kept)
    moodstream-coarse              rq queue for whole-file jobs (rq adds ``rq:queue:``)

Two deployments can share one Redis with different prefixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moodstream.shared.errors import ConfigError

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-:]{1,64}$")


@dataclass(frozen=True)
class Keys:
    prefix: str = "moodstream"

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(f"prefix {self.prefix!r} must be 1-64 characters of letters, digits, '_', '.', '-', ':'")
        if ":reply:" in self.prefix or self.prefix.endswith(":reply"):  # keys a job's reply_to names
            owner = self.prefix[:self.prefix.find(":reply")]
            raise ConfigError(f"prefix {self.prefix!r} lies inside deployment {owner!r}'s reply streams "
                              f"({owner}:reply:*, which its producers name): a job there could write into this "
                              "deployment's keys; choose a prefix without a ':reply' part")

    @classmethod
    def from_settings(cls, settings) -> Keys:
        return cls(settings.prefix)

    @property
    def intake(self) -> str:
        """The list producers RPUSH frame jobs to; only the workers' movers take from it, each
        message XADDed to :attr:`frames` with an id Redis picks (worker.intake)."""
        return f"{self.prefix}:intake"

    @property
    def intake_waiter(self) -> str:
        """A hash naming the one mover that blocks on :attr:`intake` (BLMOVE returns the message: each
        mover blocked there read every push whole); it expires when that mover stops renewing it."""
        return f"{self.prefix}:intake:waiter"

    @property
    def frames(self) -> str:
        return f"{self.prefix}:frames"

    @property
    def group(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def attempts(self) -> str:
        """Hash of entry id -> solo attempts (see worker.service: poison detection)."""
        return f"{self.prefix}:attempts"

    @property
    def tracked(self) -> str:
        """Results in per-source frame order with ``track_id`` / ``smoothed`` (worker.tracking.stage)."""
        return f"{self.prefix}:tracked"

    @property
    def track_group(self) -> str:
        """The track stage's consumer group on the results stream."""
        return f"{self.prefix}:trackers"

    @property
    def summaries(self) -> str:
        """One JSON entry per ended source run: its per-person summary (worker.tracking.stage)."""
        return f"{self.prefix}:summaries"

    @property
    def track_stats(self) -> str:
        """Hash of the track stage's counts, added to by every stage of the deployment (HINCRBY):
        ``late`` (results published untracked because late), ``late_after_run_ended`` (of them, those
        whose run's summary was out: in no summary), ``since_ms`` (the first count)."""
        return f"{self.prefix}:track:stats"

    @property
    def track_runs(self) -> str:
        """Hash of source -> its last run's number, with that run's span once it ended (JSON), so a
        restarted track stage numbers the next run after it (worker.tracking.stage); when full it
        becomes :attr:`track_runs_old` (RENAME), the generation before, read too."""
        return f"{self.prefix}:track:runs"

    @property
    def track_runs_old(self) -> str:
        return f"{self.prefix}:track:runs:old"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}:heartbeat:{worker_id}"

    @property
    def heartbeat_pattern(self) -> str:
        """For ``SCAN MATCH``: every live worker's heartbeat key."""
        return f"{self.prefix}:heartbeat:*"

    @property
    def heartbeats(self) -> str:
        """Sorted set of the workers that beat lately (name -> beat time in ms), written with each
        heartbeat: ``status`` finds the heartbeats here instead of by SCAN of the whole database."""
        return f"{self.prefix}:heartbeats"

    def reply(self, name: str) -> str:
        """A caller's own result stream; workers only write ``reply_to`` keys under this prefix."""
        return f"{self.reply_prefix}{name}"

    @property
    def reply_prefix(self) -> str:
        return f"{self.prefix}:reply:"

    @property
    def rq_queue(self) -> str:
        """rq queue name (rq stores it as ``rq:queue:<name>``; rq names cannot hold ':')."""
        return f"{self.prefix.replace(':', '-')}-coarse"
