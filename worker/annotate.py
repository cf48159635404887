"""Annotated copies of analysed frames: a box per face, coloured by emotion,
with the label and its confidence above it (like the figures in the paper);
a tracked face shows its ``#track_id`` and its smoothed emotion.

Images become annotated images in the output folder; the sampled frames of a
video become one annotated ``.mp4`` (OpenCV's ``mp4v`` codec) that plays in the
video's own time (:class:`TimedClip`: each frame held until the next one's time). :func:`draw_timeline` draws a video's tracks over time (one row
per track: its face picture, the probabilities over time, its episodes) for
``--summary``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import stat
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from moodstream.shared.errors import ConfigError
from moodstream.shared.files import make_folders
from moodstream.shared.labels import LABELS
from moodstream.shared.media import is_camera_index, is_stream_spec
from moodstream.shared.record import Face
from moodstream.shared.table import face_label, plural

log = logging.getLogger(__name__)

# RGB per emotion; neutral is grey so the expressive faces stand out
COLORS: dict[str, tuple[int, int, int]] = {
    "anger": (230, 40, 40),
    "contempt": (160, 80, 200),
    "disgust": (110, 160, 30),
    "fear": (240, 120, 220),
    "happiness": (255, 200, 0),
    "neutrality": (200, 200, 200),
    "sadness": (40, 110, 240),
    "surprise": (0, 220, 220),
}
WRITABLE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# what a summary's face pictures and timelines carry (a JPEG's comment, a PNG's text): the file is
# moodstream's own, a rerun may leave it out of its inputs and write over it (worker/own_outputs.py); a
# user's photo named as one of them does not carry it: it is read, and never written over
OWN_MARK = b"written by moodstream beside its summary"
HEAD_BYTES = 1024  # a picture's mark lies in its first bytes: right after the JPEG's or the PNG's header
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw(image: np.ndarray, faces: list[Face], scale: float = 1.0) -> np.ndarray:
    """A copy of RGB ``image`` with each face's box and label (:func:`face_label`) drawn on it;
    ``scale``: the image's size over the frame's the boxes are in (a scaled-down copy)."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 360))
    max_scale = max(0.35, min(1.2, min(h, w) / 900))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in face.box)
        emotion, text = face_label(face)
        color = COLORS.get(emotion, (255, 255, 255))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        font_scale = min(max_scale, max(0.35, (x2 - x1) / 150))  # small faces, small labels
        (tw, th), base = cv2.getTextSize(text, FONT, font_scale, max(1, thick - 1))
        # label on a filled strip above the box, or inside it at the top of the frame
        ty = y1 - base - 2 if y1 - th - base - 4 >= 0 else y1 + th + 2
        tx = min(max(0, x1), max(0, w - tw - 2))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), color, cv2.FILLED)
        cv2.putText(out, text, (tx + 1, ty), FONT, font_scale, (0, 0, 0), max(1, thick - 1), cv2.LINE_AA)
    return out


NAME_MAX = 255  # bytes of a file name (ext4, xfs, btrfs, tmpfs): past it, File name too long
STEM_BYTES = 120  # a source's part of the names built around it (people-<stem>-t0.jpg, page-<stem>.webm)


def safe_stem(source: str, page: int | None = None, room: int = STEM_BYTES) -> str:
    """A file-name stem for a source: the file's stem, or a sanitised stream spec; a multi-page
    TIFF's ``page`` (1-based) after the first named by its page (``doc-page2``: its own name, so a
    rerun writes the same files, never doc-2's). At most ``room`` bytes (:func:`fit_stem`): a
    246-character download name made ``people-<it>-t0.jpg`` of 260 bytes, not written."""
    if source == "-":
        stem = "stdin"
    elif is_stream_spec(source):
        stem = "camera" + source if is_camera_index(source) else re.sub(r"[^\w.-]+", "_", source).strip("_")
    else:  # bytes that are not UTF-8: '?' (OpenCV writes it); no file name holds a NUL (a source the API or
        # the wire named so made writing its pictures a ValueError)
        stem = (Path(source).stem.replace("\x00", "") or "image").encode("utf-8", "replace").decode("utf-8")
    tail = f"-page{page}" if page is not None and page > 1 else ""
    return fit_stem(stem, room - len(tail)) + tail


def fit_stem(stem: str, room: int) -> str:
    """``stem`` where its UTF-8 is at most ``room`` bytes; else its start and 8 hex digits of a hash of
    the whole, ``room`` bytes in all: distinct stems stay distinct, the same one gets the same name."""
    data = stem.encode("utf-8", "replace")
    if len(data) <= room:
        return stem
    import hashlib

    tag = hashlib.sha256(data).hexdigest()[:8]
    return data[:max(0, room - len(tag) - 1)].decode("utf-8", "ignore") + "-" + tag


MAX_CLIP_FPS = 120.0  # a copy's frames/s at most: frames closer together share one of its frames
MAX_HOLD_S = 10.0  # a frame is held this long at most (a GIF may ask 655 s: 19,660 copies of it at 30 frames/s)
MIN_VIDEO_SIDE_PX = 8  # a side of 1 pixel FFmpeg's MPEG-4 encoder refuses, a 4x3 frame VP8's WebM: a copy is drawn at least this
RATE_GAPS = 3  # the copy's rate is judged on the median of the first this many gaps (their frames held)


class TimedClip:
    """One video's annotated frames written so that the copy plays in the source's time: each frame
    is written again, at the copy's rate, until the next frame's time (the last one once), so the
    copy's time t shows the source frame at t (a GIF's delays, a phone's variable frame rate, a gap).

    The copy's rate is the reader's (``rate``, :attr:`shared.media.FrameItem.rate`: its sampled
    frames' frames/s, ``--every`` and ``--fps`` applied; a constant-rate video's copy has its frames,
    one each, at its rate), or where the first frames come faster than that (a GIF's rate is its
    frames' average) the rate they come at: the median of the first :data:`RATE_GAPS` gaps (one
    gap of a millisecond, a phone's first two frames, set 120 frames/s for a whole 30 fps copy), in
    whole frames/s (rounded up: MPEG-4 refuses 66.667), at most :data:`MAX_CLIP_FPS`. The first
    frames are held until then (or :meth:`close`), and the writer opened: ``open_writer(fps)``, None
    where it cannot be. A frame is held :data:`MAX_HOLD_S` at most: past a longer gap the copy's
    time runs behind the source's by the rest (``first_frames`` says where each frame went). A
    frame's time that goes back (the same file again) continues the copy one frame later.
    """

    def __init__(self, rate: float | None, open_writer: Callable[[float], cv2.VideoWriter | None]):
        if rate is None:
            raise ValueError("a video frame comes with its reader's rate (FrameItem.rate)")
        self.rate = rate
        self.fps: float | None = None  # the copy's, known after the first RATE_GAPS gaps
        self.writer: cv2.VideoWriter | None = None
        self.first_frames: list[int] = []  # per frame added: the copy's first frame showing it (the next one's if none)
        self._open = open_writer
        self._held: list[tuple[np.ndarray, float]] = []  # frames not written yet: the last, and the first few
        self._t0 = self._shift_s = 0.0
        self._written = self._cut = 0  # the copy's frames written; left out by capped holds

    def add(self, bgr: np.ndarray, t_s: float | None) -> None:
        """The next frame (BGR) and its time in the source (None: one frame at the rate after the last)."""
        if not self._held and not self.first_frames:
            t = self._t0 = 0.0 if t_s is None else t_s
        else:
            last = self._held[-1][1]
            t = last + 1 / self.rate if t_s is None else t_s + self._shift_s
            if t <= last:  # back in time: a second pass of the file
                self._shift_s += last + 1 / (self.fps or self.rate) - t
                t = last + 1 / (self.fps or self.rate)
        self._held.append((bgr, t))
        if self.fps is None and len(self._held) <= RATE_GAPS:
            return
        self._write(len(self._held) - 1)

    def _write(self, n_frames: int) -> None:
        """Write the first ``n_frames`` held frames (each held until the next one's time; the
        last frame of the clip once), opening the writer first."""
        if self.fps is None:
            times = [t for _, t in self._held]
            gaps = sorted(b - a for a, b in zip(times, times[1:]))
            gap = gaps[(len(gaps) - 1) // 2] if gaps else None  # the median (the lower of two)
            # faster: whole frames/s, as fast as they come at least. MPEG-4's time base counts at most
            # 65535 ticks a second and OpenCV gives it 1 / gap to 1/1000 frame/s (66.667: 66667/1000)
            fast = gap is not None and 0 < gap < 0.9 / self.rate
            self.fps = min(MAX_CLIP_FPS, float(math.ceil(1 / gap - 1e-6)) if fast else self.rate)
            self.writer = self._open(self.fps)
        for k in range(n_frames):
            bgr, t = self._held[k]
            t_next = self._held[k + 1][1] if k + 1 < len(self._held) else None
            self.first_frames.append(self._written)
            if t_next is None:  # the last frame: one of the copy's
                n = 1
            else:
                n = max(0, math.floor((t_next - self._t0) * self.fps + 0.5) - self._cut - self._written)
                most = max(1, round(MAX_HOLD_S * self.fps))
                self._cut += max(0, n - most)
                n = min(n, most)
            if self.writer is not None and self.writer.isOpened():
                for _ in range(n):
                    self.writer.write(bgr)
            self._written += n
        del self._held[:n_frames]

    def close(self) -> bool:
        """Write the frames held and release the writer; whether one was open (its file is to check)."""
        if self._held:
            self._write(len(self._held))
        opened = self.writer is not None and self.writer.isOpened()
        if opened:
            self.writer.release()
        self.writer = None
        return opened


def with_mark(data: bytes) -> bytes:
    """A JPEG or PNG as OpenCV encodes it, with :data:`OWN_MARK` inside: a JPEG's comment (COM) after
    its JFIF header, a PNG's ``tEXt`` after its IHDR; anything else as it is."""
    if data[:2] == b"\xff\xd8":  # SOI, then APP0 (JFIF) that must come first
        at = 2 + (2 + int.from_bytes(data[4:6], "big") if data[2:4] == b"\xff\xe0" else 0)
        return data[:at] + b"\xff\xfe" + (len(OWN_MARK) + 2).to_bytes(2, "big") + OWN_MARK + data[at:]
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        at = 8 + 12 + int.from_bytes(data[8:12], "big")  # length, type, data, CRC
        text = b"tEXt" + b"Comment\0" + OWN_MARK
        chunk = (len(text) - 4).to_bytes(4, "big") + text + zlib.crc32(text).to_bytes(4, "big")
        return data[:at] + chunk + data[at:]
    return data


def ours(path: str | Path, listed: frozenset[str] = frozenset()) -> bool:
    """Whether a command may take ``path`` for a file it writes beside its summary or page (and leave it
    out of its inputs): nothing there, an empty file (nothing to lose), a file that carries moodstream's
    mark (a summary's face picture or timeline: :data:`OWN_MARK`, in its first
    :data:`HEAD_BYTES`) or one whose name ``listed`` holds (a report's clip its page lists: a WebM carries
    no mark). Anything else is someone else's (a user's photo named ``people-street-t0.jpg``, a folder,
    a link, whatever it leads to: one to nowhere was written through, where it pointed; a file that cannot
    be read): neither left out nor written over."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISREG(found.st_mode):
        return False
    if found.st_size == 0 or os.path.basename(path) in listed:
        return True
    try:
        with open(path, "rb") as f:
            return OWN_MARK in f.read(HEAD_BYTES)
    except OSError:
        return False


def write_image(path: str | Path, image: np.ndarray, params: list[int] | None = None,
                mark: bool = False) -> str | None:
    """``image`` (BGR) encoded by ``path``'s suffix (``params``: OpenCV's, a JPEG's quality) and written
    there: None where it was, else why not, the OS's reason (``cv2.imwrite`` said only False, and every
    failure was guessed to be "a full disk, or a folder of that name"); half a file (a full disk) is
    not left behind. ``mark``: the file carries :data:`OWN_MARK` (:func:`with_mark`)."""
    path = Path(path)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", image, params or [])
    except cv2.error:
        ok = False
    if not ok:
        return f"OpenCV cannot encode it as {path.suffix or '.png'}"
    try:
        path.write_bytes(with_mark(buf.tobytes()) if mark else buf.tobytes())
    except OSError as exc:
        with contextlib.suppress(OSError):
            if path.is_file():
                path.unlink()
        return exc.strerror or str(exc)
    return None


def readable_video(path: str | Path) -> bool:
    """Whether a video just written opens and gives a frame (a writer says nothing when the disk
    refuses its bytes)."""
    check = cv2.VideoCapture(os.path.abspath(path))  # (a relative name's "run:" is FFmpeg's protocol)
    try:
        return bool(check.isOpened() and check.read()[0])
    finally:
        check.release()


class Annotator:
    """Writes annotated images and videos to ``out_dir``; call :meth:`close` at the end.

    Records must arrive in source order (as ``analyze`` emits them): a video's
    writer is closed when the next source starts.
    """

    def __init__(self, out_dir: str | Path, inputs: frozenset[str] = frozenset(), folders: Iterable[str] = ()):
        """``inputs``: the real paths of what the run reads (:func:`shared.media.input_files`), never
        written over: an annotated file whose name is taken by one gets another name. ``folders``: the
        folders named as inputs, whose files' copies keep their sub-folders (``event/p1/0.jpg`` ->
        ``OUT/p1/0.jpg``; written flat, a dataset of per-person folders became ``0.jpg``, ``0-2.jpg``,
        ... with nothing to say which was which)."""
        self.out_dir = Path(out_dir)
        self.folders = sorted((Path(f) for f in folders), key=lambda f: -len(f.parts))  # the deepest first
        self.inputs = inputs
        try:  # found out now, not after the whole video
            make_folders(self.out_dir)
        except OSError as exc:
            raise ConfigError(f"cannot write the annotated files in {out_dir}: {exc.strerror or exc}") from None
        if not os.access(self.out_dir, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write the annotated files in {out_dir}: the folder is not writable")
        self.taken: set[str] = set()
        self._next: dict[tuple[str, str, str], int] = {}  # (sub-folder, stem, ext) -> the n its last name took
        self.written: list[Path] = []
        self.failed: list[Path] = []  # could not be written: the run fails at close()
        self._video_source: str | None = None
        self._video_path: Path | None = None
        self._clip: TimedClip | None = None

    def _path(self, source: str, ext: str, page: int = 0) -> Path:
        """A free name for ``source``'s annotated file; a multi-page TIFF's page (``page``: its frame)
        after the first is named by its page (``doc-page2.png``)."""
        room = NAME_MAX - len(ext.encode())  # the copy keeps its input's name where it fits
        stem, sub = safe_stem(source, page + 1, room), self._sub_folder(source)

        def named(n: int) -> str:  # a number takes its room from the stem
            return os.path.join(sub, stem + ext if n == 1 else f"{fit_stem(stem, room - len(f'-{n}'))}-{n}{ext}")

        # where the last search for this name ended: every name below it is taken (a folder of
        # thousands of 0.jpg tried 1, 2, ... k again for the k-th: quadratic in the photos)
        n = self._next.get((sub, stem, ext), 1)
        name = named(n)
        while (name in self.taken or (self.out_dir / name).resolve() == Path(source).resolve()
               or os.path.realpath(self.out_dir / name) in self.inputs
               or (n > 1 and os.path.lexists(self.out_dir / name))):  # a name moved off an input takes no file's
            n += 1
            name = named(n)
        self.taken.add(name)
        self._next[sub, stem, ext] = n
        if sub:
            try:
                make_folders(self.out_dir / sub)
            except OSError:  # the write fails, is said and fails the run (close)
                pass
        return self.out_dir / name

    def _sub_folder(self, source: str) -> str:
        """Where ``source`` lies under the input folder it was found in ('' at its top, or not in one)."""
        parent = Path(source).parent
        for folder in self.folders:
            try:
                sub = parent.relative_to(folder)
            except ValueError:
                continue
            return "" if sub == Path(".") else str(sub)
        return ""

    def add(self, source: str, image: np.ndarray, faces: list[Face], video: bool, rate: float | None = None,
            frame: int = 0, timestamp_s: float | None = None) -> None:
        """Annotate one frame: an image file (``frame``: its page, a multi-page TIFF's), or the next
        frame of ``source``'s video, at its time ``timestamp_s`` (:class:`TimedClip`, ``rate``: its
        reader's, :attr:`shared.media.FrameItem.rate`)."""
        annotated = cv2.cvtColor(draw(image, faces), cv2.COLOR_RGB2BGR)
        if not video:
            self._close_video()
            ext = Path(source).suffix.lower()
            path = self._path(source, ext if ext in WRITABLE_EXTS else ".png", frame)
            why = write_image(path, annotated)
            if why is not None:
                log.warning("annotate: cannot write %s: %s", path, why)
                self.failed.append(path)
                return
            self.written.append(path)
            return
        if min(annotated.shape[:2]) < MIN_VIDEO_SIDE_PX:  # a line of pixels: FFmpeg's encoders refuse it
            h, w = annotated.shape[:2]
            annotated = cv2.resize(annotated, (max(w, MIN_VIDEO_SIDE_PX), max(h, MIN_VIDEO_SIDE_PX)),
                                   interpolation=cv2.INTER_NEAREST)
        if source != self._video_source:
            self._close_video()
            path = self._path(source, ".mp4")
            h, w = annotated.shape[:2]
            self._clip = TimedClip(rate, lambda fps: self._open_mp4(path, fps, (w, h)))
            self._video_source, self._video_path = source, path
            self.written.append(path)
        self._clip.add(annotated, timestamp_s)

    def _open_mp4(self, path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
        # by its absolute path: FFmpeg reads a relative name's "ann:" (ann:1/clip.mp4) as a protocol
        writer = cv2.VideoWriter(os.path.abspath(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            log.warning("annotate: cannot open a video writer for %s", path)
            self.failed.append(path)
        return writer

    def _close_video(self) -> None:
        # the writer says nothing when the disk refuses its bytes: the file must open and give a frame
        if self._clip is not None and self._clip.close() and not readable_video(self._video_path):
            log.warning("annotate: %s was not written whole (a full disk?)", self._video_path)
            self.failed.append(self._video_path)
        self._clip, self._video_source, self._video_path = None, None, None

    def close(self) -> None:
        """Finish the last video; OSError naming what could not be written, if anything."""
        self._close_video()
        if self.failed:
            names = ", ".join(p.name for p in self.failed[:3]) + (" ..." if len(self.failed) > 3 else "")
            raise OSError(f"{plural(len(self.failed), 'file')} not written ({names})")


# --- timelines ---------------------------------------------------------------------------------

TIMELINE_WIDTH = 1200
MARGIN_PX = 16


def _tick_step(span_s: float) -> float:
    """A round tick spacing giving about 5-10 ticks over ``span_s`` seconds."""
    raw = max(span_s, 1e-3) / 8
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


THUMB_PX = 56  # the face picture at the start of each timeline row
MAX_TIMELINE_ROWS = 64  # tracks drawn, people first then the longest; every one stays in the summary JSON
STACK_ORDER = sorted(range(len(LABELS)), key=lambda k: LABELS[k] == "neutrality")


Columns = list[tuple[float, float, np.ndarray]]  # (start s, end s, probabilities (C,)), in time order


def draw_timeline(title: str, rows: list[tuple[dict, Columns, np.ndarray | None]],
                  span_s: tuple[float, float, float], still: bool = False) -> np.ndarray:
    """An RGB image: one row per track (``(summary entry, columns, face picture or None)``, see
    :class:`worker.tracking.summary.TimelineSeries`). Each row starts with the face picture
    and ``#id``, then the raw probabilities over time as stacked bands (each column, an analysed
    frame or on a long video a bucket of them, from its start to its end: gaps stay blank), with the
    episodes marked below as bars of their emotion's colour. A track that is not a person is
    drawn faded. Time axis in seconds over ``span_s`` (first, last + step, step), and a legend.
    ``still``: a still image's faces (at no time: a time axis of one frame's step said nothing),
    each drawn as one bar of its probabilities side by side, on a 0-100% axis."""
    t0, t1, step_s = span_s
    t1 = max(t1, t0 + 1e-3)
    if len(rows) > MAX_TIMELINE_ROWS:  # a crowd, or noise: 5,754 rows were a 1.4 GB image
        kept = sorted(range(len(rows)), key=lambda i: (not rows[i][0].get("person"), -(rows[i][0].get("frames") or 0)))
        title = f"{title} ({MAX_TIMELINE_ROWS} of {len(rows)} tracks: people first, then the longest)"
        rows = [rows[i] for i in sorted(kept[:MAX_TIMELINE_ROWS])]
    plot_x = MARGIN_PX + THUMB_PX + 8 + 40
    plot_w = TIMELINE_WIDTH - plot_x - MARGIN_PX
    row_h, top = THUMB_PX + 10, 34
    body = max(1, len(rows)) * row_h
    height = top + body + 34 + 26
    img = np.full((height, TIMELINE_WIDTH, 3), 255, np.uint8)

    def x_of(t: float) -> int:
        return plot_x + int(round((t - t0) / (t1 - t0) * plot_w))

    shown = title[-140:].encode("ascii", "replace").decode()  # OpenCV's fonts draw ASCII; a lone surrogate segfaults it
    cv2.putText(img, shown, (MARGIN_PX, 22), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if not rows:
        cv2.putText(img, "no faces", (plot_x, top + 14), FONT, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    band_h = THUMB_PX - 8  # the probability bands; the episode bar below them
    for r, (entry, columns, picture) in enumerate(rows):
        y = top + r * row_h
        if picture is not None:
            ph, pw = picture.shape[:2]
            k = THUMB_PX / max(ph, pw)
            pic = cv2.resize(picture, (max(1, round(pw * k)), max(1, round(ph * k))), interpolation=cv2.INTER_AREA)
            img[y:y + pic.shape[0], MARGIN_PX:MARGIN_PX + pic.shape[1]] = pic
        shade = (0, 0, 0) if entry.get("person", True) else (150, 150, 150)
        cv2.putText(img, f"#{entry['track_id']}", (MARGIN_PX + THUMB_PX + 6, y + 18), FONT, 0.45, shade, 1,
                    cv2.LINE_AA)
        cv2.rectangle(img, (plot_x, y), (plot_x + plot_w, y + band_h), (225, 225, 225), 1)
        if still:  # one bar: each emotion's width its probability, neutrality last
            for color, a, b in _stacked(columns[0][2] if columns else None, plot_w):
                cv2.rectangle(img, (plot_x + a, y), (plot_x + b - 1, y + band_h), color, cv2.FILLED)
        else:
            for t, end, p in columns:
                xa, xb = x_of(t), max(x_of(end) - 1, x_of(t))
                for color, a, b in _stacked(p, band_h):  # stacked from the bottom, neutrality on top
                    cv2.rectangle(img, (xa, y + band_h - b), (xb, y + band_h - a - 1), color, cv2.FILLED)
        for ep in entry.get("episodes", []):
            cv2.rectangle(img, (x_of(ep["start_s"]), y + band_h + 2),
                          (max(x_of(ep["end_s"] + step_s) - 1, x_of(ep["start_s"])), y + THUMB_PX),
                          COLORS.get(ep["emotion"], (0, 0, 0)), cv2.FILLED)
        if not entry.get("person", True):
            region = img[y:y + THUMB_PX + 1, MARGIN_PX:plot_x + plot_w + 1]
            region[:] = (region.astype(np.uint16) + 2 * 255) // 3  # faded: not a person
    axis_y = top + body + 4
    cv2.line(img, (plot_x, axis_y), (plot_x + plot_w, axis_y), (0, 0, 0), 1)
    if still:
        ticks = [(plot_x + round(q / 100 * plot_w), f"{q}%") for q in range(0, 101, 25)]
    else:
        tick = _tick_step(t1 - t0)
        ticks, t = [], math.ceil(t0 / tick) * tick
        while t <= t1 + 1e-9:
            ticks.append((x_of(t), f"{t:g}"))
            t += tick
    for x, text in ticks:
        cv2.line(img, (x, axis_y), (x, axis_y + 5), (0, 0, 0), 1)
        tx = min(x - 8, TIMELINE_WIDTH - 2 - cv2.getTextSize(text, FONT, 0.4, 1)[0][0])  # "100%" inside the image
        cv2.putText(img, text, (tx, axis_y + 18), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "probability" if still else "time (s)", (MARGIN_PX, axis_y + 18), FONT, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    x, legend_y = MARGIN_PX, height - 10
    for label, color in COLORS.items():
        cv2.rectangle(img, (x, legend_y - 10), (x + 12, legend_y), color, cv2.FILLED)
        cv2.putText(img, label, (x + 16, legend_y), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 22 + cv2.getTextSize(label, FONT, 0.4, 1)[0][0]
    return img


def _stacked(p: np.ndarray | None, length: int) -> list[tuple[tuple[int, int, int], int, int]]:
    """(colour, start, end) in pixels along ``length`` for each emotion of ``p`` with a share of at least
    a pixel, in :data:`STACK_ORDER` (neutrality last): one column of a timeline, or a still's bar."""
    spans, acc = [], 0.0
    for k in STACK_ORDER if p is not None else ():
        a, acc = int(round(acc * length)), acc + float(p[k])
        b = int(round(acc * length))
        if b > a:
            spans.append((COLORS.get(LABELS[k], (0, 0, 0)), a, b))
    return spans


def write_timeline(path: str | Path, title: str, rows: list[tuple[dict, Columns, np.ndarray | None]],
                   span_s: tuple[float, float, float], still: bool = False) -> str | None:
    """:func:`draw_timeline` written as a PNG that carries :data:`OWN_MARK` (it goes beside a summary): None,
    or why it could not be (and a warning)."""
    why = write_image(path, cv2.cvtColor(draw_timeline(title, rows, span_s, still), cv2.COLOR_RGB2BGR), mark=True)
    if why is not None:
        log.warning("annotate: cannot write the timeline %s: %s", path, why)
    return why
