"""``moodstream bench int8``: whether the int8 emotion net
(``openvino/emotion_int8.onnx``, :func:`trainer.export.export_int8`) keeps its
answers within issue 26's bounds and how much faster it runs on this CPU. It is
what :data:`worker.runtime.AUTO_INT8` rests on; rerun it on a new CPU kind, a
new OpenVINO or a new emotion checkpoint.

* FER+ Test (as served: flip TTA and the class-prior adjustment), OpenVINO
  fp32 against OpenVINO int8 as it ships (its close calls run again in fp32,
  :data:`worker.onnx_classify.CONFIRM_MARGINS`; ``confirmed_share``: how many): accuracy of
  both and the change in points, top emotion agreement, the largest probability
  difference and the largest move of two emotions' difference; the same for int8 alone
  (``emotion_int8_alone``, ``wider_int8_alone``).
* ``margin``: whether the rerun margin exceeds that largest move of int8 alone on FER+ Valid
  (where it is chosen), FER+ Test and the WIDER faces (:func:`trainer.bench.bf16.margin_check`).
* Real detected faces: the faces MTCNN (fp32) finds in ``--wider`` WIDER val
  images, cropped as served: top emotion agreement and the largest probability
  difference (small, blurred, turned faces: their emotions are closer calls
  than FER+'s, so a quantization error flips more of them).
* Speed: the emotion net on ``--batch`` crops (a batch's faces and their
  mirror images), fp32 and int8 (and bf16 on a CPU with native bf16)
  alternating call by call, the fastest of ``--repeats`` calls each, and
  their ratios; and ``served``: ms per face of the classifiers as served (int8,
  and bf16 where native, each with its fp32 reruns) on the real faces (WIDER's,
  else FER+ Test's), where how many faces rerun decides the cost.

Bounds (issue 26): FER+ Test accuracy within 0.3 points, top emotion >= 98%
(on FER+ Test and on the WIDER faces: ``within_bounds`` needs both).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

import click
import numpy as np

from moodstream.options import OutputFile
from moodstream.shared import devices
from moodstream.shared.errors import ConfigError, DataError
from moodstream.trainer.bench import emit_json
from moodstream.trainer.bench.bf16 import (ACCURACY_POINTS, TOP, agreement, emotion_probs, ferplus_crops,
                                           margin_check, parity, served_probs)
from moodstream.worker.onnx_classify import CONFIRM_MARGINS


def fastest(calls: dict, x: np.ndarray, repeats: int) -> dict[str, float]:
    """Fastest seconds of each of ``calls`` on ``x`` over ``repeats`` passes, calls alternating
    (after one untimed call each: allocation, kernel choice)."""
    times = {k: [] for k in calls}
    for call in calls.values():
        call(x)
    for r in range(repeats):
        for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            t0 = time.perf_counter()
            calls[k](x)
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def speed(nets: dict, batch: int, repeats: int) -> dict:
    """Fastest ms per call of each net on the same ``(batch, 1, 48, 48)`` input, calls alternating."""
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 1, 48, 48)).astype(np.float32)
    ms = {k: round(s * 1e3, 3) for k, s in fastest({k: net.run for k, net in nets.items()}, x, repeats).items()}
    out = {"batch": batch, "repeats": repeats, "ms_per_call": ms, "speedup": round(ms["fp32"] / ms["int8"], 3)}
    if "bf16" in ms:  # a CPU with native bf16: what auto would run instead of int8 without AMX's tiles
        out["speedup_over_bf16"] = round(ms["bf16"] / ms["int8"], 3)
    return out


def compare_forms(data: Path, faces: tuple[int, np.ndarray] | None, batch: int, repeats: int,
                  images: int | None) -> dict:
    """Each form of :data:`trainer.export.INT8_KEEP_FP32`, quantized as ``export int8`` does (on
    ``images`` Train faces, default its own), against fp32: FER+ Valid (where the form is chosen),
    the WIDER ``faces`` (:func:`wider_crops`), speed."""
    import tempfile

    from moodstream.trainer.export import INT8_IMAGES, INT8_KEEP_FP32, export_int8
    from moodstream.worker.onnx_classify import OnnxEmotionClassifier
    from moodstream.worker.onnx_session import ONNX_DIR
    from moodstream.worker.openvino_net import OpenVinoNet

    crops, labels = ferplus_crops(data / "ferplus", "valid")
    fp32 = OnnxEmotionClassifier(runtime="openvino", precision="fp32")
    ref = emotion_probs(fp32, crops, "FER+ Valid, fp32")
    wider_ref = fp32.predict_crops(faces[1]) if faces else None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for form in INT8_KEEP_FP32:
            path = export_int8(ONNX_DIR, data / "ferplus", images or INT8_IMAGES, keep_fp32=form,
                               out=Path(tmp) / f"{form}.onnx")
            int8 = OnnxEmotionClassifier(runtime="openvino", precision="int8", confirm_margin=0)  # the form alone
            int8.net = OpenVinoNet(path)  # this form in place of the shipped file, same metadata
            got = emotion_probs(int8, crops, f"FER+ Valid, int8 with {form} in fp32")
            valid = parity(ref, got, labels, "int8")
            out[form] = {"valid_accuracy_change_points": valid["accuracy_change_points"],
                         "valid_top_emotion_agreement": valid["top_emotion_agreement"],
                         "wider": wider_parity(faces[0], wider_ref, *served_probs(int8, faces[1])) if faces else None,
                         "speedup": speed({"fp32": fp32.net, "int8": int8.net}, batch, repeats)["speedup"]}
    return out


def wider_crops(data: Path, count: int, classifier) -> tuple[int, np.ndarray]:
    """The faces MTCNN (fp32, OpenVINO) finds in the first ``count`` WIDER val images, cropped as
    ``classifier`` is served them: (images read, crops)."""
    from moodstream.shared.media import decode_image
    from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector
    from moodstream.worker.onnx_classify import crop_faces

    paths = sorted((data / "wider_val_416" / "images").rglob("*.jpg"))[:count]
    if not paths:
        raise DataError(f"no WIDER images under {data / 'wider_val_416' / 'images'} (--wider 0 skips them)")
    frames = [decode_image(p.read_bytes(), 50_000_000) for p in paths]
    with click.progressbar(length=len(frames), label="WIDER faces", file=sys.stderr) as bar:
        faces = OnnxMTCNNDetector(runtime="openvino").detect(frames)
        bar.update(len(frames))
    boxes = [np.array([f.box for f in fs], np.float32).reshape(-1, 4) for fs in faces]
    crops = crop_faces(frames, boxes, classifier.framing, classifier.input_size)
    if not len(crops):
        raise DataError(f"no face found in {len(frames)} WIDER images: raise --wider")
    return len(frames), crops


def wider_parity(images: int, ref: np.ndarray, got: np.ndarray, confirmed_share: float) -> dict:
    """int8's probabilities ``got`` against fp32's ``ref`` on the WIDER faces of
    :func:`wider_crops` (and the share of them int8 ran again in fp32)."""
    return {"images": images, "faces": len(ref), **agreement(ref, got),
            "confirmed_share": round(confirmed_share, 4)}


def served_speed(classifiers: dict, crops: np.ndarray, repeats: int) -> dict:
    """ms per face of each classifier's ``predict_crops`` on the same real ``crops``, calls
    alternating, the fastest of ``repeats`` passes each."""
    calls = {k: c.predict_crops for k, c in classifiers.items()}
    ms = {k: round(s * 1e3 / len(crops), 4) for k, s in fastest(calls, crops, repeats).items()}
    out = {"faces": len(crops), "repeats": repeats, "ms_per_face": ms, "speedup": round(ms["fp32"] / ms["int8"], 3)}
    if "bf16" in ms:  # a CPU with native bf16: bf16 as served, with its own fp32 reruns
        out["speedup_over_bf16"] = round(ms["bf16"] / ms["int8"], 3)
    return out


@click.command("int8")
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The shared data folder, holding ferplus/ (../shared/data).")
@click.option("--wider", type=click.IntRange(min=0), default=200, show_default=True,
              help="WIDER val images whose detected faces are compared too (0: none).")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Crops per call in the speed test (16 faces and their mirror images).")
@click.option("--repeats", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed calls per precision in the speed test.")
@click.option("--candidates", is_flag=True,
              help="Also quantize each form (which layers stay fp32: none, first, dense, first+dense) and compare "
                   "them on FER+ Valid and the WIDER faces: how the shipped form was chosen (a few minutes).")
@click.option("--images", type=click.IntRange(min=16), show_default="export int8's, 2000",
              help="With --candidates: FER+ Train faces each form is calibrated on.")
@click.option("--served-faces", type=click.IntRange(min=1),
              help="Time the served emotion nets on at most this many faces (default: every WIDER face, or FER+ "
                   "Test's with --wider 0; a slow CPU takes minutes on FER+ Test's 3,545).")
@click.option("--out", type=OutputFile(), help="Also write the JSON here.")
def int8_cmd(data: Path, wider: int, batch: int, repeats: int, candidates: bool, images: int | None,
             served_faces: int | None, out: Path | None) -> None:
    """Does the int8 emotion net keep its answers (FER+ Test against fp32, on
    OpenVINO) and how much faster is it on this CPU; one JSON object."""
    from moodstream.worker import runtime
    from moodstream.worker.onnx_classify import OnnxEmotionClassifier

    if not devices.installed("openvino"):
        raise ConfigError("bench int8 runs the int8 file on OpenVINO: pip install 'moodstream[openvino]'")
    if not (data / "ferplus").is_dir():
        raise DataError(f"{data / 'ferplus'} not found: --data is the shared data folder (ferplus/ for the "
                        "emotion net)")
    t0 = time.perf_counter()
    cpu = runtime.cpu_info()
    classifiers = {p: OnnxEmotionClassifier(runtime="openvino", precision=p) for p in ("fp32", "int8")}
    # int8 without its fp32 reruns: the quantization's own errors
    alone = OnnxEmotionClassifier(runtime="openvino", precision="int8", confirm_margin=0)
    # timed beside the other two where the CPU computes bf16 natively (not compared: bench bf16 does that)
    bf16 = {"bf16": OnnxEmotionClassifier(runtime="openvino", precision="bf16")} if cpu.native_bf16 else {}
    faces = wider_crops(data, wider, classifiers["fp32"]) if wider else None  # detected once, for the shipped form and the candidates
    # each form's probabilities once: FER+ Test, and the WIDER faces
    test, labels = ferplus_crops(data / "ferplus")
    ref = emotion_probs(classifiers["fp32"], test, "FER+ Test, fp32")
    served, served_share = served_probs(classifiers["int8"], test, "FER+ Test, int8")
    raw = emotion_probs(alone, test, "FER+ Test, int8 alone")
    pairs = {"ferplus_test": (ref, raw)}  # fp32's and int8 alone's, for the margin check
    if faces:
        images, crops = faces
        wider_ref = classifiers["fp32"].predict_crops(crops)
        wider_raw, raw_share = served_probs(alone, crops)
        wider_served = wider_parity(images, wider_ref, *served_probs(classifiers["int8"], crops))
        wider_alone = wider_parity(images, wider_ref, wider_raw, raw_share)
        pairs["wider"] = (wider_ref, wider_raw)
    else:
        wider_served = wider_alone = None
    report = {
        "what": "the int8 emotion net (OpenVINO) against fp32 (OpenVINO) on FER+ Test, within issue 26's bounds "
                f"(top emotion >= {TOP:.0%}, accuracy within {ACCURACY_POINTS} points), and its speed here",
        "command": "moodstream " + shlex.join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu.to_dict(),
        "openvino": metadata.version("openvino"),
        "quantization": json.loads(classifiers["int8"].net.metadata.get("quantization", "null")),
        "confirm_margin": CONFIRM_MARGINS["int8"],
        "emotion": {**parity(ref, served, labels, "int8"), "confirmed_share": round(served_share, 4)},
        "wider": wider_served,
        "emotion_int8_alone": parity(ref, raw, labels, "int8"),
        "wider_int8_alone": wider_alone,
        "speed": speed({p: c.net for p, c in {**classifiers, **bf16}.items()}, batch, repeats),
        "served": served_speed({**classifiers, "int8 alone": alone, **bf16},
                               (faces[1] if faces else test)[:served_faces], max(3, repeats // 10)),
        "auto_int8": list(runtime.AUTO_INT8),
        "auto_emotion": vars(runtime.choose_emotion_precision(cpu=cpu)),  # auto's measurement, 16 crops a run
        "auto_here": runtime.describe(runtime.precisions_here("auto", "openvino", cpu=cpu),
                                      runtime.screened_nets("auto", "openvino", cpu)),
    }
    report["margin"] = margin_check(data / "ferplus", "int8", classifiers["fp32"], alone, pairs)
    if candidates:
        report["candidates"] = compare_forms(data, faces, batch, repeats, images)
    if report["wider"] is not None:
        report["emotion"]["within_bounds"] &= report["wider"]["top_emotion_agreement"] >= TOP
    report["seconds"] = round(time.perf_counter() - t0, 1)
    emit_json(report, out)
