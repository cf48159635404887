"""``analyze VIDEO --report FILE.html``: one page per call that opens from disk, with no network.

For each video: the annotated clip as WebM (VP8, :mod:`worker.webm`) beside the
page (``FILE-<video>.webm``: a browser plays it, the page stays small), in the
video's own time (:class:`worker.annotate.TimedClip`; the page maps the clip's
frames to the analysed ones with ``clip_frames``), and per
track of the summary (:mod:`worker.tracking.summary`, the same summary ``--summary``
writes): its face picture, time span, dominant emotion, episodes and the raw
probabilities over time as a chart. People (``person: true``) are listed
first; the other tracks are collapsed below them. Clicking the chart or an
episode seeks the video to that moment.

**Several videos in one call give one page with a section each** (one file to
open, one table of contents); each video has its own WebM. **Photos** (still
images; each page of a multi-page TIFF) are shown in a grid below the videos:
each annotated as ``--annotate`` draws it, scaled to at most ``PHOTO_MAX_PX`` on
its longer side and written as a JPEG in a folder beside the page
(``FILE-photos/<n>-<photo>.jpg``) when it is added, so a folder of thousands of
photos holds no image in memory and the page only their faces (box, emotion,
probabilities). Inputs that could not be read are named with why.

**An input read again** (``up --report``: the page is drawn once every frame is answered, from the
results and the inputs read a second time) is drawn only as it was: the page keeps each input's
identity (device, inode, size, times) from when it is made, before the run reads anything, and an
input that differs when its first frame comes again (written over, replaced, deleted) is not drawn
(its new frames under the first ones' boxes): the page names it as changed during the run, and a
warning says so. ``analyze --report`` gives the frames it analyses (``read_again=False``).

The page opens from disk with no network: its script and style are inlined (the
chart is the dashboard's ``chart.js``), the face pictures are data: URIs, the
clips and photos files beside it, and a Content-Security-Policy allows only those
inline scripts (by hash) and media and images from the page's own place. The data
is JSON in a ``<script type="application/json">`` block with ``<`` escaped, and
the script puts every text (video names, emotions) into the page with
``textContent``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import click
import cv2
import numpy as np

from moodstream.options import NamedPath
from moodstream.shared.errors import ConfigError
from moodstream.shared.labels import LABELS
from moodstream.shared.files import write_text_atomic
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.table import face_label, plural
from moodstream.worker.annotate import (MIN_VIDEO_SIDE_PX, TimedClip, draw, ours, readable_video, safe_stem,
                                        write_image)
from moodstream.worker.tracking.summary import Summarizer, SummaryConfig, check_writable
from moodstream.worker.webm import open_webm

log = logging.getLogger(__name__)

MAX_POINTS = 800  # per track in the chart: longer series are averaged into this many buckets
THUMB_SIDE = 112  # face pictures are inlined at most this large
PHOTO_MAX_PX = 640  # a photo's longer side at most in its JPEG beside the page (the grid shows it smaller)
PHOTO_QUALITY = 85  # JPEG quality of those
CLIP_MAX_PX = 960  # the clip's longer side at most (the page shows it at most 640 pixels wide); 0: the video's
TEMPLATE = Path(__file__).resolve().parent / "data" / "report.html"
DATA_BLOCK = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)  # the template's
PAGE_MAX_BYTES = 256 << 20  # a page larger is none this module wrote (a page of 20,000 photos: about 10 MB)


def report_options(note: str = ""):
    """``--report FILE`` and ``--report-clip-px``, as ``analyze`` and ``up`` take them (``note``: a
    sentence more for ``--report``'s help)."""
    def add(command):
        command = click.option(
            "--report-clip-px", type=click.IntRange(min=0), default=None,
            help="The report's clip: its longer side at most this many pixels (a larger video's clip is scaled "
                 "down, its boxes and labels drawn at that size; the page shows it at most 640 wide); 0: the "
                 f"video's own size. With --report.  [default: {CLIP_MAX_PX}]")(command)
        return click.option(
            "--report", "report_path", type=NamedPath(dir_okay=False, path_type=Path), default=None,
            help="Write one HTML page (opens from disk, no network) with a section per video: the annotated clip "
                 "(a WebM beside the page) and per person the face picture, time span, dominant emotion, episodes "
                 "and a chart of the probabilities that seeks the clip; and the photos in a grid, each annotated "
                 "(a JPEG in FILE-photos/ beside the page) with a line per face. Inside a folder named as an "
                 "input, those clips and photos are not read (a rerun does not analyse them)." + note)(command)
    return add


def check_report_usage(summary_path: Path | None, report_path: Path | None, clip_px: int | None) -> None:
    """What ``analyze`` and ``up`` refuse of their ``--report`` flags before anything loads (a
    click.UsageError): ``--report-clip-px`` without a page, a page named as ``--summary``'s file."""
    if clip_px is not None and report_path is None:
        raise click.UsageError("--report-clip-px sizes the report's clip: give --report FILE.html too")
    if summary_path is not None and report_path is not None and \
            os.path.realpath(summary_path) == os.path.realpath(report_path):
        raise click.UsageError(f"--summary and --report both name {summary_path}: one would replace the other")


@dataclass
class VideoPart:
    source: str
    file: Path  # the WebM
    clip: TimedClip  # its frames in the source's time
    times: list[float] = field(default_factory=list)  # each analysed frame's time in the source
    series: dict[int, ChartSeries] = field(default_factory=dict)  # track -> its chart's points
    last_frame: int = -1
    size: tuple[int, int] = (0, 0)  # the video's (W, H)
    clip_size: tuple[int, int] = (0, 0)  # the clip's: scaled to CLIP_MAX_PX on its longer side


class ChartSeries:
    """A track's chart points ``[t, p0..p7]`` (percent) in bounded memory: consecutive points are
    summed in buckets of ``width`` points, at most ``2 * most`` buckets (when full, neighbours are
    merged in pairs and ``width`` doubles), so a track of an hour at 30 frames/s holds what one of
    a minute does. :meth:`points` gives at most ``most``, each the mean of consecutive points (the
    span stays whole); a series of ``most`` or fewer comes back point for point."""

    def __init__(self, most: int = MAX_POINTS):
        self.most = most
        self.rows = np.zeros((min(16, 2 * most), 2 + len(LABELS)))  # a bucket: its points, time and values summed
        self.n = 0  # buckets used; all but the last hold ``width`` points
        self.width = 1

    def add(self, point: list[float]) -> None:
        if self.n and self.rows[self.n - 1, 0] < self.width:  # the last bucket has room
            self.rows[self.n - 1, 0] += 1.0
            self.rows[self.n - 1, 1:] += point
            return
        if self.n == len(self.rows):
            if self.n >= 2 * self.most:  # full (every bucket whole): two neighbours one bucket
                self.rows[:self.most] = self.rows[0:2 * self.most:2] + self.rows[1:2 * self.most:2]
                self.n, self.width = self.most, 2 * self.width
            else:
                grown = np.zeros((min(2 * len(self.rows), 2 * self.most), self.rows.shape[1]))
                grown[:self.n] = self.rows[:self.n]
                self.rows = grown
        self.rows[self.n, 0] = 1.0
        self.rows[self.n, 1:] = point
        self.n += 1

    def points(self) -> list[list[float]]:
        rows = self.rows[:self.n]
        if self.n > self.most:  # equal runs of buckets, their sums added
            edges = np.linspace(0, self.n, self.most + 1).astype(int)
            rows = np.array([rows[a:b].sum(axis=0) for a, b in zip(edges[:-1], edges[1:]) if b > a])
        means = rows[:, 1:] / rows[:, :1]
        return [[round(float(m[0]), 3), *(int(round(v)) for v in m[1:])] for m in means]


def data_uri(rgb: np.ndarray | None) -> str | None:
    if rgb is None:
        return None
    h, w = rgb.shape[:2]
    k = min(1.0, THUMB_SIDE / max(h, w))
    if k < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


class Report:
    """Feed it ``analyze``'s outcomes in order (:meth:`add`), then :meth:`close` writes the page."""

    def __init__(self, path: str | Path, config: SummaryConfig | None = None, codec: str = "VP80",
                 inputs: frozenset[str] = frozenset(), clip_max_px: int = CLIP_MAX_PX, read_again: bool = True):
        """``inputs``: the real paths of what the run reads, never written over (the page refused,
        a clip given another name). ``clip_max_px``: a clip's longer side at most (a larger video's
        clip is scaled down, its boxes and labels drawn at that size); 0: the video's own size.
        ``read_again``: the frames :meth:`add` gets are the ``inputs`` read again after the run
        (``up``): each one's identity is taken now, before the run reads it, and one that is not the
        same when its frames come is not drawn (:meth:`_changed`); False: they are the frames analysed
        (``analyze``), drawn whatever the file is by then."""
        if clip_max_px < 0:
            raise ConfigError(f"the report's clip size must be 0 (the video's) or more pixels, got {clip_max_px}")
        self.path = Path(path)
        self.clip_max_px = clip_max_px
        self.inputs = inputs
        check_writable(self.path, "report", inputs)  # found out now, not after the whole video
        # the page itself (its clips go beside it): not created now, so a killed run leaves no empty page
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise ConfigError(f"cannot write the report {self.path}: Permission denied")
        self.codec = codec
        self.summarizer = Summarizer(config, series=False)
        self.parts: list[VideoPart] = []
        self.current: VideoPart | None = None  # the video read now (analyze reads one after another)
        self.photo_dir = photo_folder(self.path)  # made with the first photo
        self._photo_dir_ok: bool | None = None  # made (True), could not be (False), not tried yet (None)
        self.photos: list[dict] = []  # per photo (a TIFF's page): its file, sizes and faces, never its pixels
        self.images = 0  # image files (a multi-page TIFF one): the page's header counts them
        self.not_shown: list[dict[str, str]] = []  # inputs that could not be read: [{source, why}]
        self.failed: list[str] = []  # clips and photos not written, and why: close() writes the page, then raises
        self._taken: set[str] = set()
        # real path -> its identity before the run; source -> why it is not drawn (None: the same file)
        self._identities = {real: file_identity(real) for real in inputs} if read_again else {}
        self._checked: dict[str, str | None] = {}
        self._listed = clips_on_page(self.path)  # the clips of the page there now: this command's to write over
        self._still: tuple[str, int, dict] | None = None  # the image read last: (source, its frame, its first page's)

    def add(self, record: FrameResult, image: np.ndarray | None, video: bool, rate: float | None = None) -> None:
        """One frame (``rate``: a video frame's sampled frame rate, from its reader; its clip holds it
        until the next frame's time, :class:`worker.annotate.TimedClip`)."""
        if self._identities and self._changed(record.source) is not None:
            return  # named on the page once, its frames not drawn
        if image is None or record.error is not None:
            why = f"{record.error.reason}: {record.error.detail}" if record.error is not None else "not read"
            self.not_shown.append({"source": record.source, "why": why})
            return
        if not video:
            self._add_photo(record, image)
            return
        part = self.current
        if part is None or part.source != record.source or record.frame <= part.last_frame:  # the same file
            if part is not None:  # again: a run of its own. One clip open at a time (its writer and frames)
                self._finish(part)
            part = self.current = self._start(record.source, image, rate)
        part.last_frame = record.frame
        t = float(record.timestamp_s) if record.timestamp_s is not None else len(part.times) / part.clip.rate
        shown, scale = image, 1.0
        if part.clip_size != part.size and image.shape[1::-1] == part.size:  # drawn at the clip's size
            shown = cv2.resize(image, part.clip_size, interpolation=cv2.INTER_AREA)
            scale = part.clip_size[0] / part.size[0]
        part.clip.add(cv2.cvtColor(draw(shown, record.faces, scale), cv2.COLOR_RGB2BGR), t)
        part.times.append(t)
        for face in record.faces:
            if face.track_id is not None and face.probabilities:
                series = part.series.get(face.track_id)
                if series is None:
                    series = part.series[face.track_id] = ChartSeries()
                series.add([t, *(100.0 * face.probabilities.get(k, 0.0) for k in LABELS)])
        self.summarizer.add(record, image)

    def _changed(self, source: str) -> str | None:
        """Why ``source``, read again, is not drawn: it was changed, replaced or deleted since the page
        was made (its :func:`file_identity` differs); None where it is the same file, or no file among
        the inputs. Found once a source: the first time it is named on the page and warned of."""
        if source in self._checked:
            return self._checked[source]
        real = os.path.realpath(source)
        why = None
        if real in self._identities and file_identity(real) != self._identities[real]:
            why = ("deleted or moved during the run" if not os.path.exists(real) else "changed during the run")
            why += ": read again for the page, it may not be what was analysed"
            self.not_shown.append({"source": source, "why": why})
            log.warning("report: %s was %s; not shown on the page", source, why)
        self._checked[source] = why
        return why

    def _add_photo(self, record: FrameResult, image: np.ndarray) -> None:
        """A still image (a TIFF's page): its annotated JPEG written now, its faces kept for the page."""
        held = self._still
        if held is not None and held[0] == record.source and record.frame > held[1]:
            first = held[2]  # the next page of a multi-page TIFF (a page that failed between): the same file
            first["pages"] += 1
        else:
            self.images += 1  # image files: a TIFF of 3 pages is one
            first = None
        page = record.page or record.frame + 1
        size, read = photo_size(record, image)
        entry = {"source": record.source, "page": page, "size": size,
                 "image": None, "shown": None, "faces": [_face_data(f) for f in record.faces]}
        if read is not None:  # read smaller (over max_pixels): its faces' boxes are in the pixels it was read at
            entry["scale"], entry["read_size"] = record.scale, read  # (the page said those as the photo's size)
        if first is None:  # a file's first page: it counts the file's pages
            entry["pages"], first = 1, entry
        self._still = (record.source, record.frame, first)
        self.photos.append(entry)
        written = self._write_photo(record, image, page)
        if written is not None:
            entry["image"], entry["shown"] = written

    def _write_photo(self, record: FrameResult, image: np.ndarray, page: int) -> tuple[str, list[int]] | None:
        """The photo with its faces drawn (:func:`worker.annotate.draw`, at the scaled size: labels stay
        readable), its longer side at most :data:`PHOTO_MAX_PX`, as a JPEG in :attr:`photo_dir`: its URL
        relative to the page and its (W, H); None where it cannot be written (named in :attr:`failed`)."""
        if self._photo_dir_ok is None:
            try:
                self.photo_dir.mkdir(exist_ok=True)
                self._photo_dir_ok = True
            except OSError as exc:  # the page lists the photos and their faces without their pictures
                why = ("a file has that name" if self.photo_dir.exists() and not self.photo_dir.is_dir()
                       else exc.strerror or str(exc))
                log.warning("report: no photos in %s: %s", self.photo_dir, why)
                self.failed.append(f"{self.photo_dir.name}/: {why}")
                self._photo_dir_ok = False
        if not self._photo_dir_ok:
            return None
        name = self._photo_name(record.source, page)
        h, w = image.shape[:2]
        k = min(1.0, PHOTO_MAX_PX / max(h, w))
        shown = image if k == 1.0 else cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))),
                                                  interpolation=cv2.INTER_AREA)
        path = self.photo_dir / name
        why = write_image(path, cv2.cvtColor(draw(shown, record.faces, k), cv2.COLOR_RGB2BGR),
                          [cv2.IMWRITE_JPEG_QUALITY, PHOTO_QUALITY])
        if why is not None:  # a full disk, a folder of that name: this photo is missing, the run goes on
            log.warning("report: cannot write the photo %s: %s", path, why)
            self.failed.append(f"{self.photo_dir.name}/{name}: {why}")
            return None
        return f"{self.photo_dir.name}/{name}", [shown.shape[1], shown.shape[0]]

    def _photo_name(self, source: str, page: int) -> str:
        """``<n>-<stem>.jpg``: numbered in input order (a folder of per-person 0.jpg files: one name each,
        the same ones when the run is repeated), never an input's (the folder named as an input)."""
        stem = re.sub(r"[^\w.-]+", "_", safe_stem(source, page))[:80].strip("._") or "photo"
        base, n = f"{len(self.photos):04d}-{stem}", 1  # its number: the photos so far, itself included
        name = base + ".jpg"
        while os.path.realpath(self.photo_dir / name) in self.inputs:
            n += 1
            name = f"{base}-{n}.jpg"
        return name

    def _start(self, source: str, image: np.ndarray, rate: float | None = None) -> VideoPart:
        stem, n = f"{self.path.stem}-{safe_stem(source)}", 1
        name = stem + ".webm"
        while (name in self._taken or os.path.realpath(self.path.with_name(name)) in self.inputs
               or not ours(self.path.with_name(name), self._listed)):  # a user's page-clip.webm: not written over
            n += 1
            name = f"{stem}-{n}.webm"
        self._taken.add(name)
        h, w = image.shape[:2]
        k = min(1.0, self.clip_max_px / max(w, h)) if self.clip_max_px else 1.0
        # (at least MIN_VIDEO_SIDE_PX a side: a video one pixel wide is drawn 8 wide)
        clip_size = (max(MIN_VIDEO_SIDE_PX, round(w * k)), max(MIN_VIDEO_SIDE_PX, round(h * k)))

        def open_writer(fps: float) -> cv2.VideoWriter | None:
            try:
                return open_webm(self.path.with_name(name), fps, clip_size, self.codec)
            except ConfigError as exc:  # the page and the summary still come; only this clip is missing
                log.warning("report: no clip for %s: %s", source, exc)
                self.failed.append(f"{name}: {str(exc).replace(str(self.path.with_name(name)), 'it')}")
                return None

        part = VideoPart(source, self.path.with_name(name), TimedClip(rate, open_writer), size=(w, h),
                         clip_size=clip_size)
        self.parts.append(part)
        return part

    def _finish(self, part: VideoPart) -> None:
        """Write the clip's last frame and close it (once: a closed clip has nothing left)."""
        if part.clip.close() and not readable_video(part.file):  # the writer says nothing when the disk refuses
            log.warning("report: %s was not written whole (a full disk?)", part.file)
            self.failed.append(f"{part.file.name}: not written whole (a full disk?)")

    def close(self) -> Path:
        """Finish the videos and write the page; returns its path. OSError naming the clips and photos
        that could not be written (the page is written first: its charts and other pictures still stand)."""
        for part in self.parts:
            self._finish(part)
        runs = iter(self.summarizer.runs)  # one run per part, in the same order (same rule for a new run)
        videos = [self._video(part, next(runs, None)) for part in self.parts]
        data = {"videos": videos, "photos": self.photos, "images": self.images, "not_shown": self.not_shown,
                "labels": list(LABELS), "episode_min_s": self.summarizer.config.episode_min_s}
        holds = [plural(n, what) for n, what in ((len(videos), "video"), (self.images, "photo")) if n]
        write_text_atomic(self.path, render(data, title="moodstream report: "
                                                        + (", ".join(holds) or "no video or photo")))
        if self.failed:
            named = "; ".join(self.failed[:3]) + (" ..." if len(self.failed) > 3 else "")
            raise OSError(f"{plural(len(self.failed), 'file')} not written ({named}); the page was written without them")
        return self.path

    def _video(self, part: VideoPart, run) -> dict:
        tracks = []
        for e in run.entries() if run is not None else []:
            tracks.append({**{k: e.get(k) for k in ("track_id", "shot", "person", "not_person_why", "first_timestamp_s",
                                                    "last_timestamp_s", "frames", "dominant", "box",
                                                    "mean_probabilities", "episodes")},
                           "thumbnail": data_uri(run.pictures.picture(e["track_id"])),
                           "points": part.series[e["track_id"]].points() if e["track_id"] in part.series else []})
        return {"source": part.source, "video": part.file.name, "rate": part.clip.fps, "size": list(part.size),
                "times": [round(t, 3) for t in part.times], "clip_frames": part.clip.first_frames, "tracks": tracks,
                "people": sum(bool(t["person"]) for t in tracks)}


def photo_folder(page: str | Path) -> Path:
    """Where the report ``page`` writes its photos: ``<page's stem>-photos`` beside it."""
    page = Path(page)
    return page.with_name(f"{page.stem}-photos")


def file_identity(path: str) -> tuple[int, ...] | None:
    """What tells whether the file at ``path`` is still the one it was: its device and inode (another file
    moved over it), size and modification and change times in ns (written over, its time set back: the
    change time moves all the same); None where there is no file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def clips_on_page(page: str | Path) -> frozenset[str]:
    """The names of the clips a page :func:`render` wrote lists (beside it): none where ``page`` is no
    such page (no file, another file, one that cannot be read)."""
    try:
        if os.path.getsize(page) > PAGE_MAX_BYTES:
            return frozenset()
        found = DATA_BLOCK.search(Path(page).read_text(encoding="utf-8", errors="replace"))
        videos = json.loads(found.group(1))["videos"] if found else []
        return frozenset(v["video"] for v in videos if isinstance(v, dict) and isinstance(v.get("video"), str))
    except (OSError, ValueError, TypeError, KeyError):
        return frozenset()


def photo_size(record: FrameResult, image: np.ndarray) -> tuple[list[int], list[int] | None]:
    """A photo's (W, H) as the page states it, and the (W, H) it was read at where that was smaller (a JPEG
    over max_pixels, read at its record's ``scale``), else None. The photo's own: the read size divided by
    the scale, as the record says; from its file's JPEG header where that can be read and agrees (libjpeg
    reads a side at 1/2 as ceil(side / 2): a 961-pixel side is read as 481, which divided by the scale is 962)."""
    read = list(record.size or image.shape[1::-1])
    if not record.scale:
        return read, None
    header = _jpeg_header_size(record.source)
    if header is not None:
        for w, h in (header, header[::-1]):  # a turned photo (its EXIF orientation) swaps its sides
            if [math.ceil(w * record.scale), math.ceil(h * record.scale)] == read:
                return [w, h], read
    return [round(v / record.scale) for v in read], read


def _jpeg_header_size(source: str) -> tuple[int, int] | None:
    """The (W, H) in the header of the JPEG file ``source`` (its first MiB: a camera's EXIF and ICC
    segments come before it), or None (no such file: stdin, a URL; no JPEG; no size found)."""
    from moodstream.shared.errors import BadInputError
    from moodstream.shared.formats import image_size

    try:
        if not os.path.isfile(source):
            return None
        with open(source, "rb") as f:
            head = f.read(1 << 20)
        return image_size(head) if head[:2] == b"\xff\xd8" else None
    except (OSError, ValueError, BadInputError):  # unreadable now, a name with a NUL: the record's own says it
        return None


def _face_data(face: Face) -> dict:
    """A photo's face for the page: its box, top emotion and probabilities (in LABELS order), rounded, and
    the label drawn on the photo (:func:`shared.table.face_label`: the page's line says the same, its
    percent not rounded again from the rounded probabilities)."""
    p = face.probabilities or {}
    return {"track_id": face.track_id, "box": [round(v, 1) for v in face.box], "emotion": face.emotion,
            "probabilities": [round(p.get(k, 0.0), 3) for k in LABELS], "label": face_label(face)[1]}


def _inline_json(data: dict) -> str:
    """JSON safe inside a <script> element: no '<' (so no '</script>'), no U+2028/9 surprises."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def render(data: dict, title: str) -> str:
    """The page: the template with the data, the chart and the page script inlined."""
    chart = resources.files("moodstream.producer.dashboard").joinpath("static/chart.js").read_text(encoding="utf-8")
    page_js = (TEMPLATE.parent / "report.js").read_text(encoding="utf-8")
    css = (TEMPLATE.parent / "report.css").read_text(encoding="utf-8")
    for script in (chart, page_js):
        if "</script" in script.lower():
            raise ValueError("an inlined script must not contain '</script'")
    csp = (f"default-src 'none'; script-src {_sha256(chart)} {_sha256(page_js)}; style-src 'unsafe-inline'; "
           "img-src data: 'self' file:; media-src 'self' file: blob:; base-uri 'none'; form-action 'none'")
    parts = {"csp": html.escape(csp, quote=True), "title": html.escape(title), "css": css,
             "data": _inline_json(data), "chart_js": chart, "page_js": page_js}
    # one pass over the template: text inserted (the data) is never scanned for placeholders
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], TEMPLATE.read_text(encoding="utf-8"))
