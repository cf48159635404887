"""Following faces between key frames: pyramidal Lucas-Kanade optical flow.

On the frames between two key frames of a source (where the detector runs,
see :class:`worker.video.VideoAnalyzer`), each face of the previous frame is
followed by the median flow of points inside its box (:func:`follow_faces`),
with no image pyramid of the detector. A face whose flow is not trustworthy is
dropped until the next key frame; new faces appear only at key frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from moodstream.shared.record import Face


@dataclass(frozen=True)
class FlowConfig:
    margin: float = 0.5  # the flow window: the face box grown by this many box sides on every side
    max_corners: int = 60  # good features to track inside a box (plus its landmarks)
    min_points: int = 6  # fewer points that survive the checks: the face is lost
    levels: int = 3  # pyramid levels of the LK flow (inside the window only)
    fb_max: float = 0.04  # forward-backward error at most this many box sides (and at least 1 px)
    max_scale_step: float = 1.25  # box scale change per frame is clipped to 1/this .. this


def _window(box: tuple[float, ...], margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    return (max(0, math.floor(x1 - margin * bw)), max(0, math.floor(y1 - margin * bh)),
            min(w, math.ceil(x2 + margin * bw)), min(h, math.ceil(y2 + margin * bh)))


Cut = tuple[tuple[int, int, int, int], np.ndarray]  # a face's flow window (x1, y1, x2, y2) and its pixels in grey


@dataclass(frozen=True)
class Held:
    """What following needs of a frame (:func:`hold`): its size and, for each face found on it, the
    flow window in grey, copied (a camera loop may fill the same array with its next frame)."""

    shape: tuple[int, int]
    windows: tuple[Cut | None, ...]  # one a face, None for a face too small to follow


def _grey_window(image: np.ndarray, face: Face, cfg: FlowConfig) -> Cut | None:
    """``face``'s flow window on ``image`` and its pixels in grey; None for a box too small to follow."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = face.box
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    wx1, wy1, wx2, wy2 = window = _window(face.box, cfg.margin, w, h)
    if wx2 - wx1 < 8 or wy2 - wy1 < 8:
        return None
    return window, cv2.cvtColor(np.ascontiguousarray(image[wy1:wy2, wx1:wx2]), cv2.COLOR_RGB2GRAY)


def hold(image: np.ndarray, faces: list[Face], cfg: FlowConfig = FlowConfig()) -> Held:
    """What :func:`follow_faces` needs of ``image`` to follow ``faces`` onto the next frame."""
    return Held(image.shape[:2], tuple(_grey_window(image, face, cfg) for face in faces))


def follow_face(prev: np.ndarray, cur: np.ndarray, face: Face, cfg: FlowConfig = FlowConfig()) -> Face | None:
    """``face`` on RGB frame ``prev`` -> the same face on ``cur`` (box shifted by the median
    flow and scaled by the median change of point distances, landmarks moved with it),
    or None when the flow is not trustworthy (too few points, large forward-backward
    error, box centre off the frame). The frames are of one size (a ValueError if not)."""
    _same_size(prev.shape[:2], cur)
    cut = _grey_window(prev, face, cfg)
    return None if cut is None else _follow(cut, cur, face, cfg)


def _same_size(shape: tuple[int, ...], cur: np.ndarray) -> None:
    if tuple(shape) != cur.shape[:2]:
        raise ValueError(f"faces are followed between frames of one size: {shape[1]}x{shape[0]} then "
                         f"{cur.shape[1]}x{cur.shape[0]} (detect afresh on a frame of a new size)")


def _follow(cut: Cut, cur: np.ndarray, face: Face, cfg: FlowConfig) -> Face | None:
    h, w = cur.shape[:2]
    x1, y1, x2, y2 = face.box
    bw, bh = x2 - x1, y2 - y1
    side = math.sqrt(bw * bh)
    (wx1, wy1, wx2, wy2), a = cut
    b = cv2.cvtColor(np.ascontiguousarray(cur[wy1:wy2, wx1:wx2]), cv2.COLOR_RGB2GRAY)
    mask = np.zeros_like(a)
    mask[max(0, int(y1) - wy1):max(0, math.ceil(y2) - wy1), max(0, int(x1) - wx1):max(0, math.ceil(x2) - wx1)] = 255
    corners = cv2.goodFeaturesToTrack(a, cfg.max_corners, 0.01, max(2.0, side / 20), mask=mask)
    pts = [] if corners is None else [corners.reshape(-1, 2)]
    if face.landmarks:
        lm = np.asarray(face.landmarks, np.float32) - (wx1, wy1)
        pts.append(lm[(lm[:, 0] >= 0) & (lm[:, 1] >= 0) & (lm[:, 0] < a.shape[1]) & (lm[:, 1] < a.shape[0])])
    p0 = np.concatenate(pts).astype(np.float32).reshape(-1, 1, 2) if pts else np.zeros((0, 1, 2), np.float32)
    if len(p0) < cfg.min_points:
        return None
    win = int(np.clip(side / 3, 9, 31)) | 1  # odd, about a third of the face
    lk = {"winSize": (win, win), "maxLevel": cfg.levels,
          "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **lk)
    fb = np.linalg.norm((p0 - back).reshape(-1, 2), axis=1)
    good = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= max(1.0, cfg.fb_max * side))
    if good.sum() < cfg.min_points:
        return None
    q0, q1 = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]
    dx, dy = np.median(q1 - q0, axis=0)
    i, j = np.triu_indices(len(q0), k=1)
    d0 = np.linalg.norm(q0[i] - q0[j], axis=1)
    d1 = np.linalg.norm(q1[i] - q1[j], axis=1)
    keep = d0 > 1.0
    scale = float(np.median(d1[keep] / d0[keep])) if keep.any() else 1.0
    scale = float(np.clip(scale, 1 / cfg.max_scale_step, cfg.max_scale_step))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ncx, ncy = cx + float(dx), cy + float(dy)
    if not (0 <= ncx < w and 0 <= ncy < h):
        return None
    box = (ncx - bw * scale / 2, ncy - bh * scale / 2, ncx + bw * scale / 2, ncy + bh * scale / 2)
    landmarks = None if face.landmarks is None else [
        (ncx + (x - cx) * scale, ncy + (y - cy) * scale) for x, y in face.landmarks]
    return Face(box, face.score, landmarks)


def follow_faces(prev: np.ndarray | Held, cur: np.ndarray, faces: list[Face],
                 cfg: FlowConfig = FlowConfig()) -> list[Face]:
    """:func:`follow_face` for each face; lost faces are left out. ``prev`` is the previous frame, or
    what :func:`hold` kept of it for these faces."""
    held = prev if isinstance(prev, Held) else hold(prev, faces, cfg)
    _same_size(held.shape, cur)
    followed = (None if cut is None else _follow(cut, cur, face, cfg) for face, cut in zip(faces, held.windows))
    return [f for f in followed if f is not None]
