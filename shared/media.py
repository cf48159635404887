"""Images and videos in, RGB frames out: safe decoding and source iteration.

Used by both sides: the producer reads sources and ships encoded bytes, the
worker (and in-process ``analyze``) decodes them. Needs only OpenCV and numpy.

Every failure is a :class:`BadInputError` whose ``reason`` is one of
:data:`REASONS`, so error records and dead-letter entries can be counted by kind.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import math
import os
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodstream.shared.containers import (SNIFF_BYTES, asf_cut, container_whole, mp4_missing_index,
                                          mpeg_ps_cut, sniff_video)
from moodstream.shared.errors import BadInputError
from moodstream.shared.formats import (ACCEPTED_FORMATS, MAX_JPEG_SCANS, MAX_TIFF_ENTRIES, MAX_TIFF_PAGES, Animation,
                                       TiffChain, animation_frames, avif_sequence, gif_blocks, gif_frames_beyond_one,
                                       heif_derived_sizes, image_size, jpeg_end, jpeg_one_scan, jpeg_stream,
                                       sniff_format, tiff_directories, tiff_page_alone)
from moodstream.shared.orientation import exif_orientation
from moodstream.shared.settings import MAX_PIXELS_CEILING

log = logging.getLogger(__name__)

import cv2  # OpenCV's own pixel limit is set by the package (moodstream/__init__.py) before cv2 loads

from moodstream.shared.pixels import to_rgb8  # callers import it from here too
from moodstream.shared.shots import ShotCounter
from moodstream.shared.table import plural, printable

REASONS = ("not_found", "empty", "unreadable", "truncated", "too_large", "unsupported")
# a folder's files read as images: every ACCEPTED_FORMATS format by its usual names (PNM: .ppm .pgm .pbm .pnm)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm", ".pnm",
              ".avif",
              # JPEGs by other names: Chrome's and Edge's "Save image as" on Windows (.jfif), older Windows software's
              ".jfif", ".jpe", ".jif", ".jfi"}
# a folder's photos decoded by libheif (pillow-heif), or where it is not installed refused by name ("install
# pillow-heif, or convert it"), never left out of the folder without a word; a training folder leaves them out
SAID_EXTS = {".heic", ".heif", ".hif"}  # .HIF: a Canon, Sony or Fujifilm camera's HEIF photos
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
              # a camcorder's (AVCHD .mts / .m2ts), an old phone's (.3gp), a broadcast recording's (.ts), a DVD's ...
              ".mts", ".m2ts", ".ts", ".3gp", ".3g2", ".flv", ".f4v", ".vob", ".ogv", ".mxf", ".asf", ".dv", ".divx",
              ".qt", ".y4m", ".m2v",
              # VP8 / VP9 / AV1 as vpxenc, aomenc and WebRTC recorders write them (IVF)
              ".ivf",
              # RealMedia: the 2000s' downloads and archives
              ".rm", ".rmvb",
              # Motion-JPEG written to a file: JPEGs one after the other (rpicam-vid, v4l2), or a camera's multipart
              ".mjpg", ".mjpeg",
              # a security camera's (DVR / NVR) export: a raw H.264 or H.265 stream, no container (FFmpeg: 25 fps),
              # or a Dahua recorder's DHAV packets (FFmpeg's dhav demuxer: each frame at its own time)
              ".h264", ".264", ".h265", ".265", ".hevc", ".dav"}
# a folder's files whose name is a video's only where their first bytes are that container (sniff_video's
# suffix): a transport stream's .ts (a TypeScript file's too), a camcorder's (a JVC Everio's .MOD, an MPEG
# program stream, an Amiga music module's name too; its .TOD and an HDV camcorder's .m2t), a set-top box's
# or a DVB card's recordings (.trp, .tp: a template's name too)
BY_BYTES = {".ts": ".ts", ".m2t": ".ts", ".tod": ".ts", ".trp": ".ts", ".tp": ".ts", ".mod": ".mpg"}


# --- orientation: the pixels turned as a viewer shows them ------------------------------------

# what a viewer does to the stored pixels for each orientation (EXIF 2.3, 4.6.4 A)
_TURNS = {
    2: lambda a: cv2.flip(a, 1),  # mirrored left-right
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),  # mirrored top-bottom
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),  # a phone held upright: its sensor reads landscape
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),  # transverse
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def turned(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` as a viewer shows it for ``orientation`` (1-8; anything else: unchanged)."""
    turn = _TURNS.get(orientation)
    return img if turn is None else turn(img)


class PixelBudget:
    """Bounds the pixels being decoded at once across decode threads.

    A thread asks for the pixels its image declares; it waits while the others
    hold the budget, except that one image may always run alone (so an image up
    to ``max_pixels`` is never starved). Peak decode memory is then about one
    budget's worth of the largest decoded form (16-bit RGBA: 8 bytes a pixel),
    whatever ``decode_threads`` is.
    """

    def __init__(self, total_pixels: int):
        self.total = total_pixels
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        with self._cond:
            self._cond.wait_for(lambda: self.in_use == 0 or self.in_use + pixels <= self.total)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()


def over_pixel_limit(w: int, h: int, max_pixels: int, where: str = "", what: str = "") -> BadInputError:
    """The ``too_large`` error of an image (``what``: " a frame" for a video's) over ``max_pixels``, with
    what to do about it: a 50 MP or 108 MP phone photo (over the 50,000,000 default) was refused with
    the limit alone, not the setting that raises it."""
    top = "" if max_pixels >= MAX_PIXELS_CEILING else f", up to {MAX_PIXELS_CEILING}"
    return BadInputError("too_large", f"{where}{w}x{h} pixels{what} is over the limit of {max_pixels} (max_pixels: "
                                      f"raise it with MOODSTREAM_MAX_PIXELS{top}, or scale the image down)")


def decode_image(data: bytes, max_pixels: int, budget: PixelBudget | None = None,
                 page: int | None = None) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 ``(H, W, 3)``, as a viewer shows it.

    Grayscale, RGBA (alpha dropped), palette and 16-bit images are converted,
    and turned as their orientation says (a JPEG's, PNG's or WebP's EXIF:
    :func:`shared.orientation.exif_orientation`; a TIFF page's own tag: its
    decoder). Only the formats in :data:`ACCEPTED_FORMATS` are decoded, and
    only after their header says the image is within ``max_pixels`` (a
    decompression-bomb guard that holds for every format we decode: the others
    are refused unread). ``budget`` bounds the pixels decoding at once across
    threads. OpenCV's own errors become :class:`BadInputError`.

    ``page``: that page of a multi-page TIFF (0 the first), judged by its own
    size. None: the first page, the file judged by its largest (a job's bytes
    are one image; :func:`image_items` gives every page of a file as a frame),
    and a warning says the other pages were not read.
    """
    img, kind = _decode_stored(data, max_pixels, budget, page)
    # a phone's photo stores its pixels on their side: read as stored, MTCNN found 0 of its 5 faces
    return turned(to_rgb8(img), exif_orientation(data, kind))


@functools.cache
def avif_decoder() -> bool:
    """Whether this OpenCV decodes AVIF (built with libavif, as the 4.14 wheels are)."""
    return any(line.strip().startswith("AVIF:") and "NO" not in line
               for line in cv2.getBuildInformation().splitlines())


@functools.cache
def heif_decoder() -> bool:
    """Whether HEIF / HEIC images can be decoded here: pillow-heif (libheif with its HEVC decoder) installed."""
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def _decode_heif(data: bytes, where: str) -> np.ndarray:
    """A HEIF's (an iPhone's HEIC) primary image as OpenCV gives others: BGR, BGRA or grey, 8 bits. libheif
    turns it as its ``irot`` / ``imir`` properties say, as viewers do (its EXIF orientation is not applied
    again: :func:`shared.orientation.exif_orientation` gives 1 for it). Its errors are BadInputError."""
    import pillow_heif

    try:  # BGR(A) as libheif converts it: no copy to reorder
        return np.asarray(pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True, bgr_mode=True))
    except Exception as exc:  # libheif's errors come as ValueError, RuntimeError, OSError...: this image's
        raise BadInputError("unreadable", f"{where}libheif cannot decode it: {str(exc).strip()[:200]}") from None


REDUCED_READS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def jpeg_reduction(data: bytes, size: tuple[int, int], max_pixels: int) -> int:
    """The denominator a JPEG of ``size`` (W, H) over ``max_pixels`` is read at: the smallest of 2, 4 and 8 that
    brings it within (libjpeg rounds each side up); 1 where none does, or where it is not a camera's JPEG of one
    sequential scan (:func:`shared.formats.jpeg_one_scan`: a progressive one is buffered whole at any scale),
    or it is over MAX_PIXELS_CEILING whole (libjpeg would still walk every block of a bomb): refused then.
    A 61 MP camera's JPEG, a 108 MP or 200 MP phone photo, over the 50 M default, were refused whole."""
    w, h = size
    if w * h > MAX_PIXELS_CEILING or not jpeg_one_scan(data):
        return 1
    return next((d for d in REDUCED_READS if -(-w // d) * -(-h // d) <= max_pixels), 1)


def decoded_scale(data: bytes | None, rgb: np.ndarray) -> float | None:
    """1/2, 1/4 or 1/8 where ``rgb`` is the JPEG ``data`` read reduced (:func:`decode_image`, over max_pixels),
    None otherwise: what a record's ``scale`` says (its size, boxes and landmarks are in the reduced picture's
    pixels; divided by it, in the photo's). Told from the JPEG's header against the picture's longer side (a
    turned photo swaps its sides)."""
    if not data or sniff_format(data) != "jpeg" or (size := image_size(data)) is None or not rgb.size:
        return None
    ratio = max(size) / max(rgb.shape[:2])
    return 1 / min(REDUCED_READS, key=lambda d: abs(d - ratio)) if ratio >= 1.5 else None


def decode_stored(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> the array OpenCV decodes, as stored: BGR or grey, 8 or 16-bit, never
    turned (a video's frames, a Motion-JPEG stream's parts, are read as a video reader gives them);
    :func:`decode_image`'s checks (accepted formats, the size before decoding, ``max_pixels``) and errors."""
    return _decode_stored(data, max_pixels)[0]


def _decode_stored(data: bytes, max_pixels: int, budget: PixelBudget | None = None,
                   page: int | None = None) -> tuple[np.ndarray, str]:
    if not data:
        raise BadInputError("empty", "zero bytes")
    kind = sniff_format(data)
    if kind is None:
        raise BadInputError("unreadable", "not an image (no known image signature in its first bytes)")
    if kind == "heif" and not heif_decoder():
        raise BadInputError("unsupported", "HEIF / HEIC images (an iPhone's photos) are decoded by pillow-heif, which "
                                           "this install lacks (moodstream's cpu and worker installs have it): pip "
                                           "install pillow-heif, or convert them to JPEG or PNG")
    if kind == "jxl":
        raise BadInputError("unsupported", "JPEG XL images are not read here (neither OpenCV nor pillow-heif decodes "
                                           "them): convert them to JPEG or PNG")
    if kind not in ACCEPTED_FORMATS:
        raise BadInputError("unsupported", f"{kind} images are not accepted (their size cannot be checked "
                                           f"before decoding); send {', '.join(ACCEPTED_FORMATS)}")
    if kind == "avif" and not avif_decoder():
        raise BadInputError("unsupported", "this OpenCV build has no AVIF decoder (OpenCV built without libavif); "
                                           "convert it to JPEG or PNG")
    if kind == "avif" and avif_sequence(data):  # a file's, stdin's or a URL's is read as a video (iter_animation)
        raise BadInputError("unsupported", "an AVIF image sequence (an animated AVIF) is one image here, as a job's "
                                           "bytes: send it as a file (produce reads its frames) or a video")
    where, pages_left = "", 0  # "page N: " in the errors of a page asked for; pages not read
    if kind == "tiff":
        chain, size = tiff_directories(data), None
        if chain is not None:  # page None: the first, a job's one image; each page judged by its own size
            k = page or 0
            if k >= len(chain.pages):
                raise BadInputError("unreadable", f"page {k + 1}: the TIFF has {len(chain.pages)} pages")
            offset, size = chain.pages[k]
            where = f"page {k + 1}: " if page is not None else ""
            if page is None:
                pages_left = len(chain.pages) - 1 + chain.more
            elif size is not None and k > 0:
                data = tiff_page_alone(data, offset)
    elif page:
        raise BadInputError("unreadable", f"page {page + 1}: only a TIFF has pages, this is a {kind}")
    else:
        size = image_size(data)
    if size is not None and kind in ("heif", "avif"):  # a grid's or an overlay's own size, where it is larger
        derived = heif_derived_sizes(data)
        if derived is None:
            raise BadInputError("unreadable", f"{where}{kind} with a grid or overlay whose size cannot be read")
        size = max([size, *derived], key=lambda wh: wh[0] * wh[1])
    if size is None:
        raise BadInputError("unreadable", f"{where}{kind} header without a readable image size" + (
            f" (its size missing or given twice, or a directory of over {MAX_TIFF_ENTRIES} entries)"
            if kind == "tiff" else ""))
    pixels = size[0] * size[1]
    denominator = 1  # a camera's JPEG over max_pixels: read at 1/2, 1/4 or 1/8 (jpeg_reduction)
    if pixels > max_pixels:
        denominator = jpeg_reduction(data, size, max_pixels) if kind == "jpeg" else 1
        if denominator == 1:
            raise over_pixel_limit(size[0], size[1], max_pixels, where)
        pixels = -(-size[0] // denominator) * -(-size[1] // denominator)
    if pixels == 0:
        raise BadInputError("unreadable", f"{where}{kind} header says {size[0]}x{size[1]} pixels")
    if kind == "jpeg":
        end = jpeg_end(data)
        # each scan is a pass over the image; counted up to the image's end (a Motion Photo's video follows)
        if data.count(b"\xff\xda", 0, end if end >= 0 else len(data)) > MAX_JPEG_SCANS:
            raise BadInputError("unsupported", f"a JPEG of more than {MAX_JPEG_SCANS} scans (progressive JPEGs "
                                               "have ~10)")
        if end < 0:
            raise BadInputError("truncated", "JPEG data ends before its end-of-image marker")
    if pages_left:
        log.warning("a TIFF of %s pages: only its first is read (one image a job; moodstream analyze and produce "
                    "read a file's pages as its frames)", f"over {MAX_TIFF_PAGES}" if chain.more else len(chain.pages))
    with budget.hold(pixels) if budget is not None else nullcontext():
        try:
            # JPEG: 8-bit, no alpha; the others unchanged (alpha, 16-bit: to_rgb8). OpenCV is told not to
            # turn the pixels (its versions differ on which formats it turns: 4.10 left a WebP as stored,
            # 4.14 turns it), exif_orientation says how; a TIFF's decoder turns it whatever the flags
            flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION if kind == "jpeg" \
                else cv2.IMREAD_UNCHANGED
            if denominator > 1:  # libjpeg's own scaling (its IDCT at that size): only the reduced pixels held
                flags = REDUCED_READS[denominator] | cv2.IMREAD_IGNORE_ORIENTATION
            img = _decode_heif(data, where) if kind == "heif" else \
                cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
        except cv2.error as exc:  # OpenCV's limit or a header it accepts but cannot decode
            text = str(exc)
            if "MAX_IMAGE_PIXELS" in text:
                raise BadInputError("too_large", f"{where}over OpenCV's pixel limit ({kind})") from None
            raise BadInputError("unreadable", f"{where}OpenCV cannot decode it: {text.strip()[:200]}") from None
        if img is None:
            raise BadInputError("unreadable", f"{where}not an image OpenCV can decode (corrupt or unsupported "
                                              "format)")
        if img.shape[0] * img.shape[1] > max_pixels:
            raise over_pixel_limit(img.shape[1], img.shape[0], max_pixels, where)
        return img, kind


def decode_pixels(image: bytes | None, array: np.ndarray | None, max_pixels: int,
                 budget: PixelBudget | None = None) -> np.ndarray:
    """The one decode step of every front end: encoded image bytes or a raw array
    (RGB ``(H, W, 3)`` or gray ``(H, W)`` uint8) -> RGB uint8 ``(H, W, 3)``, within
    ``max_pixels``; every failure a :class:`BadInputError`."""
    if array is not None:
        h, w = array.shape[:2]
        if h * w > max_pixels:
            raise over_pixel_limit(w, h, max_pixels)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise BadInputError("unsupported", f"a frame must be uint8 (H, W) or (H, W, 3), got {array.dtype} "
                                               f"{tuple(array.shape)}")
        if array.ndim == 2:
            return to_rgb8(array)
        return array if array.flags.writeable else array.copy()  # wire arrays are read-only views
    return decode_image(image or b"", max_pixels, budget)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise BadInputError("unsupported", "cannot JPEG-encode this frame")
    return buf.tobytes()


@dataclass
class FrameItem:
    """One frame from a source: encoded bytes (image files, stdin) or an RGB
    array (video frames), or the error that stopped this input."""

    source: str
    frame: int
    timestamp_s: float | None = None  # video only
    data: bytes | None = None
    image: np.ndarray | None = None
    error: BadInputError | None = None
    rate: float | None = None  # video only: its sampled frames' rate (what an annotated copy plays at)
    page: int | None = None  # a still image only (image_items): its page, 1-based; 1 for a one-page image
    shot: int | None = None  # a video frame only: its camera shot, 0, 1, ... (shared.shots): tracks end at a change

    def decoded(self, max_pixels: int) -> np.ndarray:
        """The frame as RGB uint8, decoding bytes if needed (raises BadInputError)."""
        if self.error is not None:
            raise self.error
        return decode_pixels(self.data, self.image, max_pixels)


def unwritable(path: str | Path, check_folder: bool = True) -> str | None:
    """Why a command cannot write the file ``path``, worded to follow it (None: it can, its
    folder made if need be): it names no file, something that is not a regular file stands there
    (/dev/full, a FIFO: a summary's pictures would land beside it, in /dev), or (``check_folder``) the
    nearest folder above it that exists cannot be written."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        return "names no file"
    if os.path.lexists(path) and not os.path.isfile(path):
        return "is not a regular file"
    if not check_folder:
        return None
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK) or not _can_create_in(folder):
        return f"is in a folder that cannot be written ({folder})"
    return None


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder``, by making one and removing it: os.access passes
    everything for root (/proc, /sys) and knows nothing of read-only mounts."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".moodstream-probe-")
    except OSError:
        return False
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return True


def input_files(specs: list[str]) -> frozenset[str]:
    """The real paths of the files among ``specs`` (not "-", cameras or URLs): what a command
    reads, and so must never write over (its --summary, --report, --annotate outputs)."""
    return frozenset(os.path.realpath(s) for s in specs if not is_stream_spec(s) and s != "-" and os.path.isfile(s))


def no_media(paths: Iterable[str]) -> str:
    """What a command or a call says of inputs that hold no image or video (an empty folder, notes only)."""
    return (f"no images or videos in {printable(', '.join(map(str, paths)))} (looked for "
            f"{', '.join(sorted(IMAGE_EXTS | SAID_EXTS | VIDEO_EXTS | set(BY_BYTES)))})")


def stdin_refusal(paths: Iterable[str], stdin: object = None, command: str = "analyze") -> str | None:
    """Why the inputs cannot name ``-`` (stdin, one image or video, read once) as they do: named more
    than once (the second read finds it empty), or stdin is a terminal (the command would wait for
    bytes from the keyboard) or closed; None where they can. ``stdin`` defaults to ``sys.stdin``."""
    named = sum(1 for p in paths if p == "-")
    if not named:
        return None
    if named > 1:
        return (f"- (stdin) is named {named} times: stdin holds one image or video and is read once; "
                "name it once, or the files themselves")
    stream = sys.stdin if stdin is None else stdin
    if stream is None:  # closed (`<&-`): Python has no sys.stdin then
        return "- reads an image or video from stdin, and stdin is closed: pipe one in, or name the file"
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # a stream without one, or closed
        terminal = False
    if terminal:
        return (f"- reads an image or video from stdin, and stdin is a terminal: pipe one in "
                f"(cat photo.jpg | moodstream {command} -), or name the file")
    return None


def expand_paths(paths: list[str]) -> Iterator[str]:
    """Files named directly, and image / video files under folders (recursively, sorted).
    ``-`` (stdin) and camera / URL specs pass through unchanged, and so does a folder that cannot be
    listed (permission denied), in its place among its folder's files: reading it is the error, as
    reading a missing file is (:func:`iter_frames`: :func:`unreadable_folder`), where it was listed
    as empty ("no images or videos in X", or its files left out without a word)."""
    for spec in paths:
        p = Path(spec)
        if not spec or spec == "-" or is_stream_spec(spec) or not p.is_dir():  # "" is no folder (not ".")
            yield spec
            continue
        found, left_out, unlisted = [], [], []
        for root, files in walk_once(p, onerror=lambda exc: unlisted.append(Path(exc.filename))):
            for name in files:
                if not name.startswith(".") and media_name(Path(root) / name):
                    found.append(Path(root) / name)
                elif not name.startswith("."):
                    left_out.append(name)
        if left_out:  # -v says so: a notes.txt vanished without a word
            log.info("%s: %s left out, not images or videos by their names (%s%s)", spec,
                     plural(len(left_out), "file"), ", ".join(sorted(left_out)[:3]), ", ..." if len(left_out) > 3 else "")
        unlisted_set = set(unlisted)
        for f in sorted(found + unlisted):  # (not a FIFO named like a photo: opened, it would wait forever)
            if f in unlisted_set or f.is_file() or link_nowhere(str(f)) is not None:  # reading it says why
                yield str(f)


def link_nowhere(path: str) -> BadInputError | None:
    """Why ``path``, a symbolic link, leads to no file: ``b.jpg -> /mnt/old/b.jpg`` (a disk unmounted,
    a photo moved: a folder's was left out without a word), or a chain of links past the kernel's 40
    (or a loop). None where ``path`` is no link, or leads somewhere."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except FileNotFoundError:
        target = os.readlink(path)
        gone = "does not exist" if not os.path.lexists(os.path.join(os.path.dirname(path), target)) \
            else "leads nowhere"
        return BadInputError("not_found", f"{path} is a link to {target}, which {gone}")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return BadInputError("unreadable", f"{path}: {TOO_MANY_LINKS}")
        return BadInputError("unreadable", f"{path}: {exc.strerror or exc}")
    return None


TOO_MANY_LINKS = "too many levels of symbolic links (a chain of links past 40, or a loop)"


def media_name(path: str | os.PathLike, sniff: bool = True) -> bool:
    """Whether a file found in a folder is read as an image or a video: by its name's suffix
    (:data:`IMAGE_EXTS`, :data:`VIDEO_EXTS`, and :data:`SAID_EXTS`, read to be refused by name), and
    the names of :data:`BY_BYTES` by their first bytes too (a ``.ts`` that is an MPEG transport stream, not a
    TypeScript file: :func:`shared.containers.sniff_video`), and a name with no suffix at all by its first bytes alone
    (:func:`told_by_bytes`: a web app's download named by hash, ``3f2a9c``, was left out, said at -v
    only; a README stays out). ``sniff=False``: by the name alone, nothing opened (the expander's
    link that leads outside its media root: a ``.ts`` is listed, to be refused, a bare name is not)."""
    suffix = os.path.splitext(path)[1].lower()
    if not suffix:
        return sniff and told_by_bytes(os.fspath(path)) is not None
    if suffix not in BY_BYTES or not sniff:
        return suffix in IMAGE_EXTS or suffix in VIDEO_EXTS or suffix in SAID_EXTS or suffix in BY_BYTES
    try:  # opened without waiting: a FIFO named b.ts waited for a writer, and the folder's listing forever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:  # reading it is the error then, said in its place
        return True
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True  # by its name: a FIFO or a device is left out of analyze's list, refused by the expander
        try:
            return sniff_video(f.read(4 + 2 * 192 + 1)) == BY_BYTES[suffix]
        except OSError:
            return True


def cannot_read_folder(folder: str, exc: OSError | None) -> str:
    """``cannot read folder X: permission denied``: the OS's reason for ``exc`` (None: the folder
    reads by now, its mode changed since it could not be listed)."""
    why = (exc.strerror or type(exc).__name__).lower() if exc is not None else \
        "it could not be listed when the inputs were"
    return f"cannot read folder {folder}: {why}"


def unreadable_folder(folder: str) -> BadInputError:
    """Why a folder :func:`expand_paths` could not list gives no frames (the OS's reason, asked again)."""
    try:
        os.scandir(folder).close()
    except OSError as exc:
        return BadInputError("unreadable", cannot_read_folder(folder, exc))
    return BadInputError("unreadable", cannot_read_folder(folder, None))  # readable now: named, not read in part


def walk_once(folder: str | Path, inside: bool = False,
              onerror: Callable[[OSError], None] | None = None) -> Iterator[tuple[str, list[str]]]:
    """(folder, its file names) for ``folder`` and every folder under it, symlinked ones entered
    (rglob skipped them, and their files, silently), each real folder once: a link loop ends, nothing
    is listed twice. ``inside``: nor is a link to a folder above ``folder`` followed. ``onerror``
    is told of each folder that cannot be listed (``os.walk``'s: ``filename`` names it); without
    it such a folder is left out."""
    top = os.path.realpath(folder)
    seen: set[str] = set()
    for root, dirs, files in walk_links(folder, onerror=onerror):
        real = os.path.realpath(root)
        if real in seen or (inside and real != top and (top + os.sep).startswith(real + os.sep)):
            dirs[:] = []
            continue
        seen.add(real)
        yield root, files


def walk_links(top: str | os.PathLike, onerror: Callable[[OSError], None] | None = None
               ) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top, followlinks=True, onerror=onerror)``, top-down, in its order, pruned as it is
    (``dirs[:] = []``), as a loop over a stack: Python 3.11's os.walk recurses a level a folder, and
    a tree deeper than the recursion limit (1,000) was a RecursionError traceback (3.12's loops)."""
    stack = [os.fspath(top)]
    while stack:
        root = stack.pop()
        dirs, files = [], []
        try:
            with os.scandir(root) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir()  # through a link, as followlinks=True
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(entry.name)
        except OSError as exc:
            if onerror is not None:
                onerror(exc)
            continue
        yield root, dirs, files
        stack.extend(os.path.join(root, d) for d in reversed(dirs))


def is_camera_index(spec: str) -> bool:
    """``0``, ``1``...: a camera, unless a file or folder of that name is here (``./0`` names one
    either way). ASCII digits only: ``²`` is a digit to str.isdigit, not to int()."""
    return spec.isascii() and spec.isdigit() and not os.path.exists(spec)


def camera_missing(spec: str) -> str:
    """For a camera index whose device node Linux does not have (``/dev/video0``), "no /dev/video0 on this
    machine"; else "" (it exists, or this is no Linux: nothing can be told)."""
    node = Path(f"/dev/video{int(spec)}")
    return f"no {node} on this machine" if Path("/dev").is_dir() and not node.exists() else ""


def is_stream_spec(spec: str) -> bool:
    """A camera index (``0``, :func:`is_camera_index`) or a stream URL (rtsp://, http(s)://...)."""
    return is_camera_index(spec) or "://" in spec


def source_name(spec: str) -> str:
    """``spec`` as records, frame jobs and every log line name it: without credentials."""
    if not is_stream_spec(spec):
        return spec
    from moodstream.shared.transport import redact  # redis-py is a base dependency; loaded only for URLs

    return redact(spec)


TOLD_BYTES = 4096  # a file's first bytes that tell a video from an image (a transport stream's: 577)


def is_video(spec: str, via: str | None = None) -> bool:
    """Whether ``spec`` is read as a video (by FFmpeg): a camera or a stream URL; a regular file by its
    first bytes, whatever its name (:func:`told_by_bytes`; read through ``via`` where given, an open
    descriptor's ``/proc/self/fd/N``); anything else (missing, a FIFO, a device) by its name
    (:data:`VIDEO_EXTS`)."""
    if is_stream_spec(spec):
        return True
    told = told_by_bytes(via or spec, name=spec)
    return told if told is not None else Path(spec).suffix.lower() in VIDEO_EXTS


def told_by_bytes(path: str, name: str | None = None) -> bool | None:
    """A regular file's first bytes: True for a video container (:func:`shared.containers.sniff_video`)
    or an animated GIF, False for an image of any other kind (a JPEG named .mp4: FFmpeg read it as a
    one-frame video), None where they tell neither (a container they do not know: its name decides),
    or it is no regular file (a FIFO is opened once, by the read itself) or cannot be read. A video
    saved without an extension, or as .jpg, was "not an image". Motion-JPEG (JPEGs one after the other)
    is a video where its name is no photo's (``cam.mjpeg``, a bare name): ``name``, where ``path`` is
    another way to the file (its descriptor's ``/proc/self/fd/N``)."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            head = f.read(TOLD_BYTES)
    except OSError:
        return None
    if sniff_video(head) is not None:
        return True
    kind = sniff_format(head)
    if kind == "gif":
        return animated_gif(path)
    if kind == "jpeg" and os.path.splitext(name or path)[1].lower() not in IMAGE_EXTS:
        return jpeg_stream_file(path)  # (one named as a photo is one: FFmpeg would read it as one, by its name)
    return None if kind is None else False


def jpeg_stream_file(path: str) -> bool:
    """Whether the JPEG file at ``path`` is Motion-JPEG, another JPEG after its first
    (:func:`shared.formats.jpeg_stream`): read through a map of the file, its header and a search for its end."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return bool(jpeg_stream(data))
    except (OSError, ValueError):
        return False


def animated_gif(path: str) -> bool:
    """A GIF file of more than one frame (read as a video: every frame, at the times its delays
    give). Its blocks are walked, not decoded, up to the second image; False for anything that is
    not a regular file holding a well-formed GIF up to there (the image path then says why)."""
    try:
        if not os.path.isfile(path):  # a FIFO is opened once, by the read itself
            return False
        with open(path, "rb") as f:
            return gif_frames_beyond_one(f)
    except (OSError, ValueError):
        return False


class _Taken:
    """A stream read (and seeked forward) through, keeping what was read, up to ``limit`` bytes."""

    def __init__(self, head: bytes, rest, limit: int | None):
        self.parts, self.rest, self.limit, self.n = [head], rest, limit, len(head)
        self.head = io.BytesIO(head)

    def read(self, n: int) -> bytes:
        got = self.head.read(n)
        if len(got) < n and self.rest is not None and (self.limit is None or self.n < self.limit):
            more = self.rest.read(n - len(got))
            self.parts.append(more)
            self.n += len(more)
            got += more
        return got

    def seek(self, n: int, whence: int) -> None:
        self.read(n)


def read_gif_head(head: bytes, rest, limit: int | None) -> tuple[bytes, bool]:
    """A GIF on stdin: as much of it as shows whether it has a second frame (at most ``limit``
    bytes past which it is no image anyway), and whether it has one."""
    taken = _Taken(head, rest, limit)
    animated = gif_frames_beyond_one(taken)
    return b"".join(taken.parts), animated


def container_cut(spec: str, frames: int) -> str | None:
    """Why a video file whose reader takes no length from a header ended after ``frames`` frames
    where its container shows a cut, or None: a GIF whose data stops inside a block, an MPEG
    program stream inside a packet (its reader's length is the data left), an ASF (WMV) file before
    the end its Data Object announces (its reader announces none once cut). None for any other
    file, a stream, or one it cannot read (not called cut)."""
    if is_stream_spec(spec) or not os.path.isfile(spec):
        return None
    where = None
    try:
        with open(spec, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(SNIFF_BYTES)
            kind = sniff_video(head)
            f.seek(0)
            if head[:6] in (b"GIF87a", b"GIF89a") and not gif_blocks(f)[1]:
                where = "GIF", "before its last block (its trailer)"
            elif kind == ".mpg" and mpeg_ps_cut(f, size):
                where = "MPEG program stream", "inside a packet"
            elif kind == ".wmv" and (end := asf_cut(f, size)) is not None:
                where = "ASF (WMV) file", f"at byte {size} of the {end} its data announces"
    except OSError:
        return None
    if where is None:
        return None
    return (f"the {where[0]} ended after {plural(frames, 'frame')} {where[1]}: truncated or damaged (the frames "
            "before were read)")


PIPE_HEAD_BYTES = 64 * 1024  # stdin's first bytes, enough to tell a video from an image


def sniff_head(stream, max_image_bytes: int | None) -> tuple[bytes, str | None]:
    """A stream's first bytes (stdin's, an http(s) answer's body), as many as tell an image from a
    video (an animated GIF's up to its second frame, within ``max_image_bytes``), and the suffix of the
    video they begin (a container :func:`shared.containers.sniff_video` knows, ``.gif`` for an
    animated GIF), or None: no video it knows."""
    head = stream.read(PIPE_HEAD_BYTES)
    suffix = sniff_video(head)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        head, animated = read_gif_head(head, stream, max_image_bytes)
        suffix = ".gif" if animated else None
    elif head[:2] == b"\xff\xd8":
        head, motion = read_jpeg_head(head, stream, max_image_bytes)
        suffix = ".mjpeg" if motion else None
    return head, suffix


def read_jpeg_head(head: bytes, rest, limit: int | None) -> tuple[bytes, bool]:
    """A JPEG on stdin: as much of it as shows whether another JPEG follows it (Motion-JPEG,
    ``rpicam-vid --codec mjpeg -o -``: :func:`shared.formats.jpeg_stream`), read in doubling chunks up to
    ``limit`` bytes (past which it is no image anyway), and whether one does."""
    data = head
    while True:
        motion = jpeg_stream(data, complete=False)
        if motion is not None:
            return data, motion
        more = rest.read(max(len(data), PIPE_HEAD_BYTES)) if limit is None or len(data) <= limit else b""
        if not more:
            return data, bool(jpeg_stream(data))
        data += more


def read_capped(stream, limit: int | None, head: bytes = b"") -> bytes:
    """``head`` and the rest of ``stream``, at most ``limit`` bytes in all (None: no limit);
    BadInputError ``too_large`` beyond it (``/dev/zero`` or an endless pipe once read until memory ran out)."""
    data = head + (stream.read() if limit is None else stream.read(max(0, limit + 1 - len(head))))
    if limit is not None and len(data) > limit:
        raise BadInputError("too_large", f"more than {limit} bytes: over the limit for one image")
    return data


def image_items(source: str, data: bytes, max_pixels: int | None = None) -> Iterator[FrameItem]:
    """The frames of an image file's (or stdin's) bytes: the image as its bytes, or each page of a
    multi-page TIFF decoded (:func:`decode_image`, within ``max_pixels``, each judged by its own size)
    as frames 0, 1, ... of ``source``, still images without a time, each with its ``page`` (1-based;
    analyze and the track stage make each a run of its own); a page that fails is its frame's error,
    pages past :data:`MAX_TIFF_PAGES` one ``too_large`` error after them, and a file that ends before
    its next page's directory (cut short) one ``truncated`` error after its pages."""
    chain = _tiff_pages(data)
    if chain is None:
        yield FrameItem(source, 0, data=data, page=1)
        return
    n = len(chain.pages)
    for k in range(n):
        try:
            pixels = decode_image(data, max_pixels or MAX_PIXELS_CEILING, page=k)
            item = FrameItem(source, k, image=pixels, page=k + 1)
        except BadInputError as exc:
            item = FrameItem(source, k, error=exc, page=k + 1)
        yield item
    if chain.more:
        yield FrameItem(source, n, error=BadInputError(
            "too_large", f"a TIFF of more than {MAX_TIFF_PAGES} pages: its first {MAX_TIFF_PAGES} were read"))
    elif chain.cut:
        yield FrameItem(source, n, error=BadInputError(
            "truncated", f"the TIFF ends before page {n + 1}'s directory, which its page {n} names: truncated "
                         f"or damaged (the pages before were read)"))


def _tiff_pages(data) -> TiffChain | None:
    """A multi-page TIFF's chain of pages (read as frames), or None: one image."""
    chain = tiff_directories(data) if sniff_format(data) == "tiff" else None
    if chain is None or (len(chain.pages) < 2 and not chain.more and not chain.cut):
        return None
    return chain


def image_records(path: str, every_n: int = 1, fps: float | None = None, max_frames: int | None = None) -> int:
    """About how many records :func:`stills_or_animation` gives for the image file at ``path``: a
    page each of a multi-page TIFF (and one error past its last); an animated WebP's, PNG's or AVIF's
    frames sampled by ``every_n`` / ``max_frames`` (with ``fps`` every frame: its delays are not
    read), past :data:`MAX_ANIMATION_FRAMES` one record more; else 1. Its directories or chunks are
    read through a map of the file, not the file itself (a progress bar's count)."""
    import mmap

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] not in (b"II*\0", b"MM\0*", b"RIFF", b"\x89PNG") and head[4:12] != b"ftypavis":
                return 1
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                chain, animation = _tiff_pages(data), animation_frames(data)
    except (OSError, ValueError):  # unreadable, empty: one error record
        return 1
    if animation is not None and hasattr(cv2, "imdecodeanimation"):
        frames = min(animation.frames, MAX_ANIMATION_FRAMES + 1)  # the frames read, then a too_large record
        n = frames if fps else math.ceil(frames / every_n)
        return min(n, max_frames) if max_frames else n
    return 1 if chain is None else len(chain.pages) + (chain.more or chain.cut)


def is_pipe(spec: str) -> bool:
    """A named pipe (a FIFO): what bash's process substitution names ``/dev/fd/63``, or ``mkfifo`` makes.
    It has no name to tell a video by and can be read once: it is read as stdin is (:func:`piped_items`)."""
    try:
        return stat.S_ISFIFO(os.stat(spec).st_mode)
    except (OSError, ValueError):
        return False


_STDIN_READERS: set[threading.Thread] = set()  # threads reading standard input (see stdin_in_use)


@contextmanager
def reading_stdin(stream):
    """This thread reads ``stream``, standard input where it is sys.stdin's (for :func:`stdin_in_use`)."""
    if stream is None or stream is not getattr(sys.stdin, "buffer", None):
        yield
        return
    me = threading.current_thread()
    _STDIN_READERS.add(me)
    try:
        yield
    finally:
        _STDIN_READERS.discard(me)


def stdin_in_use() -> bool:
    """Whether a thread other than this one reads standard input (it may wait for bytes that never come: a
    camera piped in that has sent nothing). The interpreter's shutdown then waits for that read's lock and
    aborts ("Fatal Python error: _enter_buffered_busy", exit 134 and a core file): the command line ends
    past it (:func:`moodstream.cli.main`)."""
    me = threading.current_thread()
    return any(t is not me and t.is_alive() for t in list(_STDIN_READERS))


class PipeWaitStopped(Exception):
    """Raised by a command's stop handler into a wait for a pipe (:func:`waiting_on_pipe`); that input ends."""


_PIPE_WAIT = threading.local()


@contextmanager
def waiting_on_pipe():
    """A wait, in C, for a pipe's writer or its bytes (`mkfifo p; produce p`; `sleep 1000 | produce -`): an
    ``open`` or ``read`` that a signal does not end where the handler raises nothing (Python retries it, PEP
    475), so a first Ctrl-C that only sets a stop flag was not heard. A handler that finds this thread here
    (:func:`in_pipe_wait`) raises :class:`PipeWaitStopped`, which ends the pipe's input: what it read so far
    was no frame yet."""
    try:
        _PIPE_WAIT.on = True
        yield
    finally:
        _PIPE_WAIT.on = False


def in_pipe_wait() -> bool:
    """Whether this thread (a signal handler's: the main thread) is in :func:`waiting_on_pipe`."""
    return getattr(_PIPE_WAIT, "on", False)


def piped_items(name: str, stream, every_n: int = 1, fps: float | None = None, max_frames: int | None = None,
                max_pixels: int | None = None, max_image_bytes: int | None = None) -> Iterator[FrameItem]:
    """The frames of what a pipe holds (stdin, named ``-``, or a named pipe, by its path), read once: its
    first bytes tell a video from an image or an animation (read whole, within ``max_image_bytes``). A video
    FFmpeg reads front to back (:data:`STREAMED_SUFFIXES`: a camera piped in) is read as it comes
    (:func:`iter_streamed_video`), any other copied to a temporary file first (:func:`iter_piped_video`)."""
    with reading_stdin(stream):
        yield from _piped_items(name, stream, every_n, fps, max_frames, max_pixels, max_image_bytes)


def _piped_items(name: str, stream, every_n: int, fps: float | None, max_frames: int | None,
                 max_pixels: int | None, max_image_bytes: int | None) -> Iterator[FrameItem]:
    try:
        with waiting_on_pipe():
            head, suffix = sniff_head(stream, max_image_bytes)
    except PipeWaitStopped:
        return
    if suffix is None:
        try:
            with waiting_on_pipe():
                data = read_capped(stream, max_image_bytes, head)
        except PipeWaitStopped:
            return
        except BadInputError as exc:
            yield FrameItem(name, 0, error=exc)
        else:
            yield from stills_or_animation(name, data, every_n, fps, max_frames, max_pixels)
    elif suffix in STREAMED_SUFFIXES:
        yield from iter_streamed_video(head, suffix, every_n, fps, max_frames, stream, max_pixels, name=name)
    else:
        yield from iter_piped_video(head, suffix, every_n, fps, max_frames, stream, max_pixels, name=name)


def iter_frames(paths: list[str], every_n: int = 1, fps: float | None = None,
                max_frames: int | None = None, stdin: object = None, max_pixels: int | None = None,
                max_image_bytes: int | None = None) -> Iterator[FrameItem]:
    """Every frame of every input, in order (an image's: :func:`image_items`, each page of a
    multi-page TIFF); an input that fails yields one FrameItem with ``error`` set and iteration
    goes on. ``max_pixels``: a video whose frames are larger fails before one is decoded, a TIFF's
    page is judged by it; ``max_image_bytes``: an image (file or stdin) is read no further."""
    for spec in expand_paths(paths):
        if not spec:
            yield FrameItem(spec, 0, error=BadInputError("not_found", "an empty path names no file"))
        elif spec == "-":
            yield from piped_items("-", stdin if stdin is not None else sys.stdin.buffer, every_n, fps, max_frames,
                                   max_pixels, max_image_bytes)
        elif is_pipe(spec):  # process substitution's /dev/fd/63, a mkfifo: read once, as stdin is
            try:
                with waiting_on_pipe():  # (until a writer opens it)
                    stream = open(spec, "rb")
            except PipeWaitStopped:
                continue
            except OSError as exc:
                yield FrameItem(spec, 0, error=BadInputError("unreadable", exc.strerror or str(exc)))
                continue
            with stream:
                yield from piped_items(spec, stream, every_n, fps, max_frames, max_pixels, max_image_bytes)
        elif os.path.isdir(spec):  # one expand_paths could not list
            yield FrameItem(spec, 0, error=unreadable_folder(spec))
        elif (nowhere := link_nowhere(spec)) is not None:  # (b.mp4 -> a file gone: no video to open)
            yield FrameItem(spec, 0, error=nowhere)
        elif (still := url_image_items(spec, max_image_bytes, max_pixels, every_n=every_n, fps=fps,
                                       max_frames=max_frames)) is not None:  # a photo by URL
            yield from still
        elif is_video(spec):
            yield from iter_video(spec, every_n, fps, max_frames, max_pixels)
        elif not Path(spec).exists():
            yield FrameItem(spec, 0, error=BadInputError("not_found", f"{spec} does not exist"))
        else:
            try:
                with open(spec, "rb") as f:
                    data = read_capped(f, max_image_bytes)
            except OSError as exc:
                yield FrameItem(spec, 0, error=BadInputError("unreadable", exc.strerror or str(exc)))
            except BadInputError as exc:
                yield FrameItem(spec, 0, error=exc)
            else:
                yield from stills_or_animation(spec, data, every_n, fps, max_frames, max_pixels)


def stills_or_animation(name: str, data: bytes, every_n: int = 1, fps: float | None = None,
                        max_frames: int | None = None, max_pixels: int | None = None) -> Iterator[FrameItem]:
    """An image file's (or stdin's) frames: an animated WebP's, PNG's or AVIF's as a video's
    (:func:`iter_animation`), any other image's as :func:`image_items` gives them."""
    header = animation_frames(data)
    if header is not None and not hasattr(cv2, "imdecodeanimation"):  # OpenCV before 4.11: no animation reader
        log.warning("%s: an animation of %d frames, and this OpenCV (%s) reads only its first: upgrade "
                    "opencv-python-headless to 4.11 or later for the rest", printable(name), header.frames,
                    cv2.__version__)
        header = None
    if header is None:
        yield from image_items(name, data, max_pixels)
    else:
        yield from iter_animation(name, data, header, every_n, fps, max_frames, max_pixels)


# a URL whose path ends so is read as a video, not asked first whether it is a photo
STREAM_URL_EXTS = VIDEO_EXTS | {".mjpg", ".mjpeg", ".m3u8", ".mpd"}
# an answer of these types is a video or a stream: its body is not read to tell
STREAM_TYPES = ("video/", "multipart/", "application/vnd.apple.mpegurl", "application/x-mpegurl",
                "application/dash+xml")
URL_WAIT_S = 10.0  # a photo's URL: each read within this (FFmpeg's open timeout for a live source) ...
URL_IMAGE_S = 60.0  # ... and its whole answer within this
MAX_URL_REDIRECTS = 5


def url_image_items(spec: str, max_image_bytes: int | None = None, max_pixels: int | None = None,
                    proxy: str | None = None, stopping: Callable[[], bool] | None = None, every_n: int = 1,
                    fps: float | None = None, max_frames: int | None = None) -> Iterator[FrameItem] | None:
    """The frames of an http(s) URL that serves a still image, as :func:`image_items` gives a file's
    (page 1 and no time; a multi-page TIFF's pages; an animated WebP's, PNG's or AVIF's frames as a video's,
    sampled by ``every_n``, ``fps`` and ``max_frames``), named by :func:`source_name`; None for any other
    spec or answer (a video, a live stream, an error status): FFmpeg reads it as a video, as before,
    and says why where it cannot; but an error status (4xx, 5xx) for a URL whose path ends as a
    photo's (:data:`IMAGE_EXTS`) is that photo's error (``not_found`` for 404 and 410), not a
    video's. (FFmpeg read a photo as a one-frame video: time 0.0, shot 0, its faces "seen in one
    frame only".)

    One GET (:func:`shared.capture.http_get`: bounded in time) tells, unless the URL's path ends as a
    video's or a stream's (:data:`STREAM_URL_EXTS`): an answer whose type is a video's or a stream's
    (:data:`STREAM_TYPES`) is left unread; else its first bytes tell, as stdin's do
    (:func:`sniff_head`), and only an image's body is read on, within ``max_image_bytes`` (of a video,
    64 KiB are read before FFmpeg opens it). Up to :data:`MAX_URL_REDIRECTS` redirects to http(s) URLs
    are followed, each its own GET, through ``proxy`` where given (which checks each). The GET runs on
    a thread of its own: Ctrl-C comes at once, and so does ``stopping()`` (then: no frame)."""
    import http.client
    from urllib.parse import urljoin, urlsplit

    from moodstream.shared.capture import Reader, http_get, never, until

    parts = urlsplit(spec)
    if not is_stream_spec(spec) or parts.scheme.lower() not in ("http", "https"):
        return None
    name, url = source_name(spec), spec
    image = [False]  # whether the answer's first bytes were an image's

    def still(answer) -> bytes | None:  # an image's bytes, or None: no image
        if (answer.getheader("Content-Type") or "").lower().startswith(STREAM_TYPES):
            return None
        head, suffix = sniff_head(answer, max_image_bytes)
        if suffix is not None or sniff_format(head) is None:
            return None
        image[0] = True
        data = read_capped(answer, max_image_bytes, head)
        if answer.length:  # fewer bytes than its Content-Length: the connection closed early
            raise http.client.IncompleteRead(data, answer.length)
        return data

    reader = Reader(f"ask {name}"[:60])
    try:
        for _ in range(MAX_URL_REDIRECTS + 1):
            if parts.scheme.lower() not in ("http", "https") or Path(parts.path).suffix.lower() in STREAM_URL_EXTS:
                return None
            image[0] = False
            asking = reader.submit(lambda u=url: http_get(u, URL_WAIT_S, body=still, total_s=URL_IMAGE_S,
                                                          proxy=proxy))
            if not until(asking, stopping or never):
                return iter(())
            try:
                got = asking.result()
            except BadInputError as exc:  # over max_image_bytes
                return iter([FrameItem(name, 0, error=exc, page=1)])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if not image[0]:  # not known to be an image: FFmpeg opens it and says why it cannot
                    return None
                why = "the connection closed early" if isinstance(exc, http.client.IncompleteRead) else \
                    str(exc) or type(exc).__name__
                return iter([FrameItem(name, 0, page=1, error=BadInputError(
                    "truncated", f"the image was not downloaded whole ({why[:200]}): try again"))])
            if got is None:  # no host
                return None
            answer, data = got
            location = answer.getheader("Location")
            if answer.status >= 400 and Path(parts.path).suffix.lower() in IMAGE_EXTS:  # a photo that is not there
                status = f"HTTP {answer.status} {answer.reason}".strip()
                reason = "not_found" if answer.status in (404, 410) else "unreadable"
                return iter([FrameItem(name, 0, page=1, error=BadInputError(reason, f"cannot open photo {name} "
                                                                                     f"({status})"))])
            if not (300 <= answer.status < 400 and location):
                return stills_or_animation(name, data, every_n, fps, max_frames, max_pixels) if data else None
            url = urljoin(url, location)
            parts = urlsplit(url)
        return None
    finally:
        reader.close()


def iter_piped_video(data: bytes, suffix: str, every_n: int = 1, fps: float | None = None,
                     max_frames: int | None = None, rest: object = None,
                     max_pixels: int | None = None, name: str = "-") -> Iterator[FrameItem]:
    """A video read from stdin (or a named pipe), as :func:`iter_video` gives a file's frames, named ``name``:
    OpenCV opens files, not bytes, so it goes through a temporary file, of at most
    ``MAX_PIPED_VIDEO_BYTES`` and leaving ``MIN_FREE_BYTES`` on its disk (an endless pipe filled
    the disk): past that, one ``too_large`` error."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="moodstream-stdin-", suffix=suffix) as tmp:
        said = "stdin" if name == "-" else name
        try:
            with waiting_on_pipe():
                spool(data, rest, tmp, said)
        except PipeWaitStopped:
            return
        except BadInputError as exc:
            yield FrameItem(name, 0, error=exc)
            return
        yield from named_as(iter_video(tmp.name, every_n, fps, max_frames, max_pixels), name, tmp.name, said)


def named_as(items: Iterable[FrameItem], name: str, path: str, said: str | None = None) -> Iterator[FrameItem]:
    """``items`` of a video read through ``path`` (a temporary file, a named pipe of our own, a descriptor's
    ``/proc/self/fd/N``) as the input ``name`` gives them: ``name`` their source, ``said`` (``name`` where
    None: "stdin" for ``-``) for ``path`` in their errors."""
    for item in items:
        item.source = name
        if item.error is not None:
            item.error = BadInputError(item.error.reason, item.error.detail.replace(path, said or name))
        yield item


# a pipe's videos FFmpeg reads front to back, never seeking: read as they come (a camera piped in,
# `rpicam-vid -t 0 --codec mjpeg -o -`, its H.264, ffmpeg's MPEG-TS); the others (an mp4's index may come
# at its end) are copied to a temporary file first
STREAMED_SUFFIXES = {".mjpeg", ".mjpg", ".h264", ".hevc", ".ts"}
# FFmpeg's open of a Motion-JPEG pipe looks at 64 KB (its first picture's header), not its default 5 MB or
# 5 s of video: a camera's gave no frame for seconds (and a pipe held open with less in it, never). H.264,
# H.265 and MPEG-TS keep FFmpeg's: their parameters may come later in the stream (a TS joined mid-GOP)
MJPEG_PIPE_PROBE = "probesize;65536|analyzeduration;0"


def iter_streamed_video(data: bytes, suffix: str, every_n: int = 1, fps: float | None = None,
                        max_frames: int | None = None, rest: object = None,
                        max_pixels: int | None = None, name: str = "-") -> Iterator[FrameItem]:
    """A video on stdin (or a named pipe) of a kind FFmpeg reads without seeking (:data:`STREAMED_SUFFIXES`),
    frame by frame as it comes, as :func:`iter_video` gives a file's, named ``name``: FFmpeg reads a named
    pipe of our own that a thread fills from ``data`` and then ``rest`` (nothing goes to disk, and a pipe that
    never ends gives its frames). When its frames are no longer read (``max_frames``, the caller stops, an
    error), FFmpeg's end is closed and the thread let go."""
    import tempfile

    said = "stdin" if name == "-" else name
    with tempfile.TemporaryDirectory(prefix="moodstream-stdin-") as folder:
        fifo = os.path.join(folder, "stdin" + suffix)
        os.mkfifo(fifo, 0o600)
        feeder = PipeFeeder(fifo, data, rest)
        frames = iter_video(fifo, every_n, fps, max_frames, max_pixels,
                            options=MJPEG_PIPE_PROBE if suffix in (".mjpeg", ".mjpg") else None)
        try:
            yield from named_as(frames, name, fifo, said)
        finally:
            frames.close()  # FFmpeg's capture released: its end of the pipe closed
            feeder.close()


class PipeFeeder:
    """A thread copying ``head``, then what ``rest`` gives as it comes (``read1``: a camera's frame is not
    held back waiting for more), into the named pipe ``fifo`` for FFmpeg to read, until ``rest`` ends or
    FFmpeg's end is closed. :meth:`close` lets it go: where FFmpeg never opened the pipe, it is opened and
    closed here, so the thread's open returns and its next write fails. A thread waiting for stdin's next
    bytes ends with them (a daemon: it holds no exit)."""

    def __init__(self, fifo: str, head: bytes, rest):
        self.fifo, self.head, self.rest, self.stopped = fifo, head, rest, False
        self.thread = threading.Thread(target=self._run, name="stdin to FFmpeg", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        read = getattr(self.rest, "read1", None) or getattr(self.rest, "read", None)
        try:
            with reading_stdin(self.rest), open(self.fifo, "wb", buffering=0) as out:  # (waits until FFmpeg opens it)
                chunk = self.head
                while chunk and not self.stopped:
                    out.write(chunk)
                    chunk = read(1 << 16) if read is not None else b""
        except (OSError, ValueError):  # FFmpeg hung up (a broken pipe), or stdin was closed under us
            pass

    def close(self) -> None:
        self.stopped = True
        try:  # a reader that opens and goes: an open still waiting returns, a write then fails
            os.close(os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        self.thread.join(timeout=1.0)


MAX_PIPED_VIDEO_BYTES = 64 << 30  # a video on stdin is copied to a temporary file up to this size ...
MIN_FREE_BYTES = 1 << 30  # ... and while its disk keeps this much free


def spool(head: bytes, rest, tmp, name: str = "stdin") -> None:
    """``head`` and the rest of a pipe (``name``: stdin, or a named pipe's path) into the file ``tmp``, in
    chunks (never all of it in memory); BadInputError ``too_large`` past the limits above, or when the disk
    refuses."""
    written = 0
    chunk = head
    try:
        while chunk:
            tmp.write(chunk)
            written += len(chunk)
            if written > MAX_PIPED_VIDEO_BYTES:
                raise BadInputError("too_large", f"{name}: over {MAX_PIPED_VIDEO_BYTES >> 20} MiB of video, copied to "
                                                 "a temporary file first: pass the file itself, or the stream's URL")
            free = shutil.disk_usage(os.path.dirname(tmp.name)).free
            if free < MIN_FREE_BYTES:
                raise BadInputError("too_large", f"{name}: {written >> 20} MiB of video copied and {free >> 20} MiB "
                                                 f"free left in {os.path.dirname(tmp.name)} (TMPDIR): pass the file "
                                                 "itself, or the stream's URL")
            chunk = rest.read(1 << 20) if rest is not None else b""
        tmp.flush()
    except OSError as exc:  # the disk filled anyway (another writer), or the pipe broke
        raise BadInputError("unreadable", f"{name}: could not copy the video to a temporary file after "
                                          f"{written >> 20} MiB: {exc.strerror or exc}") from None


OPENCV_OPEN_TIMEOUT_S = 30.0  # OpenCV's own open timeout for FFmpeg (LIBAVFORMAT_INTERRUPT_OPEN_DEFAULT_TIMEOUT_MS)
MIN_TIMED_FPS = 0.05  # a file's own frame times are taken down to this nominal rate
MAX_DAMAGED_FRAMES = 10_000  # a file's undecodable frames in a row read past (at its end too: 0.2 s of failed reads)
MAX_FINITE_FRAMES = 1e9  # FFmpeg's frame count of a live stream is 0, negative or absurd


def plausible_fps(native: float | None) -> float:
    """A video's frame rate as its header gives it, or 30 where that is no rate a video has
    (0, NaN, 0.001 or 1e9 frames/s: its frames were 1000 s apart, its annotated copy unwritable)."""
    return native if native is not None and 1.0 <= native <= 1000.0 else 30.0


class FrameTimes:
    """A video's frame times, one frame after the other, as ``analyze`` gives a file's: its frames' own
    (a phone's variable frame rate) where ``timed`` and its reader gives them, else index / its rate
    (:func:`plausible_fps`); a frame whose time does not increase (a muxer's glitch) is put 1 / rate
    after the one before, the frames after it keep theirs. What :func:`iter_video` and a finite source
    over a URL (:class:`producer.live.LiveSource`) time frames by."""

    def __init__(self, reported_fps: float, timed: bool):
        self.rate = plausible_fps(reported_fps)
        # a rate down to a frame every 20 s is a slide show's; NaN, 0.001 or 1e9 frames/s: no times worth having
        self.timed = timed and MIN_TIMED_FPS <= reported_fps <= 1000
        self.index, self.t = 0, -1.0

    def next(self, cap: cv2.VideoCapture) -> float:
        """The time of the frame ``cap`` has just read (asked between reads, never during one)."""
        if self.timed:
            pos = (cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000
            self.timed = math.isfinite(pos) and pos >= 0  # a reader that gives none worth having: never again
        if self.timed:
            self.t = pos if self.index == 0 or pos > self.t else self.t + 1 / self.rate
        else:
            self.t = max(self.index / self.rate, self.t + 1 / self.rate)
        self.index += 1
        return self.t

    def skip(self, frames: int) -> None:
        """``frames`` frames read that gave no picture (damaged): the untimed frames after them keep their index's time."""
        self.index += frames


class Stamps:
    """Frame times as given (seconds, rounded to 0.1 ms), each later than the one before: frames timed
    by the clock (a live stream's, a camera's) that are read together (Motion-JPEG parts in one TCP
    segment) rounded to one time, and one source's frames at one time break its single timeline for
    tracks and smoothing downstream; such a frame is put 0.1 ms after the one before."""

    def __init__(self):
        self.last: float | None = None

    def __call__(self, t: float) -> float:
        stamp = round(t, 4)
        if self.last is not None and stamp <= self.last:
            stamp = round(self.last + 1e-4, 4)
        self.last = stamp
        return stamp


def is_finite_stream(announced: float) -> bool:
    """Whether a URL's capture announcing ``announced`` frames is a file over the network (an mp4 or an
    HLS VOD: read once, timed by its own times); a live stream's count is 0, negative or absurd."""
    return 0 < announced < MAX_FINITE_FRAMES


class RateCap:
    """Keeps about ``fps`` frames a second of video time: a frame is kept when its time reaches the
    next slot, and the slot after is 1 / fps later; after a gap of a step or more in the frames' times,
    1 / fps after the frame kept (no burst, and no second frame right after it).
    What ``--fps`` keeps of a file, and of a file over a URL (:class:`producer.live.LiveSource`)."""

    def __init__(self, fps: float):
        self.step_s, self.next_s = 1.0 / fps, 0.0

    def keep(self, t: float) -> bool:
        if t + 1e-9 < self.next_s:
            return False
        self.next_s += self.step_s
        if t + 1e-9 >= self.next_s:  # a gap: the grid starts again at this frame
            self.next_s = t + self.step_s
        return True


def opencv_can_name(path: str) -> bool:
    """False for a path holding a lone surrogate (how Python spells a file name's bytes that are
    not UTF-8): OpenCV's Python binding crashes the process (segfault) on one."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # FFmpeg's open options, read by OpenCV at each open


@contextlib.contextmanager
def capture_options(options: str | None) -> Iterator[None]:
    """FFmpeg's open options (``key;value|key;value``, OpenCV's form) for the captures opened inside,
    after any the user set; as they were after."""
    if not options:
        yield
        return
    before = os.environ.get(CAPTURE_OPTIONS)
    os.environ[CAPTURE_OPTIONS] = f"{before}|{options}" if before else options
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CAPTURE_OPTIONS, None)
        else:
            os.environ[CAPTURE_OPTIONS] = before


def open_capture(spec: str, options: str | None = None) -> cv2.VideoCapture:
    if not opencv_can_name(spec):
        raise BadInputError("unsupported", "the file name is not valid UTF-8, which OpenCV cannot open: rename it")
    if not is_stream_spec(spec) and os.path.isfile(spec) and os.path.getsize(spec) == 0:
        raise BadInputError("empty", "zero bytes")  # a copy cut before its first byte: said as a photo's is
    # a named pipe (stdin's, iter_streamed_video) is FFmpeg's alone: where FFmpeg gave up, OpenCV's other
    # readers opened it again after its writer had gone, an open that waits forever
    api = cv2.CAP_FFMPEG if is_pipe(spec) else cv2.CAP_ANY
    with capture_options(options):
        # a file by its absolute path: FFmpeg reads a relative name's "cam:" (cam:1.mp4) as a protocol
        target = int(spec) if is_camera_index(spec) else spec if is_stream_spec(spec) else os.path.abspath(spec)
        cap = cv2.VideoCapture(target, api)
    if not cap.isOpened():
        reason = "not_found" if not is_stream_spec(spec) and not Path(spec).exists() else "unreadable"
        if reason == "unreadable" and not is_stream_spec(spec) and os.path.isfile(spec) and mp4_missing_index(spec):
            raise BadInputError("truncated", f"cannot open video {source_name(spec)}: its index (the moov box, "
                                             "which is written last) is missing or cut, as when a recording stops "
                                             "before it is finished (a crash, a full disk, a card pulled out); no "
                                             "frame can be read without it (a repair tool such as untrunc rebuilds "
                                             "it from a whole recording of the same camera)")
        if is_camera_index(spec):  # a camera, not a file: say so, and where Linux has no node for it, that
            missing = camera_missing(spec)
            raise BadInputError(reason, f"cannot open camera {int(spec)}" + (f" ({missing})" if missing else ""))
        raise BadInputError(reason, f"cannot open video {source_name(spec)}")
    return cap


def iter_video(spec: str, every_n: int = 1, fps: float | None = None,
               max_frames: int | None = None, max_pixels: int | None = None,
               options: str | None = None) -> Iterator[FrameItem]:
    """Sampled frames of a video file, camera or stream: every ``every_n``-th
    frame, or about ``fps`` frames per second of video time. A video whose frames are over
    ``max_pixels`` (by its header) fails before one is decoded. ``options``: FFmpeg's for its open
    (:func:`capture_options`)."""
    from moodstream.shared.capture import FrameReader, Reader, Reads, open_on, why_no_frames, why_unopened

    name = source_name(spec)
    # a camera's or a stream's open and reads on a thread of their own (shared.capture): Ctrl-C comes at
    # once, not after FFmpeg's 30 s timeout, and a stall holds no frame back
    reader = Reader(f"read {name}"[:60]) if is_stream_spec(spec) else None
    cap, error, began = None, None, time.monotonic()
    try:
        cap = open_capture(spec, options) if reader is None else open_on(reader, lambda: open_capture(spec, options))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if max_pixels is not None and w * h > max_pixels:
            cap.release()
            cap, error = None, over_pixel_limit(w, h, max_pixels, what=" a frame")
    except BadInputError as exc:
        error = exc
        if reader is not None and exc.reason == "unreadable":  # a URL: why, as far as can be told
            why = why_unopened(spec, name, OPENCV_OPEN_TIMEOUT_S, time.monotonic() - began)
            error = BadInputError(exc.reason, f"{exc.detail} ({why})") if why else exc
    finally:
        if cap is None and reader is not None:  # (also on Ctrl-C during the open)
            reader.close()
    if cap is None:
        yield FrameItem(name, 0, error=error)
        return
    reported_fps = cap.get(cv2.CAP_PROP_FPS)
    native_fps = plausible_fps(reported_fps)
    announced = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    # a file's frames carry their times (a phone's variable frame rate), also over a URL (it announces
    # its length); a camera's or a live stream's reader gives none worth having (0, or its clock): there,
    # in a file whose reader gives a time that is no time (NaN, negative) and in one whose header gives
    # no rate a video has, a frame's time is its index over the nominal rate (FrameTimes)
    # (a regular file with or without a length: a browser's MediaRecorder WebM announces none;
    # not a device such as /dev/video0, whose reader's times are its clock)
    finite_stream = is_stream_spec(spec) and is_finite_stream(announced)
    times = FrameTimes(reported_fps, timed=finite_stream or (not is_stream_spec(spec) and (
        announced > 0 or os.path.isfile(spec))))
    emitted, index, t = 0, 0, -1.0
    cap_rate = RateCap(fps) if fps else None
    rate = min(fps, native_fps) if fps else native_fps / max(1, every_n)  # from this reader: stdin and URLs too
    # every decoded frame is counted into shots; a kept frame is held until the next one is decoded,
    # which decides its shot (a flash is no cut): one frame of latency
    shots, held = ShotCounter(), None
    frames_of = FrameReader(cap, spec, name, lambda data: decode_stored(data, max_pixels or MAX_PIXELS_CEILING))
    reads = None if reader is None else Reads(reader, cap, frames_of.read, name)
    # a live stream's frames are timed by the clock (its reader gives no time, FFmpeg calls every MJPEG
    # stream 25 fps); a file over a URL, which announces its length, by its own times, as the file's
    clock_from = None if reads is None or finite_stream else time.monotonic()
    stamp = Stamps()
    try:
        while max_frames is None or emitted < max_frames or held is not None:
            lost = 0
            if reads is None:
                ok, bgr = frames_of.read()
                # a file's frame FFmpeg cannot decode (damaged bytes) fails its read, and the reads after it
                # go on: read on while its header announces more, the frames failed counted and said
                while not ok and index + lost + 1 < announced and lost < MAX_DAMAGED_FRAMES:
                    lost += 1
                    ok, bgr = frames_of.read()
                lost = lost if ok else 0
            else:
                reads.start()
                if held is not None and reads.stalled():  # a stall: it goes alone
                    held.shot = shots.last()
                    yield held
                    held = None
                reads.wait()
                ok, bgr = reads.result()
            if held is not None:
                held.shot = shots.see(bgr) if ok else shots.last()
                yield held
                held = None
            elif ok:
                shots.see(bgr)
            if lost:
                if max_frames is None or emitted < max_frames:
                    yield FrameItem(name, index, error=BadInputError("unreadable", damaged(index, lost, t)))
                index += lost
                times.skip(lost)
            if not ok:
                if index == 0:  # a URL: why, where it can be told (an mp4's index at its end, no byte ranges)
                    why = why_no_frames(spec) if is_stream_spec(spec) else ""
                    yield FrameItem(name, 0, error=BadInputError("unreadable", "no decodable video frames"
                                                                 + (f" ({why})" if why else "")))
                else:
                    short = cut_short(index, t, announced, native_fps)
                    if short and not is_stream_spec(spec) and container_whole(spec, index):
                        short = None  # its length is the container's (all tracks), or counts dropped frames
                    if not short:  # a GIF, an MPEG-PS, a cut WMV announce no length
                        short = container_cut(spec, index)
                    if short:
                        yield FrameItem(name, index, error=BadInputError("truncated", short))
                break
            if clock_from is not None:
                clock_from = clock_from if index else time.monotonic()
                t = time.monotonic() - clock_from
            else:  # (no read in flight: the next starts at the loop's top)
                t = times.next(cap)
            if (max_frames is None or emitted < max_frames) and \
                    (cap_rate.keep(t) if cap_rate else index % max(1, every_n) == 0):
                held = FrameItem(name, index, stamp(t), image=to_rgb8(bgr), rate=rate)
                emitted += 1
            index += 1
    except KeyboardInterrupt:  # Ctrl-C: the frame held for its shot was read, so it is given first
        if held is not None:
            held.shot = shots.last()
            yield held
        raise
    finally:
        frames_of.close()
        if reads is None:
            cap.release()
        else:  # after the read in flight, if one is: never inside it
            reads.release()
            reader.close()


ANIMATION_DECODE_BYTES = 256 << 20  # an animation's frames decoded at once, at most (its canvas, 4 bytes a pixel)
# an animation's frames read at most: each run of frames is decoded from the first frame on, so a long
# one costs about frames^2 / (2 x run) decodes (1,000 at 1920x1080, runs of 32: 16,000, minutes)
MAX_ANIMATION_FRAMES = 1000
DEFAULT_DELAY_MS = 100  # a frame's delay of 0 (or none): as browsers show it


def iter_animation(name: str, data: bytes, header: Animation, every_n: int = 1, fps: float | None = None,
                   max_frames: int | None = None, max_pixels: int | None = None) -> Iterator[FrameItem]:
    """An animated WebP's, PNG's or AVIF's frames (``header``: :func:`shared.formats.animation_frames`), read
    as a video's are (:func:`iter_video`): every ``every_n``-th, or about ``fps`` a second of its time,
    each timed by the delays before it, its shot decided by the frame after it; a canvas over
    ``max_pixels`` fails before a frame is decoded. OpenCV decodes them in runs from the first frame
    (``imdecodeanimation``: a frame draws over the one before), as many at once as
    :data:`ANIMATION_DECODE_BYTES` hold; an animation that ends before the frames its header counts
    gives its frames, then one ``truncated`` record; one of over :data:`MAX_ANIMATION_FRAMES` frames its
    first that many, then one ``too_large`` record."""
    w, h = header.width, header.height
    if max_pixels is not None and w * h > max_pixels:
        yield FrameItem(name, 0, error=over_pixel_limit(w, h, max_pixels, what=" a frame"))
        return
    buf = np.frombuffer(data, np.uint8).reshape(1, -1)  # OpenCV's WebP reader takes one row
    run = max(1, min(header.frames, ANIMATION_DECODE_BYTES // max(1, 4 * w * h)))
    cap_rate = RateCap(fps) if fps else None
    shots, held, emitted, index, t = ShotCounter(), None, 0, 0, 0.0
    rate = None
    length = min(header.frames, MAX_ANIMATION_FRAMES)
    while index < length and (max_frames is None or emitted < max_frames or held is not None):
        ok, anim = cv2.imdecodeanimation(buf, index, min(run, length - index))
        if not ok or not anim.frames:
            if held is not None:
                held.shot = shots.last()
                yield held
                held = None
            yield FrameItem(name, index, error=BadInputError("unreadable", "no decodable frames") if index == 0 else
                            BadInputError("truncated", f"the animation ended after {plural(index, 'frame')} of the "
                                                       f"{header.frames} its header counts: cut short or damaged "
                                                       "(the frames before were read)"))
            return
        delays = [int(d) if d > 0 else DEFAULT_DELAY_MS for d in anim.durations]
        if rate is None:  # its frames' rate over the delays of this first run (what an annotated copy plays at)
            native = plausible_fps(1000 * len(delays) / sum(delays))
            rate = min(fps, native) if fps else native / max(1, every_n)
        for frame, delay in zip(anim.frames, delays):
            bgr = frame[:, :, :3] if frame.ndim == 3 and frame.shape[2] == 4 else frame
            if held is not None:
                held.shot = shots.see(bgr)
                yield held
                held = None
            else:
                shots.see(bgr)
            if (max_frames is None or emitted < max_frames) and \
                    (cap_rate.keep(t) if cap_rate else index % max(1, every_n) == 0):
                held = FrameItem(name, index, round(t, 4), image=to_rgb8(bgr), rate=rate)
                emitted += 1
            t += delay / 1000
            index += 1
            if max_frames is not None and emitted >= max_frames and held is None:
                return
    if held is not None:
        held.shot = shots.last()
        yield held
    if index < header.frames and (max_frames is None or emitted < max_frames):
        yield FrameItem(name, index, error=BadInputError(
            "too_large", f"an animation of {header.frames} frames: its first {index} were read"))


def damaged(first: int, frames: int, last_s: float) -> str:
    """What a stretch of ``frames`` undecodable frames from frame ``first`` (the one before at ``last_s``) was."""
    after = f" (after {last_s:.2f} s)" if last_s >= 0 else ""
    return (f"{plural(frames, 'frame')} from frame {first}{after} could not be decoded (damaged bytes in the "
            "file): skipped, the frames after them were read")


def cut_short(frames: int, last_s: float, announced: float, fps: float) -> str | None:
    """Why a video that ended after ``frames`` frames (the last at ``last_s``) ended well before
    the ``announced`` frames of its header, or None. Compared in time, the later of frames / fps
    and the last frame's, so that a variable frame rate (fewer frames than duration x fps) or a
    reader without timestamps is not taken for a cut; "well before": more than a second and 5%
    short. A stream announces nothing (0)."""
    if not announced or announced <= 0 or not math.isfinite(announced):
        return None
    expected_s = announced / fps
    got_s = max(frames / fps, last_s + 1 / fps)
    if expected_s - got_s <= max(1.0, 0.05 * expected_s):
        return None
    return (f"the video ended after {plural(frames, 'frame')} ({got_s:.1f} s) of the {expected_s:.1f} s "
            f"({announced:.0f} frames) its header announces: truncated or damaged (the frames before were read)")


_STACK_POOLS: dict[int, ThreadPoolExecutor] = {}


def stack_frames(frames: list[np.ndarray], threads: int, out: np.ndarray | None = None) -> np.ndarray:
    """``np.stack(frames)`` of equal-sized frames (into ``out`` where given), the copies spread
    over ``threads`` threads (numpy lets go of the GIL while it copies: 16 1080p frames took
    13.2 ms on one thread and 7.2 on two, a 2-core Xeon)."""
    if out is None:
        out = np.empty((len(frames), *frames[0].shape), frames[0].dtype)
    for i, frame in enumerate(frames):
        if frame.shape != out.shape[1:]:
            raise ValueError(f"frame {i} is {frame.shape[0]}x{frame.shape[1]}, the batch "
                             f"{out.shape[1]}x{out.shape[2]}: stack frames of one size")
    if threads <= 1 or len(frames) < 2:
        return np.stack(frames, out=out)
    pool = _STACK_POOLS.get(threads)
    if pool is None:
        pool = _STACK_POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="stack")
    for _ in pool.map(np.copyto, out, frames):
        pass
    return out
