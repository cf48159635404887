"""Memory a block of a test keeps, and where.

``tracemalloc.get_traced_memory()`` counts the whole process. In a pytest-xdist worker that is
every thread earlier tests left behind too (a live reader ending its last read, a test's HTTP
server), allocating while the block runs, and the interpreter's own tables that every earlier test
filled (the interned strings: CI twice failed the report's photo test at 28 KB a photo that alone
measures 2.2 KB, 7.5 MB of it one step of that table's growth). Those tables are left out of every
count. ``Kept(__file__)`` counts only the blocks allocated with the test's own
file in their traceback, exactly; its tracebacks cost time with every allocation (a block of
100,000 allocations runs 3-7 times slower), so a long block is measured whole (``Kept()``), its
failure naming the other threads alive and where the most was kept."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from pathlib import Path

DEPTH = 12  # frames kept a block with Kept(test_file): from an allocation back to the test's own call


def _shared_tables() -> list[tracemalloc.Filter]:
    """The interpreter's table of interned strings, grown from the lines that intern: pathlib interns
    each part of every path it parses, and the table grows in one block of megabytes for the whole
    process (a pytest worker's, filled by every earlier test's paths) wherever the part that crosses
    its size comes from; CI counted 7.5 MB of it in the report's 299 photos, 28 KB a photo."""
    import pathlib

    with open(pathlib.__file__, encoding="utf-8") as f:
        lines = [n for n, line in enumerate(f, 1) if "sys.intern(" in line]
    return [tracemalloc.Filter(False, pathlib.__file__, lineno=n) for n in lines]


class Kept:
    """``with Kept(__file__) as kept: ...``; then ``kept.grown`` (bytes more held: allocated under
    calls from that file, or anywhere with no file), ``kept.elsewhere`` (the rest of the process
    meanwhile, with a file) and ``kept.where()`` for a failed bound's message."""

    def __init__(self, test_file: str | None = None, collect: bool = True):
        self.test_file, self.collect = test_file, collect
        self.grown = self.elsewhere = 0
        self.others: set[str] = set()  # other threads alive at the start or the end
        self._before: tracemalloc.Snapshot | None = None
        self._after: tracemalloc.Snapshot | None = None

    def __enter__(self) -> Kept:
        if self.collect:
            gc.collect()
        self.others = self._other_threads()
        self._tables = _shared_tables()
        tracemalloc.start(DEPTH if self.test_file else 1)
        self._before = tracemalloc.take_snapshot().filter_traces(self._tables)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.collect:
                gc.collect()
            self._after = tracemalloc.take_snapshot().filter_traces(self._tables)
        finally:
            tracemalloc.stop()
        self.others |= self._other_threads()
        (mine0, rest0), (mine1, rest1) = self._held(self._before), self._held(self._after)
        self.grown, self.elsewhere = mine1 - mine0, rest1 - rest0

    @staticmethod
    def _other_threads() -> set[str]:
        return {t.name for t in threading.enumerate() if t is not threading.current_thread()}

    def _held(self, snapshot: tracemalloc.Snapshot) -> tuple[int, int]:
        total = sum(t.size for t in snapshot.traces)
        if self.test_file is None:
            return total, 0
        mine = sum(t.size for t in snapshot.filter_traces(
            [tracemalloc.Filter(True, self.test_file, all_frames=True)]).traces)
        return mine, total - mine

    def where(self, n: int = 5) -> str:
        """The ``n`` places that kept the most (newest frame first, each called by the next), and the
        other threads alive."""
        def frames(trace: tracemalloc.Traceback) -> str:
            return " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(trace[-6:]))

        return ("most kept at:\n" + "\n".join(
            f"{d.size_diff / 1024:.0f} KiB in {d.count_diff} blocks at {frames(d.traceback)}"
            for d in self._after.compare_to(self._before, "traceback")[:n])
            + f"\nother threads alive: {', '.join(sorted(self.others)) or 'none'}")
