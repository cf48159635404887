"""The tracker with many faces a frame (worker.tracking.assign): the same answers as the former
dense Hungarian matching, and a bounded, logged approximation past its budgets.

The oracle is the former code itself, kept verbatim as the baseline of ``moodstream bench crowd``
(:func:`trainer.bench.crowd.dense_match`, :class:`~trainer.bench.crowd.DenseTrackState`). Scenes
are a few hundred faces, so the dense oracle stays quick; ``small`` (below) switches off the
shortcuts for small problems so that the window search and the per-component solve, the code a
crowd of thousands runs, are what is compared."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from moodstream.shared.boxes import box_iou
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face
from moodstream.trainer.bench.crowd import DenseTrackState, answers, crowd_scene, dense_match
from moodstream.worker.tracking import assign as assign_mod
from moodstream.worker.tracking.assign import NO_MATCH, assign, window_pairs
from moodstream.worker.tracking.tracker import TrackerConfig, TrackState, match

SCENES = {  # crowd_scene arguments: spread, overlapping, packed, fast (the centre-distance round), churning
    "sparse": dict(spacing_px=300),
    "crowded": dict(spacing_px=35),
    "packed": dict(spacing_px=20, side_px=(30, 40)),
    "fast": dict(spacing_px=60, speed_px_s=900, missing=0.1),
    "churn": dict(spacing_px=40, missing=0.3),
}


@pytest.fixture(params=["whole", "components"])
def small(request, monkeypatch):
    """``components``: every problem goes through the window search and the per-component solve
    (what a frame of thousands of faces runs); ``whole``: the shipped thresholds."""
    if request.param == "components":
        monkeypatch.setattr(assign_mod, "ALL_PAIRS_MAX", 0)
        monkeypatch.setattr(assign_mod, "WHOLE_MAX_CELLS", 0)
    return request.param


def track(state: TrackState, frames: list[list[Face]]) -> list[list[tuple]]:
    return [answers(state.update(i, i / 30, faces)) for i, faces in enumerate(frames)]


@pytest.mark.parametrize("kind", SCENES)
def test_same_tracks_and_smoothing_as_the_dense_solve(kind, small):
    for seed in range(8):
        frames = crowd_scene(150, 6, seed, **SCENES[kind])
        state = TrackState()
        assert track(state, frames) == track(DenseTrackState(), frames), (kind, seed)
        assert state.approximate_frames == 0


def test_same_pairs_as_the_dense_match_on_random_boxes(small):
    """match() itself, pair for pair and in the same order, with missed tracks and the third round."""
    cfg = TrackerConfig()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n, m = rng.integers(1, 120, 2)
        extent = rng.choice([150.0, 400.0, 2000.0])  # crowded .. sparse
        centre, side = rng.uniform(0, extent, (n, 2)), rng.uniform(10, 80, n)
        predicted = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], axis=1)
        picked = rng.integers(0, n, m)  # detections near tracks (some twice), moved by up to a box side
        moved = centre[picked] + rng.normal(0, 1, (m, 2)) * side[picked, None] * rng.choice([0.05, 0.5, 1.5])
        scale = side[picked] * rng.uniform(0.7, 1.4, m)
        detected = np.concatenate([moved - scale[:, None] / 2, moved + scale[:, None] / 2], axis=1)
        missed = (rng.integers(0, 3, n) * (rng.random(n) < 0.3)).tolist()
        got = match(predicted, detected, cfg, missed)
        assert got.exact and got.pairs == dense_match(predicted, detected, cfg, missed), seed


@pytest.mark.parametrize("round_px", [1.0, 8.0])
def test_exact_ties_go_as_before_up_to_whole_problems(round_px):
    """Boxes on a pixel grid, some duplicated, all one size: many assignments cost exactly the same,
    and scipy's choice among them depends on the whole matrix; a round of up to WHOLE_MAX_CELLS
    is still solved whole, so the answers are the former ones, ties included."""
    for seed in range(8):
        frames = crowd_scene(150, 6, seed, spacing_px=25, side_px=(32, 32), round_px=round_px)
        frames = [faces + faces[:10] for faces in frames]  # ten faces reported twice
        assert track(TrackState(), frames) == track(DenseTrackState(), frames), seed


def test_window_pairs_holds_every_point_inside(monkeypatch):
    monkeypatch.setattr(assign_mod, "ALL_PAIRS_MAX", 0)
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n, m = rng.integers(1, 200, 2)
        centre_p, centre_d = rng.uniform(0, 500, (n, 2)), rng.uniform(0, 500, (m, 2))
        reach = rng.uniform(0, 40, (n, 2)) * rng.choice([0.0, 1.0, 10.0], (n, 1))  # points, boxes, tall windows
        centre_d[: m // 4] = centre_p[rng.integers(0, n, m // 4)]  # points exactly on a centre
        reach[rng.random(n) < 0.05] = np.inf
        centre_p[rng.random(n) < 0.05, 1] = np.nan
        centre_d[rng.random(m) < 0.05, 0] = -np.inf
        rows, cols, complete = window_pairs(centre_p, reach, centre_d, 10**6)
        inside = np.abs(centre_d[None] - centre_p[:, None]) <= reach[:, None]  # (n, m, 2)
        inside &= np.isfinite(centre_d).all(axis=1)[None, :, None]  # a point at infinity is in no window
        want = set(zip(*np.nonzero(inside.all(axis=2))))
        got = list(zip(rows.tolist(), cols.tolist()))
        assert complete and len(got) == len(set(got)), seed
        assert want <= set(got), (seed, sorted(want - set(got))[:5])
        slack = np.abs(centre_d[cols] - centre_p[rows]) - reach[rows]  # what more it lists is a rounding's width
        assert np.all(slack <= 1e-5 * (reach[rows] + np.abs(centre_p[rows]) + 1)), seed


def test_assign_is_the_dense_solve_per_component(monkeypatch):
    monkeypatch.setattr(assign_mod, "WHOLE_MAX_CELLS", 0)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n, m = rng.integers(1, 60, 2)
        dense = np.where(rng.random((n, m)) < rng.choice([0.02, 0.1, 0.4]), rng.random((n, m)), NO_MATCH)
        rows, cols = np.nonzero(dense < NO_MATCH)
        r, c, exact = assign(rows, cols, dense[rows, cols], np.arange(n), np.arange(m), 10**6)
        a, b = linear_sum_assignment(dense)
        real = dense[a, b] < NO_MATCH
        assert exact and (r.tolist(), c.tolist()) == (a[real].tolist(), b[real].tolist()), seed


def pile_up(n: int) -> list[Face]:
    """``n`` faces reported on one spot: every track can take every face (N x M gated pairs)."""
    p = {label: 1 / len(LABELS) for label in LABELS}
    return [Face((100.0, 100.0, 140.0, 140.0), 0.99, emotion=LABELS[0], probabilities=p) for _ in range(n)]


def test_a_pile_up_past_the_budgets_keeps_every_face_and_logs_once(caplog):
    state = TrackState(TrackerConfig(max_pairs=2_000, max_cells=500), name="source cam-1")
    with caplog.at_level(logging.WARNING, logger="moodstream.worker.tracking.tracker"):
        out = [state.update(i, i / 30, pile_up(300)) for i in range(4)]
    for faces in out:
        ids = [f.track_id for f in faces]
        assert len(faces) == 300 and None not in ids and len(set(ids)) == 300  # every face a track of its own
        assert all(f.smoothed is not None for f in faces)
    assert state.approximate_frames == 3  # frame 0 had no track to match
    said = [r.getMessage() for r in caplog.records if r.name == "moodstream.worker.tracking.tracker"]
    assert len(said) == 1 and said[0].startswith("source cam-1: frame 1: ") and "max_pairs 2000" in said[0], said
    kept = {f.track_id for f in out[2]} & {f.track_id for f in out[3]}
    assert kept  # still tracking, approximately: some faces keep their track


def test_a_pile_up_at_the_default_budgets_is_matched(caplog):
    """1,200 boxes on one spot are 1.44 M gated pairs, past max_pairs: each track looks at the
    faces nearest it only, and the frame is still answered in full."""
    state = TrackState()
    with caplog.at_level(logging.WARNING, logger="moodstream.worker.tracking.tracker"):
        state.update(0, 0.0, pile_up(1200))
        faces = state.update(1, 1 / 30, pile_up(1200))
    assert len({f.track_id for f in faces}) == 1200 and state.approximate_frames == 1
    assert sum(f.track_id < 1200 for f in faces) > 0  # some faces kept their track
    assert len([r for r in caplog.records if r.name == "moodstream.worker.tracking.tracker"]) == 1


def test_boxes_that_are_not_finite_match_nothing_as_before(small):
    cfg = TrackerConfig()
    rng = np.random.default_rng(3)
    centre = rng.uniform(0, 300, (40, 2))
    boxes = np.concatenate([centre - 20, centre + 20], axis=1)
    predicted, detected = boxes.copy(), boxes + rng.normal(0, 2, boxes.shape)
    predicted[[1, 5]] = [[np.nan, 0, 10, 10], [-np.inf, 0, np.inf, 40]]
    detected[[2, 7]] = [[0, 0, np.inf, np.inf], [np.nan] * 4]
    detected[9] = [1e307, 1e307, 1.7e308, 1.7e308]  # finite, but its centre overflows
    with np.errstate(invalid="ignore", over="ignore"):
        want = dense_match(predicted, detected, cfg)
        got = match(predicted, detected, cfg)
    assert got.exact and got.pairs == want
    assert not {1, 5} & {p for p, _ in want} and not {2, 7, 9} & {d for _, d in want}


def test_iou_window_bound_holds_for_boxes_of_any_shape():
    """The IoU round lists only pairs whose centres lie within (w + min(w / iou_min, widest)) / 2:
    thin, wide, tiny and huge boxes at several iou_min, against every pair's IoU."""
    for iou_min in (0.05, 0.3, 0.9):
        cfg = TrackerConfig(iou_min=iou_min)
        for seed in range(10):
            rng = np.random.default_rng(seed)
            corner = rng.uniform(0, 200, (150, 2))
            size = np.exp(rng.uniform(np.log(0.5), np.log(300), (150, 2)))
            boxes = np.concatenate([corner, corner + size], axis=1)
            predicted = boxes[:70]
            near = predicted[:40] + rng.normal(0, 0.05, (40, 4)) * np.tile(size[:40], 2)  # some pairs overlap
            detected = np.concatenate([near, boxes[110:]])
            iou = box_iou(predicted, detected)
            got = match(predicted, detected, cfg, [0] * 70)
            assert got.pairs == dense_match(predicted, detected, cfg, [0] * 70), (iou_min, seed)
            assert any(iou[p, d] >= iou_min for p, d in got.pairs)


@pytest.mark.parametrize("kind", ["crowded", "packed", "fast"])
def test_same_answers_at_crowd_size_with_the_shipped_thresholds(kind):
    """600 faces: a round is 360,000 cells, past WHOLE_MAX_CELLS, so the window search and the
    per-component solve run as shipped (nothing switched), against the dense oracle."""
    for seed in range(4):
        frames = crowd_scene(600, 5, 100 + seed, **SCENES[kind])
        assert track(TrackState(), frames) == track(DenseTrackState(), frames), (kind, seed)
