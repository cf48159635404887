"""Where facenet-pytorch's MTCNN on a GPU leaves its own CPU answers. For deploy/gpu/run_bench.sh.

On an H200 its GPU boxes matched its CPU boxes for 16 of 24 fixture boxes at IoU 0.95, with
TF32 off, cuDNN deterministic, or cuDNN off alike (docs/results/gpu/h200/README.md). This runs
facenet's detect_face on each fixture image on both devices, recording every intermediate
it computes (each pyramid level's resize, each net's outputs, each NMS's kept indices), and
prints, per image, the first intermediate that differs and by how much: the step to blame.

    python3 deploy/gpu/facenet_drift.py OUT.json [DEVICE]

DEVICE defaults to cuda; ``cpu`` against itself dry-runs the wiring (no differences expected).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils import detect_face as fd

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "images"
TOLERANCE = 1e-4  # relative to the value's scale; float32 noise is far below


def recorded_run(image: np.ndarray, device: str) -> list[tuple[str, np.ndarray]]:
    """facenet's detect on one image, with every intermediate recorded in order."""
    log: list[tuple[str, np.ndarray]] = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            for i, t in enumerate(out if isinstance(out, tuple) else (out,)):
                log.append((f"{name}[{i}]" if isinstance(out, tuple) else name,
                            t.detach().float().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)))
            return out
        return wrapped

    mtcnn = MTCNN(keep_all=True, min_face_size=20, post_process=False, device=device)
    for net in ("pnet", "rnet", "onet"):
        getattr(mtcnn, net).forward = spy(net, getattr(mtcnn, net).forward)
    saved = fd.imresample, fd.batched_nms, fd.batched_nms_numpy
    fd.imresample, fd.batched_nms = spy("imresample", fd.imresample), spy("batched_nms", fd.batched_nms)
    fd.batched_nms_numpy = spy("batched_nms_numpy", fd.batched_nms_numpy)
    try:
        with torch.inference_mode():
            boxes, _ = mtcnn.detect(image)
    finally:
        fd.imresample, fd.batched_nms, fd.batched_nms_numpy = saved
    log.append(("boxes", np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64)))
    return log


def first_difference(cpu: list, gpu: list) -> dict:
    """The first intermediate (in order) whose shape or values differ beyond float noise."""
    for k, ((name, a), (name_b, b)) in enumerate(zip(cpu, gpu)):
        if name != name_b or a.shape != b.shape:
            return {"step": k, "name": name, "other": name_b, "shapes": [list(a.shape), list(b.shape)]}
        if a.size and a.dtype.kind == "f":
            diff = float(np.abs(a - b).max())
            scale = float(np.abs(a).max()) or 1.0
            if diff > TOLERANCE * scale:
                return {"step": k, "name": name, "max_abs_diff": diff, "scale": scale}
        elif a.size and not np.array_equal(a, b):
            return {"step": k, "name": name, "indices_differ": int((a != b).sum())}
    if len(cpu) != len(gpu):
        return {"step": min(len(cpu), len(gpu)), "name": "(one run has more steps)", "steps": [len(cpu), len(gpu)]}
    return {}


def main(out: Path, device: str) -> None:
    torch.set_num_threads(4)
    # TF32 off, so that its rounding (1e-3) is not taken for the cause (the drift stays without it)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    report = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
              "torch": torch.__version__, "images": {}}
    for path in sorted(FIXTURES.glob("*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        cpu, gpu = recorded_run(image, "cpu"), recorded_run(image, device)
        found = first_difference(cpu, gpu)
        report["images"][path.name] = {"steps": len(cpu), "first_difference": found or None}
        print(f"{path.name}: {len(cpu)} steps; first difference: {found or 'none'}", flush=True)
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else "cuda")
