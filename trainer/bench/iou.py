"""``moodstream bench iou``: face-detection IoU on WIDER FACE val (the paper's Table 1).

Metrics, per detector, on the same images in one process:

* ``single_face_acc``: over the images with exactly one annotated face, the
  fraction where some predicted box reaches IoU >= t with it (the paper's metric);
* ``recall``: over every face not flagged invalid whose shorter side is at least
  the size cut (after scaling), the fraction matched at IoU >= t by the one-to-one
  greedy matching (pairs taken by decreasing IoU); ``recall_uncut`` without the cut;
* ``precision``: matched predictions at IoU >= 0.5 over all predictions, where a
  match to any annotated face counts (also an invalid or tiny one, so detecting
  a real face is never a false positive);
* ``ms_per_image``: wall time of one ``detect([frame])`` call, after one warm-up.

With calibration on (default), each metric is also given for boxes calibrated
by K-fold cross-fitting (:mod:`trainer.bench.calibration_fit`): every image is
scored with a calibration fitted on the other folds, never on itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import click
import msgspec
import numpy as np

from moodstream.options import DEVICE, FiniteRange, OutputFile, OutputFolder
from moodstream.shared.boxes import box_iou, greedy_match
from moodstream.shared.settings import FACE_DETECTORS, MIN_FACE_PX
from moodstream.trainer.bench import write_output
from moodstream.trainer.bench.wider import GEOMETRIES, WiderImage, load_wider, spread

log = logging.getLogger(__name__)

THRESHOLDS = (0.5, 0.75, 0.85)
PAPER_TABLE1 = {"mtcnn": {"0.5": 0.556, "0.75": 0.423, "0.85": 0.198},
                "haar": {"0.5": 0.073, "0.75": 0.017, "0.85": 0.001}}
GREEN, BLUE, ORANGE = (0, 200, 0), (30, 90, 255), (255, 150, 0)  # RGB


def tkey(t: float) -> str:
    return f"{t:g}"


# --- metrics (pure numpy) ------------------------------------------------------

def pred_boxes(faces: list) -> np.ndarray:
    return np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)


def is_single_face(img: WiderImage) -> bool:
    """Exactly one annotated face with a real box (one GT entry of 0 0 0 0 means no face)."""
    return len(img.boxes) == 1 and bool((img.boxes[0, 2:] > img.boxes[0, :2]).all())


def evaluate(images: list[WiderImage], detections: list[list], size_cut_px: float,
             thresholds: tuple[float, ...] = THRESHOLDS) -> dict:
    """All metrics of the module docstring for one detector's detections."""
    single_best = []  # best IoU of any prediction with the one face, per single-face image
    gt_iou_cut, gt_iou_all = [], []  # matched IoU of each counted face (0: missed)
    n_pred, tp = 0, 0
    for img, faces in zip(images, detections):
        pred = pred_boxes(faces)
        iou = box_iou(pred, img.boxes)  # (P, G)
        if is_single_face(img):
            single_best.append(float(iou[:, 0].max()) if len(pred) else 0.0)
        col_of, val = greedy_match(iou)
        gt_val = np.zeros(len(img.boxes))
        gt_val[col_of[col_of >= 0]] = val[col_of >= 0]
        valid = ~img.invalid
        gt_iou_all.append(gt_val[valid])
        gt_iou_cut.append(gt_val[valid & (img.min_side >= size_cut_px)])
        n_pred += len(pred)
        tp += int((val >= 0.5).sum())
    single = np.array(single_best)
    cut, uncut = np.concatenate(gt_iou_cut), np.concatenate(gt_iou_all)

    def rate(x: np.ndarray, t: float) -> float:
        return round(float((x >= t).mean()), 4) if len(x) else 0.0

    return {
        "single_face_acc": {tkey(t): rate(single, t) for t in thresholds},
        "single_face_mean_iou": round(float(single.mean()), 4) if len(single) else 0.0,
        "n_single_face_images": int(len(single)),
        "recall": {tkey(t): rate(cut, t) for t in thresholds},
        "n_faces": int(len(cut)),
        "recall_uncut": {tkey(t): rate(uncut, t) for t in thresholds},
        "n_faces_uncut": int(len(uncut)),
        "precision": round(tp / n_pred, 4) if n_pred else 0.0,
        "n_predictions": int(n_pred),
        "n_true_positives": int(tp),
    }


def paired_iou(images: list[WiderImage], raw: list[list], adjusted: list[list], size_cut_px: float) -> dict:
    """The same detections before and after calibration: over the counted faces
    that a raw detection matches at IoU >= 0.5, the mean IoU of that detection
    raw and calibrated (a paired comparison, far less noisy than the rates)."""
    before, after = [], []
    for img, faces, cal in zip(images, raw, adjusted):
        if not faces:
            continue
        col_of, val = greedy_match(box_iou(pred_boxes(faces), img.boxes))
        counted = ~img.invalid & (img.min_side >= size_cut_px)
        cal_boxes = pred_boxes(cal)
        for p in np.flatnonzero((col_of >= 0) & (val >= 0.5)):
            g = col_of[p]
            if counted[g]:
                before.append(val[p])
                after.append(box_iou(cal_boxes[p], img.boxes[g])[0, 0])
    b, a = np.array(before), np.array(after)
    return {"n_faces": int(len(b)), "mean_iou_raw": round(float(b.mean()), 4) if len(b) else 0.0,
            "mean_iou_calibrated": round(float(a.mean()), 4) if len(a) else 0.0,
            "fraction_improved": round(float((a > b).mean()), 4) if len(b) else 0.0}


# --- running detectors -----------------------------------------------------------

def detector_settings(det) -> dict:
    """The thresholds a detector actually runs with (reported beside its numbers)."""
    if det.name == "mtcnn":
        m = det.mtcnn
        return {"min_face_px": m.min_face_size, "stage_thresholds": list(m.thresholds), "factor": m.factor,
                "face_score_min": det.min_score, "device": str(det.device)}
    return {"min_face_px": det.min_size, "scale_factor": det.scale_factor, "min_neighbors": det.min_neighbors,
            "cascade": "haarcascade_frontalface_default.xml"}


def run_detector(det, images: list[WiderImage]) -> tuple[list[list], list[float]]:
    """Detections per image and the wall time (ms) of each one-frame ``detect`` call."""
    from tqdm import tqdm

    det.detect([images[0].read()])  # warm-up (allocations, lazy init), not timed
    detections, ms = [], []
    for img in tqdm(images, desc=det.name, unit="img", file=sys.stderr, mininterval=2.0):
        frame = img.read()
        t0 = time.perf_counter()
        faces = det.detect([frame])[0]
        ms.append((time.perf_counter() - t0) * 1000)
        detections.append(faces)
    return detections, ms


def write_detections(path: Path, geometry: str, runs: dict) -> None:
    doc = {"geometry": geometry, "detectors": {
        name: {"settings": r["settings"], "ms": [round(v, 2) for v in r["ms"]],
               "images": dict(zip(r["names"], r["detections"]))}
        for name, r in runs.items()}}
    write_output(path, msgspec.json.encode(doc, enc_hook=lambda o: o.item()).decode())  # numpy scalars: .item()


def read_detections(path: Path, geometry: str, images: list[WiderImage], detectors: list[str]) -> dict:
    from moodstream.shared.errors import DataError
    from moodstream.shared.record import Face

    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # not JSON (an image given by mistake), unreadable
        raise DataError(f"{path} is not a detections file written by `bench iou --save-detections`: "
                        f"{type(exc).__name__}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("detectors"), dict) or "geometry" not in doc:
        raise DataError(f"{path} is not a detections file written by `bench iou --save-detections`")
    if doc.get("geometry") != geometry:
        raise DataError(f"{path} holds {doc.get('geometry')} detections; this run is {geometry}")
    runs = {}
    for name in detectors:
        if name not in doc["detectors"]:
            raise DataError(f"{path} has no {name} detections")
        d = doc["detectors"][name]
        missing = [img.name for img in images if img.name not in d["images"]]
        if missing:
            raise DataError(f"{path} lacks {name} detections for {len(missing)} images, e.g. {missing[0]}")
        try:
            dets = [msgspec.convert(d["images"][img.name], list[Face]) for img in images]
        except msgspec.ValidationError as exc:
            raise DataError(f"{path}: {name} detections are malformed: {exc}") from None
        by_name = dict(zip(d["images"], d["ms"]))
        runs[name] = {"settings": d["settings"], "detections": dets, "ms": [by_name[i.name] for i in images],
                      "names": [i.name for i in images]}
    return runs


# --- output ----------------------------------------------------------------------------

def format_table(report: dict) -> str:
    ts = [tkey(t) for t in report["thresholds"]]
    head = (f"{'detector':<9}{'boxes':<12}" + "".join(f"{'acc@' + t:>9}" for t in ts) + " |"
            + "".join(f"{'rec@' + t:>9}" for t in ts) + " |" + f"{'all@0.5':>9}{'prec@0.5':>10}{'ms/img':>8}")
    lines = [f"WIDER FACE val, {report['n_images']} images, geometry {report['geometry']}; "
             f"recall: faces not invalid with shorter side >= {report['size_cut_px']} px "
             f"(all@0.5: no size cut)", head]
    for name in FACE_DETECTORS:
        if name not in report:
            continue
        r = report[name]
        for label, m in (("raw", r), ("calibrated", r.get("calibrated"))):
            if m is None:
                continue
            ms = f"{r['ms_per_image']:>8.1f}" if label == "raw" else f"{'':>8}"
            lines.append(f"{name:<9}{label:<12}" + "".join(f"{m['single_face_acc'][t]:>9.3f}" for t in ts) + " |"
                         + "".join(f"{m['recall'][t]:>9.3f}" for t in ts) + " |"
                         + f"{m['recall_uncut']['0.5']:>9.3f}{m['precision']:>10.3f}" + ms)
        lines.append(f"{name:<9}{'paper':<12}" + "".join(f"{PAPER_TABLE1[name][t]:>9.3f}" for t in ts))
    first = next((report[n] for n in FACE_DETECTORS if n in report), None)
    if first:
        lines.append(f"single-face images: {first['n_single_face_images']}; faces counted: {first['n_faces']} "
                     f"(uncut {first['n_faces_uncut']})")
    for name in FACE_DETECTORS:
        if name in report and "calibrated" in report[name]:
            p = report[name]["calibrated"]["paired"]
            lines.append(f"{name} held-out calibration, same detections: mean IoU {p['mean_iou_raw']:.4f} -> "
                         f"{p['mean_iou_calibrated']:.4f} over {p['n_faces']} matched faces "
                         f"({p['fraction_improved']:.0%} improved)")
    for name in FACE_DETECTORS:
        if name in report:
            lines.append(f"{name} settings: {json.dumps(report[name]['detector'])}")
    return "\n".join(lines)


def write_figures(out_dir: Path, images: list[WiderImage], runs: dict, calibrated: dict, n: int = 4) -> list[str]:
    """A few images (single-face ones first, then a crowd) with GT in green, raw
    detections in blue and cross-fitted calibrated ones in orange; one panel per detector."""
    import cv2

    singles = [i for i, img in enumerate(images) if is_single_face(img)]
    crowd = [i for i, img in enumerate(images) if 4 <= len(img.boxes) <= 15]
    picks = spread(singles, n - 1) + crowd[:1] if singles else spread(list(range(len(images))), n)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in picks:
        img = images[i]
        panels = []
        for name, run in runs.items():
            canvas = img.read().copy()
            for b in img.boxes:
                cv2.rectangle(canvas, (round(b[0]), round(b[1])), (round(b[2]), round(b[3])), GREEN, 2)
            adjusted = calibrated[name][i] if name in calibrated else []
            for faces, colour in ((run["detections"][i], BLUE), (adjusted, ORANGE)):
                for f in faces:
                    x1, y1, x2, y2 = (round(v) for v in f.box)
                    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 1 if colour is ORANGE else 2)
            label = f"{name}: GT green, detected blue" + (", calibrated orange" if name in calibrated else "")
            cv2.putText(canvas, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 2, cv2.LINE_AA)
            cv2.putText(canvas, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            panels.append(canvas)
        path = out_dir / f"iou_{Path(img.name).stem}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(panels, axis=1), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 80])
        written.append(str(path))
    return written


# --- command -----------------------------------------------------------------------------------

@click.command("iou")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Benchmark folder: images/, original_sizes.csv, wider_face_val_bbx_gt.txt.")
@click.option("--detectors", default="mtcnn,haar", show_default=True, help="Comma-separated: mtcnn, haar.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N (MTCNN).")
@click.option("--limit", type=click.IntRange(min=1), help="Use N images spread evenly over the sorted list.")
@click.option("--geometry", type=click.Choice(GEOMETRIES), default="stretched", show_default=True,
              help="stretched: the 416x416 files as the paper used them; restored: resized back to the "
                   "original aspect ratio (shorter side 416), faces in their natural shape.")
@click.option("--min-face-px", default=20, show_default=True, type=click.IntRange(min=MIN_FACE_PX),
              help="Smallest face the detectors look for (Settings.min_face_px; MTCNN min_face_size).")
@click.option("--score-min", default=0.0, show_default=True, type=FiniteRange(0, 1),
              help="Settings.face_score_min for MTCNN: 0 keeps every box MTCNN's own stage thresholds "
                   "(0.6, 0.7, 0.7) pass, as facenet-pytorch does by default.")
@click.option("--size-cut", "size_cut_px", default=20.0, show_default=True, type=FiniteRange(min=0),
              help="Recall counts faces whose shorter side is at least this many px after scaling.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Also score boxes calibrated by K-fold cross-fitting.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2), help="K for cross-fitting.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fold assignment.")
@click.option("--save-calibration", type=OutputFile(),
              help="Fit a calibration on all images (per detector) and write it here "
                   "(the shipped one is worker/data/box_calibration.json).")
@click.option("--save-detections", type=OutputFile(),
              help="Write the raw detections (and timings) as JSON.")
@click.option("--detections", "detections_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Score detections saved by --save-detections instead of running the detectors.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table.")
@click.option("--out", type=OutputFile(), help="Also write the JSON report here.")
@click.option("--figures", type=OutputFolder(),
              help="Write a few JPEGs here: GT green, detections blue, calibrated orange.")
def iou_cmd(data_dir, detectors, device, limit, geometry, min_face_px, score_min, size_cut_px, calibrate, folds,
            seed, save_calibration, save_detections, detections_file, as_json, out, figures):
    """Face-detection IoU on WIDER FACE val (the paper's Table 1), with and without box calibration.

    Per detector: single-face accuracy at IoU 0.5 / 0.75 / 0.85 (the paper's
    metric), recall per face at the same IoUs (size cut and uncut), precision at
    0.5 (one-to-one greedy matching), ms per image. Calibrated numbers come from
    K-fold cross-fitting: no image is scored with a calibration fitted on it.
    """
    from moodstream.shared.errors import ConfigError, DataError
    from moodstream.shared.settings import Settings
    from moodstream.trainer.bench import calibration_fit as cf
    from moodstream.worker.calibration import save_calibrations

    names = [d.strip() for d in detectors.split(",") if d.strip()]
    bad = sorted(set(names) - set(FACE_DETECTORS))
    if bad or not names:
        raise ConfigError(f"--detectors takes mtcnn and/or haar, got {detectors!r}")
    images = spread(load_wider(data_dir, geometry), limit)
    if detections_file:
        runs = read_detections(detections_file, geometry, images, names)
    else:
        runs = {}
        for name in names:
            settings = Settings.from_env(detector=name, device=device, min_face_px=min_face_px,
                                         face_score_min=score_min)
            from moodstream.worker.detectors import build_detector

            det = build_detector(settings)
            detections, ms = run_detector(det, images)
            runs[name] = {"settings": detector_settings(det), "detections": detections, "ms": ms,
                          "names": [i.name for i in images]}
        if save_detections:
            write_detections(save_detections, geometry, runs)

    report: dict = {
        "benchmark": "WIDER FACE val IoU (paper Table 1)", "data": str(data_dir), "geometry": geometry,
        "n_images": len(images), "thresholds": list(THRESHOLDS), "size_cut_px": size_cut_px,
        "size_cut_rule": "recall counts faces not flagged invalid whose shorter side after scaling is >= size_cut_px",
        "single_face_rule": "images with exactly one annotated face; an entry of 0 0 0 0 (no face) is left out",
        "precision_rule": "matched predictions (IoU >= 0.5, one-to-one greedy) / predictions; "
                          "matches to invalid or tiny faces count as correct",
        "paper_table1": PAPER_TABLE1, "torch_threads": _torch_threads(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if calibrate:
        report["calibration"] = {"method": f"{folds}-fold cross-fitting over images (seed {seed}); each image "
                                           "is scored with a fit on the other folds",
                                 "pairs": "greedy matches with IoU >= 0.5 to faces not invalid, shorter side >= "
                                          f"{size_cut_px} px", "ridge": cf.DEFAULT_RIDGE,
                                 "features": {n: cf.FEATURE_SET_FOR[n] for n in names}}
    calibrated, shipped = {}, []
    for name, run in runs.items():
        res = {"detector": run["settings"], **evaluate(images, run["detections"], size_cut_px)}
        ms = np.array(run["ms"])
        res.update(ms_per_image=round(float(ms.mean()), 2), ms_per_image_median=round(float(np.median(ms)), 2))
        if calibrate:
            try:
                cal_dets, fold_records = cf.cross_fit(images, run["detections"], name, folds, seed,
                                                      min_side_px=size_cut_px)
            except DataError as exc:  # too few images or matched faces (a small --limit)
                log.warning("bench iou: %s calibration skipped: %s", name, exc)
                res["calibration_skipped"] = str(exc)
            else:
                calibrated[name] = cal_dets
                res["calibrated"] = evaluate(images, cal_dets, size_cut_px)
                res["calibrated"]["paired"] = paired_iou(images, run["detections"], cal_dets, size_cut_px)
                res["calibrated"]["n_train_faces_per_fold"] = [r["n_train_faces"] for r in fold_records]
        if save_calibration:
            held_out = {k: res["calibrated"][k] for k in ("single_face_acc", "recall", "precision", "paired")} \
                if "calibrated" in res else None
            raw = {k: res[k] for k in ("single_face_acc", "recall", "precision")}
            shipped.append(cf.fit_all(images, run["detections"], name, min_side_px=size_cut_px, meta={
                "fitted_on": f"{len(images)} WIDER FACE val images ({data_dir.name}, geometry {geometry})",
                "detector_settings": run["settings"], "raw_on_same_images": raw,
                "held_out_cross_fit": held_out}))
        report[name] = res
    if save_calibration:
        save_calibrations(save_calibration, shipped, {
            "how": "ridge regression in box-normalised coordinates from each detection (and MTCNN's 5 landmarks) "
                   "to the annotated WIDER box; pairs = one-to-one greedy matches with IoU >= 0.5",
            "command": " ".join(["moodstream"] + sys.argv[1:])})
        report["saved_calibration"] = str(save_calibration)
    if figures:
        report["figures"] = write_figures(figures, images, runs, calibrated)
    text = json.dumps(report)
    if out:
        write_output(out, json.dumps(report, indent=1) + "\n")
    click.echo(text if as_json else format_table(report))


def _torch_threads() -> int | None:
    try:
        import torch
        return torch.get_num_threads()
    except ImportError:
        return None
