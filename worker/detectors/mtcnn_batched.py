"""A batched, device-resident MTCNN: facenet-pytorch's P/R/O-Nets and weights,
without its per-box Python loops and host round trips.

facenet-pytorch 2.5.3 (``detect_face``) runs PNet on the image pyramid of a
batch, then crops every candidate box one at a time in a Python loop for RNet
and ONet, and runs the last NMS in numpy on the host. Here every step works on
all frames and all boxes of a batch at once, on the device:

1. Pyramid: one area-resize + PNet call per scale for the whole batch; the
   score and regression maps of all scales are flattened side by side so one
   threshold + ``nonzero`` finds every candidate of every scale and frame.
2. NMS within each (frame, scale) at IoU 0.5, then within each frame at 0.7,
   as two grouped NMS calls (:func:`worker.detectors.mtcnn_ops.grouped_nms`).
3. RNet / ONet crops: all boxes in one gather from a summed-area table
   (:func:`worker.detectors.mtcnn_ops.area_crops`), equal to facenet's crop + area resize.
4. The final "Min"-overlap NMS runs on the device too.

The host waits on the device a fixed number of times per batch (the
``nonzero``, each NMS, the two score filters and the final copy of all
results in one tensor), however many frames and boxes the batch holds.

Frames of different sizes are detected in groups of equal size (letterboxing
them into one canvas would change the pyramid and the border pixels, so the
boxes would no longer match facenet's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate

from moodstream.shared import devices
from moodstream.shared.media import stack_frames
from moodstream.shared.settings import Settings
from moodstream.worker.crop import Resident
from moodstream.worker.detectors.base import Face, group_by_size
from moodstream.worker.detectors.mtcnn_ops import (area_crops, bbreg, grouped_nms, grouped_nms_min, integral_image,
                                                   pad_boxes, pyramid_scales, rerec)

log = logging.getLogger(__name__)


@dataclass
class Detections:
    """Faces found in a batch of frames, as device tensors sorted by frame then
    by descending score."""

    boxes: torch.Tensor  # (N, 4) x1, y1, x2, y2 in frame pixels
    scores: torch.Tensor  # (N,) ONet face probability
    points: torch.Tensor  # (N, 5, 2) eyes, nose, mouth corners as (x, y)
    image_idx: torch.Tensor  # (N,) int64, index of the frame in the batch

    @classmethod
    def empty(cls, device: torch.device) -> Detections:
        return cls(torch.zeros(0, 4, device=device), torch.zeros(0, device=device),
                   torch.zeros(0, 5, 2, device=device), torch.zeros(0, dtype=torch.long, device=device))

    def to_faces(self, num_frames: int) -> list[list[Face]]:
        """One list of :class:`Face` per frame (empty when none): one copy to the host."""
        packed = torch.cat([self.boxes, self.scores[:, None], self.points.flatten(1),
                            self.image_idx[:, None].to(self.boxes.dtype)], 1).cpu().numpy()
        out: list[list[Face]] = [[] for _ in range(num_frames)]
        for row in packed.tolist():
            out[int(row[15])].append(Face(tuple(row[:4]), row[4], [(row[5 + 2 * k], row[6 + 2 * k])
                                                                   for k in range(5)]))
        return out


class BatchedMTCNN(nn.Module):
    """The three MTCNN stages over a batch of equal-sized frames.

    ``min_face_size``, ``thresholds`` and ``factor`` mean what they mean in
    facenet-pytorch's ``MTCNN`` (same defaults). ``min_score`` also drops
    faces scoring below it; it is applied before the last NMS, which gives the
    same faces as filtering after it (a lower-scoring box never suppresses a
    higher one) with fewer boxes to compare. ``nms_max_boxes`` caps the
    boxes per NMS call, cutting between groups (same answer): a call costs the
    square of its boxes, grouped or not (torchvision's CPU loop, its CUDA
    keep-gathering kernel and mask), so 16 1080p frames' stage-1 NMS took
    406 ms in two calls on one CPU thread and 61 ms in runs of 2,048. ``compile_nets``
    wraps the three networks in ``torch.compile`` (off: not measured faster yet).
    """

    def __init__(self, min_face_size: float = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, min_score: float = 0.0, nms_max_boxes: int = 2048,
                 compile_nets: bool = False):
        super().__init__()
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet  # weights ship inside the package

        self.pnet, self.rnet, self.onet = PNet().eval(), RNet().eval(), ONet().eval()
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        self.min_score = min_score
        self.nms_max_boxes = nms_max_boxes
        self._grids: dict[tuple[int, int, str], tuple[torch.Tensor, ...]] = {}
        if compile_nets:
            self._nets = tuple(torch.compile(n, dynamic=True) for n in (self.pnet, self.rnet, self.onet))
        else:
            self._nets = (self.pnet, self.rnet, self.onet)

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> Detections:
        """(B, H, W, 3) uint8 RGB on the model's device -> :class:`Detections`."""
        h, w = frames.shape[1:3]
        # float32 even inside a caller's autocast region, and not TF32 on a GPU: reduced precision
        # moves boxes off facenet's
        with torch.autocast(frames.device.type, enabled=False), devices.strict_fp32():
            # (B, 3, H, W) in NCHW memory: the pyramid's area resizes run faster on it than on the
            # channels-last strides facenet's permute leaves (deploy/gpu/probe_pyramid.py, 16 1080p
            # frames on an H200: 31.1 -> 5.5 ms; on the CPU 30% less). Same bits on the CPU; on CUDA
            # the two kernels sum in another order, and the boxes stayed within 0.1 px of the CPU's
            # (test_boxes_on_cuda_are_the_cpus) and 100% at IoU 0.95 of facenet's on the CPU
            imgs = frames.permute(0, 3, 1, 2).contiguous().float()
            det = self._stage1(imgs)
            del imgs
            if det.boxes.shape[0] == 0:
                return det
            table = integral_image(frames)  # (B, H+1, W+1, 3)
            det = self._refine(table, det, w, h, size=24)
            if det.boxes.shape[0] == 0:
                return det
            return self._refine(table, det, w, h, size=48)

    def _grid(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Per PNet output cell of every pyramid level, flattened and concatenated:
        its x, y (float32), its scale (float32) and its level (int64). Cached per frame size."""
        key = (h, w, str(device))
        if key not in self._grids:
            xs, ys, scales, levels = [], [], [], []
            for level, scale in enumerate(pyramid_scales(h, w, self.min_face_size, self.factor)):
                hs, ws = int(h * scale + 1), int(w * scale + 1)
                oh, ow = _pnet_out(hs), _pnet_out(ws)
                y, x = torch.meshgrid(torch.arange(oh), torch.arange(ow), indexing="ij")
                xs.append(x.flatten())
                ys.append(y.flatten())
                scales.append(torch.full((oh * ow,), scale, dtype=torch.float32))
                levels.append(torch.full((oh * ow,), level, dtype=torch.long))
            self._grids[key] = (torch.cat(xs).float().to(device), torch.cat(ys).float().to(device),
                                torch.cat(scales).to(device), torch.cat(levels).to(device))
        return self._grids[key]

    def _stage1(self, imgs: torch.Tensor) -> Detections:
        h, w = imgs.shape[2:]
        pnet = self._nets[0]
        probs, regs = [], []
        for scale in pyramid_scales(h, w, self.min_face_size, self.factor):
            im = interpolate(imgs, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
            # PNet on channels-last memory, as in facenet: its convolutions' bits depend on the layout
            im = im.contiguous(memory_format=torch.channels_last)
            reg, prob = pnet((im - 127.5) * 0.0078125)  # (B, 4, h', w'), (B, 2, h', w')
            probs.append(prob[:, 1].flatten(1))
            regs.append(reg.flatten(2))
        if not probs:  # frame smaller than the smallest face
            return Detections.empty(imgs.device)
        prob = torch.cat(probs, 1)  # (B, P) over all levels
        reg = torch.cat(regs, 2)  # (B, 4, P)
        gx, gy, gscale, glevel = self._grid(h, w, imgs.device)
        if gx.shape[0] != prob.shape[1]:
            raise RuntimeError(f"PNet grid mismatch for {w}x{h}: {gx.shape[0]} cells, {prob.shape[1]} outputs")
        img_i, pos = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)  # sorted by frame, level, cell
        score = prob[img_i, pos]
        bb = torch.stack([gx[pos], gy[pos]], 1)
        sc = gscale[pos][:, None]
        boxes = torch.cat([((2 * bb + 1) / sc).floor(), ((2 * bb + 11 + 1) / sc).floor()], 1)  # (N, 4)
        # NMS within each frame and level, then within each frame across levels
        n_levels = len(probs)
        keep = grouped_nms(boxes, score, img_i * n_levels + glevel[pos], 0.5, self.nms_max_boxes)
        boxes, score, img_i, pos = boxes[keep], score[keep], img_i[keep], pos[keep]
        keep = grouped_nms(boxes, score, img_i, 0.7, self.nms_max_boxes)
        boxes, score, img_i, pos = boxes[keep], score[keep], img_i[keep], pos[keep]
        r = reg[img_i, :, pos]  # (N, 4) PNet regression, in units of the box side (no +1 here)
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + r[:, 0] * regw, boxes[:, 1] + r[:, 1] * regh,
                             boxes[:, 2] + r[:, 2] * regw, boxes[:, 3] + r[:, 3] * regh], 1)
        boxes = rerec(boxes)
        return Detections(boxes, score, torch.zeros(len(score), 5, 2, device=imgs.device), img_i)

    def _refine(self, table: torch.Tensor, det: Detections, w: int, h: int, size: int) -> Detections:
        """RNet (size 24) or ONet (size 48) on every box of ``det`` at once."""
        x0, y0, x1, y1, valid = pad_boxes(det.boxes, w, h)
        crops = area_crops(table, det.image_idx, x0, y0, x1, y1, size)  # (N, 3, size, size)
        net = self._nets[1] if size == 24 else self._nets[2]
        out = net((crops - 127.5) * 0.0078125)
        reg, score = out[0], out[-1][:, 1]
        passed = score > self.thresholds[1 if size == 24 else 2]
        if size == 48:
            passed &= score >= self.min_score
        passed = torch.nonzero(passed & valid).flatten()
        boxes = torch.cat([det.boxes[passed, :4], score[passed, None]], 1)
        score, img_i, reg = score[passed], det.image_idx[passed], reg[passed]
        if size == 24:
            keep = grouped_nms(boxes[:, :4], score, img_i, 0.7, self.nms_max_boxes)
            # facenet hands ONet its boxes in descending RNet score; ONet scores often tie
            # at exactly 1.0, and then this order decides which box the last NMS keeps
            keep = keep[score[keep].argsort(descending=True, stable=True)]
            boxes = rerec(bbreg(boxes[keep], reg[keep]))
            return Detections(boxes[:, :4], score[keep], boxes.new_zeros(len(keep), 5, 2), img_i[keep])
        # landmarks are relative to the box before regression (facenet's order)
        lm = out[1][passed]  # (N, 10): 5 x then 5 y
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack([bw * lm[:, :5] + boxes[:, :1] - 1, bh * lm[:, 5:] + boxes[:, 1:2] - 1], 2)
        boxes = bbreg(boxes, reg)
        keep = grouped_nms_min(boxes[:, :4], score, img_i, 0.7)  # descending score
        keep = keep[img_i[keep].argsort(stable=True)]  # by frame, then descending score
        return Detections(boxes[keep, :4], score[keep], points[keep], img_i[keep])


def _pnet_out(n: int) -> int:
    """PNet's output side for an input side: conv3, max-pool 2 (ceil), conv3, conv3."""
    return (n - 2 + 1) // 2 - 4


class BatchedMTCNNDetector:
    """Drop-in for :class:`worker.detectors.mtcnn_reference.MTCNNDetector` (same thresholds, pyramid
    factor, ``settings.min_face_px`` and ``settings.face_score_min`` filter, same
    output type), running :class:`BatchedMTCNN` on ``device`` (resolved by the caller:
    :func:`shared.devices.resolve_device`).

    On CUDA, frames are stacked into a reused pinned host buffer and uploaded
    asynchronously. :meth:`upload` and :meth:`detect_tensor` are public so a
    pipeline can keep the uploaded frames on the device for its crops.
    """

    name = "mtcnn"

    def __init__(self, settings: Settings, device: str = "cpu",
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 compile_nets: bool = False):
        self.device = torch.device(device)
        self.model = BatchedMTCNN(settings.min_face_px, thresholds, factor, min_score=settings.face_score_min,
                                  compile_nets=compile_nets)
        self.model.to(self.device)
        self._pinned: dict[tuple[int, ...], torch.Tensor] = {}

    def upload(self, frames: list[np.ndarray]) -> torch.Tensor:
        """Equal-sized RGB uint8 frames -> (B, H, W, 3) uint8 on the device.

        On CUDA the pinned buffer is reused: finish with one upload (e.g.
        ``to_faces``, which waits for the device) before the next."""
        shape = (len(frames), *frames[0].shape)
        threads = torch.get_num_threads()  # the worker's thread budget (Pipeline sets it)
        if self.device.type != "cuda":
            return torch.from_numpy(stack_frames(frames, threads))
        host = self._pinned.get(shape)
        if host is None:
            self._pinned.clear()  # one live buffer: a video keeps its size
            host = self._pinned[shape] = torch.empty(shape, dtype=torch.uint8).pin_memory()
        stack_frames(frames, threads, out=host.numpy())  # the previous upload from it finished: detect() synced
        return host.to(self.device, non_blocking=True)

    def detect_tensor(self, frames: torch.Tensor) -> Detections:
        """(B, H, W, 3) uint8 on the device -> detections scoring at least ``face_score_min``."""
        return self.model(frames)

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        return self.detect_resident(frames)[0]

    def detect_resident(self, frames: list[np.ndarray]) -> tuple[list[list[Face]], Resident]:
        """:meth:`detect`, and the uploaded frames it leaves on the device
        (:data:`worker.crop.Resident`, keyed by position in ``frames``) for the crops."""
        out: list[list[Face]] = [[] for _ in frames]
        resident: dict[int, tuple[torch.Tensor, int]] = {}
        for idx in group_by_size(frames).values():
            tensor = self.upload([frames[i] for i in idx])
            faces = self.detect_tensor(tensor).to_faces(len(idx))
            for j, i in enumerate(idx):
                out[i] = faces[j]
                resident[i] = (tensor, j)
        return out, resident
