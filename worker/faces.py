"""The detector's output record, torch-free (the ONNX backend and the torch
detectors share it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    score: float  # detector confidence in [0, 1]
    landmarks: list[tuple[float, float]] | None = None  # eyes, nose, mouth corners (MTCNN only)

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
                "landmarks": None if self.landmarks is None
                else [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]}
