"""``moodstream bench crowd``: the tracker's time a frame with thousands of faces.

A results message can carry thousands of faces (a crowd, or a hostile producer), and the track
stage runs :meth:`TrackState.update <worker.tracking.tracker.TrackState.update>` on every one.
Per N (``--faces``): a scene of N faces spread over a square frame (one face per ``--spacing``
px squared on average, sides 24-64 px, so neighbours sometimes overlap), each drifting at its own
constant velocity (about 1 px a frame at 30 fps) with 0.5 px of jitter, and 2% of them missing
from each frame (so the later rounds, missed tracks and centre distance, have work). Frame 0
starts the tracks; frames 1..``--frames`` are timed, one ``update`` each (the face records in,
tracked copies out: what the stage runs).

Two trackers see the same frames in the same process: the one that ships, and
:class:`DenseTrackState`, the same class with the former matching (:func:`dense_match`, one dense
Hungarian problem over all tracks x faces, kept verbatim here as the baseline and as the tests'
oracle). Reported per N: milliseconds a frame (median and max), the speed-up, and whether both
gave every face the same track id and smoothed emotion. The dense baseline needs N x M float64
matrices (10,000 faces: several GB, about a minute a frame), so it runs up to
``--baseline-max-faces``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import click
import numpy as np
from scipy.optimize import linear_sum_assignment

from moodstream.options import OutputFile
from moodstream.shared.boxes import box_iou
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face
from moodstream.trainer.bench import distinct_outputs, table_text, write_output
from moodstream.worker.tracking.assign import NO_MATCH
from moodstream.worker.tracking.tracker import Matching, TrackerConfig, TrackState, _side

FPS = 30.0


# --- the baseline: the tracker's matching before worker.tracking.assign, verbatim -------------------

def _dense_assign(cost: np.ndarray, rows: list[int], cols: list[int]) -> list[tuple[int, int]]:
    """Hungarian matching on ``cost[rows][:, cols]``; pairs at NO_MATCH are not pairs."""
    if not rows or not cols:
        return []
    sub = cost[np.ix_(rows, cols)]
    r, c = linear_sum_assignment(sub)
    return [(rows[i], cols[j]) for i, j in zip(r, c) if sub[i, j] < NO_MATCH]


def dense_match(predicted: np.ndarray, detected: np.ndarray, config: TrackerConfig,
                missed: list[int] | None = None) -> list[tuple[int, int]]:
    """(track row, detection row) pairs in three Hungarian rounds: IoU with the tracks seen on
    the last frame, IoU of the rest with the tracks missed lately (``missed[i] > 0``), then the
    centre distance for what is left."""
    if len(predicted) == 0 or len(detected) == 0:
        return []
    missed = missed if missed is not None else [0] * len(predicted)
    iou_cost = box_iou(predicted, detected)
    iou_cost = np.where(iou_cost >= config.iou_min, 1.0 - iou_cost, NO_MATCH)
    pairs: list[tuple[int, int]] = []

    def left() -> tuple[list[int], list[int]]:
        return ([i for i in range(len(predicted)) if i not in {p for p, _ in pairs}],
                [j for j in range(len(detected)) if j not in {d for _, d in pairs}])

    pairs += _dense_assign(iou_cost, [i for i in range(len(predicted)) if missed[i] == 0], list(range(len(detected))))
    rows, cols = left()
    pairs += _dense_assign(iou_cost, [i for i in rows if missed[i] > 0], cols)
    rows, cols = left()
    if rows and cols:
        side_p, side_d = _side(predicted), _side(detected)
        centre_p = (predicted[:, :2] + predicted[:, 2:]) / 2
        centre_d = (detected[:, :2] + detected[:, 2:]) / 2
        dist = np.linalg.norm(centre_p[:, None] - centre_d[None], axis=2) / side_p[:, None]  # (N, M) in sides
        ratio = side_d[None, :] / side_p[:, None]
        ok = (dist <= config.centre_max) & (ratio <= config.size_max) & (ratio >= 1 / config.size_max)
        pairs += _dense_assign(np.where(ok, dist, NO_MATCH), rows, cols)
    return pairs


class DenseTrackState(TrackState):
    """:class:`TrackState` with the former dense matching: the baseline and the oracle."""

    def _match(self, predicted: np.ndarray, boxes: np.ndarray) -> Matching:
        return Matching(dense_match(predicted, boxes, self.config, [tr.missed for tr in self.tracks]), True)


# --- scenes ---------------------------------------------------------------------------------------

def crowd_scene(n: int, frames: int, seed: int = 0, spacing_px: float = 100.0, side_px: tuple[float, float] = (24, 64),
                speed_px_s: float = 30.0, jitter_px: float = 0.5, missing: float = 0.02,
                round_px: float | None = None) -> list[list[Face]]:
    """``frames`` frames of ``n`` faces on a square of side ``sqrt(n) * spacing_px`` (so one face per
    ``spacing_px`` squared), each at its own constant velocity (normal, ``speed_px_s`` per axis) plus
    ``jitter_px`` of noise a frame; each face is left out of a frame with probability ``missing``, and
    the order of faces is shuffled every frame. ``round_px`` rounds the coordinates (ties)."""
    rng = np.random.default_rng(seed)
    extent = max(np.sqrt(n), 1.0) * spacing_px
    centre = rng.uniform(0, extent, (n, 2))
    velocity = rng.normal(0, speed_px_s, (n, 2))
    side = rng.uniform(*side_px, n)
    top = rng.integers(0, len(LABELS), n)
    out = []
    for f in range(frames):
        c = centre + velocity * f / FPS + rng.normal(0, jitter_px, (n, 2))
        boxes = np.concatenate([c - side[:, None] / 2, c + side[:, None] / 2], axis=1)
        if round_px:
            boxes = np.round(boxes / round_px) * round_px
        p = rng.dirichlet(np.full(len(LABELS), 0.5), n)
        shown = np.flatnonzero(rng.random(n) >= missing)
        rng.shuffle(shown)
        out.append([Face(tuple(float(v) for v in boxes[i]), 0.99, emotion=LABELS[top[i]],
                         probabilities={label: float(v) for label, v in zip(LABELS, p[i])}) for i in shown])
    return out


def answers(faces: list[Face]) -> list[tuple]:
    """What a tracker adds to a frame's faces: (track id, smoothed emotion, smoothed probabilities)."""
    return [(f.track_id, f.smoothed.emotion, tuple(f.smoothed.probabilities.items())) for f in faces]


def time_updates(state: TrackState, frames: list[list[Face]]) -> tuple[list[float], list[list[tuple]]]:
    """Frame 0 untimed, then one timed ``update`` a frame: (ms of frames 1.., answers of every frame)."""
    ms, out = [], [answers(state.update(0, 0.0, frames[0]))]
    for i, faces in enumerate(frames[1:], start=1):
        t0 = time.perf_counter()
        tracked = state.update(i, i / FPS, faces)
        ms.append((time.perf_counter() - t0) * 1000)
        out.append(answers(tracked))
    return ms, out


def ratio(x: float) -> float:
    """``x`` to two significant digits (12.0, 2.0, 0.7, 0.0041): rounded to a decimal place, a ratio
    under 0.05 (a timed frame slowed by load) read 0.0, no speedup at all."""
    return float(f"{x:.2g}")


def run_size(n: int, frames: int, seed: int, spacing_px: float, baseline: bool) -> dict:
    scene = crowd_scene(n, frames + 1, seed, spacing_px)
    state = TrackState()
    ms, ours = time_updates(state, scene)
    row = {"faces": n, "tracks": len(state.tracks), "ms_median": round(float(np.median(ms)), 2),
           "ms_max": round(max(ms), 2), "exact": state.approximate_frames == 0,
           "baseline_ms_median": None, "baseline_ms_max": None, "speedup": None, "same_answers": None}
    if baseline:
        base_ms, theirs = time_updates(DenseTrackState(), scene)
        row.update(baseline_ms_median=round(float(np.median(base_ms)), 2), baseline_ms_max=round(max(base_ms), 2),
                   speedup=ratio(float(np.median(base_ms) / max(np.median(ms), 1e-9))), same_answers=ours == theirs)
    return row


def crowd_markdown(report: dict) -> str:
    lines = ["# Tracker time a frame with N faces (`TrackState.update`)", "", f"Command: `{report['command']}`", "",
             f"CPU: {report['cpu']}. {report['frames']} timed frames per N after the first; faces spread one per "
             f"{report['spacing_px']:g} px squared, drifting ~1 px a frame, 2% missing each frame. before: the "
             "former dense Hungarian matching (DenseTrackState), in the same process on the same frames.", "",
             "| faces | after ms/frame (median / max) | before ms/frame (median / max) | speed-up | same answers |",
             "|---:|---:|---:|---:|---|"]
    for r in report["sizes"]:
        before = "not run" if r["baseline_ms_median"] is None else \
            f"{r['baseline_ms_median']:.1f} / {r['baseline_ms_max']:.1f}"
        speed = "-" if r["speedup"] is None else f"{r['speedup']:g}x"
        same = "-" if r["same_answers"] is None else ("yes" if r["same_answers"] else "**no**")
        lines.append(f"| {r['faces']:,} | {r['ms_median']:.1f} / {r['ms_max']:.1f} | {before} | {speed} | {same} |")
    return table_text(lines + [""])


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if not out or min(out) < 1:
        raise click.BadParameter("give at least one face count, each at least 1")
    return out


@click.command("crowd")
@click.option("--faces", default="10,100,1000,3000,10000", show_default=True, callback=_int_list,
              help="Faces a frame, comma-separated: one scene each.")
@click.option("--frames", default=5, show_default=True, type=click.IntRange(min=1), help="Timed frames per scene.")
@click.option("--baseline-max-faces", default=3000, show_default=True, type=click.IntRange(min=0),
              help="Run the former dense matching up to this many faces (it needs N x M matrices).")
@click.option("--spacing", "spacing_px", default=100.0, show_default=True, type=click.FloatRange(min=1),
              help="One face per this many px squared, on average.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed of the scenes.")
@click.option("--out", type=OutputFile(), help="Write the JSON report here.")
@click.option("--markdown", "md_path", type=OutputFile(), help="Write a table here.")
def crowd_cmd(faces, frames, baseline_max_faces, spacing_px, seed, out, md_path):
    """Tracker time a frame for crowds of 10 to 10,000 faces, against the former dense matching."""
    distinct_outputs(out, md_path)
    from moodstream.worker.runtime import cpu_info

    report = {"benchmark": "tracker time a frame with N faces", "command": "moodstream " + shlex.join(sys.argv[1:]),
              "cpu": cpu_info().model, "frames": frames, "spacing_px": spacing_px, "seed": seed, "sizes": []}
    for n in faces:
        report["sizes"].append(run_size(n, frames, seed, spacing_px, n <= baseline_max_faces))
        click.echo(f"bench crowd: {report['sizes'][-1]}", err=True)
    if out:
        write_output(out, json.dumps(report, indent=1) + "\n")
    markdown = crowd_markdown(report)
    if md_path:
        write_output(md_path, markdown)
    click.echo(markdown)
