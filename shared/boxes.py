"""Box overlap and one-to-one matching in numpy (torch-free): the parity
checks against facenet-pytorch and the detection benchmarks match boxes here."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)``
    (x1, y1, x2, y2; areas without +1, as torchvision) -> ``(N, M)`` float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(min=0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(min=0)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_one_to_one(ref: np.ndarray, cand: np.ndarray, iou_min: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best pairs first: ``(i, j)`` pairs of a
    ``ref`` box and a ``cand`` box with IoU >= ``iou_min``, each box in at most
    one pair, in descending IoU."""
    iou = box_iou(ref, cand)
    rows, cols = np.nonzero(iou >= iou_min)
    order = np.argsort(-iou[rows, cols], kind="stable")  # ties: row-major order, as argmax
    used_r, used_c, pairs = set(), set(), []
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs
