"""``moodstream bench bf16``: which nets may run in bf16 within issue 26's
bounds, measured in real bf16 (OpenVINO on a CPU with native bf16: AMX or
AVX512-BF16). It is what :data:`worker.runtime.AUTO_BF16` and
:data:`worker.runtime.AUTO_SCREENED` rest on; rerun it on a new CPU kind or a
new OpenVINO.

* MTCNN: each net in bf16 alone, and all three, against the fp32 detector
  (ONNX Runtime where installed, else OpenVINO fp32) on real frames (the first
  ``--frames`` frames of both videos and ``--wider`` WIDER val images): boxes
  matched one to one at IoU 0.95 and 0.5, extra faces; and the detector as
  ``precision=auto`` builds it (bf16 nets plus the screened RNet).
* Screening: the largest difference between bf16 and fp32 face scores over
  every RNet crop of those frames and every PNet cell of their screened scales
  (:data:`worker.detectors.onnx_mtcnn.PNET_SCREEN_MIN_PIXELS`), the share the
  screen sends on to fp32 (:data:`worker.detectors.onnx_mtcnn.SCREEN_MARGIN`)
  and how many fp32 passes it would have dropped.
* The emotion net: FER+ Test accuracy in fp32 and bf16 (as served: flip TTA,
  the class-prior adjustment, its close calls again in fp32,
  :data:`worker.onnx_classify.CONFIRM_MARGINS`; and bf16 alone), top-emotion
  agreement, largest probability difference; the same on the faces the fp32
  detector finds in those frames (``emotion_detected``).

Bounds (issue 26): boxes >= 97% at IoU 0.95 and >= 99% at 0.5, top emotion
>= 98%, FER+ Test accuracy within 0.3 points.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np

from moodstream.options import OutputFile
from moodstream.shared import devices
from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.errors import ConfigError, DataError
from moodstream.shared.media import decode_image, iter_video
from moodstream.trainer.bench import emit_json

log = logging.getLogger(__name__)

STRICT, LOOSE, TOP, ACCURACY_POINTS = 0.97, 0.99, 0.98, 0.3  # issue 26's bounds
VIDEOS = ("street_1080p.mp4", "hamilton_360p.mp4")
EMOTION_CHUNK = 64  # faces per call while scoring FER+
SPLITS = {"pnet": ("pnet",), "rnet": ("rnet",), "onet": ("onet",), "all_mtcnn": ("pnet", "rnet", "onet")}


def _boxes(faces) -> np.ndarray:
    return np.array([f.box for f in faces], dtype=np.float32).reshape(-1, 4)


def box_parity(reference: list, got: list) -> dict:
    """Boxes of ``got`` against ``reference`` (lists of faces per frame)."""
    total = sum(len(f) for f in reference)
    strict = sum(len(match_one_to_one(_boxes(r), _boxes(g), 0.95)) for r, g in zip(reference, got))
    loose = sum(len(match_one_to_one(_boxes(r), _boxes(g), 0.5)) for r, g in zip(reference, got))
    return {"iou95": round(strict / total, 4), "iou50": round(loose / total, 4),
            "extra_faces": sum(len(g) for g in got) - loose,
            "within_bounds": strict >= STRICT * total and loose >= LOOSE * total}


def load_frames(data: Path, per_video: int, wider: int) -> list[np.ndarray]:
    frames = []
    for name in VIDEOS:
        path = data / "videos" / name
        if not path.is_file():
            raise DataError(f"{path} not found: --data is the shared data folder (videos/, wider_val_416/)")
        frames += [item.image for item in iter_video(str(path), max_frames=per_video)]
    images = sorted((data / "wider_val_416" / "images").rglob("*.jpg"))[:wider]
    if wider and not images:
        raise DataError(f"no WIDER images under {data / 'wider_val_416' / 'images'}")
    return frames + [decode_image(p.read_bytes(), 50_000_000) for p in images]


def _scores(net, batches) -> np.ndarray:
    return np.concatenate([net.run(x)[-1][:, 1] for x in batches]) if batches else np.zeros(0, np.float32)


def _screen_report(p32: np.ndarray, pbf: np.ndarray, threshold: float, unit: str) -> dict:
    from moodstream.worker.detectors.onnx_mtcnn import SCREEN_MARGIN

    sent_on = pbf > threshold - SCREEN_MARGIN
    diff = np.abs(p32 - pbf)
    return {unit: int(len(p32)), "max_score_difference": round(float(diff.max(initial=0.0)), 4),
            "p999_score_difference": round(float(np.quantile(diff, 0.999)) if len(diff) else 0.0, 4),
            "margin": SCREEN_MARGIN, "sent_on_to_fp32": round(float(sent_on.mean()) if len(p32) else 0.0, 4),
            "fp32_passes_missed": int((~sent_on & (p32 >= threshold)).sum())}


def reference_run(frames: list[np.ndarray], runtime: str):
    """The fp32 detector on ``frames``: its faces, every RNet input as it fed them (the crops), and the detector."""
    from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector

    crops: list[np.ndarray] = []
    detector = OnnxMTCNNDetector(runtime=runtime)
    plain = detector.rnet

    class Spy:  # records RNet's inputs
        runtime, precision, metadata = plain.runtime, plain.precision, plain.metadata

        def run(self, x):
            crops.append(x.copy())
            return plain.run(x)

    detector.rnet = Spy()
    faces = detector.detect(frames)
    return faces, np.concatenate(crops) if crops else np.zeros((0, 3, 24, 24), np.float32), detector


def screen_errors(frames: list[np.ndarray], rnet_crops: np.ndarray, detector) -> dict:
    """bf16 against fp32 face scores where ``precision=auto`` screens: every
    RNet crop the fp32 ``detector`` ran on ``frames`` (``rnet_crops``), and every
    PNet cell of the scales PNet is screened on (:data:`PNET_SCREEN_MIN_PIXELS`)."""
    from moodstream.worker.detectors import onnx_mtcnn as om
    from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, net_file, open_net

    thresholds, factor, min_face = detector.thresholds, detector.factor, detector.min_face_px
    nets = {name: [open_net(net_file(ONNX_DIR, MTCNN_FILES[name], "openvino"), 1, "openvino", p)
                   for p in ("fp32", "bf16")] for name in ("pnet", "rnet")}
    batches = [rnet_crops[i:i + 128] for i in range(0, len(rnet_crops), 128)]
    rnet = _screen_report(*(_scores(net, batches) for net in nets["rnet"]), thresholds[1], "crops")
    cells = [[], []]
    for frame in frames:
        h, w = frame.shape[:2]
        table = om.integral_image(np.ascontiguousarray(frame))
        for scale in om.pyramid_scales(h, w, min_face, factor):
            out_h, out_w = int(h * scale + 1), int(w * scale + 1)
            if out_h * out_w < om.PNET_SCREEN_MIN_PIXELS:
                continue
            pixels = om.normalise(om.area_resize(table, out_h, out_w))
            for k, net in enumerate(nets["pnet"]):
                (heads,) = net.run(pixels)
                cells[k].append(1.0 / (1.0 + np.exp(heads[0, 0] - heads[0, 1])).ravel())
    pnet = _screen_report(*(np.concatenate(c) if c else np.zeros(0, np.float32) for c in cells),
                          thresholds[0], "cells")
    return {"pnet": pnet, "rnet": rnet}


def emotion_probs(classifier, crops: np.ndarray, label: str) -> np.ndarray:
    """``classifier.predict_crops`` on ``crops`` in chunks of :data:`EMOTION_CHUNK`, with a progress bar."""
    out = []
    with click.progressbar(range(0, len(crops), EMOTION_CHUNK), label=label, file=sys.stderr) as bar:
        for i in bar:
            out.append(classifier.predict_crops(crops[i:i + EMOTION_CHUNK]))
    return np.concatenate(out)


def served_probs(classifier, crops: np.ndarray, label: str | None = None) -> tuple[np.ndarray, float]:
    """``classifier``'s probabilities for ``crops`` (with a progress bar where ``label`` is given:
    :func:`emotion_probs`) and the share of them it ran again in fp32 (0 without reruns)."""
    before = classifier.faces_confirmed
    probs = emotion_probs(classifier, crops, label) if label else classifier.predict_crops(crops)
    return probs, (classifier.faces_confirmed - before) / len(crops)


def ferplus_crops(ferplus: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """A FER+ split's faces ``(N, 1, 48, 48)`` in [0, 1] and their labels."""
    from moodstream.trainer.data import load_split

    data = load_split(ferplus, split)
    return (data.images.astype(np.float32) / np.float32(255))[:, None], data.labels


def top_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """The share of faces whose top emotion is the same in two ``(N, 8)`` probability arrays."""
    return float((ref.argmax(1) == got.argmax(1)).mean())


def largest_pair_change(ref: np.ndarray, got: np.ndarray) -> float:
    """The largest change, over faces and pairs of emotions ``i``, ``j``, of ``p_i - p_j`` between
    two ``(N, 8)`` probability arrays: what decides whether a reduced precision's top emotion can
    differ from fp32's where its top two are ``m`` apart (only if the change exceeds ``m``), so
    :data:`worker.onnx_classify.CONFIRM_MARGINS` must exceed it."""
    if not len(ref):
        return 0.0
    d = got.astype(np.float64) - ref.astype(np.float64)
    return float((d.max(axis=1) - d.min(axis=1)).max())


def margin_check(ferplus: Path, precision: str, fp32, alone, others: dict) -> dict:
    """Whether ``precision``'s rerun margin (:data:`worker.onnx_classify.CONFIRM_MARGINS`) exceeds
    :func:`largest_pair_change` of the net alone (``alone``) against ``fp32`` on FER+ Valid (where
    the margins are chosen) and on ``others`` (name: fp32's and the net alone's probabilities):
    where it does, no face far enough from a tie to keep the net's own answer had a top emotion
    fp32 does not give."""
    from moodstream.worker.onnx_classify import CONFIRM_MARGINS

    crops, _ = ferplus_crops(ferplus, "valid")
    changes = {"ferplus_valid": largest_pair_change(emotion_probs(fp32, crops, "FER+ Valid, fp32"),
                                                    emotion_probs(alone, crops, f"FER+ Valid, {precision} alone")),
               **{name: largest_pair_change(ref, got) for name, (ref, got) in others.items()}}
    return {"confirm_margin": CONFIRM_MARGINS[precision],
            "largest_pair_change": {k: round(v, 4) for k, v in changes.items()},
            "holds": max(changes.values()) < CONFIRM_MARGINS[precision]}


def agreement(ref: np.ndarray, got: np.ndarray) -> dict:
    """:func:`top_agreement` of two ``(N, 8)`` probability arrays, their largest difference and
    :func:`largest_pair_change`, rounded."""
    return {"top_emotion_agreement": round(top_agreement(ref, got), 5),
            "max_probability_difference": round(float(np.abs(ref - got).max()), 4),
            "largest_pair_change": round(largest_pair_change(ref, got), 4)}


def parity(ref: np.ndarray, got: np.ndarray, labels: np.ndarray, precision: str) -> dict:
    """``got`` (the emotion net in ``precision``) against fp32's ``ref`` on labelled faces:
    accuracy of both, the change in points, :func:`agreement`, and whether within the bounds."""
    acc_ref, acc = float((ref.argmax(1) == labels).mean()), float((got.argmax(1) == labels).mean())
    change = (acc - acc_ref) * 100
    return {"faces": len(labels), "accuracy_fp32": round(acc_ref, 5), f"accuracy_{precision}": round(acc, 5),
            "accuracy_change_points": round(change, 3), **agreement(ref, got),
            "within_bounds": top_agreement(ref, got) >= TOP and abs(change) <= ACCURACY_POINTS}


def emotion_parity(ferplus: Path, frames: list[np.ndarray], faces: list, precision: str = "bf16") -> dict:
    """The emotion net in ``precision`` against fp32, all on OpenVINO, as served (flip TTA, the
    class-prior adjustment, its close calls again in fp32: ``confirmed_share``) and alone (no reruns):
    on FER+ Test (``emotion``, ``emotion_<precision>_alone``) and on ``faces``, the fp32 detector's
    faces in ``frames`` cropped as served (``emotion_detected``)."""
    from moodstream.worker.onnx_classify import OnnxEmotionClassifier, crop_faces

    fp32 = OnnxEmotionClassifier(runtime="openvino", precision="fp32")
    served = OnnxEmotionClassifier(runtime="openvino", precision=precision)
    alone = OnnxEmotionClassifier(runtime="openvino", precision=precision, confirm_margin=0)

    def three(crops: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """fp32's, ``precision``'s as served (and the share rerun) and alone probabilities of ``crops``."""
        ref = emotion_probs(fp32, crops, f"{what}, fp32")
        got, share = served_probs(served, crops, f"{what}, {precision}")
        return ref, got, share, emotion_probs(alone, crops, f"{what}, {precision} alone")

    crops, labels = ferplus_crops(ferplus)
    ref, got, share, raw = three(crops, "FER+ Test")
    emotion = {**parity(ref, got, labels, precision), "confirmed_share": round(share, 4)}
    alone_test = parity(ref, raw, labels, precision)
    test_alone = ref, raw
    detected = crop_faces(frames, [_boxes(f) for f in faces], fp32.framing, fp32.input_size)
    ref, got, share, raw = three(detected, "detected faces")
    on_detected = {"faces": len(detected), **agreement(ref, got), "confirmed_share": round(share, 4),
                   f"{precision}_alone": agreement(ref, raw)}
    emotion["within_bounds"] &= on_detected["top_emotion_agreement"] >= TOP
    margin = margin_check(ferplus, precision, fp32, alone, {"ferplus_test": test_alone, "detected": (ref, raw)})
    return {"emotion": emotion, f"emotion_{precision}_alone": alone_test, "emotion_detected": on_detected,
            "margin": margin}


@click.command("bf16")
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The shared data folder: videos/, wider_val_416/ and ferplus/ (../shared/data).")
@click.option("--frames", "per_video", type=click.IntRange(min=0), default=40, show_default=True,
              help="Frames from the start of each video.")
@click.option("--wider", type=click.IntRange(min=0), default=80, show_default=True, help="WIDER val images.")
@click.option("--out", type=OutputFile(), help="Also write the JSON here.")
def bf16_cmd(data: Path, per_video: int, wider: int, out: Path | None) -> None:
    """Which nets keep their answers in bf16 (OpenVINO, native bf16 only):
    MTCNN boxes, the PNet and RNet screens, the emotion net on FER+ Test and on
    the detected faces; one JSON object."""
    from moodstream.worker import runtime
    from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector

    cpu = runtime.cpu_info()
    if not devices.installed("openvino"):
        raise ConfigError("bench bf16 runs bf16 on OpenVINO: pip install 'moodstream[openvino]'")
    if not cpu.native_bf16:
        raise ConfigError(f"bench bf16 measures real bf16, which needs a CPU with native bf16 (AMX or "
                          f"AVX512-BF16); {cpu.model} has neither")
    if not (data / "ferplus").is_dir():
        raise DataError(f"{data / 'ferplus'} not found: --data is the shared data folder (ferplus/ for the "
                        "emotion net)")
    reference_runtime = "onnx" if devices.installed("onnxruntime") else "openvino"
    t0 = time.perf_counter()
    frames = load_frames(data, per_video, wider)
    reference, rnet_crops, reference_detector = reference_run(frames, reference_runtime)
    if not sum(len(f) for f in reference):
        raise DataError(f"no face found in the {len(frames)} frames: raise --frames or --wider")
    mtcnn = {}
    for label, nets in SPLITS.items():
        with click.progressbar(length=1, label=f"MTCNN, {label} in bf16", file=sys.stderr) as bar:
            detector = OnnxMTCNNDetector(runtime="openvino", precision={n: "bf16" for n in nets})
            mtcnn[label] = box_parity(reference, detector.detect(frames))
            bar.update(1)
    auto = runtime.precisions_here("auto", "openvino", cpu=cpu)
    detector = OnnxMTCNNDetector(runtime="openvino", precision=auto,
                                 screened=runtime.screened_nets("auto", "openvino", cpu))
    mtcnn["auto"] = {**box_parity(reference, detector.detect(frames)),
                     "nets": runtime.describe(auto, runtime.screened_nets("auto", "openvino", cpu))}
    report = {
        "what": "real bf16 (OpenVINO on native bf16) against fp32, within issue 26's bounds "
                f"(boxes >= {STRICT:.0%} at IoU 0.95 and >= {LOOSE:.0%} at 0.5, top emotion >= {TOP:.0%}, "
                f"FER+ Test accuracy within {ACCURACY_POINTS} points)",
        "command": "moodstream " + shlex.join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu.to_dict(),
        "reference": f"{reference_runtime} fp32",
        "frames": {"videos": {name: per_video for name in VIDEOS}, "wider": wider, "total": len(frames),
                   "reference_faces": sum(len(f) for f in reference)},
        "mtcnn": mtcnn,
        "screens": screen_errors(frames, rnet_crops, reference_detector),
        **emotion_parity(data / "ferplus", frames, reference),
        "auto_bf16": list(runtime.AUTO_BF16),
        "auto_screened": list(runtime.AUTO_SCREENED),
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    emit_json(report, out)
