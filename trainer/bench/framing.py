"""``moodstream bench framing``: where a FER+ crop lies relative to a detector's box.

Measures the constants of :data:`worker.crop.FRAMING` (the method is in that
module's docstring): FER+ training faces are upscaled and padded into probes,
the detector runs on them, and the crop scale that best reproduces the 48x48
originals is found. Offline tooling: it lives here, not in the worker.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np
import torch

from moodstream.options import DEVICE, OutputFile
from moodstream.trainer.bench import write_output
from moodstream.shared.settings import FACE_DETECTORS

from moodstream.worker.crop import Framing, crop_faces

SCALE_GRID = tuple(round(0.96 + 0.04 * i, 2) for i in range(10))  # 0.96 .. 1.32


def fer_probes(ferplus_dir: str | Path, n: int, side: int = 160,
               pad: int = 80) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``n`` face images of FER2013Train (``NF`` votes < 5): as probes
    (upscaled to ``side`` px, border-replicated by ``pad`` px, RGB uint8) and as
    the original 48x48 grey arrays."""
    import cv2

    folder = Path(ferplus_dir) / "FER2013Train"
    if not (folder / "label.csv").is_file():
        from moodstream.shared.errors import DataError

        raise DataError(f"{ferplus_dir} is not a FER+ folder: no FER2013Train/label.csv in it")
    probes, originals = [], []
    with open(folder / "label.csv", newline="") as fh:
        for row in csv.reader(fh):
            if len(probes) >= n:
                break
            if not row or int(row[-1]) >= 5:  # last column: "not a face" votes out of 10
                continue
            gray = cv2.imread(str(folder / row[0]), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                continue
            big = cv2.resize(gray, (side, side), interpolation=cv2.INTER_CUBIC)
            big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            probes.append(cv2.cvtColor(big, cv2.COLOR_GRAY2RGB))
            originals.append(gray)
    return probes, originals


def measure_framing(probes: list[np.ndarray], originals: list[np.ndarray], detector, side: int = 160,
                    pad: int = 80, batch: int = 32) -> dict:
    """Where the FER square (``[pad, pad + side]^2`` in each probe) lies relative
    to the detector's top box, and which crop scale reproduces the originals best
    (see the module docstring)."""
    centre = pad + side / 2
    ratios, dxs, dys, boxes, kept = [], [], [], [], []
    for start in range(0, len(probes), batch):
        for j, faces in enumerate(detector.detect(probes[start:start + batch])):
            inside = [f for f in faces if abs((f.box[0] + f.box[2]) / 2 - centre) < side / 2
                      and abs((f.box[1] + f.box[3]) / 2 - centre) < side / 2]
            if not inside:
                continue
            x1, y1, x2, y2 = max(inside, key=lambda f: f.score).box
            w, h = x2 - x1, y2 - y1
            ratios.append(side / math.sqrt(w * h))
            dxs.append((centre - (x1 + x2) / 2) / w)
            dys.append((centre - (y1 + y2) / 2) / h)
            boxes.append((x1, y1, x2, y2))
            kept.append(start + j)
    if not ratios:
        return {"images": len(probes), "found": 0}

    def median(values) -> float:
        return round(float(np.median(values)), 2) + 0.0  # + 0.0: no "-0.0"

    def quartiles(values: list[float]) -> list[float]:
        return [round(float(v), 3) for v in np.percentile(values, [25, 50, 75])]

    dx, dy = median(dxs), median(dys)
    frames = [probes[i] for i in kept]
    targets = np.stack([originals[i] for i in kept]).reshape(len(kept), -1).astype(np.float32)
    box_arrays = [np.asarray([b], np.float32) for b in boxes]
    correlation = {}
    for scale in SCALE_GRID:
        crops = crop_faces(frames, box_arrays, Framing(scale, dx, dy), originals[kept[0]].shape[0],
                           torch.device("cpu")).reshape(len(kept), -1).numpy()
        correlation[scale] = round(float(np.median([np.corrcoef(c, t)[0, 1] for c, t in zip(crops, targets)])), 3)
    best = max(correlation, key=correlation.get)
    return {"images": len(probes), "found": len(ratios),
            "box_ratio": {"scale": quartiles(ratios), "dx": quartiles(dxs), "dy": quartiles(dys)},
            "correlation_by_scale": correlation,
            "framing": asdict(Framing(scale=best, dx=dx, dy=dy))}


@click.command("framing")
@click.option("--data", "ferplus_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="FER+ folder holding FER2013Train/ (images + label.csv).")
@click.option("--detector", type=click.Choice(FACE_DETECTORS), default="mtcnn", show_default=True,
              help="Detector to measure.")
@click.option("-n", "n", type=click.IntRange(min=1), default=600, show_default=True,
              help="Number of FER+ training images to probe.")
@click.option("--device", default="auto", show_default=True, type=DEVICE,
              help="Device for MTCNN (auto, cpu, cuda, cuda:N).")
@click.option("--out", type=OutputFile(), help="Also write the JSON here.")
def framing_cmd(ferplus_dir, detector, n, device, out):
    """Measure a detector's FER framing (crop scale and offset) and print it as JSON."""
    from moodstream.shared.devices import resolve_device
    from moodstream.shared.settings import Settings
    from moodstream.worker.detectors import build_detector

    det = build_detector(Settings(detector=detector, device=device), device=resolve_device(device))
    probes, originals = fer_probes(ferplus_dir, n)
    text = json.dumps({"command": f"moodstream bench framing --data {ferplus_dir} --detector {detector} -n {n}",
                       "detector": detector, **measure_framing(probes, originals, det)})
    if out:
        write_output(out, text + "\n")
    click.echo(text)
