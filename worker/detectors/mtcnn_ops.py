"""Tensor operations behind the batched MTCNN (:mod:`worker.detectors.mtcnn_batched`).

Pure functions on device tensors, no Python loop over frames or boxes. Each
reproduces one step of facenet-pytorch 2.5.3's ``detect_face`` (same formulas,
same float32 op order) so the boxes come out the same:

* :func:`pyramid_scales`: the image-pyramid scales.
* :func:`integral_image` + :func:`area_crops`: facenet crops each candidate box
  from the frame and resizes it with ``interpolate(mode="area")``, which is
  ``adaptive_avg_pool2d``: every output pixel is the mean of an integer
  rectangle of the crop. We read those rectangle sums from a summed-area table
  (four gathers per output pixel, all boxes at once). Integer sums are exact,
  so the crops equal facenet's up to the last bit of the final division.
* :func:`grouped_nms`: ``batched_nms`` (IoU, torchvision) without the
  per-class Python loop torchvision falls back to above 4,000 (CPU) or 20,000
  (CUDA) boxes, and with a cap on the boxes per NMS call (its mask is N x N).
* :func:`grouped_nms_min`: facenet's last-stage NMS, "Min" overlap with
  +1 pixel areas, which facenet runs in numpy on the host; here a greedy NMS
  solved on the device by fixed-point iteration.
* :func:`rerec`, :func:`bbreg`, :func:`pad_boxes`: facenet's box arithmetic.
"""

from __future__ import annotations

import torch
from torchvision.ops import nms


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """facenet's pyramid: the first scale maps ``min_face_size`` to PNet's 12 px
    cell; each next one is ``factor`` smaller until the short side is under 12 px."""
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scales, scale = [], m
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def table_dtype(height: int, width: int) -> torch.dtype:
    """int32 while a whole frame's sum of 8-bit values fits (up to ~8.4 Mpx), else int64."""
    return torch.int32 if height * width * 255 < 2**31 else torch.int64


def integral_image(frames: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, H+1, W+1, 3) integer summed-area table, zero
    first row and column (exact sums: see :func:`table_dtype`)."""
    b, h, w, c = frames.shape
    dtype = table_dtype(h, w)
    table = torch.zeros((b, h + 1, w + 1, c), dtype=dtype, device=frames.device)
    table[:, 1:, 1:] = frames.to(dtype).cumsum(1).cumsum(2)
    return table


def _window_edges(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """adaptive_avg_pool's windows over ``length`` input pixels from ``start``:
    output ``i`` averages ``[floor(i*L/size), ceil((i+1)*L/size))``. (N,) -> 2 x (N, size)."""
    i = torch.arange(size, device=start.device)
    lo = (i[None, :] * length[:, None]) // size
    hi = -((-(i[None, :] + 1) * length[:, None]) // size)  # ceil division
    return start[:, None] + lo, start[:, None] + hi


def area_crops(table: torch.Tensor, image_idx: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor,
               x1: torch.Tensor, y1: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``[y0, y1) x [x0, x1)`` (0-based, exclusive ends, non-empty, inside
    the frame) of frame ``image_idx`` for every box and area-resize it to
    ``size`` x ``size``: ``interpolate(frame[:, :, y0:y1, x0:x1], size, mode="area")``
    for all N boxes at once. Returns (N, 3, size, size) float32 in [0, 255]."""
    _, hp, wp, c = table.shape
    flat = table.reshape(-1, c)  # (B*(H+1)*(W+1), 3)
    ys0, ys1 = _window_edges(y0, y1 - y0, size)  # (N, size) rows
    xs0, xs1 = _window_edges(x0, x1 - x0, size)  # (N, size) columns
    base = image_idx.long()[:, None, None] * hp

    def corner(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:  # -> (N, size, size, 3)
        return flat[(base + ys[:, :, None]) * wp + xs[:, None, :]]

    sums = corner(ys1, xs1) - corner(ys0, xs1) - corner(ys1, xs0) + corner(ys0, xs0)
    count = (ys1 - ys0)[:, :, None] * (xs1 - xs0)[:, None, :]  # (N, size, size)
    return (sums.float() / count[..., None].float()).permute(0, 3, 1, 2)


def _group_chunks(groups: torch.Tensor, max_boxes: int) -> list[tuple[int, int]]:
    """Split sorted ``groups`` into ``[lo, hi)`` runs of at most ``max_boxes``
    boxes, cutting only between groups (a bigger group gets a run of its own).
    One host sync for the group starts; a handful of runs, not one per box."""
    n = groups.shape[0]
    starts = torch.nonzero(torch.diff(groups, prepend=groups[:1] - 1)).flatten().tolist() + [n]
    runs, lo = [], 0
    for s, e in zip(starts[:-1], starts[1:]):  # group [s, e)
        if e - lo > max_boxes and s > lo:
            runs.append((lo, s))
            lo = s
    runs.append((lo, n))
    return runs


def grouped_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float,
                max_boxes: int = 2048) -> torch.Tensor:
    """Indices kept by greedy IoU NMS run separately in each group, sorted
    ascending. ``groups`` must be sorted (boxes of a group contiguous).

    The groups are shifted apart (torchvision's coordinate trick, in float64 so
    the shift costs no precision) and NMS'd together, ``max_boxes`` at a time
    at most, splitting only between groups: a call costs the square of its boxes
    (torchvision's CUDA NMS builds an N x N bit mask, 1.25 GB at 100k boxes, and
    gathers the kept boxes from it in one thread block; its CPU NMS compares every
    pair), so runs of whole groups are cheaper than one call over them all."""
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    shifted = boxes.double()
    shifted = shifted + (groups.double() * (shifted.max() + 1))[:, None]
    scores = scores.double()
    if n <= max_boxes:
        return nms(shifted, scores, iou).sort().values
    keep = [nms(shifted[lo:hi], scores[lo:hi], iou) + lo for lo, hi in _group_chunks(groups, max_boxes)]
    return torch.cat(keep).sort().values


def grouped_nms_min(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                    threshold: float, max_boxes: int = 4096) -> torch.Tensor:
    """facenet's ``batched_nms_numpy(..., "Min")``: greedy NMS by score where
    box j is dropped when a kept, higher-scoring box i of its group has
    ``inter / min(area_i, area_j) > threshold`` (areas and sides with +1).

    Returns kept indices in descending score order, like facenet (above
    ``max_boxes`` boxes: per run of whole groups, runs in group order).
    Works on (N, N) matrices, hence the cap."""
    n = boxes.shape[0]
    if n <= max_boxes:
        return _nms_min(boxes, scores, groups, threshold)
    by_group = groups.argsort(stable=True)
    sorted_groups = groups[by_group]
    keep = []
    for lo, hi in _group_chunks(sorted_groups, max_boxes):
        idx = by_group[lo:hi]
        keep.append(idx[_nms_min(boxes[idx], scores[idx], sorted_groups[lo:hi], threshold)])
    return torch.cat(keep)


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS is the unique fixed point of ``keep[j] = not any(keep[i] and
    suppresses(i, j) for i ranked before j)``; iterating it from all-True fixes
    at least one more leading box per round, and suppression chains are short,
    so it settles in a few rounds of an (N, N) boolean op."""
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    # numpy's argsort ascending, taken from the end: among equal scores (ONet
    # saturates at exactly 1.0) the later box ranks first
    order = scores.argsort(stable=True).flip(0)
    b, g = boxes[order], groups[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = (torch.minimum(b[:, None, 2], b[None, :, 2]) - torch.maximum(b[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
    ih = (torch.minimum(b[:, None, 3], b[None, :, 3]) - torch.maximum(b[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
    overlap = iw * ih / torch.minimum(area[:, None], area[None, :])
    earlier = torch.ones(n, n, dtype=torch.bool, device=boxes.device).triu(1)  # [i, j]: i ranks above j
    suppress = (overlap > threshold) & (g[:, None] == g[None, :]) & earlier
    keep = torch.ones(n, dtype=torch.bool, device=boxes.device)
    for step in range(n):
        new = ~(suppress & keep[:, None]).any(0)
        if step % 2 == 1 and torch.equal(new, keep):  # check every other round: one sync per two
            break
        keep = new
    return order[keep]


def rerec(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes (N, >=4) -> squares around the same centres (side = the longer side), in place."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.max(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply R/O-Net box regression (offsets in units of the +1 box side), in place."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] = torch.stack([boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h,
                                boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h], 1)
    return boxes


def pad_boxes(boxes: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, ...]:
    """facenet's ``pad``: the crop of a box is ``[y0, y1) x [x0, x1)`` (0-based)
    with truncated coordinates clipped to the frame (no zero padding). Returns
    x0, y0, x1, y1 (int64) and ``valid`` (False for a crop that is empty)."""
    t = boxes[:, :4].trunc().long()
    x0 = t[:, 0].clamp(min=1) - 1
    y0 = t[:, 1].clamp(min=1) - 1
    x1 = t[:, 2].clamp(max=width)
    y1 = t[:, 3].clamp(max=height)
    valid = (x1 > x0) & (y1 > y0)
    # empty crops get a 1-pixel window so the gathers stay in bounds; callers drop them
    return (torch.where(valid, x0, 0), torch.where(valid, y0, 0),
            torch.where(valid, x1, 1), torch.where(valid, y1, 1), valid)
