"""The batching policy, in one place: the Redis worker and in-process ``analyze``
both form batches by it (only where frames come from differs).

A batch goes to the pipeline when it holds ``batch_max`` frames, or when its
oldest frame has waited ``batch_wait_ms`` (frames that are all at hand, as in
``analyze``, never wait). Suspects (entries delivered before) go alone: see
worker.service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from moodstream.shared.settings import Settings


@dataclass(frozen=True)
class BatchPolicy:
    batch_max: int = 16
    batch_wait_ms: int = 20
    # while a batch fills, the worker polls Redis this often instead of a short BLOCK: Redis
    # expires a BLOCK only on its cron tick (every 1000/hz = 100 ms by default), which would
    # turn batch_wait_ms=20 into 20-120 ms
    poll_s: float = 0.002

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchPolicy:
        return cls(settings.batch_max, settings.batch_wait_ms)

    def full(self, frames: int) -> bool:
        return frames >= self.batch_max

    def wait_left_s(self, oldest_received: float, now: float | None = None) -> float:
        """Seconds the batch may still wait for more frames (<= 0: send it now); ``oldest_received``
        is the time.monotonic() at which its oldest frame arrived."""
        now = time.monotonic() if now is None else now
        return self.batch_wait_ms / 1000 - (now - oldest_received)
