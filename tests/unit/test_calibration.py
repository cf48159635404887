"""Box calibration: fitting recovers a known map, applying it is exact, the
shipped file loads, and cross-fitting never scores an image with its own fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moodstream.shared.errors import DataError, ModelError
from moodstream.trainer.bench.calibration_fit import cross_fit, fit_calibration, fit_ridge, kfold, training_pairs
from moodstream.trainer.bench.wider import WiderImage
from moodstream.worker.calibration import (FEATURE_SETS, FORMAT, SHIPPED_CALIBRATION, BoxCalibration, box_features,
                                decode_boxes, encode_boxes, load_calibration, save_calibrations)
from moodstream.worker.detectors import Face


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random boxes ``(n, 4)`` and plausible landmarks ``(n, 5, 2)`` jittered inside them."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(20, 120, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    template = np.array([[-0.2, -0.15], [0.2, -0.15], [0.0, 0.05], [-0.15, 0.25], [0.15, 0.25]])
    pts = template[None] + rng.normal(0, 0.05, (n, 5, 2))  # box-normalised
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    marks = np.stack([cx[:, None] + pts[:, :, 0] * wh[:, :1], cy[:, None] + pts[:, :, 1] * wh[:, 1:]], axis=2)
    return boxes, marks


def known_coef(feature_set: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coef = rng.normal(0, 0.1, (len(FEATURE_SETS[feature_set]), 4))
    coef[0] = [0.02, 0.08, 0.1, 0.25]  # shift down, grow (WIDER boxes are taller than MTCNN's)
    return coef


def test_encode_decode_round_trip():
    boxes, _ = synthetic(20)
    target, _ = synthetic(20, seed=3)
    assert decode_boxes(boxes, encode_boxes(boxes, target)) == pytest.approx(target)
    assert decode_boxes(boxes, np.zeros((20, 4))) == pytest.approx(boxes)


def test_box_features_layout():
    box = np.array([[10, 20, 30, 60]])  # centre (20, 40), 20 x 40
    marks = np.array([[[15, 30], [25, 30], [20, 40], [16, 50], [24, 50]]])
    f = box_features(box, marks, "box+landmarks")
    assert f.shape == (1, 12)
    assert f[0, :2] == pytest.approx([1.0, np.log(2.0)])
    assert f[0, 2:7] == pytest.approx([-0.25, 0.25, 0.0, -0.2, 0.2])
    assert f[0, 7:] == pytest.approx([-0.25, -0.25, 0.0, 0.25, 0.25])
    with pytest.raises(ModelError, match="landmarks"):
        box_features(box, None, "box+landmarks")


@pytest.mark.parametrize("feature_set", ["box+landmarks", "box", "const"])
def test_fit_recovers_known_map(feature_set):
    boxes, marks = synthetic(300)
    coef = known_coef(feature_set)
    marks_in = marks if feature_set == "box+landmarks" else None
    gt = decode_boxes(boxes, box_features(boxes, marks_in, feature_set) @ coef)
    cal = fit_calibration(boxes, marks, gt, "mtcnn", feature_set=feature_set, ridge=1e-9)
    assert cal.feature_set == feature_set
    assert cal.coef == pytest.approx(coef, abs=1e-6)
    assert cal.apply_arrays(boxes, marks) == pytest.approx(gt, abs=1e-6)


def test_fit_ridge_ignores_constant_columns():
    x = np.column_stack([np.ones(50), np.zeros(50), np.linspace(-1, 1, 50), np.r_[np.zeros(49), 1e-3]])
    y = np.column_stack([3 + 2 * x[:, 2]])
    coef = fit_ridge(x, y, ridge=1e-9)
    assert coef[:, 0] == pytest.approx([3, 0, 2, 0], abs=1e-6)  # the almost-constant column too


def test_haar_default_is_a_fixed_shift_and_scale():
    boxes, _ = synthetic(50)
    cal = fit_calibration(boxes, None, decode_boxes(boxes, np.tile([0.0, 0.1, 0.2, 0.3], (50, 1))), "haar")
    assert cal.feature_set == "const" and cal.coef.shape == (1, 4)
    assert cal.coef[0] == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-9)


def test_apply_clips_wild_corrections():
    cal = BoxCalibration("haar", "const", np.array([[2.0, 0.0, 5.0, -5.0]]))
    out = cal.apply_arrays(np.array([[0.0, 0.0, 10.0, 10.0]]))
    assert out[0] == pytest.approx([0, 2.5, 20, 7.5])  # centre +0.5 side in x, x2 wide, /2 tall


def test_fit_needs_enough_faces():
    boxes, marks = synthetic(5)
    with pytest.raises(DataError, match="too few"):
        fit_calibration(boxes, marks, boxes, "mtcnn")


def test_apply_to_faces_keeps_score_and_landmarks():
    boxes, marks = synthetic(3)
    cal = BoxCalibration("mtcnn", "box+landmarks", known_coef("box+landmarks"))
    faces = [Face(tuple(b), 0.9 + i / 100, [tuple(p) for p in m]) for i, (b, m) in enumerate(zip(boxes, marks))]
    out = cal.apply(faces)
    assert [f.score for f in out] == [f.score for f in faces]
    assert out[0].landmarks == faces[0].landmarks
    assert np.array([f.box for f in out]) == pytest.approx(cal.apply_arrays(boxes, marks))
    assert cal.apply([]) == []
    with pytest.raises(ModelError, match="landmarks"):
        cal.apply([Face((0, 0, 10, 10), 0.9)])


def test_coef_shape_is_checked():
    with pytest.raises(ModelError, match="shape"):
        BoxCalibration("haar", "const", np.zeros((12, 4)))


def test_save_load_round_trip(tmp_path):
    cals = [BoxCalibration("mtcnn", "box+landmarks", known_coef("box+landmarks"), {"n_faces": 7}),
            BoxCalibration("haar", "const", known_coef("const"))]
    path = tmp_path / "cal.json"
    save_calibrations(path, cals, {"how": "test"})
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["how"] == "test"
    back = load_calibration("mtcnn", path)
    assert back.coef == pytest.approx(cals[0].coef, abs=1e-8)
    assert back.meta["n_faces"] == 7
    with pytest.raises(ModelError, match="no calibration for detector 'other'"):
        load_calibration("other", path)
    path.write_text('{"format": "something else"}')
    with pytest.raises(ModelError, match="not a moodstream box calibration"):
        load_calibration("mtcnn", path)
    with pytest.raises(ModelError, match="not found"):
        load_calibration("mtcnn", tmp_path / "missing.json")


def test_shipped_calibration_loads_for_both_detectors():
    if not SHIPPED_CALIBRATION.is_file():
        pytest.skip("no shipped calibration in this checkout")
    for name in ("mtcnn", "haar"):
        cal = load_calibration(name)
        assert cal.meta["n_faces"] > 0 and "date" in cal.meta and "fitted_on" in cal.meta
    box = np.array([[100.0, 100.0, 160.0, 170.0]])
    marks = np.array([[[118, 125], [142, 125], [130, 140], [120, 155], [140, 155]]], dtype=float)
    for name, pts in (("haar", None), ("mtcnn", marks)):
        out = load_calibration(name).apply_arrays(box, pts)
        assert box_iou_1(out[0], box[0]) > 0.6  # a sane map adjusts a box, it does not throw it away


def box_iou_1(a, b) -> float:
    from moodstream.shared.boxes import box_iou
    return float(box_iou(a[None], b[None])[0, 0])


def test_kfold_partitions_evenly():
    folds = kfold(23, 5, seed=0)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    assert (kfold(23, 5, seed=0) == folds).all()
    assert not (kfold(23, 5, seed=1) == folds).all()


def _scene(n_images: int, coef: np.ndarray, leak_image: int | None = None):
    """Images whose annotated boxes are the known map of the detections; image
    ``leak_image`` is annotated with a different map (an outlier)."""
    images, detections = [], []
    for i in range(n_images):
        boxes, marks = synthetic(6, seed=100 + i)
        boxes[:, [0, 2]] += np.arange(6)[:, None] * 400  # far apart: one-to-one matches
        marks[:, :, 0] += np.arange(6)[:, None] * 400
        c = coef if i != leak_image else coef * 0
        gt = decode_boxes(boxes, box_features(boxes, marks, "box+landmarks") @ c)
        images.append(WiderImage(f"{i}.jpg", f"{i}.jpg", None, (3000, 500), (3000, 500), gt,
                                 np.zeros((6, 6), dtype=np.int64)))
        detections.append([Face(tuple(b), 0.99, [tuple(p) for p in m]) for b, m in zip(boxes, marks)])
    return images, detections


def test_training_pairs_match_detections_to_faces():
    coef = known_coef("box+landmarks") * 0.3
    images, dets = _scene(3, coef)
    boxes, marks, gt, where = training_pairs(images, dets)
    assert boxes.shape == (18, 4) and marks.shape == (18, 5, 2) and gt.shape == (18, 4)
    assert where.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert training_pairs(images, dets, min_side_px=1e6)[0].shape == (0, 4)


def test_cross_fit_is_held_out():
    coef = known_coef("box+landmarks") * 0.3
    images, dets = _scene(10, coef, leak_image=0)
    out, records = cross_fit(images, dets, "mtcnn", k=5, seed=0, ridge=1e-9)
    assert len(records) == 5 and sum(r["n_eval_images"] for r in records) == 10
    assert all(r["n_train_faces"] == 48 for r in records)  # 8 images x 6 faces
    # the outlier (image 0, annotated as "no change") and its fold-mates are scored with a fit
    # on the other folds only, which are all clean: they get exactly the true map
    folds = kfold(10, 5, 0)
    for i in np.flatnonzero(folds == folds[0]):
        raw = np.array([f.box for f in dets[i]])
        marks = np.array([f.landmarks for f in dets[i]])
        want = decode_boxes(raw, box_features(raw, marks, "box+landmarks") @ coef)
        assert np.array([f.box for f in out[i]]) == pytest.approx(want, abs=1e-6)
    raw0 = np.array([f.box for f in dets[0]])
    assert not np.allclose(np.array([f.box for f in out[0]]), images[0].boxes)  # not its own labels
    assert np.allclose(images[0].boxes, raw0)
    with pytest.raises(DataError, match="k="):
        cross_fit(images, dets, "mtcnn", k=11)
