"""The emotion stage: face boxes on frames -> emotion probabilities.

Crops every face of every frame (:mod:`worker.crop`) and classifies them all in
one batched call of :func:`shared.models.predict_proba` (with flip TTA), on the
device the model lives on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from moodstream.shared import devices
from moodstream.shared.models import Checkpoint, predict_proba
from moodstream.worker.crop import Framing, Resident, crop_faces


class EmotionClassifier:
    """A checkpoint moved to ``device``, plus the crop framing of the detector
    whose boxes it will receive."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, framing: Framing, flip_tta: bool = True):
        self.checkpoint = checkpoint
        self.device = device
        self.framing = framing
        self.flip_tta = flip_tta
        self.labels = tuple(checkpoint.labels)
        checkpoint.model.to(device).eval()

    @torch.inference_mode()
    def predict(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                resident: Resident | None = None) -> np.ndarray:
        """Probabilities ``(N, 8)`` float32 for the boxes of all frames, in order
        (``boxes[i]``: ``(n_i, 4)`` x1, y1, x2, y2 on ``frames[i]``). ``resident``: frames
        the detector holds on the device already (:data:`worker.crop.Resident`)."""
        crops = crop_faces(frames, boxes, self.framing, self.checkpoint.config.input_size, self.device, resident)
        if crops.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        with devices.strict_fp32():  # the CPU's probabilities on a GPU too
            return predict_proba(self.checkpoint, crops, flip_tta=self.flip_tta).cpu().numpy()
