"""Files written whole or not at all: the summary, the report page, the runtime cache."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from moodstream.shared.errors import OutputError


def umask() -> int:
    """This process's umask, read without setting it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def make_folders(path: str | Path) -> None:
    """``Path(path).mkdir(parents=True, exist_ok=True)`` a folder at a time: pathlib (and os.makedirs)
    recurse a level a missing folder, and an output mirroring an input tree deeper than the recursion
    limit (``analyze deep/ --annotate OUT``: 1,100 levels) was a RecursionError traceback."""
    path = Path(path)
    missing = []
    while not path.is_dir() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)


@contextmanager
def writing(path: str | Path):
    """An OSError raised inside (writing ``path``: a full disk, a read-only file system, a file-size
    limit) as one :class:`OutputError` line naming it, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A path beside ``path`` (hidden, ``.<name>.tmp``) to write the new file to: renamed over ``path``
    when the block ends, removed when it raises, so a kill or a full disk midway leaves the last good
    file whole, never half a new one (a checkpoint, the shipped model, an exported net)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` (UTF-8) as the whole of ``path``, or ``path`` as it was: written to a temporary file
    beside it, then renamed over it, so a full disk or a kill midway never leaves half a file where
    the last good one was. A replaced file keeps its mode; a new one gets 0666 less the umask (a
    private temporary file would leave it 0600). OSError as open() raises it; the temporary file is
    removed."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
