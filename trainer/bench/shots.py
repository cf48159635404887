"""``moodstream bench shots``: shot-cut detection (:mod:`shared.shots`) on edited copies of the
shared videos, where a person cuts, and what the tracks and the people table make of it.

**The edits** (:func:`edits`) are cut together with OpenCV from the MIT-licensed shared videos
(``../shared/data/videos``: ``hamilton_360p.mp4``, four shots, cuts at frames 20, 82, 211;
``street_1080p.mp4``, one shot, scaled to 640x360; ``samples/hamilton_clip.mp4``, one shot), at
640x360 and 29.97 frames/s, each written as VP8 WebM and as mp4v MP4 (both decoded as a user's
file is): hard cuts between the videos' shots, cuts between shots of one colour (two parts of one
shot, the same shot mirrored, a closer framing of it), short shots (3-10 frames) and a shot of one
frame; gradual transitions (a fade through black, dissolves of 10 and 20 frames); and what is no
cut: photo flashes of one and two frames, strobes, a light switched on (x1.6, kept), a slow zoom,
a pan, a camera in the hand (a random walk of 2% of the width a frame) and a whip pan (6% a frame);
an animated GIF of four scenes. Each edit knows its truth: the frames where a person
cuts (a hard cut: that frame; a gradual one: any frame of its span) and the spans of events that
are no cut.

**Cut detection** (every edit, both containers): the shots :func:`shared.media.iter_video`
numbers; a change at a hard cut's frame, or inside a gradual one's span, finds it; any other
change is a false cut. Precision and recall over all the edits' transitions, false cuts per minute
on the unedited footage (the three shared videos as they are, less hamilton's three cuts).

**Tracks** (``--analyze``, the MP4s; the default analyze path through the CLI: ``moodstream
analyze FILE --summary``): tracks with a face on both sides of a transition (a track across a
cut), tracks broken at a no-cut event (a track that ends there and one that starts in its place),
and the people table's rows; also sampled (``--fps 2``, ``--every 7``, ``--max-frames``,
``--detect-every 5``), from a pipe (``analyze -``) and through the service (``up --summary``).

**Cost** (``--repeat``): :func:`iter_video` over the shared street and hamilton videos, with its
shot counter and with one that does nothing, in one process, best of ``--repeat``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import cv2
import numpy as np

from moodstream.options import OutputFile, OutputFolder, to_stderr
from moodstream.shared.errors import DataError
from moodstream.trainer.bench import distinct_outputs, table_text, write_output

REPO = Path(__file__).resolve().parents[2]
SIZE = (640, 360)  # (W, H) of every edit
FPS = 29.97


@dataclass
class Edit:
    """An edited video and its truth: ``cuts`` (the first frame of each new shot), ``gradual``
    (spans ``[a, b)`` of a dissolve or a fade: one change anywhere in it), ``events`` (spans of
    flashes, strobes, a light: no change there)."""

    name: str
    frames: list[np.ndarray]
    cuts: list[int] = field(default_factory=list)
    gradual: list[tuple[int, int]] = field(default_factory=list)
    events: list[tuple[str, int, int]] = field(default_factory=list)
    note: str = ""
    edited: bool = True  # False: footage as shot (its false cuts count per minute)
    source: Path | None = None  # footage as shot: its file, read as it is (not written again)


def read_frames(path: Path, size: tuple[int, int] | None = SIZE) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if size is not None and bgr.shape[1::-1] != size:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        out.append(bgr)
    cap.release()
    if not out:
        raise DataError(f"no frames in {path}")
    return out


def _join(*parts: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """The parts one after another, and the first frame of each part but the first (its cuts)."""
    frames, cuts = [], []
    for part in parts:
        if frames:
            cuts.append(len(frames))
        frames += list(part)
    return frames, cuts


def _bright(bgr: np.ndarray, gain: float, offset: float = 0.0) -> np.ndarray:
    return np.clip(bgr.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def _flash(bgr: np.ndarray) -> np.ndarray:  # a photographer's flash: twice as bright, lifted
    return _bright(bgr, 2.0, 40.0)


def _mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return cv2.addWeighted(a, 1.0 - w, b, w, 0.0)


def _crop(bgr: np.ndarray, x: float, y: float, scale: float) -> np.ndarray:
    """The window of ``scale`` x the frame's size whose top-left corner is at (x, y) (fractions of
    the room left), scaled back to the frame's size."""
    h, w = bgr.shape[:2]
    cw, ch = int(round(w * scale)), int(round(h * scale))
    x0, y0 = int(round((w - cw) * x)), int(round((h - ch) * y))
    return cv2.resize(bgr[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)


def edits(videos: Path, sample: Path) -> list[Edit]:
    """The edited videos (and the footage as shot), 640x360."""
    ham = read_frames(videos / "hamilton_360p.mp4")
    street = read_frames(videos / "street_1080p.mp4")
    clip = read_frames(sample)
    h0, h1, h2, h3 = ham[0:20], ham[20:82], ham[82:211], ham[211:275]
    out = [Edit("hamilton (as shot)", ham, cuts=[20, 82, 211], edited=False, note="the shared video, 3 cuts",
                source=videos / "hamilton_360p.mp4"),
           Edit("street (as shot)", street, edited=False, note="one shot, 1920x1080",
                source=videos / "street_1080p.mp4"),
           Edit("clip (as shot)", clip, edited=False, note="samples/hamilton_clip.mp4, one shot", source=sample)]

    def add(name, parts, note, **kw):
        frames, cuts = _join(*parts)
        out.append(Edit(name, frames, cuts=cuts, note=note, **kw))

    add("hard cuts", [street[0:45], h2[0:45], street[45:90], h3[0:45], clip[0:45], h1[0:45]],
        "street and hamilton's shots, 45 frames each")
    add("jump cut", [h2[0:45], h2[84:129]], "two parts of one shot (1.3 s apart)")
    add("jump cut street", [street[0:40], street[65:105]], "two parts of one shot (0.8 s apart)")
    add("mirrored", [h2[0:50], [cv2.flip(f, 1) for f in h2[50:100]]], "the same shot, mirrored")
    add("mirrored street", [street[0:50], [cv2.flip(f, 1) for f in street[50:100]]], "the same shot, mirrored")
    add("closer", [h2[0:50], [_crop(f, 0.9, 0.5, 0.6) for f in h2[50:100]]],
        "the same shot, then its right part closer (a second camera)")
    add("closer street", [street[0:50], [_crop(f, 0.1, 0.3, 0.5) for f in street[50:100]]],
        "the same shot, then its left part closer")
    add("shifted", [h3[0:32], [np.roll(f, 160, axis=1) for f in h3[32:64]]], "the same shot, shifted a quarter")
    add("punch-in", [h2[0:50], [_crop(f, 0.5, 0.5, 0.7) for f in h2[50:100]]],
        "the same shot, then its middle 0.7 (1.4x, one camera zooming in at a cut)")
    add("punch-in street", [street[0:50], [_crop(f, 0.5, 0.5, 0.7) for f in street[50:100]]],
        "the same shot, then its middle 0.7")
    add("short shots", [h2[0:40], street[0:3], h3[0:5], street[20:30], h1[0:7], clip[0:10], h2[60:100]],
        "shots of 3, 5, 10, 7, 10 frames")
    add("short similar", [h2[0:40], clip[0:4], h3[0:6], h1[0:9], h2[60:100]],
        "hamilton shots of 4, 6, 9 frames")
    add("one frame", [h2[0:40], street[50:51], h3[0:40]], "a shot of one frame between two")
    add("one frame similar", [clip[0:40], h3[5:6], h2[0:40]], "a hamilton frame between two hamilton shots")

    a, b = h2[0:65], street[0:60]  # fade out 15 frames, 5 black, fade in 15: one scene change
    black = np.zeros_like(a[0])
    fade = a[:50] + [_mix(a[50 + i], black, (i + 1) / 16) for i in range(15)] + [black] * 5 + \
        [_mix(black, b[i], (i + 1) / 16) for i in range(15)] + b[15:]
    out.append(Edit("fade through black", fade, gradual=[(50, 65), (70, 85)],
                    note="15 frames out, 5 black, 15 in: two transitions (out, in)"))
    dis = h2[0:50] + [_mix(h2[50 + i], street[i], (i + 1) / 11) for i in range(10)] + street[10:60]
    out.append(Edit("dissolve 10", dis, gradual=[(50, 60)], note="hamilton to street over 10 frames"))
    dis = h3[0:30] + [_mix(h3[30 + i], clip[i], (i + 1) / 21) for i in range(20)] + clip[20:60]
    out.append(Edit("dissolve 20", dis, gradual=[(30, 50)], note="hamilton shot to hamilton shot over 20 frames"))

    def events(name, base, spans, change, note):
        frames = [f.copy() for f in base]
        for a, b in spans:
            for k in range(a, b):
                frames[k] = change(frames[k], k - a)
        out.append(Edit(name, frames, events=[(name, a, b) for a, b in spans], note=note))

    events("flash 1 frame", clip + h2, [(10, 11), (30, 31), (100, 101), (150, 151)], lambda f, i: _flash(f),
           "4 flashes of one frame (x2 + 40); the clip cuts to hamilton at 60")
    events("flash 2 frames", clip + h2, [(10, 12), (30, 32), (100, 102), (150, 152)], lambda f, i: _flash(f),
           "4 flashes of two frames; the clip cuts to hamilton at 60")
    out[-2].cuts = out[-1].cuts = [60]
    strobe = [f.copy() for f in h2]
    for k in range(20, 44, 2):  # every other frame lit
        strobe[k] = _flash(strobe[k])
    for k in range(80, 104):  # two lit, two not
        strobe[k] = _flash(strobe[k]) if (k // 2) % 2 == 0 else strobe[k]
    out.append(Edit("strobe", strobe, events=[("strobe", 20, 44), ("strobe", 80, 104)],
                    note="every other frame lit for 24 frames; then two lit, two not, for 24"))
    light = h2[:60] + [_bright(f, 1.6) for f in h2[60:]]
    out.append(Edit("light on", light, events=[("light on", 60, 61)], note="brightness x1.6 from frame 60 on"))
    light = street[:50] + [_bright(f, 1.6) for f in street[50:]]
    out.append(Edit("light on street", light, events=[("light on", 50, 51)], note="brightness x1.6 from frame 50 on"))
    out.append(Edit("slow zoom", [_crop(f, 0.5, 0.4, 1.0 - 0.4 * k / len(street)) for k, f in enumerate(street)],
                    note="street, zooming in to 0.6 of the frame over 4 s", edited=True))
    out.append(Edit("pan", [_crop(f, k / (len(h2) - 1), 0.5, 0.7) for k, f in enumerate(h2)],
                    note="hamilton's audience, a window of 0.7 panning left to right over 4.3 s", edited=True))
    rng = np.random.default_rng(7)  # a camera in the hand: a window of 0.8 on a random walk, 2% of the width a frame
    for name, shot, what in (("hand-held", h2, "hamilton's performer"), ("hand-held street", street, "the street")):
        walk = np.clip(0.5 + np.cumsum(rng.normal(0.0, 0.1, (len(shot), 2)), axis=0), 0.0, 1.0)
        out.append(Edit(name, [_crop(f, x, y, 0.8) for f, (x, y) in zip(shot, walk)], edited=True,
                        note=f"{what}, a window of 0.8 shaking (a random walk, 2% of the width a frame)"))
    out.append(Edit("whip pan", [_crop(f, min(1.0, k * 0.06 / 0.4), 0.5, 0.6) for k, f in enumerate(h3[:20])],
                    note="hamilton's audience, a window of 0.6 panning across at 6% of the width a frame",
                    edited=True))
    return out


def gif_edit(videos: Path, sample: Path) -> Edit:
    """An animated GIF of four scenes, 8 frames each, 320x180 (written with Pillow, 100 ms a frame)."""
    ham = read_frames(videos / "hamilton_360p.mp4", (320, 180))
    street = read_frames(videos / "street_1080p.mp4", (320, 180))
    frames, cuts = _join(ham[90:98], street[0:8], ham[220:228], ham[30:38])
    return Edit("animated GIF", frames, cuts=cuts, note="4 scenes of 8 frames, 320x180, 10 frames/s")


def write_video(frames: list[np.ndarray], path: Path) -> Path:
    """mp4v in .mp4, VP8 in .webm, an animated GIF (Pillow) in .gif."""
    if path.suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
        return path
    h, w = frames[0].shape[:2]
    if path.suffix == ".webm":
        from moodstream.worker.webm import open_webm

        writer = open_webm(path, FPS, (w, h))  # VP8, without OpenCV's notice about WebM's tag table
    else:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    if not writer.isOpened():
        raise DataError(f"cannot write {path} with this OpenCV")
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def shot_changes(shots: list[int]) -> list[int]:
    """The frames whose shot differs from the frame before's."""
    return [k for k in range(1, len(shots)) if shots[k] != shots[k - 1]]


def score(edit: Edit, changes: list[int]) -> dict:
    """Changes against the truth: hard cuts found at their frame, gradual ones anywhere in their
    span (one change each; more in the span are false), every other change false (at an event:
    counted there too)."""
    left = set(changes)
    found_cuts = [c for c in edit.cuts if c in left]
    left -= set(found_cuts)
    found_gradual = 0
    for a, b in edit.gradual:
        inside = sorted(k for k in left if a <= k <= b)
        if inside:
            found_gradual += 1
            left.discard(inside[0])
    at_events = sorted(k for k in left if any(a <= k <= b for _, a, b in edit.events))
    return {"cuts": len(edit.cuts), "cuts_found": len(found_cuts), "missed": sorted(set(edit.cuts) - set(found_cuts)),
            "gradual": len(edit.gradual), "gradual_found": found_gradual, "false": sorted(left),
            "false_at_events": at_events, "changes": changes}


def detect(path: Path, **sampling) -> list[tuple[int, int]]:
    """(frame, shot) of every frame iter_video keeps from ``path``."""
    from moodstream.shared.media import iter_video

    out = []
    for item in iter_video(str(path), **sampling):
        if item.error is not None:
            raise DataError(f"{path.name}: {item.error}")
        out.append((item.frame, item.shot))
    return out


def detection_rows(cases: list[tuple[Edit, Path]]) -> list[dict]:
    rows = []
    for edit, path in cases:
        numbered = detect(path)
        if len(numbered) != len(edit.frames) or [f for f, _ in numbered] != list(range(len(edit.frames))):
            raise DataError(f"{path.name}: {len(numbered)} frames read back of {len(edit.frames)} written")
        row = {"edit": edit.name, "file": path.name, "frames": len(edit.frames), "edited": edit.edited,
               "note": edit.note, **score(edit, shot_changes([s for _, s in numbered]))}
        rows.append(row)
    return rows


def totals(rows: list[dict]) -> dict:
    truth = sum(r["cuts"] + r["gradual"] for r in rows)
    found = sum(r["cuts_found"] + r["gradual_found"] for r in rows)
    false = sum(len(r["false"]) for r in rows)
    hard = sum(r["cuts"] for r in rows)
    hard_found = sum(r["cuts_found"] for r in rows)
    plain = [r for r in rows if not r["edited"]]
    minutes = sum(r["frames"] for r in plain) / FPS / 60
    return {"transitions": truth, "found": found, "false": false,
            "precision": round(found / max(found + false, 1), 3), "recall": round(found / max(truth, 1), 3),
            "hard_cuts": hard, "hard_found": hard_found,
            "hard_recall": round(hard_found / max(hard, 1), 3),
            "gradual": sum(r["gradual"] for r in rows), "gradual_found": sum(r["gradual_found"] for r in rows),
            "false_at_events": sum(len(r["false_at_events"]) for r in rows),
            "unedited_minutes": round(minutes, 3),
            "unedited_false": sum(len(r["false"]) for r in plain),
            "unedited_false_per_min": round(sum(len(r["false"]) for r in plain) / max(minutes, 1e-9), 2)}


def sweep(cases: list[tuple[Edit, Path]], grid: list[tuple[float, float]]) -> list[dict]:
    """The totals of :class:`shared.shots.ShotCounter` at other (picture_change, picture_cut) over the
    same decoded frames (what iter_video numbers with the defaults)."""
    from moodstream.shared.shots import ShotCounter

    decoded = [(edit, path, read_frames(path, None)) for edit, path in cases]
    out = []
    for change, cut in grid:
        rows = []
        for edit, path, frames in decoded:
            counter, shots = ShotCounter(picture_change=change, picture_cut=cut), []
            for f in frames:
                s = counter.see(f)
                if s is not None:
                    shots.append(s)
            shots.append(counter.last())
            rows.append({"frames": len(frames), "edited": edit.edited, **score(edit, shot_changes(shots))})
        out.append({"picture_change": change, "picture_cut": cut, **totals(rows)})
    return out


SWEEP = [(c, k) for c in (0.2, 0.25, 0.3, 0.35) for k in (0.35, 0.4, 0.45, 0.5) if k >= c]


# --- tracks: the shipped commands on the edits ------------------------------------------------


def _boxes_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def track_figures(edit: Edit, results: list[dict], summary: dict | None) -> dict:
    """What the tracks made of an edit's transitions and events, from a command's results (JSON
    lines) and its summary: tracks across a transition (a face on both sides of a hard cut, or before
    and after a gradual one's span), tracks broken at an event (a track whose last face is in the
    event, or the frame before it, and a new track starting there with a box overlapping it, IoU >=
    0.3), and the people (summary tracks that are persons) with their shots."""
    faces: dict[int, list[tuple[int, list[float]]]] = {}
    for r in results:
        for f in r.get("faces", []):
            if f.get("track_id") is not None:
                faces.setdefault(f["track_id"], []).append((r["frame"], f["box"]))
    spans = [(c, c) for c in edit.cuts] + [(a, b) for a, b in edit.gradual]
    across = sorted({t for t, seen in faces.items() for a, b in spans
                     if min(k for k, _ in seen) < a and max(k for k, _ in seen) >= b})
    broken = 0
    for _, a, b in edit.events:
        for t, seen in faces.items():
            last_k, last_box = max(seen, key=lambda s: s[0])
            if not a - 1 <= last_k <= b:
                continue
            if any(min(s[0] for s in other) in range(last_k + 1, b + 2)
                   and _boxes_iou(last_box, min(other, key=lambda s: s[0])[1]) >= 0.3
                   for u, other in faces.items() if u != t):
                broken += 1
    tracks = (summary or {}).get("tracks", [])
    people = [t for t in tracks if t.get("person")]
    return {"shots": len({r.get("shot") for r in results if r.get("shot") is not None}),
            "frames": len(results), "tracks": len(faces), "across": len(across), "broken_at_events": broken,
            "people": len(people), "people_shots": sorted({t.get("shot") for t in people if t.get("shot") is not None}),
            "people_per_shot": {str(s): sum(1 for t in people if t.get("shot") == s)
                                for s in sorted({t.get("shot") for t in people if t.get("shot") is not None})}}


def _command(args: list[str], stdin: Path | None = None, timeout_s: float = 900) -> tuple[list[dict], str]:
    """``moodstream ARGS`` in a process of its own (the installed command, as a user runs it):
    its JSON lines and its stderr."""
    cmd = [sys.executable, "-m", "moodstream", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}  # its defaults
    with open(stdin, "rb") if stdin is not None else open(os.devnull, "rb") as fin:
        ran = subprocess.run(cmd, stdin=fin, capture_output=True, timeout=timeout_s, env=env, check=False)
    if ran.returncode != 0:
        raise DataError(f"{shlex.join(args)} exited {ran.returncode}: {ran.stderr.decode()[-400:]}")
    lines = [json.loads(line) for line in ran.stdout.decode().splitlines() if line.startswith("{")]
    return lines, ran.stderr.decode()


def run_tracks(edit: Edit, path: Path, work: Path, flags: list[str], via: str = "analyze") -> dict:
    """The edit through ``analyze`` (``via``: "analyze", "stdin": ``analyze -`` fed the file,
    "up": the service with an embedded Redis), with ``flags``; its figures and the people table."""
    summary_path = work / f"{path.stem}-{via}-{'_'.join(f.strip('-') for f in flags) or 'all'}.json"
    if via == "up":
        args = ["up", str(path), "--no-dashboard", "--format", "jsonl", "--summary", str(summary_path), *flags]
    else:
        args = ["analyze", "-" if via == "stdin" else str(path), "--summary", str(summary_path), *flags]
    started = time.perf_counter()
    results, stderr = _command(args, stdin=path if via == "stdin" else None)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    table = [line for line in stderr.splitlines() if line.startswith("SOURCE") or line.split(" ")[0] in
             (path.name, "-", "stdin")]
    return {"edit": edit.name, "file": path.name, "via": via, "flags": " ".join(flags),
            "seconds": round(time.perf_counter() - started, 1), **track_figures(edit, results, summary),
            "people_table": table}


# --- cost --------------------------------------------------------------------------------------


class _NoShots:
    """A shot counter that does nothing: iter_video's cost without numbering shots."""

    def see(self, bgr):
        return 0

    def last(self):
        return 0


def iter_cost(path: Path, repeat: int) -> dict:
    """ms per decoded frame of iter_video over ``path``, with its shot counter and with
    :class:`_NoShots` in its place, alternated, best of ``repeat``; and the counter alone (every
    frame decoded once, then counted)."""
    from moodstream.shared import media
    from moodstream.shared.shots import ShotCounter

    def once(counter) -> tuple[float, int]:
        saved = media.ShotCounter
        media.ShotCounter = counter
        try:
            t0 = time.perf_counter()
            n = sum(1 for _ in media.iter_video(str(path)))
            return time.perf_counter() - t0, n
        finally:
            media.ShotCounter = saved

    with_s, without_s, n = [], [], 0
    once(ShotCounter)  # warm: the file in the page cache, OpenCV's decoder loaded
    for _ in range(repeat):
        t, n = once(ShotCounter)
        with_s.append(t)
        without_s.append(once(_NoShots)[0])
    frames = read_frames(path, None)
    alone = []
    for _ in range(repeat):
        counter = ShotCounter()
        t0 = time.perf_counter()
        for f in frames:
            counter.see(f)
        counter.last()
        alone.append(time.perf_counter() - t0)
    h, w = frames[0].shape[:2]
    return {"video": path.name, "size": f"{w}x{h}", "frames": n,
            "ms_per_frame_with_shots": round(1000 * min(with_s) / n, 3),
            "ms_per_frame_without": round(1000 * min(without_s) / n, 3),
            "shot_counter_ms_per_frame": round(1000 * min(alone) / len(frames), 4)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- the command ---------------------------------------------------------------------------------

SAMPLED = (["--fps", "2"], ["--every", "7"], ["--max-frames", "100"], ["--detect-every", "5"])
SAMPLED_EDITS = ("hard cuts", "short shots")  # run sampled, from a pipe and through the service too


def build(videos: Path, sample: Path, work: Path, only: tuple[str, ...] = ()) -> list[tuple[Edit, Path]]:
    """Every edit (``only``: those named, and the footage as shot) written to ``work`` (MP4 and WebM;
    the GIF as a GIF), with the footage as shot read from where it is: (edit, file) pairs."""
    made = edits(videos, sample)
    names = {e.name for e in made if e.edited} | {"animated GIF"}
    unknown = sorted(set(only) - names)
    if unknown:
        raise click.BadParameter(f"no edit named {', '.join(map(repr, unknown))} (the edits: "
                                 f"{', '.join(sorted(names))})", param_hint="'--only'")
    cases = []
    for edit in made:
        if only and edit.edited and edit.name not in only:
            continue
        if edit.source is not None:
            cases.append((edit, edit.source))
            continue
        stem = edit.name.replace(" ", "_")
        cases += [(edit, write_video(edit.frames, work / f"{stem}{ext}")) for ext in (".mp4", ".webm")]
    gif = gif_edit(videos, sample)
    if not only or gif.name in only:
        cases.append((gif, write_video(gif.frames, work / "scenes.gif")))
    return cases


@click.command("shots")
@click.option("--videos", "videos_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=REPO.parent / "shared" / "data" / "videos", show_default=True,
              help="Folder holding hamilton_360p.mp4 and street_1080p.mp4 (the shared videos).")
@click.option("--sample", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=REPO / "samples" / "hamilton_clip.mp4", show_default=True,
              help="A third video of one shot (the bundled sample clip).")
@click.option("--work", "work_dir", type=OutputFolder(), default=None,
              help="Keep the edited videos (and the summaries) in this folder (default: a temporary one, removed).")
@click.option("--only", multiple=True, metavar="EDIT",
              help="Only this edit (its name as the table gives it, e.g. 'light on'; repeatable), beside the footage "
                   "as shot.")
@click.option("--tracks/--no-tracks", default=True, show_default=True,
              help="Also run analyze (every MP4 edit; two of them sampled, piped and through up) and count "
                   "tracks across cuts and broken at flashes (minutes on a CPU).")
@click.option("--sweep/--no-sweep", "with_sweep", default=True, show_default=True,
              help="Also count the cuts at other picture thresholds (the same decoded frames).")
@click.option("--repeat", default=5, show_default=True, type=click.IntRange(min=0),
              help="Cost: iter_video over the shared videos with and without the shot counter, best of this "
                   "many runs each (0: not measured).")
@click.option("--note", "notes", multiple=True, help="A line for the markdown's notes (e.g. machine load).")
@click.option("--out", type=OutputFile(), help="Write the JSON report here.")
@click.option("--markdown", "md_path", type=OutputFile(), help="Write the tables here.")
def shots_cmd(videos_dir, sample, work_dir, only, tracks, with_sweep, repeat, notes, out, md_path):
    """Shot cuts on edited copies of the shared videos: precision and recall of the cuts found,
    false cuts per minute on unedited footage, tracks across cuts, and the cost per frame."""
    distinct_outputs(out, md_path)
    from moodstream.shared import shots

    for name in ("hamilton_360p.mp4", "street_1080p.mp4"):
        if not (videos_dir / name).is_file():
            raise DataError(f"no {name} in {videos_dir} (the shared videos)")
    with tempfile.TemporaryDirectory(prefix="moodstream-shots-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        to_stderr(f"bench shots: writing the edits to {work}")
        cases = build(videos_dir, sample, work, only)
        rows = detection_rows(cases)
        report = {"benchmark": "shot cuts on edited videos", "command": "moodstream " + shlex.join(sys.argv[1:]),
                  "cpu": cpu_model(), "opencv": cv2.__version__,
                  "rule": {k: v for k, v in vars(shots).items() if k.isupper() and isinstance(v, (int, float))},
                  "detection": rows, "totals": totals(rows), "sweep": [], "tracks": [], "cost": [],
                  "notes": list(notes)}
        if with_sweep and hasattr(shots, "PICTURE_CUT"):
            report["sweep"] = sweep(cases, SWEEP)
        if tracks:
            for edit, path in cases:
                if path.suffix in (".mp4", ".gif") and (edit.edited or edit.cuts):
                    to_stderr(f"bench shots: analyze {path.name}")
                    report["tracks"].append(run_tracks(edit, path, work, []))
            for edit, path in cases:
                if edit.name in SAMPLED_EDITS and path.suffix == ".mp4":
                    for flags in SAMPLED:
                        report["tracks"].append(run_tracks(edit, path, work, flags))
                    report["tracks"].append(run_tracks(edit, path, work, [], via="stdin"))
                    to_stderr(f"bench shots: up {path.name}")
                    report["tracks"].append(run_tracks(edit, path, work, ["--every", "3"], via="up"))
        for name in ("street_1080p.mp4", "hamilton_360p.mp4") if repeat else ():
            report["cost"].append(iter_cost(videos_dir / name, repeat))
    text = json.dumps(report, indent=1)
    if out:
        write_output(out, text + "\n")
    md = markdown(report)
    if md_path:
        write_output(md_path, md)
    click.echo(md)


def markdown(report: dict) -> str:
    t = report["totals"]
    lines = ["# Shot cuts on edited videos", "", f"Command: `{report['command']}`", "",
             f"CPU: {report['cpu']}; OpenCV {report['opencv']}; rule: "
             + ", ".join(f"{k} {v}" for k, v in report["rule"].items()), "",
             f"**Cuts**: {t['found']} of {t['transitions']} transitions found (recall {t['recall']:.3f}: hard cuts "
             f"{t['hard_found']}/{t['hard_cuts']}, gradual {t['gradual_found']}/{t['gradual']}), {t['false']} false "
             f"({t['false_at_events']} at flashes, strobes, lights; precision {t['precision']:.3f}); on the "
             f"unedited footage ({t['unedited_minutes'] * 60:.1f} s) {t['unedited_false']} false cuts "
             f"({t['unedited_false_per_min']:.2f} a minute).", "",
             "| edit | file | frames | cuts found | gradual found | missed | false | note |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for r in report["detection"]:
        lines.append(f"| {r['edit']} | {r['file']} | {r['frames']} | {r['cuts_found']}/{r['cuts']} "
                     f"| {r['gradual_found']}/{r['gradual']} | {', '.join(map(str, r['missed'])) or '-'} "
                     f"| {', '.join(map(str, r['false'])) or '-'} | {r['note']} |")
    if report["sweep"]:
        lines += ["", "**Other thresholds** (PICTURE_CHANGE, PICTURE_CUT; CUT_DISTANCE as above), the same frames:", "",
                  "| picture change | picture cut | found | false | precision | recall | unedited false/min |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["sweep"]:
            lines.append(f"| {r['picture_change']} | {r['picture_cut']} | {r['found']}/{r['transitions']} "
                         f"| {r['false']} | {r['precision']:.3f} | {r['recall']:.3f} "
                         f"| {r['unedited_false_per_min']:.2f} |")
    if report["tracks"]:
        lines += ["", "**Tracks** (the shipped command, default settings; across: tracks with a face on both sides "
                  "of a cut or a gradual transition; broken: tracks ended at a flash, strobe or light with a new one "
                  "in their place):", "",
                  "| edit | file | via | flags | frames | shots | tracks | across | broken | people (per shot) |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
        for r in report["tracks"]:
            per = ", ".join(f"{s}: {n}" for s, n in r["people_per_shot"].items()) or "-"
            lines.append(f"| {r['edit']} | {r['file']} | {r['via']} | {r['flags'] or '-'} | {r['frames']} "
                         f"| {r['shots']} | {r['tracks']} | {r['across']} | {r['broken_at_events']} "
                         f"| {r['people']} ({per}) |")
    if report["cost"]:
        lines += ["", "**Cost** (iter_video, every frame, best of the runs; the counter alone on decoded frames):", "",
                  "| video | size | frames | ms/frame with shots | without | counter alone ms/frame |",
                  "|---|---|---:|---:|---:|---:|"]
        for c in report["cost"]:
            lines.append(f"| {c['video']} | {c['size']} | {c['frames']} | {c['ms_per_frame_with_shots']:.3f} "
                         f"| {c['ms_per_frame_without']:.3f} | {c['shot_counter_ms_per_frame']:.4f} |")
    lines += [""] + [f"- {n}" for n in report["notes"]] + [""]
    return table_text(lines)
