"""Box overlap and one-to-one matching in numpy (torch-free): the parity
checks against facenet-pytorch and the detection benchmarks match boxes here."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)``
    (x1, y1, x2, y2; areas without +1, as torchvision's; an empty or inverted box
    has area 0 and IoU 0) -> ``(N, M)`` float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return _iou(a[:, None], b[None])


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in ``a`` ``(K, 4)`` with the box in the same row of ``b`` -> ``(K,)``
    float64: the values :func:`box_iou` gives for those pairs, to the last bit (one formula), for
    a caller that knows which few pairs of two large sets can overlap (the tracker)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return _iou(a, b)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``(..., 4)`` that broadcast against each other."""
    lt = np.maximum(a[..., :2], b[..., :2])  # (N, M, 2) for box_iou
    rb = np.minimum(a[..., 2:], b[..., 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=-1)
    area_a = np.clip(a[..., 2:] - a[..., :2], 0, None).prod(axis=-1)
    area_b = np.clip(b[..., 2:] - b[..., :2], 0, None).prod(axis=-1)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_match(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of rows to columns of an IoU matrix, taking pairs by
    decreasing IoU (> 0). Returns ``(R,)`` the column of each row (-1: none) and
    ``(R,)`` its IoU (0 when unmatched). Because pairs are taken in decreasing
    order, the matching at any threshold t is this one cut at t."""
    n_rows, n_cols = iou.shape
    col_of = np.full(n_rows, -1, dtype=np.int64)
    val = np.zeros(n_rows)
    if n_rows == 0 or n_cols == 0:
        return col_of, val
    rows, cols = np.nonzero(iou > 0)
    order = np.argsort(-iou[rows, cols], kind="stable")  # ties: row-major order
    used = np.zeros(n_cols, dtype=bool)
    for r, c in zip(rows[order], cols[order]):
        if col_of[r] < 0 and not used[c]:
            col_of[r], val[r] = c, iou[r, c]
            used[c] = True
    return col_of, val


def match_one_to_one(ref: np.ndarray, cand: np.ndarray, iou_min: float) -> list[tuple[int, int]]:
    """``(i, j)`` pairs of a ``ref`` box and a ``cand`` box with IoU >= ``iou_min``,
    each box in at most one pair (:func:`greedy_match`), in descending IoU."""
    col_of, val = greedy_match(box_iou(ref, cand))
    keep = np.nonzero((col_of >= 0) & (val >= iou_min))[0]
    keep = keep[np.argsort(-val[keep], kind="stable")]
    return [(int(i), int(col_of[i])) for i in keep]
