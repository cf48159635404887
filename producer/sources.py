"""The expander's files, opened so they stay inside ``media_root``.

(What a source is called, without credentials, is :func:`shared.media.source_name`:
a URL loses its user and password, ``rtsp://user:pass@cam/live`` -> ``rtsp://***@cam/live``;
a path or camera index stays as it is.)

* :func:`file_items`: the frames of a file or folder under ``media_root``. Every
  file is opened first and then checked by what was opened (the real path of
  the descriptor, ``/proc/self/fd/N``, and ``fstat``), so no symlink, at any depth,
  through any number of hops, and none swapped in after the folder was listed,
  lets a job read a file outside ``media_root``. Videos are decoded through the
  same descriptor. Symlinked folders are followed only while they stay inside.
  Linux only (the expander forks rq work horses anyway).
* :class:`FilesRead`: what a job's count of frames read was read from (each file's name, size and
  modification time), for a resumed job to tell the same files from others saved under their names.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from moodstream.shared.errors import BadInputError
from moodstream.shared.media import (TOO_MANY_LINKS, FrameItem, is_video, iter_video, link_nowhere, media_name,
                                      named_as, stills_or_animation)


def inside(real: str, root: str) -> bool:
    """Whether the real path ``real`` is ``root`` (a real path) or below it."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def real_path(path: str) -> str | None:
    """``os.path.realpath(path)``; None for a chain of links Python 3.11's realpath cannot follow (it
    recurses a link a level: 1,100 links were a RecursionError out of a folder job)."""
    try:
        return os.path.realpath(path)
    except RecursionError:
        return None


def _outside(path: str) -> BadInputError:
    return BadInputError("unsupported", f"{path} leads outside the expander's media_root")


@contextmanager
def open_inside(path: str, root: str) -> Iterator[int]:
    """A read-only descriptor for ``path``, or BadInputError unless what it opened
    is a regular file whose real path is inside ``root`` (checked on the
    descriptor: a symlink swapped in after any earlier check is caught too)."""
    real = real_path(path)
    if real is None:
        raise BadInputError("unreadable", f"{path}: {TOO_MANY_LINKS}")
    if not inside(real, root):  # do not even open what leads out (devices, FIFOs)
        raise _outside(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise (link_nowhere(path) or BadInputError("not_found", f"{path} does not exist")) from None
    except OSError as exc:
        raise (link_nowhere(path) or BadInputError("unreadable", f"{path}: {exc.strerror or exc}")) from None
    try:
        if not inside(os.readlink(f"/proc/self/fd/{fd}"), root):
            raise _outside(path)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInputError("unsupported", f"{path} is not a regular file")
        yield fd
    finally:
        os.close(fd)


def media_files(target: str, root: str) -> Iterator[tuple[str, BadInputError | None]]:
    """``target`` (a file), or the image and video files under it (a folder;
    recursively, sorted, hidden names skipped), as ``(path, None)``; a
    subfolder that leads outside ``root`` as ``(path, error)``, unread."""
    seen: set[str] = set()  # real paths of the folders walked (symlink loops)

    def enter(folder: str) -> Iterator[tuple[str, BadInputError | None] | str]:
        """The folder's files as ``(path, None)``, each subfolder as its path (walked where it comes:
        the order is sorted names, depth first), or ``(folder, error)`` where it is not read."""
        real = os.path.realpath(folder)
        if not inside(real, root):
            yield folder, _outside(folder)
            return
        if real in seen:
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield folder, BadInputError("unreadable", f"{folder}: {exc.strerror or exc}")
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:  # a chain of links past the kernel's 40: opening it says so, in its place
                is_dir = False
            if is_dir:
                yield e.path
            elif media_name(e.path, sniff=not e.is_symlink() or inside(real_path(e.path) or "", root)):
                yield e.path, None  # (a link that leads out is not even read to be told: refused by its name)

    if not os.path.isdir(target):
        yield target, None
        return
    # a loop over a stack of folders being read, not a generator a level: a tree deeper than the
    # recursion limit (1,000; anyone's upload, as a folder job) was a RecursionError
    stack = [enter(target)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str):
                stack.append(enter(item))
                break
            yield item
        else:
            stack.pop()


class ByteCount:
    """Bytes a job's sources gave (file sizes, or what the URL proxy relayed), against a cap."""

    def __init__(self, limit: int):
        self.limit = limit
        self.n = 0

    def add(self, n: int) -> bool:
        """Count ``n`` more bytes; False once the cap is passed."""
        self.n += n
        return self.n <= self.limit

    @property
    def exceeded(self) -> bool:
        return self.n > self.limit


def file_items(target: str, root: str, every_n: int = 1, fps: float | None = None,
               max_frames: int | None = None, max_image_bytes: int | None = None,
               count: ByteCount | None = None, max_pixels: int | None = None,
               opened: Callable[[str, os.stat_result], None] | None = None) -> Iterator[FrameItem]:
    """Frames of the files :func:`media_files` lists, each opened with :func:`open_inside`;
    a file that is refused or fails yields one FrameItem with ``error`` set.
    ``root`` must be a real path (``os.path.realpath``); ``count`` adds up file sizes;
    ``opened(path, stat)``: each file as it is opened (the stat of what was opened), before its frames."""
    for path, refused in media_files(target, root):
        if refused is not None:
            yield FrameItem(path, 0, error=refused)
            continue
        try:
            with open_inside(path, root) as fd:
                st = os.fstat(fd)
                size = st.st_size
                if opened is not None:
                    opened(path, st)
                if count is not None:
                    count.add(size)
                by_fd = f"/proc/self/fd/{fd}"
                if is_video(path, via=by_fd):  # what its bytes are, whatever its name (a clip saved as .jpg)
                    # named by the file, not its descriptor
                    yield from named_as(iter_video(by_fd, every_n, fps, max_frames, max_pixels), path, by_fd)
                    continue
                if max_image_bytes is not None and size > max_image_bytes:
                    raise BadInputError("too_large", f"{path}: {size} bytes is over the limit of {max_image_bytes}")
                with os.fdopen(os.dup(fd), "rb") as f:
                    data = f.read()
        except BadInputError as exc:
            yield FrameItem(path, 0, error=exc)
            continue
        # a multi-page TIFF: a frame a page; an animated WebP or PNG: its frames, as a video's
        yield from stills_or_animation(path, data, every_n, fps, max_frames, max_pixels)



class FilesRead:
    """What a file job's frames read so far were read from: a digest of each file's name (under the
    job's ``target``), size and modification time (ns), the files in the order their frames came, and the
    last file's own. Saved with the job's count (:mod:`producer.rq_jobs`), so that a run that resumes
    the job can tell that the frames it skips as sent are the same files' (a count alone skipped as many
    frames of a file saved over the first, and sent the rest as the same source, under the same job).
    Not inode or device: a resume may run on another machine, over the same shared volume.

    ``opened`` is :func:`file_items`'s callback (files are opened a few frames ahead of the frame
    counted); :meth:`counted` takes each frame read, in order: :attr:`count` frames are in the digest.
    ``before``: what an earlier run saved (:meth:`state`); where this run's count reaches its count, the
    digests must be the same, else BadInputError (``changed``)."""

    def __init__(self, target: str, before: dict | None = None):
        self.target = target
        self.before = before
        self.count = 0
        # saved as the job's own once known to be the earlier runs' files (never where they were not:
        # requeued, that job fails again, not resumed past another file's frames)
        self.trusted = before is None or before["count"] == 0
        self._opened: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns), opened and not yet counted
        self._digest = hashlib.sha256()
        self._source: str | None = None
        self._last: list | None = None  # [name, size, mtime_ns] of the file of the last frame counted
        self._hex = self._digest.hexdigest()

    def opened(self, path: str, st: os.stat_result) -> None:
        self._opened[path] = (st.st_size, st.st_mtime_ns)

    def counted(self, item: FrameItem, name: str) -> None:
        """One more frame read (sent, dropped, or skipped as sent by an earlier run), ``item``, of the job's
        source ``name``."""
        self.count += 1
        if item.source != self._source:
            self._source = item.source
            ident = None
            while self._opened:  # (files opened before it gave no frame: refused, damaged)
                path, found = next(iter(self._opened.items()))
                del self._opened[path]
                if path == item.source:
                    ident = found
                    break
            size, mtime_ns = ident or (None, None)
            self._last = [os.path.relpath(item.source, self.target), size, mtime_ns]
            self._digest.update(json.dumps(self._last).encode() + b"\n")
            self._hex = self._digest.hexdigest()
        if not self.trusted and self.count == self.before["count"]:
            self.check(name)

    def check(self, name: str) -> None:
        """BadInputError unless the frames counted so far are those an earlier run read (:attr:`before`): at
        its count, and at the source's end (where there are fewer frames now than it read)."""
        if self.trusted:
            return
        changed = self._changed(name)
        if changed is not None:
            raise BadInputError("changed", f"{changed} since this job's earlier run read {self.before['count']} "
                                           "frames of it: the rest would follow another file's frames as one "
                                           "source, so it is not resumed; send it again as a new job")
        self.trusted = True

    def state(self) -> dict:
        """What the job's meta keeps (``files_read``): the digest of the first :attr:`count` frames' files."""
        return {"count": self.count, "digest": self._hex, "last": self._last}

    def _changed(self, name: str) -> str | None:
        """Which file changed, as words to follow ``name`` (the job's source); None: the same files."""
        if self.count == self.before["count"] and self.before["digest"] == self._hex:
            return None
        last = self.before.get("last")
        last = last if isinstance(last, list) and len(last) == 3 and isinstance(last[0], str) else None
        if last is not None and last[0] == ".":  # the job's source is one file
            return f"{name} is another file now (its size or modification time changed)"
        if last is not None and self._last is not None and last[0] == self._last[0] and last != self._last:
            return f"{os.path.join(name, last[0])} is another file now (its size or modification time changed)"
        return f"{name} holds other files now (one added, removed or replaced)"
