"""facenet-pytorch's MTCNN (the reference; its weights ship inside that package), on
batches of equal-sized frames. The torch backend's default on CPU."""

from __future__ import annotations

import numpy as np
import torch

from moodstream.shared.settings import Settings
from moodstream.worker.detectors.base import Face, group_by_size


class MTCNNDetector:
    """facenet-pytorch's MTCNN (weights ship inside that package), run on
    batches of equal-sized frames on ``device`` (resolved by the caller:
    :func:`shared.devices.resolve_device`)."""

    name = "mtcnn"

    def __init__(self, settings: Settings, device: str = "cpu",
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709):
        from facenet_pytorch import MTCNN

        self.device = torch.device(device)
        self.min_score = settings.face_score_min
        self.min_face_px = settings.min_face_px
        self.mtcnn = MTCNN(keep_all=True, min_face_size=settings.min_face_px, thresholds=list(thresholds),
                           factor=factor, post_process=False, select_largest=False, device=self.device)
        self.mtcnn.eval()

    @torch.inference_mode()
    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        out: list[list[Face]] = [[] for _ in frames]
        for (h, w), idx in group_by_size(frames).items():
            if min(h, w) < max(12, self.min_face_px):
                continue  # no face fits; facenet-pytorch's detect_face fails on an empty image pyramid
            batch = np.stack([frames[i] for i in idx])  # (B, H, W, 3) uint8 RGB
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            for j, i in enumerate(idx):
                if boxes[j] is None:
                    continue
                for box, prob, pts in zip(boxes[j], probs[j], points[j]):
                    if prob >= self.min_score:
                        out[i].append(Face(tuple(float(v) for v in box), float(prob),
                                           [(float(x), float(y)) for x, y in pts]))
        return out
