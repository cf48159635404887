"""``moodstream bench tracking`` and ``moodstream bench video``: face tracks and detect-every-N.

**tracking** (synthetic clips with ground truth). FER+ faces (Test split;
``tests/fixtures/ferplus`` when no ``--data``) move along known paths on a
static noise background (:func:`trainer.bench.e2e.noise_background`, 640 px
wide, cut to 640x360), pasted square and feathered as in ``bench e2e``, later
paths drawn over earlier ones. Only faces the detector finds on a still probe
canvas are used (MTCNN misses about 1 in 5 FER+ faces on canvases, see
``bench e2e``; a face it never sees would measure the detector, not the
tracker). Four clips at 15 fps, 4 s: ``non_crossing`` (three faces on
separate lanes), ``crossing`` (two faces pass each other on one lane, one
hiding the other for a few frames), ``crossing_x`` (two faces cross
diagonally), ``leave_reenter`` (a face leaves the frame for a second and comes
back, beside a slow one). A ground-truth face counts in a frame when at least
60 % of it is visible (inside the frame, not covered). Each frame runs the
default analyze path (``VideoAnalyzer``, detect every frame); a second run
feeds the true visible boxes straight to the tracker (``oracle``), which
separates association errors from detector misses. Per clip, CLEAR-MOT style
counts with one-to-one matching at IoU >= 0.5 (:func:`shared.boxes.match_one_to_one`,
best pairs first): misses, false positives, ID switches (a true face matched
to another track id than the last time it was matched), fragmentations (a
true face tracked again after frames where it was visible but not tracked)
and MOTA = 1 - (misses + false positives + switches) / true faces.

``--part episodes`` and ``--part people`` measure the per-person summary's
rules (:mod:`trainer.bench.episodes`, :mod:`trainer.bench.people`); all three
parts run by default.

**video** (detect-every-N on real videos, ``../shared/data/videos``). Per
video, the first ``--frames`` frames (decoded once, decoding not timed) go
through ``VideoAnalyzer`` at N = 1, 3, 5, 10, ``--batch`` frames per call,
in one process. Reported: frames/s, the share of N = 1's faces that the N
run reproduces (IoU >= 0.5, one-to-one, same frame), top-emotion agreement
on those pairs, and flicker: label changes per track-second (consecutive
faces of a track), raw against smoothed.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np

from moodstream.options import DEVICE, FiniteRange, OutputFile, to_stderr
from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.errors import DataError
from moodstream.shared.labels import LABELS
from moodstream.shared.media import iter_video
from moodstream.shared.record import Face
from moodstream.trainer.bench import distinct_outputs, table_text, write_output
from moodstream.trainer.bench.e2e import CanvasSpec, noise_background, paste
from moodstream.trainer.cli import OldSpellings

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MATCH_IOU = 0.5
VISIBLE_MIN = 0.6
WIDTH, HEIGHT, FPS, DURATION_S = 640, 360, 15.0, 4.0


# --- synthetic clips -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FacePath:
    face: int  # index into the selected faces
    side: int  # px
    keys: tuple[tuple[float, float, float], ...]  # (t_s, centre x, centre y), linear in between

    def centre(self, t: float) -> tuple[float, float] | None:
        ts = [k[0] for k in self.keys]
        if t < ts[0] or t > ts[-1]:
            return None
        return float(np.interp(t, ts, [k[1] for k in self.keys])), float(np.interp(t, ts, [k[2] for k in self.keys]))


@dataclass(frozen=True)
class Clip:
    name: str
    paths: tuple[FacePath, ...]  # drawn in order: a later face covers an earlier one
    target_switches: int  # the target: 0 without crossings, at most one per crossing / re-entry
    note: str


CLIPS = (
    Clip("non_crossing", (FacePath(0, 80, ((0, 80, 90), (4, 560, 90))),
                          FacePath(1, 80, ((0, 200, 180), (4, 440, 180))),
                          FacePath(2, 80, ((0, 560, 270), (4, 80, 270)))), 0,
         "three faces on separate lanes, 2-8 px per frame"),
    Clip("crossing", (FacePath(3, 90, ((0, 90, 170), (4, 550, 170))),
                      FacePath(4, 90, ((0, 550, 185), (4, 90, 185)))), 1,
         "two faces pass each other on one lane; the second hides the first for a few frames"),
    Clip("crossing_x", (FacePath(5, 80, ((0, 100, 80), (4, 540, 280))),
                        FacePath(0, 100, ((0, 100, 280), (4, 540, 80)))), 1,
         "two faces of different sizes cross diagonally"),
    Clip("leave_reenter", (FacePath(1, 80, ((0, 140, 180), (4, 220, 200))),
                           FacePath(2, 90, ((0, 300, 150), (1.5, 760, 150), (2.5, 760, 210), (4, 420, 210)))), 1,
         "a face leaves on the right for about a second and comes back (a new id is expected: no re-identification)"),
)


def render(clip: Clip, faces: list[np.ndarray], background: np.ndarray, t: float
           ) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One frame (RGB uint8) and its visible true faces: (path index, box x1 y1 x2 y2)."""
    canvas = background.astype(np.float32)
    cover = np.full(background.shape[:2], -1, np.int32)  # which path owns each pixel (topmost)
    boxes = {}
    for k, p in enumerate(clip.paths):
        c = p.centre(t)
        if c is None:
            continue
        x, y = paste(canvas, faces[p.face], c[0], c[1], p.side)
        cover[max(0, y):max(0, y + p.side), max(0, x):max(0, x + p.side)] = k
        boxes[k] = np.array([x, y, x + p.side, y + p.side], np.float64)
    visible = [(k, box) for k, box in boxes.items()
               if (cover == k).sum() >= VISIBLE_MIN * clip.paths[k].side ** 2]
    return np.clip(canvas.round(), 0, 255).astype(np.uint8), visible


def select_faces(images: np.ndarray, pipeline, n: int, seed: int) -> list[int]:
    """The first ``n`` rows (in a seeded order) whose face the detector finds on a still probe
    canvas (90 px, centre of the noise background)."""
    rng = np.random.default_rng(seed)
    background = noise_background(rng, CanvasSpec(canvas_px=WIDTH))[:HEIGHT]
    chosen = []
    for row in rng.permutation(len(images)).tolist():
        canvas = background.astype(np.float32)
        x, y = paste(canvas, images[row], WIDTH / 2, HEIGHT / 2, 90)
        [faces] = pipeline.detect([np.clip(canvas.round(), 0, 255).astype(np.uint8)])
        if faces and match_one_to_one(np.array([f.box for f in faces]), np.array([[x, y, x + 90, y + 90]]), MATCH_IOU):
            chosen.append(row)
            if len(chosen) == n:
                return chosen
    raise DataError(f"only {len(chosen)} of the faces were found by the detector on a probe canvas; need {n}")


# --- CLEAR-MOT counts ------------------------------------------------------------------------------

def mot_counts(frames: list[tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]]]) -> dict:
    """``frames``: per frame (true faces as (id, box), hypotheses as (track id, box)) -> counts."""
    gt = misses = fps = switches = frags = 0
    last_track: dict[int, int] = {}
    lost_since_tracked: dict[int, bool] = {}
    ids_per_face: dict[int, set] = {}
    for truth, hyps in frames:
        pairs = match_one_to_one(np.array([b for _, b in truth]).reshape(-1, 4),
                                 np.array([b for _, b in hyps]).reshape(-1, 4), MATCH_IOU)
        matched = {truth[i][0]: hyps[j][0] for i, j in pairs}
        gt += len(truth)
        misses += len(truth) - len(pairs)
        fps += len(hyps) - len(pairs)
        for face_id, _ in truth:
            if face_id in matched:
                track = matched[face_id]
                ids_per_face.setdefault(face_id, set()).add(track)
                if face_id in last_track and last_track[face_id] != track:
                    switches += 1
                if lost_since_tracked.get(face_id):
                    frags += 1
                last_track[face_id] = track
                lost_since_tracked[face_id] = False
            elif face_id in last_track:
                lost_since_tracked[face_id] = True
    return {"true_faces": gt, "misses": misses, "false_positives": fps, "id_switches": switches,
            "fragmentations": frags, "mota": round(1 - (misses + fps + switches) / gt, 4) if gt else None,
            "track_ids_per_face": {str(k): sorted(v) for k, v in sorted(ids_per_face.items())}}


def oracle_faces(truth: list[tuple[int, np.ndarray]]) -> list[Face]:
    """True boxes as classified faces (the tracker only needs box and probabilities)."""
    p = {label: 1 / len(LABELS) for label in LABELS}
    return [Face(tuple(box.tolist()), 1.0, emotion=LABELS[0], probabilities=p) for _, box in truth]


def run_clip(clip: Clip, faces: list[np.ndarray], pipeline, seed: int) -> dict:
    from moodstream.worker.tracking.tracker import TrackState
    from moodstream.worker.video import VideoAnalyzer, VideoFrame

    background = noise_background(np.random.default_rng([seed, len(clip.name)]), CanvasSpec(canvas_px=WIDTH))[:HEIGHT]
    rendered = [render(clip, faces, background, i / FPS) for i in range(int(DURATION_S * FPS))]
    analyzer = VideoAnalyzer(pipeline, 1)
    started = time.perf_counter()
    results = []
    for k in range(0, len(rendered), 16):
        results += analyzer.analyze([VideoFrame(clip.name, k + i, (k + i) / FPS, img, True)
                                     for i, (img, _) in enumerate(rendered[k:k + 16])])
    elapsed = time.perf_counter() - started
    pipe = [(truth, [(f.track_id, np.array(f.box)) for f in r.faces]) for (_, truth), r in zip(rendered, results)]
    oracle_state, oracle = TrackState(), []
    for i, (_, truth) in enumerate(rendered):
        tracked = oracle_state.update(i, i / FPS, oracle_faces(truth))
        oracle.append((truth, [(f.track_id, np.array(f.box)) for f in tracked]))
    out = {"clip": clip.name, "note": clip.note, "frames": len(rendered), "faces": len(clip.paths),
           "target_max_id_switches": clip.target_switches,
           "pipeline": mot_counts(pipe), "oracle_boxes": mot_counts(oracle),
           "ms_per_frame": round(elapsed * 1000 / len(rendered), 1)}
    out["meets_target"] = out["pipeline"]["id_switches"] <= clip.target_switches
    return out


def load_faces(data_dir: Path | None) -> tuple[np.ndarray, str]:
    from moodstream.trainer.data import load_split

    root = data_dir or REPO / "tests" / "fixtures" / "ferplus"
    return load_split(root, "test").images, str(root)


def tracking_markdown(report: dict) -> str:
    lines = ["# Face tracking on synthetic clips (FER+ faces on noise, known paths)", "",
             f"Command: `{report['command']}`", "",
             f"{report['width']}x{report['height']} at {report['fps']:g} fps, {report['duration_s']:g} s per clip; "
             f"faces from `{report['data']}` (seed {report['seed']}); match IoU >= {MATCH_IOU}; a true face counts "
             f"when >= {VISIBLE_MIN:.0%} visible. pipeline = the default analyze path (MTCNN every frame + tracker); "
             "oracle = the tracker on the true visible boxes.", "",
             "| clip | true faces | misses | false pos. | ID switches (target) | fragmentations | MOTA "
             "| oracle: switches / frag. / MOTA | ms/frame |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report["clips"]:
        p, o = c["pipeline"], c["oracle_boxes"]
        lines.append(f"| {c['clip']} | {p['true_faces']} | {p['misses']} | {p['false_positives']} "
                     f"| {p['id_switches']} (<= {c['target_max_id_switches']}) | {p['fragmentations']} "
                     f"| {p['mota']:.3f} | {o['id_switches']} / {o['fragmentations']} / {o['mota']:.3f} "
                     f"| {c['ms_per_frame']:.0f} |")
    lines += [""] + [f"- {c['clip']}: {c['note']}" for c in report["clips"]] + [""]
    return table_text(lines)


def _fer_root(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    """--data, else the checkout's test faces; an installed package has none, so say which flag to give."""
    fixture = REPO / "tests" / "fixtures" / "ferplus"
    if value is None and not fixture.is_dir():
        raise click.BadParameter("give a FER+ root (e.g. ../shared/data/ferplus): the default, "
                                 "tests/fixtures/ferplus, is only in a source checkout", ctx, param)
    return fixture if value is None else value


def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        ns = tuple(int(v) for v in value.split(","))
    except ValueError:
        ns = ()
    if not ns or min(ns) < 1:
        raise click.BadParameter(f"expected comma-separated integers >= 1, got {value!r}", ctx, param,
                                 param_hint=f"'{param.opts[0]}'")
    return ns


@click.command("tracking")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=_fer_root,
              help="FER+ root (its Test faces are used) [default: the faces in tests/fixtures/ferplus of a "
                   "source checkout].")
@click.option("--seed", default=0, show_default=True, help="Seed of the face choice and the backgrounds.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
@click.option("--part", "parts", type=click.Choice(["tracks", "episodes", "people"]), multiple=True,
              help="What to measure (repeatable) [default: all]: tracks (ID switches, MOTA), episodes (summary "
                   "rules on a clip with scripted expressions: brief-expression recall, flicker), people "
                   "(face-likeness rules on WIDER and the shared videos).")
@click.option("--seconds", default=60.0, show_default=True, type=FiniteRange(min=5),
              help="episodes: length of the scripted clip.")
@click.option("--wider", "wider_dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO.parent / "shared" / "data" / "wider_val_416", show_default=True,
              help="people: WIDER benchmark folder.")
@click.option("--videos", "videos_dir", type=click.Path(file_okay=False, path_type=Path),
              default=REPO.parent / "shared" / "data" / "videos", show_default=True,
              help="people: folder of videos whose people are counted.")
@click.option("--out", type=OutputFile(), help="Write the JSON report here.")
@click.option("--markdown", "md_path", type=OutputFile(), help="Write a table here.")
def tracking_cmd(data_dir, seed, device, parts, seconds, wider_dir, videos_dir, out, md_path):
    """Tracking quality on synthetic clips with known paths: ID switches, fragmentations,
    misses, false positives and MOTA per clip, for the default pipeline and for the
    tracker on the true boxes; the per-person summary's episode rules (brief expressions
    kept, flicker) and face-likeness rules (WIDER precision / recall, people counted)."""
    distinct_outputs(out, md_path)
    from moodstream.shared.media import VIDEO_EXTS
    from moodstream.shared.settings import Settings
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.tracking.summary import SummaryConfig

    parts = set(parts or ("tracks", "episodes", "people"))
    if "people" in parts:  # before any model loads: the default folders exist beside a checkout, not an install
        for flag, folder in (("--wider", wider_dir), ("--videos", videos_dir)):
            if not Path(folder).is_dir():
                raise click.UsageError(f"people: {folder} is not a folder; give {flag} (or leave out "
                                       "--part people)")
    settings = Settings.from_env(device=device)
    pipeline = Pipeline(settings)
    images, source = load_faces(data_dir)
    report = {"benchmark": "face tracking on synthetic clips", "command": "moodstream " + shlex.join(sys.argv[1:]),
              "data": source, "seed": seed, "detector": settings.detector, "device": str(pipeline.device),
              "model_version": pipeline.model_version}
    markdown = []
    if "tracks" in parts:
        rows = select_faces(images, pipeline, 6, seed)
        faces = [images[r] for r in rows]
        clips = []
        for clip in CLIPS:
            clips.append(run_clip(clip, faces, pipeline, seed))
            log.info("tracking: %s: %s", clip.name, clips[-1]["pipeline"])
        report.update({"face_rows": rows, "width": WIDTH, "height": HEIGHT, "fps": FPS, "duration_s": DURATION_S,
                       "match_iou": MATCH_IOU, "visible_min": VISIBLE_MIN, "clips": clips})
        markdown.append(tracking_markdown(report))
    if "episodes" in parts:
        from moodstream.trainer.bench.episodes import episodes_markdown, run_episodes
        from moodstream.trainer.data import load_split

        split = load_split(data_dir or REPO / "tests" / "fixtures" / "ferplus", "test")
        cfg = SummaryConfig.from_settings(settings)
        report["episodes"] = run_episodes(pipeline, split.images, split.labels, seed, seconds)
        report["episodes"]["chosen"] = {"tau_s": cfg.episode_tau_s, "min_s": cfg.episode_min_s,
                                        "gap_s": cfg.episode_gap_s, "space": "linear"}
        markdown.append(episodes_markdown(report["episodes"], (cfg.episode_tau_s, cfg.episode_min_s,
                                                               cfg.episode_gap_s, "linear")))
    if "people" in parts:
        from moodstream.trainer.bench.people import people_markdown, run_people

        videos = sorted(p for p in Path(videos_dir).iterdir() if p.suffix.lower() in VIDEO_EXTS)
        report["people"] = run_people(pipeline, Path(wider_dir), videos, settings.min_person_s)
        markdown.append(people_markdown(report["people"]))
    if "tracks" not in parts:
        markdown.insert(0, table_text(["# Per-person summaries: episode and people rules", "",
                                       f"Command: `{report['command']}`", ""]))
    _write(report, out, md_path, "\n".join(markdown))


# --- detect-every-N on real videos -------------------------------------------------------------------

def reproduction(ref: list[list[Face]], got: list[list[Face]]) -> dict:
    """Share of ``ref``'s faces that ``got`` has on the same frame (IoU >= 0.5, one-to-one) and
    top-emotion agreement on those pairs."""
    total = found = agree = 0
    for a, b in zip(ref, got):
        pairs = match_one_to_one(np.array([f.box for f in a]).reshape(-1, 4),
                                 np.array([f.box for f in b]).reshape(-1, 4), MATCH_IOU)
        total += len(a)
        found += len(pairs)
        agree += sum(a[i].emotion == b[j].emotion for i, j in pairs)
    return {"reference_faces": total, "reproduced": round(found / total, 4) if total else None,
            "top_emotion_agreement": round(agree / found, 4) if found else None}


def flicker(frames: list[tuple[float, list[Face]]]) -> dict:
    """Label changes per track-second between consecutive faces of each track, raw and smoothed."""
    tracks: dict[int, list[tuple[float, str, str]]] = {}
    for t, faces in frames:
        for f in faces:
            tracks.setdefault(f.track_id, []).append((t, f.emotion, f.shown.emotion))
    seconds = sum(obs[-1][0] - obs[0][0] for obs in tracks.values())
    raw = sum(a[1] != b[1] for obs in tracks.values() for a, b in zip(obs, obs[1:]))
    smooth = sum(a[2] != b[2] for obs in tracks.values() for a, b in zip(obs, obs[1:]))
    return {"tracks": len(tracks), "track_seconds": round(seconds, 2), "raw_changes": raw, "smoothed_changes": smooth,
            "raw_per_track_s": round(raw / seconds, 3) if seconds else None,
            "smoothed_per_track_s": round(smooth / seconds, 3) if seconds else None,
            "removed": round(1 - smooth / raw, 4) if raw else None}


def run_video(path: Path, pipeline, every: tuple[int, ...], max_frames: int, batch: int) -> dict:
    from moodstream.worker.video import VideoAnalyzer, VideoFrame

    frames = [VideoFrame(str(path), it.frame, it.timestamp_s, it.image, True, it.shot)
              for it in iter_video(str(path), max_frames=max_frames) if it.error is None]
    if not frames:
        raise DataError(f"{path}: no decodable frames")
    pipeline.process([frames[0].image])  # warm-up
    runs, ref = {}, None
    for n in every:
        analyzer = VideoAnalyzer(pipeline, n)
        started = time.perf_counter()
        results = []
        for k in range(0, len(frames), batch):
            results += analyzer.analyze(frames[k:k + batch])
        elapsed = time.perf_counter() - started
        faces = [r.faces for r in results]
        ref = faces if ref is None else ref
        runs[str(n)] = {"fps": round(len(frames) / elapsed, 3), "faces": sum(map(len, faces)),
                        "lost_by_flow": analyzer.lost, **reproduction(ref, faces),
                        "flicker": flicker([(f.timestamp_s, fs) for f, fs in zip(frames, faces)])}
        log.info("video: %s N=%d: %s", path.name, n, runs[str(n)])
    base = runs[str(every[0])]["fps"]
    for r in runs.values():
        r["speedup"] = round(r["fps"] / base, 2)
    h, w = frames[0].image.shape[:2]
    return {"video": path.name, "size": f"{w}x{h}", "frames": len(frames), "runs": runs}


def video_markdown(report: dict) -> str:
    lines = ["# Detect every N frames, optical flow in between (CPU)", "", f"Command: `{report['command']}`", "",
             f"Device {report['device']}, backend {report.get('backend', 'torch')}, threads "
             f"{report.get('threads', report['torch_threads'])}, batch {report['batch']}; "
             "decoding not timed. reproduced: share of the N = 1 faces found on the same frame (IoU >= 0.5, "
             "one-to-one); agreement: same top emotion on those pairs; flicker: label changes per track-second.", "",
             "| video | frames | N | frames/s | speed-up | reproduced | top-emotion agreement | flicker raw "
             "| flicker smoothed | removed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in report["videos"]:
        for n, r in v["runs"].items():
            fl = r["flicker"]
            lines.append(f"| {v['video']} ({v['size']}) | {v['frames']} | {n} | {r['fps']:.2f} | {r['speedup']:.2f}x "
                         f"| {_share(r['reproduced'], '.2%')} | {_share(r['top_emotion_agreement'], '.2%')} "
                         f"| {_share(fl['raw_per_track_s'], '')} | {_share(fl['smoothed_per_track_s'], '')} "
                         f"| {_share(fl['removed'], '.0%')} |")
    lines += [""] + [f"- {n}" for n in report["notes"]]
    lines += [f"- skipped {v['video']}: {v['error']}" for v in report.get("skipped", [])] + [""]
    return table_text(lines)


def _share(value: float | None, spec: str) -> str:
    """A table cell: a ratio with nothing to divide (no faces, no label change) is null in the JSON, '-' here."""
    return "-" if value is None else format(value, spec)


@click.command("video")
@click.option("--videos", "videos_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=REPO.parent / "shared" / "data" / "videos", show_default=True,
              help="Folder of videos; every video in it is run.")
@click.option("--frames", "max_frames", default=150, show_default=True, type=click.IntRange(min=2),
              help="Frames per video from the start.")
@click.option("--detect-every", "--every", "detect_every", cls=OldSpellings, default="1,3,5,10", show_default=True,
              callback=_int_list, help="Detect-every values, comma-separated; the first is the reference.")
@click.option("--batch", default=16, show_default=True, type=click.IntRange(min=1), help="Frames per call.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Inference threads of the pipeline (its backend's; default: every core, as analyze).")
@click.option("--note", "notes", multiple=True, help="A line for the markdown's notes (e.g. machine load).")
@click.option("--out", type=OutputFile(), help="Write the JSON report here.")
@click.option("--markdown", "md_path", type=OutputFile(), help="Write a table here.")
def video_cmd(videos_dir, max_frames, detect_every, batch, device, threads, notes, out, md_path):
    """Detect-every-N on real videos: frames/s, faces reproduced against detecting every
    frame, top-emotion agreement, and label flicker raw vs smoothed."""
    distinct_outputs(out, md_path)
    import torch

    from moodstream.shared.media import VIDEO_EXTS
    from moodstream.shared.settings import Settings
    from moodstream.worker.pipeline import Pipeline, resolve_threads

    ns = detect_every
    paths = sorted(p for p in Path(videos_dir).iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if not paths:
        raise DataError(f"no videos in {videos_dir}")
    # --threads reaches the pipeline that runs (ONNX Runtime / OpenVINO / torch), not torch alone
    settings = Settings.from_env(device=device, **({"threads": threads} if threads else {}))
    pipeline = Pipeline(settings)
    report = {"benchmark": "detect every N frames + optical flow", "command": "moodstream " + shlex.join(sys.argv[1:]),
              "device": str(pipeline.device), "backend": pipeline.backend, "threads": resolve_threads(settings, False),
              "torch_threads": torch.get_num_threads(), "batch": batch, "detector": settings.detector, "model_version": pipeline.model_version, "max_frames": max_frames,
              "videos": [], "skipped": [], "notes": list(notes)}
    for p in paths:  # one unreadable file costs its row, not the bench
        try:
            report["videos"].append(run_video(p, pipeline, ns, max_frames, batch))
        except DataError as exc:
            report["skipped"].append({"video": p.name, "error": str(exc)})
            to_stderr(f"bench video: skipped {p.name}: {exc}")
    if not report["videos"]:
        raise DataError(f"no video in {videos_dir} could be read ({len(paths)} skipped)")
    _write(report, out, md_path, video_markdown(report))


def _write(report: dict, out: Path | None, md_path: Path | None, markdown: str) -> None:
    if out:
        write_output(out, json.dumps(report, indent=1) + "\n")
    if md_path:
        write_output(md_path, markdown)
    click.echo(markdown)
