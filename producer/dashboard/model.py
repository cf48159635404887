"""What the dashboard knows of the streams: bounded, pure (no Redis, no clock).

:class:`Model` folds results (from ``<prefix>:results`` and ``<prefix>:tracked``)
and per-source summaries into per-source state, and hands the page either a
whole picture (:meth:`Model.snapshot`) or the updates after an event id
(:meth:`Model.since`). Everything is bounded, whatever the feed: at most
``MAX_SOURCES`` sources (the least recently seen goes first), ``MAX_PEOPLE``
people per source, ``MAX_POINTS`` timeline points per person (when full,
every other point goes, so the timeline keeps its whole span at half the
resolution), ``MAX_SUMMARY_THUMB_CHARS`` of face pictures per source summary
and ``RING`` batches of updates for pages that reconnect, kept as the JSON text
the page reads and at most ``RING_BYTES`` of it together (a batch read while
catching up on a long stream can be large). A batch names the sources that went
only when a page could have had them: a name seen and evicted between two
batches (a feed of many distinct sources) leaves no trace.

An update batch carries a source's summary only when a new one came (with its
pictures it can be a megabyte). A batch's id is the last results, tracked and
summaries entry ids folded into it (``results=<id>;tracked=<id>;summaries=<id>``): the SSE event id, sent back by a reconnecting
page as ``Last-Event-ID``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from moodstream.shared.labels import LABELS
from moodstream.shared.record import FrameResult
from moodstream.shared.table import missing_frames_note

MAX_SOURCES = 16
MAX_PEOPLE = 24  # per source, the most recently seen
MAX_POINTS = 120  # per person; then every other point goes
MAX_SUMMARY_TRACKS = 64  # per source summary
MAX_THUMB_CHARS = 64_000  # a face picture (base64) larger than this is not shown
MAX_SUMMARY_THUMB_CHARS = 1 << 20  # a summary's pictures together; the tracks after that show none
RING = 240  # batches kept for resuming (about a minute at 4 batches/s)
RING_BYTES = 24 << 20  # the kept batches' JSON text together, at most (the newest batch is always kept)
SNAPSHOT_BYTES = 48 << 20  # snapshots kept as SSE text for pages reading them, at most (the newest always)
TEXT_CHARS = 300  # text fields from a stream are cut to this
MAX_FACES = 64  # boxes kept of the latest frame
RESTART_MS = 5000  # a frame older than the one shown replaces it after this long (a new run of the source)
UNTIMED_FPS = 30.0  # untimed frames are this far apart, as the tracker and the summary count them (default_fps)


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def cut(text: object, n: int = TEXT_CHARS) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


def source_key(name: object) -> str:
    """A source's name as the page's key and label: whole up to TEXT_CHARS, else cut with a short hash of the
    whole (names cut alone made two sources alike in their first 299 characters one card)."""
    s = "" if name is None else str(name)
    if len(s) <= TEXT_CHARS:
        return s
    import hashlib

    return s[: TEXT_CHARS - 10] + "…" + hashlib.sha256(s.encode("utf-8", "replace")).hexdigest()[:9]


def entry_ms(entry_id: str) -> int:
    """The Redis server time (ms) an entry id was minted at."""
    try:
        return int(entry_id.split("-", 1)[0])
    except ValueError:
        return 0


def percents(probabilities: dict[str, float] | None) -> list[int]:
    """The 8 probabilities in label order, as integer percents (small ints cost no memory)."""
    p = probabilities or {}
    return [max(0, min(100, round(100 * float(p.get(k, 0.0))))) for k in LABELS]


@dataclass
class Person:
    track_id: int
    first_t: float
    last_t: float = 0.0
    frames: int = 0
    emotion: str = ""  # the shown (smoothed) emotion of the last frame
    sums: list[float] = field(default_factory=lambda: [0.0] * len(LABELS))
    points: list[list] = field(default_factory=list)  # [t, p0..p7] in percent
    stride: int = 1
    new: list[list] = field(default_factory=list)  # points since the last batch
    replace: bool = False  # more new points than a timeline keeps: the next batch sends them all
    still: bool = False  # a still image's face (a result with a page): no time, no timeline

    def add(self, t: float, raw: list[int], emotion: str) -> None:
        if self.frames % self.stride == 0:
            point = [round(t, 2), *raw]
            self.points.append(point)
            self.new.append(point)
            if len(self.points) > MAX_POINTS:
                self.points = self.points[::2]
                self.stride *= 2
            if len(self.new) > MAX_POINTS:  # the page replaces this timeline instead of extending it
                self.new, self.replace = [], True
        self.frames += 1
        self.last_t = t
        self.emotion = emotion
        for i, v in enumerate(raw):
            self.sums[i] += v

    def to_json(self, full: bool) -> dict:
        points = self.points if full or self.replace else self.new
        mean = [round(s / self.frames) for s in self.sums] if self.frames else [0] * len(LABELS)
        return {"track_id": self.track_id, "first_t": round(self.first_t, 2), "last_t": round(self.last_t, 2),
                "frames": self.frames, "emotion": self.emotion, "mean": mean, "still": self.still,
                "dominant": LABELS[max(range(len(mean)), key=mean.__getitem__)], "points": points,
                "replace": full or self.replace}


@dataclass
class Source:
    name: str
    first_ms: int
    last_ms: int = 0
    results: int = 0
    errors: int = 0
    tracked: bool = False
    last_frame: int = 0  # of the tracked results
    runs: int = 1  # a new run of the source (its people start afresh): its tracked results' run changed, ...
    run: int | None = None  # ... from this one (the track stage's number; None from a stage of before)
    still: bool = False  # the last tracked result was a still image's (a run of its own, ids from 0)
    latest: dict | None = None
    people: OrderedDict = field(default_factory=OrderedDict)  # track_id -> Person, least recent first
    summary: dict | None = None
    summary_new: bool = False  # since the last batch: an update carries the summary only then

    def to_json(self, full: bool) -> dict:
        people = [p.to_json(full) for p in self.people.values() if full or p.new or p.replace]
        out = {"name": self.name, "first_ms": self.first_ms, "last_ms": self.last_ms, "results": self.results,
               "errors": self.errors, "tracked": self.tracked, "runs": self.runs, "run": self.run, "latest": self.latest,
               "people": people}
        if full or self.summary_new:
            out["summary"] = self.summary
        return out


def face_view(face) -> dict:
    shown = face.shown
    return {"box": [round(v) for v in face.box], "emotion": cut(shown.emotion, 40),
            "p": round(100 * float(shown.probabilities.get(shown.emotion, 0.0))), "raw": cut(face.emotion, 40),
            "track_id": face.track_id}


def thumbnail_uri(b64: object) -> str | None:
    """A summary's base64 JPEG as a data: URI, when it is one (and not too large)."""
    if not isinstance(b64, str) or len(b64) > MAX_THUMB_CHARS or not _BASE64.fullmatch(b64):
        return None
    return "data:image/jpeg;base64," + b64


def starts_run(src: Source, r: FrameResult) -> bool:
    """Does the tracked result ``r`` start a new run of ``src`` (its people afresh)? Its run, as the track
    stage numbered it, is not the one before (a camera's frames go on across a restart of the stage, its
    ids from 0 again); a late result of a run that had ended has none (it is in no run). Without numbers
    (a stage of before): the source from frame 0 again, or a still image (each a run of its own: a
    TIFF's pages all have #0) or what follows one."""
    if src.run is not None:
        return r.run is not None and r.run != src.run
    return (r.frame == 0 and src.last_frame > 0) or (src.tracked and (r.page is not None or src.still))


def summary_view(summary: dict) -> dict:
    """A per-source summary (issue 24's keys; the track stage's ``thumbnails`` as data: URIs),
    cut to what the page shows: its first ``MAX_SUMMARY_TRACKS`` tracks, or the last of a part of
    a run that goes on (the newest); ``missing``: what its ``late_frames`` and ``dropped_frames`` say
    (:func:`shared.table.missing_frames_note`; "" for none), the page shows it by the source."""
    thumbnails = summary.get("thumbnails") if isinstance(summary.get("thumbnails"), dict) else {}
    run = summary.get("run")
    parts = _part(summary) > 1 or summary.get("last_part") is False
    listed = list(summary.get("tracks") or [])
    tracks = []
    for t in listed[-MAX_SUMMARY_TRACKS:] if parts else listed[:MAX_SUMMARY_TRACKS]:
        if not isinstance(t, dict):
            continue
        page = t.get("page")
        tracks.append({"track_id": t.get("track_id"), "person": bool(t.get("person")),
                       **({"page": page} if type(page) is int else {}),  # a still image's: "still image", no span
                       "not_person_why": cut(t.get("not_person_why") or ""),
                       "first_timestamp_s": t.get("first_timestamp_s"), "last_timestamp_s": t.get("last_timestamp_s"),
                       "frames": t.get("frames"), "dominant": cut(t.get("dominant") or t.get("dominant_emotion"), 40),
                       "thumbnail": thumbnail_uri(thumbnails.get(str(t.get("track_id")))),
                       "mean_probabilities": {k: v for k, v in (t.get("mean_probabilities") or {}).items()
                                              if k in LABELS},
                       "episodes": [{k: e.get(k) for k in ("emotion", "start_s", "end_s", "peak", "peak_s")}
                                    for e in list(t.get("episodes") or [])[:20] if isinstance(e, dict)]})
    return {"run": run if type(run) is int else None, "tracks": fit_pictures(tracks, newest_first=parts),
            "missing": missing_frames_note(summary)}


def _part(summary: dict) -> int:
    part = summary.get("part")
    return part if type(part) is int else 1


def fit_pictures(tracks: list[dict], newest_first: bool = False) -> list[dict]:
    """Pictures within ``MAX_SUMMARY_THUMB_CHARS`` together: the first tracks' (or the newest's)
    kept, the others' left out."""
    room = MAX_SUMMARY_THUMB_CHARS
    for t in reversed(tracks) if newest_first else tracks:
        if t["thumbnail"] is not None and len(t["thumbnail"]) > room:
            t["thumbnail"] = None
        room -= len(t["thumbnail"] or "")
    return tracks


def add_part(shown: dict | None, view: dict, summary: dict) -> dict:
    """``view`` of a later part of the run ``shown`` is of: the two together (the newest
    ``MAX_SUMMARY_TRACKS`` tracks, the newest pictures, the newest part's missing frames: each part
    counts the run's so far); otherwise ``view`` alone."""
    if shown is None or _part(summary) < 2 or view["run"] is None or shown.get("run") != view["run"]:
        return view
    tracks = [dict(t) for t in (shown["tracks"] + view["tracks"])[-MAX_SUMMARY_TRACKS:]]
    return {"run": view["run"], "tracks": fit_pictures(tracks, newest_first=True), "missing": view["missing"]}


class Model:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sources: OrderedDict[str, Source] = OrderedDict()  # least recently seen first
        self.last = {"results": "0-0", "tracked": "0-0", "summaries": "0-0"}
        self.ring: deque = deque()  # (seq, id, batch as JSON text)
        self.ring_bytes = 0
        self.seq = 0
        self.touched: dict[str, Source] = {}
        self.fresh: set[str] = set()  # sources new since the last batch: no page has them yet
        self.evicted: dict[str, None] = {}  # sources gone since the last batch that a page may have
        self.fleet: dict | None = None
        self.fleet_seq = 0
        self.redis: dict = {"ok": None, "error": None}
        # seq -> (its id, the snapshot as JSON text), serialised once for every page that asks at that batch and
        # read by piece (snapshot_piece): a page's own copy, megabytes, stayed in memory while it did not read
        self.snapshots: OrderedDict[int, tuple[str, str]] = OrderedDict()

    # --- folding ------------------------------------------------------------------------

    def _source(self, name: str, ms: int) -> Source:
        src = self.sources.get(name)
        if src is None:
            src = self.sources[name] = Source(name, ms)
            self.fresh.add(name)
            while len(self.sources) > MAX_SOURCES:
                old, _ = self.sources.popitem(last=False)
                self.touched.pop(old, None)
                if old in self.fresh:
                    self.fresh.discard(old)
                else:
                    self.evicted[old] = None
        self.sources.move_to_end(name)
        self.touched[name] = src
        return src

    def fold(self, stream: str, entry_id: str, r: FrameResult) -> None:
        """One result from ``stream`` ("results" or "tracked")."""
        ms = entry_ms(entry_id)
        with self.lock:
            self.last[stream] = entry_id
            src = self._source(source_key(r.source), ms)
            src.last_ms = max(src.last_ms, ms)
            tracked = stream == "tracked"
            if not tracked:
                src.results += 1
                src.errors += r.error is not None
            elif starts_run(src, r):
                src.people.clear()
                src.latest = None
                src.runs += 1
            latest = src.latest
            # what the frame shows: tracked results once there are any (they carry the ids), the
            # newest frame (or any frame of a run that restarted), in arrival order
            # (and a frame's tracked answer over its untracked one, which came first: boxes without ids)
            if (tracked or not src.tracked) and (latest is None or r.frame > latest["frame"]
                                                 or ms > latest["ms"] + RESTART_MS
                                                 or (tracked and not latest["tracked"] and r.frame == latest["frame"])):
                src.latest = {"frame": r.frame, "ms": ms, "tracked": tracked, "t": r.timestamp_s, "size": list(r.size) if r.size else None,
                              "job": cut(r.job_id, 80), "enq": r.enqueued_at_ms, "entry": r.frame_entry,
                              "faces": [face_view(f) for f in r.faces[:MAX_FACES]],
                              "error": None if r.error is None else cut(f"{r.error.reason}: {r.error.detail}")}
            if not tracked:
                return
            src.last_frame = r.frame
            src.tracked, src.still = True, r.page is not None
            src.run = r.run if r.run is not None else src.run
            # the summary's times: a still image's faces at 0 s, untimed frames UNTIMED_FPS apart (the frame
            # index was taken for seconds: 20 untimed frames, a person of 0.63 s, were "0.0 s-19.0 s")
            if r.timestamp_s is not None:
                t = r.timestamp_s
            else:
                t = 0.0 if r.page is not None else r.frame / UNTIMED_FPS
            for face in r.faces:
                if face.track_id is None:
                    continue
                person = src.people.get(face.track_id)
                if person is None:
                    person = src.people[face.track_id] = Person(face.track_id, t, still=r.page is not None)
                    while len(src.people) > MAX_PEOPLE:
                        src.people.popitem(last=False)
                src.people.move_to_end(face.track_id)
                person.add(t, percents(face.probabilities), cut(face.shown.emotion, 40))

    def fold_summary(self, source: str, summary: dict, entry_id: str) -> None:
        view = summary_view(summary)
        with self.lock:
            self.last["summaries"] = entry_id
            src = self._source(source_key(source), entry_ms(entry_id))
            src.summary = add_part(src.summary, view, summary)
            src.summary_new = True

    def commit(self) -> bool:
        """Close the current batch of updates; False when there was none."""
        with self.lock:
            return self._commit()

    def _commit(self) -> bool:
        if not self.touched and not self.evicted:
            return False
        batch = {"sources": [s.to_json(full=False) for s in self.touched.values()], "evicted": list(self.evicted)}
        for s in self.touched.values():
            s.summary_new = False
            for p in s.people.values():
                p.new, p.replace = [], False
        self.touched, self.evicted, self.fresh = {}, {}, set()
        self.seq += 1
        text = json.dumps(batch, separators=(",", ":"))
        self.ring.append((self.seq, self._id(), text))
        self.ring_bytes += len(text)
        while len(self.ring) > RING or (self.ring_bytes > RING_BYTES and len(self.ring) > 1):
            self.ring_bytes -= len(self.ring.popleft()[2])
        return True

    def _id(self) -> str:
        # every stream a batch can come from: a batch of one summary has an id of its own
        return f"results={self.last['results']};tracked={self.last['tracked']};summaries={self.last['summaries']}"

    def set_fleet(self, fleet: dict) -> None:
        with self.lock:
            self.fleet = fleet
            self.fleet_seq += 1

    def set_redis(self, ok: bool, error: str | None = None) -> None:
        with self.lock:
            if self.redis != {"ok": ok, "error": error}:
                self.redis = {"ok": ok, "error": error}
                self.fleet_seq += 1

    # --- reading ------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Everything, newest source first, with ``seq`` and ``id`` of the last batch in it."""
        with self.lock:
            self._commit()  # what the snapshot holds is exactly batches 1..seq
            seq, bid = (self.ring[-1][0], self.ring[-1][1]) if self.ring else (0, self._id())
            return {"seq": seq, "id": bid, "sources": [s.to_json(full=True) for s in reversed(self.sources.values())],
                    "fleet": self.fleet, "redis": self.redis, "limits": {"sources": MAX_SOURCES,
                                                                          "people": MAX_PEOPLE, "points": MAX_POINTS}}

    def snapshot_text(self) -> tuple[int, str, int]:
        """The snapshot as JSON text, kept for pages to read by piece (:meth:`snapshot_piece`): (its seq,
        its id, its length)."""
        with self.lock:
            self._commit()
            seq = self.ring[-1][0] if self.ring else 0
            kept = self.snapshots.get(seq)
        if kept is None:
            snap = self.snapshot()  # (outside the lock: megabytes of JSON; a batch since is a newer seq)
            kept = (snap["id"], json.dumps(snap, separators=(",", ":")))
            with self.lock:
                seq = snap["seq"]
                kept = self.snapshots.setdefault(seq, kept)
                self.snapshots.move_to_end(seq)  # the newest kept last: the oldest go first
                total = sum(len(text) for _, text in self.snapshots.values())
                while total > SNAPSHOT_BYTES and len(self.snapshots) > 1:
                    total -= len(self.snapshots.popitem(last=False)[1][1])
        return seq, kept[0], len(kept[1])

    def snapshot_piece(self, seq: int, start: int, size: int) -> str | None:
        """``size`` characters of snapshot ``seq``'s JSON from ``start``; None once it is no longer kept
        (newer ones took its room while a page read it slowly: that page asks again)."""
        with self.lock:
            kept = self.snapshots.get(seq)
            return None if kept is None else kept[1][start:start + size]

    def since(self, seq: int) -> list[tuple[int, str, dict]] | None:
        """Batches after ``seq`` as (seq, id, JSON text), or None when some of them are no longer kept
        (send a snapshot)."""
        with self.lock:
            if seq > self.seq:
                return None  # from another server's life
            if seq == self.seq:
                return []
            if not self.ring or self.ring[0][0] > seq + 1:
                return None
            return [b[:3] for b in self.ring if b[0] > seq]

    def seq_of(self, event_id: str | None) -> int | None:
        """The batch with this id, for a page that reconnects with ``Last-Event-ID``."""
        if not event_id:
            return None
        with self.lock:
            return next((b[0] for b in reversed(self.ring) if b[1] == event_id), None)

    def status(self) -> tuple[int, dict | None, dict]:
        with self.lock:
            return self.fleet_seq, self.fleet, self.redis
