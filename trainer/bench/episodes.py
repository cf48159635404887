"""``moodstream bench tracking --part episodes``: which smoothing and episode rule keeps brief
expressions and drops flicker, measured on a clip with scripted expressions.

**The clip.** FER+ Test faces (``--data``; the fixture faces without it), chosen by a
probe: the default pipeline, on a still canvas, must find the face and give it the
wanted top emotion (expressive ones at p >= 0.4, half of them >= 0.6), so the clip measures the summary rules, not the
classifier. Three people (tracks) on a 640x360 noise background at 30 fps for
``SECONDS`` s, each with a neutral face of their own; their face changes to an
expressive one for scripted windows of 0.3, 0.5 and 1.0 s (``expression``) and
for 1, 2 or 4 frames (``blip``: should not become an episode). Two of the three
neutral faces are ambiguous (the probe gives neutrality p < 0.6), and every
frame jitters (position, size, brightness, blur, pixel noise), so the
classifier's own frame-to-frame flicker is there too. The clip goes through the default analyze path
(``VideoAnalyzer``: detect every frame, classify, track) once; each rule is
then run on the recorded raw probabilities of each track (at 30 fps, and at 10
fps by taking every third frame, as ``analyze --fps 10`` would).

**Figures per rule.** ``recall``: share of expression windows (per length) with an
episode of the same emotion covering at least half of the window;
``false_per_min``: episodes that overlap no expression window, per minute of
track; ``flicker_per_min``: changes of the per-frame label the rule reports
(the episode's emotion inside an episode, else neutrality), per minute (the
script itself has ``script_changes_per_min``); ``start_err_s`` / ``end_err_s``:
mean absolute error of the kept episodes' ends. ``display_flicker_per_min``: the
same for the frame-by-frame leading label of the rule's average (what an
annotated frame shows).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from moodstream.shared.labels import LABELS
from moodstream.trainer.bench.e2e import CanvasSpec, noise_background, paste

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 30.0, 40.0
EMOTIONS = ("happiness", "surprise", "sadness", "anger")
LENGTHS_S = (0.3, 0.5, 1.0)
NEUTRAL = LABELS.index("neutrality")


@dataclass(frozen=True)
class Window:
    track: int
    start_s: float
    end_s: float  # exclusive
    emotion: str
    kind: str  # "expression" or "blip"


@dataclass(frozen=True)
class Rule:
    name: str
    tau_s: float
    min_s: float
    gap_s: float
    space: str = "linear"


def candidate_rules() -> list[Rule]:
    rules = [Rule("before: log EMA 0.5 s, every non-neutral run", 0.5, 0.0, 0.0, "log"),
             Rule("raw top label, every run", 0.0, 0.0, 0.0)]
    for space, tau, min_s, gap in itertools.product(("linear", "log"), (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5),
                                                    (0.1, 0.15, 0.2, 0.25), (0.1, 0.2, 0.3)):
        rules.append(Rule(f"{space} EMA {tau:g} s, min {min_s:g} s, gap {gap:g} s", tau, min_s, gap, space))
    return rules


def make_script(rng: np.random.Generator, tracks: int, seconds: float) -> list[Window]:
    """Per track: expression windows (each length, each emotion, shuffled) and blips, spaced
    by at least 1 s of neutral face."""
    windows = []
    for k in range(tracks):
        items = [("expression", n, e) for n in LENGTHS_S for e in EMOTIONS]
        items += [("blip", b / FPS, e) for b in (1, 2, 4) for e in EMOTIONS]
        order = rng.permutation(len(items))
        t = 0.8 + 0.3 * k
        for i in order:
            kind, n, e = items[i]
            if t + n + 1.0 > seconds:
                break
            windows.append(Window(k, round(t * FPS) / FPS, round((t + n) * FPS) / FPS, e, kind))
            t += n + rng.uniform(1.0, 1.8)
    return windows


def probe_faces(images: np.ndarray, labels: np.ndarray, pipeline, seed: int, per: dict[str, int]
                ) -> dict[str, list[int]]:
    """Rows of ``images`` per wanted emotion whose face the pipeline finds on a still canvas
    and gives that top emotion: expressive ones at p >= 0.4; for neutrality, one clear face
    (p >= 0.6) and the rest ambiguous (p < 0.6, the ones whose label flickers)."""
    from moodstream.shared.errors import DataError

    rng = np.random.default_rng(seed)
    background = noise_background(rng, CanvasSpec(canvas_px=WIDTH))[:HEIGHT]
    chosen: dict[str, list[int]] = {}
    for emotion, n in per.items():
        rows = [r for r in rng.permutation(len(images)).tolist() if LABELS[labels[r]] == emotion][:40 * n]
        clear, unclear = [], []
        for k in range(0, len(rows), 16):
            batch = rows[k:k + 16]
            canvases = []
            for r in batch:
                canvas = background.astype(np.float32)
                paste(canvas, images[r], WIDTH / 2, HEIGHT / 2, 110)
                canvases.append(np.clip(canvas.round(), 0, 255).astype(np.uint8))
            for r, res in zip(batch, pipeline.process(canvases)):
                if len(res.faces) == 1 and res.faces[0].emotion == emotion:
                    p = res.faces[0].probabilities[emotion]
                    (clear if p >= 0.6 else unclear if p >= 0.4 or emotion == "neutrality" else []).append(r)
            if emotion == "neutrality" and clear and len(unclear) >= n - 1:
                chosen[emotion] = clear[:1] + unclear[:n - 1]
                break
            if emotion != "neutrality" and len(clear) + len(unclear) >= n:
                chosen[emotion] = (clear[:(n + 1) // 2] + unclear + clear[(n + 1) // 2:])[:n]
                break
        if emotion not in chosen:
            raise DataError(f"only {len(clear)} + {len(unclear)} {emotion} faces pass the probe; need {n} "
                            "(use --data with the full FER+)")
    return chosen


def render_clip(images: np.ndarray, faces: dict[str, list[int]], windows: list[Window], tracks: int,
                seconds: float, seed: int):
    """Frames (RGB uint8) of the scripted clip, lazily."""
    rng = np.random.default_rng([seed, 7])
    background = noise_background(rng, CanvasSpec(canvas_px=WIDTH))[:HEIGHT].astype(np.float32)
    lanes = [(110 + 210 * k, 180) for k in range(tracks)]
    pick = {e: rng.permutation(len(rows)).tolist() for e, rows in faces.items()}
    for i in range(int(seconds * FPS)):
        t = i / FPS
        canvas = background.copy()
        for k, (cx, cy) in enumerate(lanes):
            hit = [w for w in windows if w.track == k and w.start_s - 1e-9 <= t < w.end_s - 1e-9]
            if hit:
                e = hit[0].emotion
                row = faces[e][pick[e][(int(hit[0].start_s * 7) + k) % len(faces[e])]]
            else:
                row = faces["neutrality"][k % len(faces["neutrality"])]
            x = cx + 12 * np.sin(2 * np.pi * t / (3.0 + k)) + rng.normal(0, 0.7)
            y = cy + 6 * np.cos(2 * np.pi * t / (4.0 + k)) + rng.normal(0, 0.7)
            side = int(round(104 + rng.normal(0, 3)))
            face = np.clip(images[row].astype(np.float32) * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)
            if rng.random() < 0.3:  # a soft frame (motion, focus)
                face = cv2.GaussianBlur(face, (0, 0), rng.uniform(0.5, 1.2))
            paste(canvas, face, x, y, side)
        canvas += rng.normal(0, 5.0, canvas.shape).astype(np.float32)
        yield np.clip(canvas.round(), 0, 255).astype(np.uint8)


def label_sequence(times: np.ndarray, episodes: list) -> np.ndarray:
    """Per frame: the emotion index of the episode covering it, else neutrality."""
    seq = np.full(len(times), NEUTRAL)
    for ep in episodes:
        seq[(times >= ep.start_s - 1e-9) & (times <= ep.end_s + 1e-9)] = ep.emotion
    return seq


def evaluate(rule: Rule, series: dict[int, tuple[np.ndarray, np.ndarray]], windows: list[Window]) -> dict:
    """The figures of one rule on per-track (times, probabilities (T, C)) series."""
    from moodstream.worker.tracking.summary import EpisodeFinder

    found = {n: [0, 0] for n in LENGTHS_S}
    blips = [0, 0]
    false = changes = display_changes = 0
    minutes = 0.0
    start_err, end_err = [], []
    for track, (times, probs) in series.items():
        step = float(np.median(np.diff(times)))
        finder = EpisodeFinder(NEUTRAL, rule.tau_s, rule.min_s, rule.gap_s, step, rule.space)
        shown = np.array([finder.add(float(t), p) for t, p in zip(times, probs)])
        episodes = finder.finish()
        minutes += (times[-1] - times[0] + step) / 60
        seq = label_sequence(times, episodes)
        changes += int((seq[1:] != seq[:-1]).sum())
        display_changes += int((shown[1:] != shown[:-1]).sum())
        mine = [w for w in windows if w.track == track]
        for ep in episodes:
            a, b = ep.start_s, ep.end_s + step
            if not any(min(b, w.end_s) - max(a, w.start_s) > 0 for w in mine if w.kind == "expression"):
                false += 1
        for w in mine:
            cover = [ep for ep in episodes if LABELS[ep.emotion] == w.emotion
                     and min(ep.end_s + step, w.end_s) - max(ep.start_s, w.start_s) >= 0.5 * (w.end_s - w.start_s) - 1e-6]
            if w.kind == "blip":
                blips[0] += bool(cover)
                blips[1] += 1
                continue
            n = min(LENGTHS_S, key=lambda x: abs(x - (w.end_s - w.start_s)))
            found[n][0] += bool(cover)
            found[n][1] += 1
            if cover:
                start_err.append(abs(cover[0].start_s - w.start_s))
                end_err.append(abs(cover[-1].end_s + step - w.end_s))
    return {"rule": rule.name, "tau_s": rule.tau_s, "min_s": rule.min_s, "gap_s": rule.gap_s, "space": rule.space,
            "recall": {f"{n:g}s": round(k / max(m, 1), 4) for n, (k, m) in found.items()},
            "recall_all": round(sum(k for k, _ in found.values()) / max(1, sum(m for _, m in found.values())), 4),
            "blips_kept": round(blips[0] / max(1, blips[1]), 4),
            "false_per_min": round(false / minutes, 3), "flicker_per_min": round(changes / minutes, 2),
            "display_flicker_per_min": round(display_changes / minutes, 2),
            "start_err_s": round(float(np.mean(start_err)), 3) if start_err else None,
            "end_err_s": round(float(np.mean(end_err)), 3) if end_err else None}


def script_changes_per_min(windows: list[Window], tracks: int, seconds: float) -> float:
    return round(2 * sum(w.kind == "expression" for w in windows) / (tracks * seconds / 60), 2)


def run_episodes(pipeline, images: np.ndarray, labels: np.ndarray, seed: int, seconds: float = SECONDS) -> dict:
    """Render, analyse and score the candidate rules; returns the report part."""
    import time

    from moodstream.worker.video import VideoAnalyzer, VideoFrame

    tracks = 3
    faces = probe_faces(images, labels, pipeline, seed, {"neutrality": tracks, **{e: 3 for e in EMOTIONS}})
    windows = make_script(np.random.default_rng(seed), tracks, seconds)
    analyzer = VideoAnalyzer(pipeline, 1)
    lanes: dict[int, list[tuple[float, np.ndarray]]] = {k: [] for k in range(tracks)}
    started = time.perf_counter()
    frames = render_clip(images, faces, windows, tracks, seconds, seed)
    missed = i = 0
    while batch := [VideoFrame("episodes", i + j, (i + j) / FPS, img, True)
                    for j, img in enumerate(itertools.islice(frames, 16))]:
        i += len(batch)
        for f, res in zip(batch, analyzer.analyze(batch)):
            for face in res.faces:  # the lane is the track's ground truth (faces stay on their lanes)
                k = int(np.argmin([abs((face.box[0] + face.box[2]) / 2 - (110 + 210 * j)) for j in range(tracks)]))
                lanes[k].append((f.timestamp_s, np.array([face.probabilities[x] for x in LABELS])))
            missed += tracks - len(res.faces)
    elapsed = time.perf_counter() - started
    series30 = {k: (np.array([t for t, _ in v]), np.array([p for _, p in v])) for k, v in lanes.items()}
    series10 = {k: (t[::3], p[::3]) for k, (t, p) in series30.items()}
    rules = candidate_rules()
    results = {"30fps": [evaluate(r, series30, windows) for r in rules],
               "10fps": [evaluate(r, series10, windows) for r in rules]}
    return {"seconds": seconds, "fps": FPS, "tracks": tracks, "face_rows": faces, "analyse_s": round(elapsed, 1),
            "missed_faces": missed, "windows": [w.__dict__ for w in windows],
            "script_changes_per_min": script_changes_per_min(windows, tracks, seconds), "rules": results}


def episodes_markdown(part: dict, chosen: tuple[float, float, float, str]) -> str:
    """The trade-off table: the 'before' rule, raw, and the best rules by recall at low false rates."""
    lines = ["## Episodes: brief expressions kept vs flicker (synthetic clip, FER+ faces)", "",
             f"{part['tracks']} tracks x {part['seconds']:g} s at {part['fps']:g} fps; windows of "
             f"{', '.join(f'{n:g}' for n in LENGTHS_S)} s per emotion ({', '.join(EMOTIONS)}) and 1, 2 or 4 frame blips; "
             f"the script itself changes label {part['script_changes_per_min']} times a minute. Recall: expression "
             "windows kept as an episode of the right emotion (>= half covered); false: episodes outside every "
             "window, per minute; flicker: label changes per minute of the reported labels; display: of the "
             "frame-by-frame leading label.", "",
             "| rule | fps | recall 0.3 / 0.5 / 1 s | blips kept | false /min | flicker /min | display flicker /min "
             "| start / end error s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def pick(rows: list[dict]) -> list[dict]:
        keep = rows[:2]
        key = dict(zip(("tau_s", "min_s", "gap_s", "space"), chosen))
        keep += [r for r in rows if all(r[k] == v for k, v in key.items())]
        for tau in (0.0, 0.1, 0.25, 0.5):
            for space in ("linear", "log"):
                keep += [r for r in rows if r["tau_s"] == tau and r["space"] == space and r["min_s"] == chosen[1]
                         and r["gap_s"] == chosen[2] and r not in keep]
        return keep

    for fps, rows in part["rules"].items():
        for r in pick(rows):
            rec = " / ".join(f"{v:.0%}" for v in r["recall"].values())
            mark = "**" if (r["tau_s"], r["min_s"], r["gap_s"], r["space"]) == chosen else ""
            lines.append(f"| {mark}{r['rule']}{mark} | {fps} | {rec} | {r['blips_kept']:.0%} | {r['false_per_min']} "
                         f"| {r['flicker_per_min']} | {r['display_flicker_per_min']} | {r['start_err_s']} / "
                         f"{r['end_err_s']} |")
    return "\n".join(lines) + "\n"
