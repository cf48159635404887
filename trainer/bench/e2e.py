"""``moodstream bench e2e``: detection + classification against emotion labels.

FER+ has labels but its faces are 48x48 crops with nothing around them, so each
Test face is placed on a larger canvas (seeded, reproducible per face):

* the face (grey, 48x48) is upscaled with bicubic interpolation to S x S,
  S drawn uniformly from the integers [80, 200];
* it is pasted at a uniformly random position that keeps it inside a 320x320
  RGB canvas; the pasted square is the face's true box;
* the canvas background is smooth noise: a 20x20 grid of values (grey level
  drawn from [60, 190], per-cell spread 35, a per-channel tint within +-12)
  upscaled bicubically to 320x320 and blurred (Gaussian, sigma 4 px);
* the face's outer edge is feathered into the background over
  ``max(2, S // 16)`` px (linear alpha ramp), so there is no hard square edge.

Each face's canvas comes from ``numpy.random.default_rng([seed, row])`` (``row``:
its index in the loaded split), so it does not depend on ``--limit``.

The same faces are scored three ways, in one process:

* ``end_to_end``: the project pipeline (detector + crop + classifier) on the
  canvas; the face counts as found when a detection overlaps its true box with
  IoU >= 0.5 (the best-overlapping one is used); a missed face counts as wrong;
* ``classifier_alone``: the classifier on the original 48x48 face (flip TTA,
  as the pipeline uses);
* ``classifier_on_true_box``: the pipeline's crop + classifier on the canvas at
  the true box (framing 1.0), which separates detection from resampling effects.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import cv2
import numpy as np

from moodstream.options import DEVICE, OutputFile
from moodstream.trainer.bench import table_text, write_output
from moodstream.shared.labels import LABELS, NUM_CLASSES
from moodstream.shared.record import Face
from moodstream.shared.settings import FACE_DETECTORS

log = logging.getLogger(__name__)

MATCH_IOU = 0.5


@dataclass(frozen=True)
class CanvasSpec:
    canvas_px: int = 320
    min_face_px: int = 80
    max_face_px: int = 200
    grid: int = 20  # background noise cells per side
    grey_range: tuple[int, int] = (60, 190)
    grey_spread: float = 35.0
    tint: float = 12.0
    blur_sigma_px: float = 4.0
    feather_div: int = 16  # feather width = max(2, S // feather_div)

    def describe(self) -> dict:
        d = asdict(self)
        d["face"] = "48x48 grey FER+ face upscaled (bicubic) to S x S, S uniform in [min_face_px, max_face_px]"
        d["position"] = "uniform over positions that keep the face inside the canvas"
        d["background"] = ("grid x grid values (grey uniform in grey_range, per-cell normal spread grey_spread, "
                           "per-channel tint uniform within +-tint) upscaled bicubically, Gaussian blur")
        d["edge"] = "linear alpha ramp over max(2, S // feather_div) px inside the face square"
        d["seeding"] = "numpy.random.default_rng([seed, row]) per face, row = index in the loaded split"
        return d


def noise_background(rng: np.random.Generator, spec: CanvasSpec) -> np.ndarray:
    """Smooth RGB noise ``(C, C, 3)`` uint8."""
    grey = rng.uniform(*spec.grey_range)
    cells = grey + rng.normal(0, spec.grey_spread, (spec.grid, spec.grid, 1)) \
        + rng.uniform(-spec.tint, spec.tint, (1, 1, 3))
    img = cv2.resize(cells.astype(np.float32), (spec.canvas_px, spec.canvas_px), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), spec.blur_sigma_px)
    return np.clip(img, 0, 255).astype(np.uint8)


def feather_mask(side: int, width: int) -> np.ndarray:
    """``(side, side)`` float alpha: 1 inside, a linear ramp to ~0 over ``width`` px at the edge."""
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)  # distance to the nearest edge
    ramp = np.clip((d + 0.5) / width, 0, 1)
    return np.minimum(ramp[:, None], ramp[None, :])


def paste(canvas: np.ndarray, face: np.ndarray, cx: float, cy: float, side: int) -> tuple[int, int]:
    """Paste grey ``face`` as a ``side`` px feathered square centred at (cx, cy), clipped to
    the canvas (float ``(H, W, 3)``, in place). Returns its top-left corner."""
    x, y = int(round(cx - side / 2)), int(round(cy - side / 2))
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)[:, :, None]
    alpha = feather_mask(side, max(2, side // 16))[:, :, None]
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + side), min(h, y + side)
    if x1 > x0 and y1 > y0:
        a, f = alpha[y0 - y:y1 - y, x0 - x:x1 - x], big[y0 - y:y1 - y, x0 - x:x1 - x]
        canvas[y0:y1, x0:x1] = a * f + (1 - a) * canvas[y0:y1, x0:x1]
    return x, y


def make_canvas(face: np.ndarray, rng: np.random.Generator, spec: CanvasSpec = CanvasSpec()
                ) -> tuple[np.ndarray, np.ndarray]:
    """A grey face ``(h, w)`` uint8 -> RGB canvas ``(C, C, 3)`` uint8 and its true box ``(4,)`` x1 y1 x2 y2."""
    side = int(rng.integers(spec.min_face_px, spec.max_face_px + 1))
    x = int(rng.integers(0, spec.canvas_px - side + 1))
    y = int(rng.integers(0, spec.canvas_px - side + 1))
    canvas = noise_background(rng, spec).astype(np.float32)
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)[:, :, None]
    alpha = feather_mask(side, max(2, side // spec.feather_div))[:, :, None]
    region = canvas[y:y + side, x:x + side]
    canvas[y:y + side, x:x + side] = alpha * big + (1 - alpha) * region
    return np.clip(canvas.round(), 0, 255).astype(np.uint8), np.array([x, y, x + side, y + side], np.float64)


def canvases(images: np.ndarray, rows: np.ndarray, seed: int, spec: CanvasSpec = CanvasSpec()):
    """Yield ``(canvas, box)`` for each selected row of a split's ``(N, 48, 48)`` images."""
    for row in rows:
        yield make_canvas(images[row], np.random.default_rng([seed, int(row)]), spec)


def select_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    """All rows, or ``limit`` of them drawn without replacement (seeded), in ascending order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


# --- metrics -------------------------------------------------------------------------------

def label_metrics(labels: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy and macro recall where ``pred`` = -1 means no prediction (counts wrong)."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    correct = pred == labels
    recalls = {LABELS[c]: round(float(correct[labels == c].mean()), 4)
               for c in range(NUM_CLASSES) if (labels == c).any()}
    return {"n": int(len(labels)), "accuracy": round(float(correct.mean()), 4) if len(labels) else 0.0,
            "macro_recall": round(float(np.mean(list(recalls.values()))), 4) if recalls else 0.0,
            "recall_per_class": recalls}


def match_face(faces: list[Face], true_box: np.ndarray) -> tuple[int, float]:
    """Index of the detection overlapping ``true_box`` most, and that IoU (-1, 0.0 if none)."""
    from moodstream.shared.boxes import box_iou

    if not faces:
        return -1, 0.0
    iou = box_iou(np.array([f.box for f in faces]), true_box[None])[:, 0]  # one truth: the best overlap
    best = int(iou.argmax())
    return best, float(iou[best])


def summarize(labels: np.ndarray, e2e_pred: np.ndarray, found: np.ndarray, ious: np.ndarray,
              sides: np.ndarray, alone_pred: np.ndarray, true_box_pred: np.ndarray | None) -> dict:
    """Everything the report holds, from per-face arrays (``e2e_pred`` is -1 where missed)."""
    out = {
        "n": int(len(labels)),
        "detection_rate": round(float(found.mean()), 4) if len(found) else 0.0,
        "mean_iou_found": round(float(ious[found].mean()), 4) if found.any() else 0.0,
        "end_to_end": label_metrics(labels, np.where(found, e2e_pred, -1)),
        "end_to_end_on_found": label_metrics(labels[found], e2e_pred[found]),
        "classifier_alone": label_metrics(labels, alone_pred),
    }
    if true_box_pred is not None:
        out["classifier_on_true_box"] = label_metrics(labels, true_box_pred)
    bins = [(80, 120), (120, 160), (160, 201)]
    out["detection_rate_by_face_px"] = {
        f"{lo}-{hi - 1}": round(float(found[(sides >= lo) & (sides < hi)].mean()), 4)
        for lo, hi in bins if ((sides >= lo) & (sides < hi)).any()}
    return out


# --- command ----------------------------------------------------------------------------------

def format_table(r: dict) -> str:
    lines = [f"FER+ {r['split']} faces on {r['canvas']['canvas_px']}px canvases (face "
             f"{r['canvas']['min_face_px']}-{r['canvas']['max_face_px']} px, seed {r['seed']}), n = {r['n']}, "
             f"detector {r['settings']['detector']}",
             f"detection rate (IoU >= {MATCH_IOU}): {r['detection_rate']:.4f}  "
             f"(by face px: {', '.join(f'{k} {v:.3f}' for k, v in r['detection_rate_by_face_px'].items())})",
             f"{'':<28}{'accuracy':>10}{'macro recall':>14}"]
    rows = (("end_to_end", "end-to-end (miss = wrong)"), ("end_to_end_on_found", "end-to-end, found only"),
            ("classifier_on_true_box", "classifier on true box"), ("classifier_alone", "classifier alone (48x48)"))
    for key, label in rows:
        if key in r:
            lines.append(f"{label:<28}{r[key]['accuracy']:>10.4f}{r[key]['macro_recall']:>14.4f}")
    lines.append(f"model {r['model_version']}; {r['ms_per_image']:.1f} ms per canvas")
    return table_text(lines)


@click.command("e2e")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="FER+ root (FER2013Test/ with label.csv) or a folder-per-class dataset.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "valid", "test"]),
              help="FER+ split whose faces are placed on canvases.")
@click.option("--limit", type=click.IntRange(min=1), help="Use N faces drawn without replacement (seeded).")
@click.option("--seed", default=0, show_default=True, help="Seed of the face sample and of every canvas.")
@click.option("--detector", type=click.Choice(FACE_DETECTORS), default="mtcnn", show_default=True,
              help="Face detector in front of the classifier.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Emotion checkpoint [default: the shipped model].")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch", "batch_size", default=16, show_default=True, type=click.IntRange(min=1),
              help="Canvases per pipeline call.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table.")
@click.option("--out", type=OutputFile(), help="Also write the JSON report here.")
def e2e_cmd(data_dir, split, limit, seed, detector, checkpoint, device, batch_size, as_json, out):
    """Detection + classification against emotion labels, beside the classifier alone.

    Each FER+ face (48x48 grey) is upscaled (bicubic) to S x S px, S uniform in
    [80, 200], and pasted at a uniform random position on a 320x320 canvas of
    smooth colour noise (20x20 cells, bicubic upscale, Gaussian blur sigma 4),
    its edge feathered over max(2, S/16) px; the canvas of split row r comes
    from numpy default_rng([seed, r]). Reported: detection rate (a detection
    with IoU >= 0.5 to the pasted square), end-to-end accuracy and macro recall
    (a missed face counts wrong), the classifier alone on the 48x48 originals,
    and the classifier on the true box, all on the same faces. Detector and
    thresholds come from the project settings (MOODSTREAM_* variables).
    """
    import torch
    from tqdm import tqdm

    from moodstream.shared.models import load_checkpoint, predict_proba
    from moodstream.shared.settings import Settings
    from moodstream.trainer.data import load_split
    from moodstream.worker.classify import EmotionClassifier
    from moodstream.worker.crop import Framing
    from moodstream.worker.pipeline import Pipeline

    settings = Settings.from_env(detector=detector, device=device,
                                 checkpoint=str(checkpoint) if checkpoint else None)
    split_data = load_split(data_dir, split)
    rows = select_rows(len(split_data), limit, seed)
    labels = split_data.labels[rows]
    ckpt = load_checkpoint(settings.checkpoint)
    pipeline = Pipeline(settings, checkpoint=ckpt)
    # the true box already frames the face as FER does: crop it as it is (framing 1.0)
    clf = pipeline.classifier
    true_box_classifier = EmotionClassifier(clf.checkpoint, clf.device, Framing(1.0), flip_tta=clf.flip_tta)
    spec = CanvasSpec()

    e2e_pred = np.full(len(rows), -1, dtype=np.int64)
    ious = np.zeros(len(rows))
    sides = np.zeros(len(rows))
    true_box_pred = np.full(len(rows), -1, dtype=np.int64)
    n_faces_total, elapsed = 0, 0.0
    gen = canvases(split_data.images, rows, seed, spec)
    bar = tqdm(total=len(rows), desc="e2e", unit="img", file=sys.stderr, mininterval=2.0)
    for start in range(0, len(rows), batch_size):
        batch = [next(gen) for _ in range(min(batch_size, len(rows) - start))]
        frames = [c for c, _ in batch]
        t0 = time.perf_counter()
        results = pipeline.process(frames)
        elapsed += time.perf_counter() - t0
        for j, ((_, box), res) in enumerate(zip(batch, results)):
            i = start + j
            sides[i] = box[2] - box[0]
            n_faces_total += len(res.faces)
            best, iou = match_face(res.faces, box)
            ious[i] = iou
            if best >= 0 and iou >= MATCH_IOU:
                e2e_pred[i] = LABELS.index(res.faces[best].emotion)
        probs = true_box_classifier.predict(frames, [box[None].astype(np.float32) for _, box in batch])
        true_box_pred[start:start + len(batch)] = probs.argmax(1)
        bar.update(len(batch))
    bar.close()
    found = e2e_pred >= 0

    with torch.inference_mode():
        faces = torch.from_numpy(split_data.images[rows]).float().div(255).unsqueeze(1)  # (N, 1, 48, 48)
        alone = np.concatenate([predict_proba(ckpt, faces[k:k + 256].to(pipeline.device)).argmax(1).cpu().numpy()
                                for k in range(0, len(faces), 256)]) if len(faces) else np.zeros(0, np.int64)

    report = {
        "benchmark": "end-to-end: FER+ faces pasted on canvases, detection + classification",
        "data": str(data_dir), "split": split, "seed": seed, "limit": limit,
        "canvas": spec.describe(), "match_iou": MATCH_IOU,
        "settings": {"detector": settings.detector, "min_face_px": settings.min_face_px,
                     "face_score_min": settings.face_score_min, "calibrate_boxes": settings.calibrate_boxes,
                     "device": str(pipeline.device), "checkpoint": settings.checkpoint or "shipped"},
        "model_version": pipeline.model_version,
        **summarize(labels, e2e_pred, found, ious, sides, alone, true_box_pred),
        "extra_detections": int(n_faces_total - found.sum()),
        "ms_per_image": round(elapsed * 1000 / max(len(rows), 1), 2),
    }
    text = json.dumps(report)
    if out:
        write_output(out, json.dumps(report, indent=1) + "\n")
    click.echo(text if as_json else format_table(report))

