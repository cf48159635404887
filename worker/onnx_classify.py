"""The emotion stage on ONNX Runtime, torch-free: face boxes on frames ->
emotion probabilities, the same numbers as :class:`worker.classify.EmotionClassifier`.

Everything beyond the graph comes from ``emotion.onnx``'s metadata (written by
``moodstream export onnx``): labels, mean, std, input size, class bias, flip
TTA and the checkpoint's version, so the ``.pt`` file is never read.

Crops reproduce :func:`worker.crop.crop_faces`: the FER-framed square of each
box (:mod:`worker.framing`), on the BT.601 grey frame, sampled like
``roi_align(aligned=True, sampling_ratio=-1)`` (every output pixel averages
``ceil(side / S)`` x ``ceil(side / S)`` bilinear samples) with the frame
extended by replicating its border, at most half a frame side (beyond that
the square is clipped, as there). Bilinear sampling on a grid is separable,
so a crop is ``Wy @ grey_region @ Wx.T`` with ``(S, rows)`` and ``(S, cols)``
weight matrices built for all boxes at once, each product over its box's own
pixels. A face's probabilities are the same whatever else is in its batch
(:data:`RUN_CROPS`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moodstream.shared.errors import ModelError
from moodstream.shared.labels import LABELS
from moodstream.worker.framing import FRAMING, GRAY_WEIGHTS, Framing
from moodstream.worker.onnx_session import EMOTION_FILE, EMOTION_FORMAT, ONNX_DIR, net_file, open_net, run_crops

# Crops (faces and their mirror images) per run of the net: a face's probabilities must not
# depend on how many faces share its batch, and OpenVINO on a 2-core Zen 3 EPYC ran more than
# 80 crops a run with another kernel (outputs 1e-7 off). Per crop, runs of 32, 64 and 224
# took the same time there (int8 1.24-1.25 ms, ONNX Runtime 2.62-2.65 ms).
RUN_CROPS = 64
# precisions "int8" and "bf16" rerun in fp32 every face whose top two probabilities are closer
# than CONFIRM_MARGINS[precision], and keep fp32's answer there. A face keeps a top emotion fp32
# does not give only if the difference of two emotions' probabilities moves by more than the gap
# between its top two, so each margin exceeds the largest such move seen on FER+ Valid
# (trainer.bench.bf16.largest_pair_change; tests/integration/test_int8.py checks it), and Test and
# the WIDER faces check it (bench int8, bench bf16). Measured on a 2-core Zen 4 EPYC, OpenVINO
# 2026.4 (`margin` in docs/results/cpu/amd-f25-m17/fifth_machine/{int8,bf16}_parity.json),
# FER+ Valid / Test / the 510 faces MTCNN finds in 200 WIDER images:
# - int8: a pair moved by at most 0.074 / 0.056 / 0.064 (one probability by 0.048 / 0.035 / 0.040):
#   0.08 reruns 8% of FER+ Test's faces and 14% of WIDER's (more near ties). Alone int8 flipped 2 of
#   the 56 top emotions of bench throughput's 1080p frames on a 2-core Zen 5 EPYC (near ties, 0.387
#   against 0.379), below issue 26's 98%. (Until 2026-12-04 the margin was 0.1, twice the largest
#   move of one probability: 18% of WIDER's faces reran.)
# - bf16: a pair moved by at most 0.102 / 0.027 / 0.041 (one probability by 0.054 / 0.016 / 0.023):
#   0.11 reruns 11% of FER+ Test's faces and 19% of WIDER's. The 0.10 is one dark FER+ Valid face
#   (the next largest 0.039); the margin was 0.05, set on Test and WIDER alone. Alone bf16 flipped 3 of
#   FER+ Test's 3,545 faces and 5 of the 510 WIDER faces (99.0%) on a 2-core Xeon with AMX
#   (docs/results/bf16_parity_xeon.json).
CONFIRM_MARGINS = {"int8": 0.08, "bf16": 0.11}


def square_boxes(boxes: np.ndarray, framing: Framing) -> np.ndarray:
    """Detector boxes ``(N, 4)`` x1, y1, x2, y2 -> FER-framed squares ``(N, 4)`` float32."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    w = np.maximum(b[:, 2] - b[:, 0], np.float32(1.0))
    h = np.maximum(b[:, 3] - b[:, 1], np.float32(1.0))
    cx = (b[:, 0] + b[:, 2]) / 2 + np.float32(framing.dx) * w
    cy = (b[:, 1] + b[:, 3]) / 2 + np.float32(framing.dy) * h
    half = np.float32(framing.scale) * np.sqrt(w * h) / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


def sampling_weights(lo: np.ndarray, hi: np.ndarray, pad: np.ndarray, n: int,
                     size: int) -> tuple[np.ndarray, np.ndarray]:
    """roi_align's bilinear sampling along one axis, for every box at once.

    ``lo``/``hi``: the square's edges (N,) in frame pixels; ``pad``: the
    replicated border (N,) around an axis of ``n`` pixels. Returns ``first``
    (N,), the first frame pixel any sample reads, ``weights``
    ``(N, size, span)`` and ``spans`` (N,), the pixels box ``k`` reads: output ``i``
    of box ``k`` is ``weights[k, i, :spans[k]] @ pixels[first[k]:first[k] + spans[k]]``
    (averaged over the samples; ``weights`` is zero beyond ``spans[k]``)."""
    full = n + 2 * pad  # the padded axis (N,)
    pad_f, full_f = pad.astype(np.float32), full.astype(np.float32)
    start = np.clip(lo + pad_f, 0, full_f) - np.float32(0.5)  # aligned=True
    length = np.clip(hi + pad_f, 0, full_f) - np.float32(0.5) - start
    bin_size = length / np.float32(size)
    grid = np.ceil(length / np.float32(size)).astype(np.int64)  # samples per output pixel (0: none)
    g = max(int(grid.max(initial=0)), 1)
    i = np.arange(size, dtype=np.float32)[None, :, None]
    s = np.arange(g, dtype=np.float32)[None, None, :]
    grid_f = np.maximum(grid, 1).astype(np.float32)[:, None, None]
    pos = start[:, None, None] + i * bin_size[:, None, None] + (s + np.float32(0.5)) * bin_size[:, None, None] / grid_f
    pos = np.maximum(pos, np.float32(0.0))  # (N, size, g), never below -1 here: squares are clipped to the padding
    low = pos.astype(np.int64)
    top = (low >= full[:, None, None] - 1)
    low = np.where(top, full[:, None, None] - 1, low)
    frac = np.where(top, np.float32(0.0), pos - low)
    high = np.where(top, low, low + 1)
    own = s < grid[:, None, None]  # (N, 1, g): the box's own sample slots (the rest: g is the batch's widest)
    live = own.astype(np.float32) / grid_f  # drop unused sample slots
    # padded pixel -> frame pixel (the border is replicated)
    last = (n - 1)[:, None, None]
    low = np.clip(low - pad[:, None, None], 0, last)
    high = np.clip(high - pad[:, None, None], 0, last)
    first = low.reshape(len(lo), -1).min(axis=1)
    used = np.broadcast_to(own, high.shape)
    spans = np.where(used, high, first[:, None, None]).reshape(len(lo), -1).max(axis=1) - first + 1
    span = int(spans.max(initial=1))
    weights = np.zeros((len(lo), size, span), dtype=np.float32)
    rows = np.broadcast_to(np.arange(size)[None, :, None], low.shape)
    boxes = np.broadcast_to(np.arange(len(lo))[:, None, None], low.shape)
    for idx, w in ((low, (1 - frac) * live), (high, frac * live)):
        np.add.at(weights, (boxes, rows, np.where(used, idx - first[:, None, None], 0)), w)  # unused: w is 0
    return first, weights, spans


def crop_faces(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], framing: Framing,
               size: int) -> np.ndarray:
    """Grayscale face crops ``(N, 1, size, size)`` float32 in [0, 1], frame by
    frame and box by box in input order: :func:`worker.crop.crop_faces` in numpy."""
    counts = [len(b) for b in boxes]
    out = np.zeros((sum(counts), 1, size, size), dtype=np.float32)
    if not out.shape[0]:
        return out
    frame_of = np.repeat(np.arange(len(frames)), counts)
    sq = square_boxes(np.concatenate([np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]), framing)
    hw = np.array([frames[i].shape[:2] for i in frame_of], dtype=np.int64)  # (N, 2) height, width
    h, w = hw[:, 0], hw[:, 1]
    # replicate-pad as far as the square overhangs, at most half a frame side (worker.crop, per box)
    overhang = np.max(np.stack([-sq[:, 0], -sq[:, 1], sq[:, 2] - w, sq[:, 3] - h], axis=1), axis=1)
    pad = np.minimum(np.maximum(0, np.ceil(overhang).astype(np.int64) + 1), np.maximum(h, w) // 2)
    y0, wy, ny = sampling_weights(sq[:, 1], sq[:, 3], pad, h, size)
    x0, wx, nx = sampling_weights(sq[:, 0], sq[:, 2], pad, w, size)
    gray = np.array(GRAY_WEIGHTS, dtype=np.float32) / np.float32(255.0)
    for k, i in enumerate(frame_of.tolist()):
        # each box's own pixels only: with the batch's widest span the products' lengths, and
        # so their rounding, would depend on the other boxes of the batch
        region = frames[i][y0[k]:y0[k] + ny[k], x0[k]:x0[k] + nx[k]].astype(np.float32) @ gray
        out[k, 0] = wy[k, :, :ny[k]] @ region @ wx[k, :, :nx[k]].T
    return out


class OnnxEmotionClassifier:
    """``emotion.onnx`` on a CPU runtime (:func:`worker.onnx_session.open_net`:
    ``runtime`` "onnx" or "openvino", ``precision`` "fp32", "bf16" or "int8": the quantized file
    beside ``path``, :func:`worker.onnx_session.net_file`), plus the crop framing of
    the detector whose boxes it will receive. In int8 and bf16, faces whose top two
    probabilities are within ``confirm_margin`` (default :data:`CONFIRM_MARGINS`; 0: never)
    run again in fp32, whose answer they get; ``faces_seen`` / ``faces_confirmed`` count them. Same interface as
    :class:`worker.classify.EmotionClassifier`: :meth:`predict`,
    ``labels``, and ``version`` (the checkpoint's)."""

    def __init__(self, path: str | Path | None = None, framing: Framing = FRAMING["mtcnn"],
                 flip_tta: bool | None = None, threads: int = 1, runtime: str = "onnx", precision: str = "fp32",
                 confirm_margin: float | None = None):
        fp32_path = Path(path) if path is not None else ONNX_DIR / EMOTION_FILE
        path = fp32_path
        self.precision = precision
        self.confirm_margin, self.confirm = 0.0, None  # confirm: the fp32 net the close calls run again on
        if precision == "int8":  # the quantized file of this one (onnx_session.INT8_FILES)
            path = net_file(path.parent, path.name, runtime, precision)
        if precision in CONFIRM_MARGINS:
            self.confirm_margin = CONFIRM_MARGINS[precision] if confirm_margin is None else float(confirm_margin)
        self.net = open_net(path, threads, runtime, precision)
        if self.confirm_margin > 0:
            self.confirm = open_net(fp32_path, threads, runtime, "fp32")
        self.faces_seen = self.faces_confirmed = 0
        meta = self.net.metadata
        if meta.get("format") != EMOTION_FORMAT:
            raise ModelError(f"{path} is not a moodstream emotion model ({EMOTION_FORMAT}); "
                             "write one with `moodstream export onnx`")
        try:
            self.labels = tuple(json.loads(meta["labels"]))
            self.mean, self.std = np.float32(meta["mean"]), np.float32(meta["std"])
            self.input_size = int(meta["input_size"])
            bias = json.loads(meta["class_bias"])
            self.version = meta["version"]
            self.checkpoint_sha256 = meta.get("checkpoint_sha256", "")
            meta_flip = meta.get("flip_tta", "true") == "true"
        except (KeyError, ValueError) as exc:
            raise ModelError(f"{path} has incomplete metadata ({exc}); export it again") from exc
        if self.labels != LABELS:
            raise ModelError(f"{path} was trained with labels {list(self.labels)}, this code uses {list(LABELS)}")
        if bias is not None and len(bias) != len(LABELS):
            raise ModelError(f"{path} has {len(bias)} class_bias values for {len(LABELS)} labels")
        # exp(bias) in float32, as Checkpoint.class_weights
        self.class_weights = None if bias is None else np.exp(np.asarray(bias, dtype=np.float32))
        self.framing = framing
        self.flip_tta = meta_flip if flip_tta is None else flip_tta

    def predict(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(N, 8)`` float32 for the boxes of all frames, in order
        (``boxes[i]``: ``(n_i, 4)`` x1, y1, x2, y2 on ``frames[i]``)."""
        crops = crop_faces(frames, boxes, self.framing, self.input_size)
        if crops.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.predict_crops(crops)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Grayscale faces ``(N, 1, S, S)`` in [0, 1] -> probabilities ``(N, 8)``:
        :func:`shared.models.predict_proba` (flip TTA, class-prior adjustment);
        in int8 and bf16 the close calls again in fp32 (:data:`CONFIRM_MARGINS`)."""
        x = (crops.astype(np.float32) - self.mean) / self.std
        p = self._probabilities(self.net, x)
        self.faces_seen += len(p)
        if self.confirm is not None and len(p):
            top2 = np.sort(p, axis=1)[:, -2:]
            close = np.flatnonzero(top2[:, 1] - top2[:, 0] < np.float32(self.confirm_margin))
            if len(close):
                p[close] = self._probabilities(self.confirm, x[close])
                self.faces_confirmed += len(close)
        return p

    def _probabilities(self, net, x: np.ndarray) -> np.ndarray:
        """Normalised faces ``(N, 1, S, S)`` -> probabilities on ``net``, :data:`RUN_CROPS` crops a run."""
        n = x.shape[0]
        if self.flip_tta:
            x = np.concatenate([x, x[..., ::-1]])
        x = np.ascontiguousarray(x)
        logits = np.concatenate([run_crops(net, x[i:i + RUN_CROPS])[0] for i in range(0, len(x), RUN_CROPS)]
                                ).astype(np.float32)
        p = softmax(logits[:n])
        if self.flip_tta:
            p = (p + softmax(logits[n:])) / np.float32(2)
        if self.class_weights is not None:
            p = p * self.class_weights
            p = p / p.sum(axis=1, keepdims=True)
        return p


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax ``(N, C)`` float32."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
