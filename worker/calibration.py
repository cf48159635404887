"""Box calibration: map a detector's box to the box a WIDER FACE annotator would draw.

MTCNN's boxes follow its own training convention (square-ish, from the brow to
below the mouth), not WIDER's, which is why its IoU with WIDER boxes falls off at
0.75 and 0.85. A calibration is a small linear map, fitted by ridge regression
(``trainer.bench.calibration_fit``), in box-normalised coordinates:

* features of a detection box ``(cx, cy, w, h)``: ``const`` (a constant; all a
  Haar box gets, as its boxes are square: a fixed shift and scale), ``box`` (plus
  ``log(h / w)``) or ``box+landmarks`` (plus MTCNN's five landmarks as
  ``((x - cx) / w, (y - cy) / h)``);
* targets: the annotated box as ``((tcx - cx) / w, (tcy - cy) / h, log(tw / w), log(th / h))``.

Applying it is ``deltas = features @ coef``, clipped to :data:`MAX_SHIFT` box
sides and a factor :data:`MAX_SCALE` (a guard against odd inputs: fitted
corrections are a few percent), then decoding the deltas: pure numpy, used by
the pipeline when ``Settings.calibrate_boxes`` is true. The shipped fit
(``worker/data/box_calibration.json``) records how it was made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from moodstream.shared.errors import ModelError
from moodstream.shared.files import write_text_atomic

if TYPE_CHECKING:
    from moodstream.shared.record import Face

FORMAT = "moodstream-box-calibration/1"
SHIPPED_CALIBRATION = Path(__file__).parent / "data" / "box_calibration.json"
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
MAX_SHIFT = 0.5  # |centre shift| <= half the box side
MAX_SCALE = 2.0  # each side changes by at most this factor
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "const": ("const",),
    "box": ("const", "log_aspect"),
    "box+landmarks": ("const", "log_aspect")
    + tuple(f"{n}_u" for n in LANDMARK_NAMES) + tuple(f"{n}_v" for n in LANDMARK_NAMES),
}
TARGETS = ("d_cx", "d_cy", "log_w", "log_h")


def _centre_size(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, w, h


def box_features(boxes: np.ndarray, landmarks: np.ndarray | None, feature_set: str) -> np.ndarray:
    """``(N, 4)`` x1 y1 x2 y2 boxes (+ ``(N, 5, 2)`` landmarks) -> ``(N, F)`` features."""
    if feature_set not in FEATURE_SETS:
        raise ModelError(f"unknown calibration feature set {feature_set!r}; one of {sorted(FEATURE_SETS)}")
    cx, cy, w, h = _centre_size(boxes)
    cols = [np.ones_like(cx)]
    if feature_set != "const":
        cols.append(np.log(h / w))
    if feature_set == "box+landmarks":
        if landmarks is None:
            raise ModelError("this calibration uses landmarks (MTCNN); the detections have none")
        pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        cols += list(((pts[:, :, 0] - cx[:, None]) / w[:, None]).T)  # 5 x (N,)
        cols += list(((pts[:, :, 1] - cy[:, None]) / h[:, None]).T)
    return np.stack(cols, axis=1)


def encode_boxes(ref: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Targets ``(N, 4)`` x1 y1 x2 y2 relative to ``ref`` boxes -> ``(N, 4)`` deltas (TARGETS order)."""
    cx, cy, w, h = _centre_size(ref)
    tcx, tcy, tw, th = _centre_size(target)
    return np.stack([(tcx - cx) / w, (tcy - cy) / h, np.log(tw / w), np.log(th / h)], axis=1)


def decode_boxes(ref: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_boxes`: ``(N, 4)`` deltas on ``ref`` -> ``(N, 4)`` x1 y1 x2 y2."""
    cx, cy, w, h = _centre_size(ref)
    deltas = np.asarray(deltas, dtype=np.float64).reshape(-1, 4)
    ncx, ncy = cx + deltas[:, 0] * w, cy + deltas[:, 1] * h
    nw, nh = w * np.exp(deltas[:, 2]), h * np.exp(deltas[:, 3])
    return np.stack([ncx - nw / 2, ncy - nh / 2, ncx + nw / 2, ncy + nh / 2], axis=1)


@dataclass(frozen=True)
class BoxCalibration:
    """One detector's fitted map; ``coef`` is ``(F, 4)``: features -> deltas."""

    detector: str
    feature_set: str
    coef: np.ndarray
    meta: dict = field(default_factory=dict)  # how it was fitted: data, n faces, date, held-out scores

    def __post_init__(self):
        want = (len(FEATURE_SETS.get(self.feature_set, ())), len(TARGETS))
        if self.feature_set not in FEATURE_SETS or np.shape(self.coef) != want:
            raise ModelError(f"{self.detector} calibration: coef shape {np.shape(self.coef)} does not fit "
                             f"feature set {self.feature_set!r} (expected {want})")

    def apply_arrays(self, boxes: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """``(N, 4)`` boxes (+ ``(N, 5, 2)`` landmarks) -> ``(N, 4)`` calibrated boxes."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return boxes.copy()
        deltas = box_features(boxes, landmarks, self.feature_set) @ self.coef  # (N, 4)
        limit = np.array([MAX_SHIFT, MAX_SHIFT, np.log(MAX_SCALE), np.log(MAX_SCALE)])
        return decode_boxes(boxes, np.clip(deltas, -limit, limit))

    def apply(self, faces: list[Face]) -> list[Face]:
        """New Face objects with calibrated boxes (score and landmarks unchanged)."""
        if not faces:
            return []
        landmarks = None
        if self.feature_set == "box+landmarks":
            if any(f.landmarks is None for f in faces):
                raise ModelError(f"the {self.detector} calibration needs landmarks; a face has none "
                                 "(calibrate only the detector it was fitted for)")
            landmarks = np.array([f.landmarks for f in faces], dtype=np.float64)
        boxes = self.apply_arrays(np.array([f.box for f in faces], dtype=np.float64), landmarks)
        return [msgspec.structs.replace(f, box=tuple(float(v) for v in b)) for f, b in zip(faces, boxes)]

    def to_dict(self) -> dict:
        return {"feature_set": self.feature_set, "features": list(FEATURE_SETS[self.feature_set]),
                "targets": list(TARGETS), "coef": np.round(np.asarray(self.coef), 8).tolist(), **self.meta}

    @classmethod
    def from_dict(cls, detector: str, d: dict) -> BoxCalibration:
        meta = {k: v for k, v in d.items() if k not in ("feature_set", "features", "targets", "coef")}
        try:
            return cls(detector, d["feature_set"], np.asarray(d["coef"], dtype=np.float64), meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{detector} calibration entry is malformed: {exc}") from exc


def save_calibrations(path: str | Path, calibrations: list[BoxCalibration], info: dict | None = None) -> None:
    """Write one JSON file holding a calibration per detector, plus ``info`` at the top."""
    doc = {"format": FORMAT, **(info or {}),
           "detectors": {c.detector: c.to_dict() for c in calibrations}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1)
    # one line per coefficient row instead of one per number
    text = re.sub(r"\[([-0-9.eE+,\s]+)\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    write_text_atomic(path, text + "\n")


def load_calibration(detector: str, path: str | Path | None = None) -> BoxCalibration:
    """The calibration for ``detector`` from ``path`` (the shipped file when None)."""
    path = Path(path) if path is not None else SHIPPED_CALIBRATION
    if not path.is_file():
        raise ModelError(f"box calibration {path} not found; set calibrate_boxes=false or "
                         "refit it with `moodstream bench iou --save-calibration FILE`")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"box calibration {path} cannot be read: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelError(f"{path} is not a moodstream box calibration (format {FORMAT})")
    entries = doc.get("detectors", {})
    if detector not in entries:
        raise ModelError(f"{path} has no calibration for detector {detector!r} "
                         f"(it has {', '.join(sorted(entries)) or 'none'}); set calibrate_boxes=false")
    return BoxCalibration.from_dict(detector, entries[detector])
