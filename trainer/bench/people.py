"""``moodstream bench tracking --part people``: which face-likeness rule tells people from
noise, measured on WIDER (detection precision and recall) and on the shared videos
(tracks counted as people).

A rule judges one detection (:func:`face_like`: the detector score and, with
MTCNN, the five landmarks' geometry); a track is face-like when at least half
its detections are. On WIDER (``--wider``, the 200 stretched images) each rule
filters the default detector's detections; precision is the share of kept
detections matching a true face (IoU >= 0.5, one-to-one), recall the share of
valid true faces matched (all sizes). The target: precision up, recall down by
at most one point. On each shared video (``--videos``) the default analyze path
(detect every frame, track) runs once, and the people counted are the tracks
seen ``min_person_s`` (the summary's ``seen_s``: span times the share of the
frames over it that show the face) and face-like by the rule; ``span >=``, the
rule before ``seen_s``, for comparison.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.record import Face
from moodstream.trainer.bench import table_text

log = logging.getLogger(__name__)

SCORES = (0.0, 0.92, 0.93, 0.94, 0.95, 0.96, 0.98, 0.99)


def landmarks_plausible(face: Face) -> bool:
    """The five MTCNN landmarks look like a face: both eyes above the nose and the nose
    above both mouth corners, left features left of right ones, and the eyes at least a
    fifth of the box width apart. True without landmarks (Haar)."""
    if not face.landmarks or len(face.landmarks) < 5:
        return True
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks[:5]
    width = face.box[2] - face.box[0]
    return (max(ly, ry) < ny < min(mly, mry) and lx < rx and mlx < mrx and min(lx, mlx) < nx < max(rx, mrx)
            and math.hypot(rx - lx, ry - ly) >= 0.2 * width)


def face_like(face: Face, score_min: float, landmarks: bool) -> bool:
    return face.score >= score_min and (not landmarks or landmarks_plausible(face))


def rules() -> list[tuple[str, float, bool]]:
    return [(f"score >= {s:g}" + (" + landmarks" if lm else ""), s, lm) for lm in (False, True) for s in SCORES]


def wider_figures(pipeline, root: Path) -> list[dict]:
    from moodstream.trainer.bench.wider import load_wider

    images = load_wider(root)
    detections = [pipeline.detect([img.read()])[0] for img in images]
    out = []
    for name, score_min, lm in rules():
        n_pred = tp = n_true = matched = 0
        for img, faces in zip(images, detections):
            kept = [f for f in faces if face_like(f, score_min, lm)]
            pairs = match_one_to_one(np.array([f.box for f in kept]).reshape(-1, 4), img.boxes, 0.5)
            valid = ~img.invalid
            n_pred += len(kept)
            tp += len(pairs)
            n_true += int(valid.sum())
            matched += sum(bool(valid[j]) for _, j in pairs)
        out.append({"rule": name, "score_min": score_min, "landmarks": lm, "detections": n_pred,
                    "precision": round(tp / max(n_pred, 1), 4), "recall": round(matched / max(n_true, 1), 4)})
    return out


def video_tracks(pipeline, path: Path) -> list[dict]:
    """Per track of the video (default analyze path): span, frames, and per-rule face-likeness."""
    from moodstream.shared.media import iter_video
    from moodstream.worker.video import VideoAnalyzer, VideoFrame

    analyzer = VideoAnalyzer(pipeline, 1)
    tracks: dict[int, list[tuple[int, float, Face]]] = {}  # (analysed frame's position, time, face)
    batch: list[VideoFrame] = []
    done = 0

    def flush():
        nonlocal done
        for res in analyzer.analyze(batch):
            for f in res.faces:
                tracks.setdefault(f.track_id, []).append((done, res.timestamp_s, f))
            done += 1
        batch.clear()

    for it in iter_video(str(path)):
        if it.error is None:
            batch.append(VideoFrame(str(path), it.frame, it.timestamp_s, it.image, True, it.shot))
        if len(batch) == 16:
            flush()
    flush()
    out = []
    for tid, seen in sorted(tracks.items()):
        span = seen[-1][1] - seen[0][1]  # last - first time, what the JSON shows
        spanned = seen[-1][0] - seen[0][0] + 1
        # the summary's own rule (worker/tracking/summary.py): seen_s, the span times the share shown
        out.append({"track_id": tid, "frames": len(seen), "frames_spanned": spanned, "span_s": round(span, 3),
                    "seen_s": round(span * len(seen) / spanned, 3),
                    "median_score": round(float(np.median([f.score for _, _, f in seen])), 4),
                    "face_like": {name: float(np.mean([face_like(f, s, lm) for _, _, f in seen]))
                                  for name, s, lm in rules()}})
    return out


def count_people(tracks: list[dict], min_person_s: float, rule: str | None, key: str = "seen_s") -> int:
    return sum(t[key] >= min_person_s - 1e-9 and (rule is None or t["face_like"][rule] >= 0.5) for t in tracks)


def run_people(pipeline, wider_root: Path | None, videos: list[Path], min_person_s: float = 0.5) -> dict:
    part: dict = {"min_person_s": min_person_s}
    if wider_root is not None and wider_root.is_dir():
        part["wider"] = wider_figures(pipeline, wider_root)
    part["videos"] = {}
    for path in videos:
        tracks = video_tracks(pipeline, path)
        part["videos"][path.name] = {
            "tracks": tracks, "all_tracks": len(tracks),
            "people": {"none (before)": len(tracks),
                       f"span >= {min_person_s:g} s": count_people(tracks, min_person_s, None, "span_s"),
                       "span + score >= 0.92": count_people(tracks, min_person_s, "score >= 0.92", "span_s"),
                       f"seen >= {min_person_s:g} s": count_people(tracks, min_person_s, None),
                       **{f"seen + {name}": count_people(tracks, min_person_s, name) for name, _, _ in rules()}}}
    return part


def people_markdown(part: dict) -> str:
    lines = ["## People, not noise: face-likeness rules", ""]
    if "wider" in part:
        base = part["wider"][0]
        lines += ["WIDER val (200 stretched images), default detector; a rule keeps a detection or not.", "",
                  "| rule | detections | precision | recall | recall change |", "|---|---:|---:|---:|---:|"]
        for r in part["wider"]:
            lines.append(f"| {r['rule']} | {r['detections']} | {r['precision']:.2%} | {r['recall']:.2%} "
                         f"| {100 * (r['recall'] - base['recall']):+.1f} pt |")
        lines.append("")
    for name, v in part["videos"].items():
        lines.append(f"- {name}: " + "; ".join(f"{k}: {n}" for k, n in v["people"].items()))
    m = part["min_person_s"]
    for name, v in part["videos"].items():
        lines += ["", f"{name}: each track (person: seen >= {m:g} s and score >= 0.92, as shipped; "
                  "span alone: the rule before seen_s)", "",
                  "| track | frames | frames spanned | span s | seen s | median score | person | by span alone |",
                  "|---:|---:|---:|---:|---:|---:|---|---|"]
        for t in v["tracks"]:
            like = t["face_like"]["score >= 0.92"] >= 0.5
            lines.append(f"| #{t['track_id']} | {t['frames']} | {t['frames_spanned']} | {t['span_s']:.2f} "
                         f"| {t['seen_s']:.2f} | {t['median_score']:.3f} "
                         f"| {'yes' if like and t['seen_s'] >= m - 1e-9 else 'no'} "
                         f"| {'yes' if like and t['span_s'] >= m - 1e-9 else 'no'} |")
    return table_text(lines) + "\n"
