"""A bounded memory of keys seen, oldest forgotten first.

The commands and the track stage remember the jobs they answered or printed so a
second answer to one (a frame served twice) is told apart, without growing for
ever on a stream that never ends: the last ``limit`` keys are kept. Standard
library only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any


class Recent(OrderedDict):
    """An insertion-ordered mapping of at most ``limit`` keys: :meth:`put` forgets the oldest
    past it. A key put again keeps its place (and takes the new value)."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        super().__init__()
        self.limit = limit

    def put(self, key: Hashable, value: Any = None) -> None:
        self[key] = value
        while len(self) > self.limit:
            self.popitem(last=False)

    def put_all(self, items: Iterable[tuple[Hashable, Any]]) -> None:
        """Put each (key, value) in order: the last ``limit`` of them, and of those before, stay."""
        for key, value in items:
            self.put(key, value)

    def first_time(self, key: Hashable) -> bool:
        """Put ``key`` (value None) unless it is here; True if it was not."""
        if key in self:
            return False
        self.put(key)
        return True
