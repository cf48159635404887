"""Fitting box calibrations (:mod:`worker.calibration`) from detections and ground truth.

Training pairs are (detection, annotated face) pairs from the one-to-one greedy
matching of :func:`shared.boxes.greedy_match` with IoU >= ``min_iou``, on
faces not flagged invalid whose shorter side is at least ``min_side_px``. The
fit is ridge regression on standardised features (the constant is not
penalised), folded back into one ``(F, 4)`` matrix so applying it needs no
scaler.

Reported calibrated numbers must come from images the calibration never saw:
:func:`cross_fit` splits the images into ``k`` seeded folds and calibrates each
fold's detections with a fit on the other folds.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from moodstream.shared.boxes import box_iou, greedy_match
from moodstream.shared.errors import DataError
from moodstream.trainer.bench.wider import WiderImage
from moodstream.worker.calibration import FEATURE_SETS, BoxCalibration, box_features, encode_boxes
from moodstream.worker.detectors import Face

DEFAULT_RIDGE = 10.0  # on standardised features; 0.1-100 move held-out mean IoU by < 0.003
FEATURE_SET_FOR = {"mtcnn": "box+landmarks", "haar": "const"}  # Haar boxes are square


def training_pairs(images: list[WiderImage], detections: list[list[Face]], min_iou: float = 0.5,
                   min_side_px: float = 0.0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Matched pairs: det boxes ``(N, 4)``, landmarks ``(N, 5, 2)`` (None if any
    detection lacks them), GT boxes ``(N, 4)`` and the image index of each ``(N,)``."""
    boxes, marks, gts, where = [], [], [], []
    for i, (img, faces) in enumerate(zip(images, detections)):
        if not faces or len(img.boxes) == 0:
            continue
        pred = np.array([f.box for f in faces], dtype=np.float64)
        gt_of_pred, ious = greedy_match(box_iou(pred, img.boxes))
        usable = ~img.invalid & (img.min_side >= min_side_px)
        for p, g in enumerate(gt_of_pred):
            if g >= 0 and ious[p] >= min_iou and usable[g]:
                boxes.append(pred[p])
                marks.append(faces[p].landmarks)
                gts.append(img.boxes[g])
                where.append(i)
    n = len(boxes)
    landmarks = None
    if n and all(m is not None for m in marks):
        landmarks = np.array(marks, dtype=np.float64).reshape(n, 5, 2)
    return (np.array(boxes).reshape(n, 4), landmarks, np.array(gts).reshape(n, 4),
            np.array(where, dtype=np.int64))


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """``(N, F)`` features whose first column is the constant, ``(N, T)`` targets ->
    ``(F, T)`` coefficients minimising ``|x c - y|^2 + ridge * |c[1:]|^2`` on
    standardised columns. Columns that (nearly) never vary get 0: scaled up to
    unit spread they would earn huge coefficients that blow up on the first
    input where they do vary."""
    mean = x[:, 1:].mean(axis=0)
    std = x[:, 1:].std(axis=0)
    keep = std > 1e-2
    z = (x[:, 1:][:, keep] - mean[keep]) / std[keep]  # (N, F')
    zc = np.concatenate([np.ones((len(x), 1)), z], axis=1)
    penalty = np.eye(zc.shape[1]) * ridge
    penalty[0, 0] = 0.0
    beta = np.linalg.solve(zc.T @ zc + penalty, zc.T @ y)  # (1 + F', T)
    coef = np.zeros((x.shape[1], y.shape[1]))
    slopes = beta[1:] / std[keep][:, None]
    coef[1:][keep] = slopes
    coef[0] = beta[0] - mean[keep] @ slopes
    return coef


def fit_calibration(boxes: np.ndarray, landmarks: np.ndarray | None, gt: np.ndarray, detector: str,
                    feature_set: str | None = None, ridge: float = DEFAULT_RIDGE,
                    meta: dict | None = None) -> BoxCalibration:
    """Fit the map from detection boxes (+ landmarks) to the annotated boxes."""
    feature_set = feature_set or FEATURE_SET_FOR.get(detector, "const")
    n_min = len(FEATURE_SETS[feature_set]) + 1
    if len(boxes) < n_min:
        raise DataError(f"{detector}: {len(boxes)} matched faces are too few to fit a calibration "
                        f"(need at least {n_min})")
    x = box_features(boxes, landmarks if feature_set == "box+landmarks" else None, feature_set)
    coef = fit_ridge(x, encode_boxes(boxes, gt), ridge)
    return BoxCalibration(detector, feature_set, coef, dict(meta or {}, n_faces=int(len(boxes)), ridge=ridge))


def kfold(n: int, k: int, seed: int) -> np.ndarray:
    """``(n,)`` fold id of each item: a seeded permutation cut into ``k`` near-equal folds."""
    order = np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % k
    return folds


def cross_fit(images: list[WiderImage], detections: list[list[Face]], detector: str, k: int = 5,
              seed: int = 0, min_iou: float = 0.5, min_side_px: float = 0.0,
              ridge: float = DEFAULT_RIDGE) -> tuple[list[list[Face]], list[dict]]:
    """Each image's detections calibrated by a fit on the other folds' images.

    Returns the calibrated detections (same order) and one record per fold
    (images, training faces, the coefficients)."""
    if k < 2 or k > len(images):
        raise DataError(f"cross-fitting needs 2 <= k <= number of images ({len(images)}), got k={k}")
    boxes, marks, gt, where = training_pairs(images, detections, min_iou, min_side_px)
    folds = kfold(len(images), k, seed)
    out: list[list[Face]] = [[] for _ in images]
    records = []
    for f in range(k):
        train = folds[where] != f
        cal = fit_calibration(boxes[train], None if marks is None else marks[train], gt[train], detector,
                              ridge=ridge)
        held = np.flatnonzero(folds == f)
        for i in held:
            out[i] = cal.apply(detections[i])
        records.append({"fold": f, "n_eval_images": int(len(held)), "n_train_faces": int(train.sum()),
                        "coef": np.round(cal.coef, 5).tolist()})
    return out, records


def fit_all(images: list[WiderImage], detections: list[list[Face]], detector: str, min_iou: float = 0.5,
            min_side_px: float = 0.0, ridge: float = DEFAULT_RIDGE, meta: dict | None = None) -> BoxCalibration:
    """One calibration fitted on every image (the one to ship)."""
    boxes, marks, gt, where = training_pairs(images, detections, min_iou, min_side_px)
    info = dict(meta or {})
    info.update(n_images=int(len(np.unique(where))), min_iou=min_iou, min_side_px=min_side_px,
                date=dt.date.today().isoformat())
    return fit_calibration(boxes, marks, gt, detector, ridge=ridge, meta=info)

