"""Face crops for the emotion classifier: detector boxes -> FER+-framed grayscale squares.

The classifier was trained on FER2013 crops, which frame a face differently
from a detector box: an MTCNN box runs from the hairline to below the chin and
is narrower than it is tall (w/h ~0.76), a Haar box is square and a little
tight. :data:`FRAMING` maps a detector's box onto the square a FER crop of the
same face would cover.

How the constants were measured (``moodstream bench framing --data FERPLUS_DIR
--detector mtcnn|haar -n 600`` reproduces it, see trainer/bench/framing.py):
the first 600 FER+ training images whose ``NF`` ("not a face") votes are under
5 were upscaled 48 -> 160 px (bicubic), padded by 80 px on every side by
replicating the border (so the detector sees a whole face in some context),
and run through the detector with the default settings (min face 20 px,
MTCNN score >= 0.90). Where a face was found with its centre inside the FER
square, its top-scoring box (w = x2 - x1, h = y2 - y1) gave

    ratio = 160 / sqrt(w * h),  dx = (FER centre x - box centre x) / w,  dy = (... y) / h

``dx``/``dy`` are the medians. The size is not the median ratio: the crops
that best reproduce the original 48x48 images (median Pearson correlation of
pixels, crops cut from the probes by this very module, scales 0.96-1.32 in
steps of 0.04) are larger than that for MTCNN, so the scale is the best one:

    mtcnn: 520/600 found; ratio quartiles 1.00 / 1.08 / 1.19, dx +0.01, dy -0.01;
           correlation 0.57 at 1.00, 0.65 at 1.08, 0.676 at 1.16 (best), 0.66 at 1.24
    haar:  466/600 found; ratio quartiles 0.96 / 1.03 / 1.10, dx 0.00, dy 0.00;
           correlation 0.78 at 0.96, 0.811 at 1.04 (best), 0.73 at 1.12

So a FER crop is about the MTCNN box's height (MTCNN boxes are ~0.76 as wide
as tall) and 4 % larger than a Haar box. Haar's higher correlation suggests
FER2013 was cut with a Viola-Jones-style detector. Padding with the mean grey
instead of replicating the border moved the medians by under 0.01. The spread
(IQR ~ +-9 % in size) is FER2013's own; the training augmentation's random
zoom (+-12 %) and shift (+-8 %) cover it.

Crops are sampled with ``torchvision.ops.roi_align`` (``sampling_ratio=-1``:
each output pixel averages about (box side / 48)^2 bilinear samples, so large
faces are area-averaged, not aliased), one call per group of equal-sized
frames, on whatever device the frames are on. Where the square runs past the
frame edge, the frame is extended by replicating its border pixels, the
same fill the training augmentation uses; only beyond half a frame side is
the square clipped to the padded frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from moodstream.shared.media import stack_frames
from moodstream.worker.framing import FRAMING, GRAY_WEIGHTS, Framing, framing_for  # noqa: F401  (re-exported)


def square_boxes(boxes: torch.Tensor, framing: Framing) -> torch.Tensor:
    """Detector boxes ``(N, 4)`` x1, y1, x2, y2 -> FER-framed squares ``(N, 4)``."""
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + framing.dx * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + framing.dy * h
    half = framing.scale * torch.sqrt(w * h) / 2
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=1)


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """RGB uint8 ``(B, H, W, 3)`` -> grayscale float ``(B, 1, H, W)`` in [0, 1]."""
    weights = torch.tensor(GRAY_WEIGHTS, device=frames.device, dtype=torch.float32) / 255.0
    return (frames.to(torch.float32) @ weights).unsqueeze(1)


CHUNK_PIXELS = 8_000_000  # frames converted to float at once, at most (8 Mpx: ~100 MB of temporaries)


Resident = Mapping[int, tuple[torch.Tensor, int]]
"""Frames already on the device: ``resident[i] = (tensor, j)`` when ``tensor[j]`` (a ``(B, H, W, 3)``
uint8 tensor) holds the pixels of ``frames[i]`` (:meth:`worker.detectors.mtcnn_batched.BatchedMTCNNDetector.detect_resident`)."""


def crop_faces(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], framing: Framing, size: int,
               device: torch.device, resident: Resident | None = None) -> torch.Tensor:
    """Grayscale face crops ``(N, 1, size, size)`` in [0, 1], frame by frame and
    box by box in input order (N = total boxes).

    ``boxes[i]`` is a ``(n_i, 4)`` float array of x1, y1, x2, y2 for ``frames[i]``
    (RGB uint8 ``(H, W, 3)``, any size). Frames without boxes are not touched;
    the others are cropped one roi_align call per chunk of equal-sized frames.
    Frames in ``resident`` are cropped from the tensor that holds them (the
    detector's upload), the rest are stacked and uploaded; the crops are the same.
    """
    counts = [len(b) for b in boxes]
    out = torch.empty((sum(counts), 1, size, size), dtype=torch.float32, device=device)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        if counts[i]:
            groups.setdefault(frame.shape[:2], []).append(i)
    for (h, w), idx in groups.items():
        step = max(1, CHUNK_PIXELS // (h * w))
        for k in range(0, len(idx), step):
            chunk = idx[k:k + step]
            rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in chunk])
            if resident is not None and all(i in resident for i in chunk):
                pixels = _gather(resident, chunk, device)
            else:
                pixels = _upload([frames[i] for i in chunk], device)
            out[torch.as_tensor(rows, device=device)] = _crop_chunk(pixels, [boxes[i] for i in chunk], framing,
                                                                    size, device)
    return out


def _upload(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Equal-sized RGB uint8 frames -> ``(B, H, W, 3)`` on ``device``."""
    return torch.from_numpy(stack_frames(frames, torch.get_num_threads())).to(device)


def _gather(resident: Resident, chunk: list[int], device: torch.device) -> torch.Tensor:
    """The resident frames ``chunk`` -> ``(B, H, W, 3)`` on ``device``, in ``chunk``'s order: a view
    where they lie in order in one tensor, else one gather per tensor."""
    parts: list[tuple[torch.Tensor, list[int]]] = []
    for i in chunk:
        tensor, j = resident[i]
        if parts and parts[-1][0] is tensor:
            parts[-1][1].append(j)
        else:
            parts.append((tensor, [j]))
    pieces = []
    for tensor, rows in parts:
        if rows == list(range(rows[0], rows[0] + len(rows))):
            pieces.append(tensor[rows[0]:rows[0] + len(rows)])
        else:
            pieces.append(tensor[torch.as_tensor(rows, device=tensor.device)])
    return (pieces[0] if len(pieces) == 1 else torch.cat(pieces)).to(device)


def _crop_chunk(pixels: torch.Tensor, boxes: list[np.ndarray], framing: Framing, size: int,
                device: torch.device) -> torch.Tensor:
    """Equal-sized frames ``(B, H, W, 3)`` uint8 on ``device`` and their boxes -> crops ``(n, 1, S, S)``, in order."""
    h, w = pixels.shape[1:3]
    gray = to_gray(pixels)  # (B, 1, H, W)
    sq = square_boxes(torch.as_tensor(np.concatenate(boxes), dtype=torch.float32, device=device).reshape(-1, 4),
                      framing)  # (n, 4)
    # replicate-pad just as far as the squares overhang, at most half a frame side; clip beyond
    overhang = torch.cat([-sq[:, :2], sq[:, 2:3] - w, sq[:, 3:4] - h], dim=1).max().item()
    pad = min(max(0, math.ceil(overhang) + 1), max(h, w) // 2)
    if pad:
        gray = F.pad(gray, (pad, pad, pad, pad), mode="replicate")
        sq = sq + pad
    sq[:, 0::2] = sq[:, 0::2].clamp(0, w + 2 * pad)
    sq[:, 1::2] = sq[:, 1::2].clamp(0, h + 2 * pad)
    frame_idx = torch.repeat_interleave(torch.arange(len(pixels), dtype=torch.float32, device=device),
                                        torch.as_tensor([len(b) for b in boxes], device=device))
    return roi_align(gray, torch.cat([frame_idx[:, None], sq], dim=1), output_size=(size, size),
                     spatial_scale=1.0, sampling_ratio=-1, aligned=True)  # (n, 1, S, S)
