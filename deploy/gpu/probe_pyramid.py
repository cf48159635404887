"""What the two largest GPU costs of a 1080p batch would give back. For deploy/gpu/run_bench.sh.

The H200 profile (docs/results/gpu/h200/README.md, profile_gpu.txt) of 16 street_1080p frames
through the CUDA worker's batched MTCNN: the pyramid's ``interpolate(mode="area")``
(``adaptive_avg_pool2d``) about 31 ms of GPU time a batch, torchvision's NMS about 20 ms
(its ``gather_keep_from_mask`` kernel), the convolutions 16 ms. This measures, without
changing what ships:

* pyramid: each level's area resize on the frames as the detector holds them (channels-last
  strides, facenet's layout) and on a contiguous NCHW copy (copy timed too), and whether the
  two give the same bits; then PNet on both (same bits or not, and the time), and PNet on the
  NCHW resize copied back to channels-last (what a change that keeps PNet's bits would run);
* NMS: every ``grouped_nms`` call of one detect (boxes in, boxes kept, ms), by stage;
* the batched detector's boxes on the device against its boxes on the CPU, on the fixture
  images and 12 clip frames: faces found and the largest coordinate difference (px).

    python3 deploy/gpu/probe_pyramid.py VIDEOS_DIR OUT.json [DEVICE]

DEVICE defaults to cuda; ``cpu`` dry-runs the wiring (PROBE_FRAMES=2 keeps that short).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cv2
import torch
from torch.nn.functional import interpolate

from moodstream.shared.settings import Settings
from moodstream.trainer.bench.profile import load_frames
from moodstream.worker.detectors import mtcnn_batched, mtcnn_ops
from moodstream.worker.detectors.mtcnn_batched import BatchedMTCNNDetector
from moodstream.worker.detectors.mtcnn_ops import pyramid_scales

FRAMES = int(os.environ.get("PROBE_FRAMES", "16"))
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "images"
REPEATS = 5


def timed(fn, sync) -> tuple[float, object]:
    """Fastest of REPEATS calls, ms, and the last output."""
    best, out = float("inf"), None
    for _ in range(REPEATS):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, out


def main(videos: Path, out: Path, device: str) -> None:
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    settings = Settings.from_env(env={}, device=device)
    det = BatchedMTCNNDetector(settings, device=device)
    report: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                    "frames": FRAMES, "videos": {}}
    for name in ("street_1080p.mp4", "hamilton_360p.mp4"):
        frames = load_frames(videos / name, FRAMES, settings.max_pixels)
        with torch.inference_mode():
            x = det.upload(frames)
            imgs = x.permute(0, 3, 1, 2).float()  # what BatchedMTCNN.forward hands stage 1
            h, w = imgs.shape[2:]
            copy_ms, dense = timed(lambda: imgs.contiguous(), sync)
            levels = []
            for scale in pyramid_scales(h, w, det.model.min_face_size, det.model.factor):
                size = (int(h * scale + 1), int(w * scale + 1))
                ms_cl, a = timed(lambda: interpolate(imgs, size=size, mode="area"), sync)
                ms_nchw, b = timed(lambda: interpolate(dense, size=size, mode="area"), sync)
                # the NCHW resize handed to PNet in the layout it gets today (channels-last)
                ms_back, b_cl = timed(lambda: b.contiguous(memory_format=torch.channels_last), sync)
                pa, pb = (a - 127.5) * 0.0078125, (b - 127.5) * 0.0078125
                ms_pnet_cl, (ra, qa) = timed(lambda: det.model.pnet(pa), sync)
                ms_pnet_nchw, (rb, qb) = timed(lambda: det.model.pnet(pb.contiguous()), sync)
                _, (rc, qc) = timed(lambda: det.model.pnet((b_cl - 127.5) * 0.0078125), sync)
                levels.append({"size": list(size), "resize_ms_channels_last": round(ms_cl, 3),
                               "resize_ms_nchw": round(ms_nchw, 3), "back_to_channels_last_ms": round(ms_back, 3),
                               "resize_same_bits": bool(torch.equal(a, b)),
                               "pnet_ms_channels_last": round(ms_pnet_cl, 3), "pnet_ms_nchw": round(ms_pnet_nchw, 3),
                               "pnet_nchw_same_bits": bool(torch.equal(qa, qb) and torch.equal(ra, rb)),
                               "pnet_nchw_prob_max_diff": float((qa - qb).abs().max()),
                               "pnet_after_nchw_resize_same_bits": bool(torch.equal(qa, qc) and torch.equal(ra, rc))})
        calls = []
        real = mtcnn_ops.grouped_nms

        def spy(boxes, scores, groups, iou, *cap):
            sync()
            t0 = time.perf_counter()
            keep = real(boxes, scores, groups, iou, *cap)
            sync()
            calls.append({"iou": iou, "boxes_in": int(boxes.shape[0]), "kept": int(keep.shape[0]),
                          "groups": int(groups.unique().numel()) if boxes.shape[0] else 0,
                          "ms": round((time.perf_counter() - t0) * 1e3, 3)})
            return keep

        mtcnn_batched.grouped_nms = spy
        try:
            det.detect(frames)  # warm
            calls.clear()
            sync()
            t0 = time.perf_counter()
            det.detect(frames)
            sync()
            detect_ms = (time.perf_counter() - t0) * 1e3
        finally:
            mtcnn_batched.grouped_nms = real
        report["videos"][name] = {
            "resolution": f"{w}x{h}", "contiguous_copy_ms": round(copy_ms, 3), "levels": levels,
            "resize_ms_total": {"channels_last": round(sum(v["resize_ms_channels_last"] for v in levels), 3),
                                "nchw_with_copy": round(copy_ms + sum(v["resize_ms_nchw"] for v in levels), 3),
                                "nchw_with_copies_both_ways": round(copy_ms + sum(
                                    v["resize_ms_nchw"] + v["back_to_channels_last_ms"] for v in levels), 3)},
            "pnet_ms_total": {"channels_last": round(sum(v["pnet_ms_channels_last"] for v in levels), 3),
                              "nchw": round(sum(v["pnet_ms_nchw"] for v in levels), 3)},
            "detect_ms_with_nms_synced": round(detect_ms, 2), "nms_calls": calls}
        r = report["videos"][name]
        print(f"{name}: resize {r['resize_ms_total']}, pnet {r['pnet_ms_total']}, "
              f"same bits: resize {all(v['resize_same_bits'] for v in levels)}, pnet nchw {all(v['pnet_nchw_same_bits'] for v in levels)}, "
              f"pnet after nchw resize {all(v['pnet_after_nchw_resize_same_bits'] for v in levels)}; "
              f"NMS {[(c['boxes_in'], c['kept'], c['ms']) for c in calls]}; detect {detect_ms:.1f} ms")
    # how far the GPU's boxes are from the CPU's (test_boxes_on_cuda_are_the_cpus holds them within 0.1 px)
    images = sorted(FIXTURES.glob("*.jpg"))
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in images]
    frames += load_frames(FIXTURES.parent / "clip_360p.mp4", 12, settings.max_pixels)  # as the test
    here = det.detect(frames)
    cpu = BatchedMTCNNDetector(settings.replace(device="cpu"), device="cpu").detect(frames)
    diffs = [max((abs(a - b) for fa, fb in zip(sorted(f.box for f in g), sorted(f.box for f in c))
                  for a, b in zip(fa, fb)), default=0.0) for g, c in zip(here, cpu)]
    report["boxes_vs_cpu"] = {"images": [p.name for p in images] + ["clip_360p.mp4 frames 0-11"], "faces": [len(f) for f in here],
                              "faces_cpu": [len(f) for f in cpu], "max_abs_px": [round(d, 6) for d in diffs]}
    print(f"boxes against the CPU's on {len(frames)} fixture frames: faces {report['boxes_vs_cpu']['faces']} "
          f"(CPU {report['boxes_vs_cpu']['faces_cpu']}), largest difference {max(diffs):.6f} px")
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else "cuda")
