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
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
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
               count: ByteCount | None = None, max_pixels: int | None = None) -> Iterator[FrameItem]:
    """Frames of the files :func:`media_files` lists, each opened with :func:`open_inside`;
    a file that is refused or fails yields one FrameItem with ``error`` set.
    ``root`` must be a real path (``os.path.realpath``); ``count`` adds up file sizes."""
    for path, refused in media_files(target, root):
        if refused is not None:
            yield FrameItem(path, 0, error=refused)
            continue
        try:
            with open_inside(path, root) as fd:
                size = os.fstat(fd).st_size
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

