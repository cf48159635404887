"""``moodstream export onnx``: the shipped models as ONNX files for the
torch-free CPU backend (:mod:`worker.detectors.onnx_mtcnn`, :mod:`worker.onnx_classify`).

Writes seven files (into ``worker/data/onnx`` by default):

* ``mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx``, ``mtcnn_onet.onnx``: facenet-pytorch's
  P/R/O-Nets with the weights that ship inside that package (MIT). Dynamic
  batch; PNet also dynamic height and width. Outputs as the torch nets:
  ``reg`` and ``prob`` (ONet: ``reg``, ``landmarks``, ``prob``), equal up to
  float rounding, except PNet's one output ``heads`` (face logits and
  regression, :func:`merge_pnet_heads`). Written twice, in the form each CPU
  runtime runs fastest (:func:`export_mtcnn`): for ONNX Runtime in the folder
  itself (PReLUs rewritten, :func:`prelu_as_relu`; first convolution padded,
  :func:`pad_first_conv`), for OpenVINO in ``openvino/`` (plain PReLUs).
* ``emotion.onnx``: the emotion checkpoint (the shipped one unless
  ``--checkpoint``), input ``input`` ``(B, 1, S, S)`` already normalised,
  output ``logits`` ``(B, 8)``. Everything inference needs beyond the graph is
  in the file's ``metadata_props`` (:data:`EMOTION_FORMAT`): labels, mean, std,
  input size, class bias, flip TTA, the checkpoint's version and the sha256 of
  the ``.pt`` file it came from.

``moodstream export int8`` writes ``openvino/emotion_int8.onnx``, the emotion
net quantized for OpenVINO (:func:`export_int8`), from ``emotion.onnx`` and
FER+ Train faces: run it after ``export onnx`` whenever ``emotion.onnx`` changes.

The output is byte-for-byte reproducible. A new shipped checkpoint
regenerates ``emotion.onnx`` in the same commit
(``tests/integration/test_onnx_parity.py`` checks the version and the sha256).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import click
import torch
from torch import nn

from moodstream.options import OutputFolder
from moodstream.trainer.cli import StopSignalsGroup
from moodstream.shared.files import replacing, writing
from moodstream.shared.models import SHIPPED_CHECKPOINT, Checkpoint, load_checkpoint
from moodstream.shared.stop_signals import deferred_stop
from moodstream.shared.errors import ConfigError, DataError, ModelError
from moodstream.shared.table import printable
from moodstream.worker.onnx_session import (EMOTION_FILE, EMOTION_FORMAT, INT8_FILES, MTCNN_FILES, ONNX_DIR,
                                            OPENVINO_DIR)

log = logging.getLogger(__name__)

OPSET = 17
INT8_IMAGES = 2000  # FER+ Train faces calibrating the int8 emotion net (export_int8)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mtcnn_nets() -> dict[str, nn.Module]:
    """facenet-pytorch's P/R/O-Nets with their shipped weights, in eval mode."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    return {"pnet": PNet().eval(), "rnet": RNet().eval(), "onet": ONet().eval()}


def _export(model: nn.Module, example: torch.Tensor, path: Path, outputs: list[str],
            dynamic: dict[str, dict[int, str]], fold: bool = True) -> None:
    # The TorchScript exporter: plain static graphs need nothing more, and the
    # torch.export one would add onnxscript to the install. ``fold`` folds
    # constants (batch norm into the convolutions).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=fold, dynamo=False)


def store_half(model) -> int:
    """Store every float32 initializer that fp16 holds exactly as fp16, cast
    back to float32 by a ``Cast`` node (onnxruntime folds it at load: the
    network runs in float32 on the same values). The checkpoint's weights are
    fp16 already, so this halves the file at no cost. Returns how many moved."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph, casts, moved = model.graph, [], 0
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), value):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name + "_fp16"))
        casts.append(onnx.helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT))
        moved += 1
    for i, node in enumerate(casts):
        graph.node.insert(i, node)
    return moved


def prelu_as_relu(model) -> int:
    """Rewrite every ``PRelu(x, a)`` with a constant slope, in place, as
    ``x + s * Relu(k * x)`` with ``k = -|1 - a|`` and ``s = sign(1 - a)`` per
    channel (for x < 0 that is ``x - (1 - a) * x = a * x``), the two products
    as BatchNormalization nodes (scale only). Equal up to float rounding.

    Why: onnxruntime's PRelu kernel is slow and its output leaves the blocked
    NCHWc layout of the convolutions (a reorder around every PRelu), while
    BatchNormalization, Relu and Add stay in it. The MTCNN nets run 1.5-1.9x
    faster on a CPU. Returns how many nodes were rewritten."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            nodes.append(node)
            continue
        x, slope_name = node.input
        name = node.name or node.output[0]
        slope_init = inits.pop(slope_name)
        graph.initializer.remove(slope_init)
        slope = numpy_helper.to_array(slope_init).astype(np.float32).reshape(-1)  # (C,): (C, 1, 1) after a conv
        params = {"k": -np.abs(1 - slope), "s": np.where(slope <= 1, 1.0, -1.0),
                  "zero": np.zeros_like(slope), "one": np.ones_like(slope)}
        for key, value in params.items():
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_{key}"))

        def scale(src: str, key: str, out: str) -> onnx.NodeProto:  # (N, C, ...) * param[C], as batch norm
            return onnx.helper.make_node("BatchNormalization",
                                         [src, f"{name}_{key}", f"{name}_zero", f"{name}_zero", f"{name}_one"],
                                         [out], name=out, epsilon=0.0)

        nodes += [scale(x, "k", f"{name}_kx"),
                  onnx.helper.make_node("Relu", [f"{name}_kx"], [f"{name}_relu"], name=f"{name}_relu"),
                  scale(f"{name}_relu", "s", f"{name}_neg"),
                  onnx.helper.make_node("Add", [x, f"{name}_neg"], list(node.output), name=f"{name}_add")]
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


def merge_pnet_heads(model) -> None:
    """PNet's two 1x1 output convolutions (face logits, 2 channels; box
    regression, 4) and its softmax -> one convolution with one output
    ``heads`` ``(N, 6, H', W')``: channels 0-1 the face logits (not a face, a
    face), 2-5 the regression. The softmax moves to numpy, on the few cells
    that can pass the threshold (:func:`worker.detectors.onnx_mtcnn.pnet_outputs`).

    Why: a 2-channel softmax is slow in both runtimes (ONNX Runtime: 8% of
    PNet, plus a layout reorder of its input), and one output means one reorder
    instead of two; PNet ran 12% faster on ONNX Runtime (2-core Xeon, one thread)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    by_name = {node.name: node for node in graph.node}
    logits, reg, softmax = by_name["/conv4_1/Conv"], by_name["/conv4_2/Conv"], by_name["/softmax4_1/Softmax"]
    params = [numpy_helper.to_array(inits[n]) for n in (*logits.input[1:], *reg.input[1:])]
    weight = np.concatenate([params[0], params[2]]).astype(np.float32)
    bias = np.concatenate([params[1], params[3]]).astype(np.float32)
    for n in (*logits.input[1:], *reg.input[1:]):
        graph.initializer.remove(inits[n])
    graph.initializer.extend([numpy_helper.from_array(weight, "heads.weight"),
                              numpy_helper.from_array(bias, "heads.bias")])
    kept = [node for node in graph.node if node.name not in (logits.name, reg.name, softmax.name)]
    heads = onnx.helper.make_node("Conv", [logits.input[0], "heads.weight", "heads.bias"], ["heads"],
                                  name="/heads/Conv", kernel_shape=[1, 1])
    del graph.node[:]
    graph.node.extend([*kept, heads])
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info("heads", onnx.TensorProto.FLOAT,
                                                           ["batch", 6, "out_height", "out_width"]))


def pad_first_conv(model, multiple: int = 16) -> int:
    """Widen the first convolution to a multiple of ``multiple`` output
    channels with zero filters (their PReLU slope 0, the next convolution's
    weights on them 0): the same outputs, bit for bit on these nets.

    Why: ONNX Runtime runs convolutions in a blocked layout (8 or 16 channels a
    block) and keeps a max pool in it only when the channels fill whole blocks;
    PNet's 10 and RNet's 28 did not, so a layout reorder and a slow plain max
    pool ran around their first pool (RNet 18% and PNet 4% faster padded, 2-core
    Xeon, one thread). Returns the channels added."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    first, second = convs[0], convs[1]
    prelu = next(node for node in graph.node if node.op_type == "PRelu" and node.input[0] == first.output[0])

    def widen(name: str, axis: int, extra: int) -> None:
        value = numpy_helper.to_array(inits[name])
        pad = [(0, 0)] * value.ndim
        pad[axis] = (0, extra)
        inits[name].CopyFrom(numpy_helper.from_array(np.pad(value, pad).astype(value.dtype), name))

    channels = numpy_helper.to_array(inits[first.input[1]]).shape[0]
    extra = -channels % multiple
    if extra:
        widen(first.input[1], 0, extra)
        widen(first.input[2], 0, extra)
        widen(prelu.input[1], 0, extra)
        widen(second.input[1], 1, extra)
    return extra


def export_mtcnn(out_dir: Path) -> list[Path]:
    """The three MTCNN nets -> ``out_dir`` (for ONNX Runtime) and
    ``out_dir/openvino`` (for OpenVINO); returns the paths written.

    Two graphs of the same weights, because each runtime runs a different
    form fastest: ONNX Runtime the PReLUs rewritten (:func:`prelu_as_relu`) and
    the first convolution padded (:func:`pad_first_conv`); OpenVINO the plain
    PReLUs, which it fuses into the convolutions (PNet 1.8x, RNet 1.5x faster
    than on the ONNX Runtime form, 2-core Xeon, one thread). PNet has one
    output in both (:func:`merge_pnet_heads`)."""
    import onnx

    nets = mtcnn_nets()
    batch = {0: "batch"}
    specs = {
        "pnet": (torch.rand(1, 3, 37, 53), ["reg", "prob"],
                 {"input": {0: "batch", 2: "height", 3: "width"},
                  "reg": {0: "batch", 2: "out_height", 3: "out_width"},
                  "prob": {0: "batch", 2: "out_height", 3: "out_width"}}),
        "rnet": (torch.rand(2, 3, 24, 24), ["reg", "prob"], {"input": batch, "reg": batch, "prob": batch}),
        "onet": (torch.rand(2, 3, 48, 48), ["reg", "landmarks", "prob"],
                 {"input": batch, "reg": batch, "landmarks": batch, "prob": batch}),
    }
    (out_dir / OPENVINO_DIR).mkdir(parents=True, exist_ok=True)
    paths = []
    with torch.no_grad():
        for name, (example, outputs, dynamic) in specs.items():
            path, ov_path = out_dir / MTCNN_FILES[name], out_dir / OPENVINO_DIR / MTCNN_FILES[name]
            _export(nets[name], example, path, outputs, dynamic)
            model = onnx.load(str(path))
            if name == "pnet":
                merge_pnet_heads(model)
            model.producer_name = "moodstream"
            onnx.save(model, str(ov_path))
            pad_first_conv(model)
            prelu_as_relu(model)
            onnx.save(model, str(path))
            paths += [path, ov_path]
    return paths


def emotion_metadata(ckpt: Checkpoint, checkpoint_path: Path) -> dict[str, str]:
    """The ``metadata_props`` of ``emotion.onnx`` for a checkpoint loaded from ``checkpoint_path``."""
    return {
        "format": EMOTION_FORMAT,
        "version": ckpt.version,
        "checkpoint_sha256": sha256_of(checkpoint_path),
        "labels": json.dumps(list(ckpt.labels)),
        "mean": repr(float(ckpt.mean)),
        "std": repr(float(ckpt.std)),
        "input_size": str(ckpt.config.input_size),
        "class_bias": json.dumps(None if ckpt.class_bias is None else list(ckpt.class_bias)),
        "flip_tta": "true",
        "config": json.dumps(ckpt.config.to_dict()),
    }


def export_emotion(out_dir: Path, checkpoint_path: Path | None = None, ckpt: Checkpoint | None = None) -> Path:
    """The emotion checkpoint -> ``out_dir/emotion.onnx`` with its metadata (``ckpt``: that
    checkpoint, loaded already)."""
    import onnx

    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else SHIPPED_CHECKPOINT
    ckpt = ckpt if ckpt is not None else load_checkpoint(checkpoint_path)
    size = ckpt.config.input_size
    path = out_dir / EMOTION_FILE
    with torch.no_grad():
        # unfolded: batch-norm parameters stay the checkpoint's exact fp16 values (store_half)
        _export(ckpt.model.eval(), torch.rand(2, 1, size, size), path, ["logits"],
                {"input": {0: "batch"}, "logits": {0: "batch"}}, fold=False)
    model = onnx.load(str(path))
    store_half(model)
    del model.metadata_props[:]
    for key, value in emotion_metadata(ckpt, checkpoint_path).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "moodstream"
    onnx.save(model, str(path))
    return path


# Which layers of the emotion net stay fp32 in its int8 file: the forms `bench int8 --candidates`
# compares; "first+dense" ships (export_int8)
INT8_KEEP_FP32 = ("none", "first", "dense", "first+dense")


def export_int8(out_dir: Path, ferplus: Path, images: int = INT8_IMAGES, seed: int = 0,
                keep_fp32: str = "first+dense", out: Path | None = None) -> Path:
    """``out_dir/emotion.onnx`` -> ``out_dir/openvino/emotion_int8.onnx``
    (:data:`worker.onnx_session.INT8_FILES`): ONNX Runtime's static
    quantization to QDQ, weights int8 per output channel, activations uint8
    with min-max ranges over ``images`` FER+ Train faces (seed ``seed``) and
    their mirror images, normalised as the classifier feeds them. The seven
    3x3 convolutions after the first (98% of the multiply-adds) are quantized,
    and OpenVINO runs them in int8; the first convolution (one input channel)
    and the three dense layers stay fp32. The metadata is emotion.onnx's plus
    ``quantization`` (how) and ``source_sha256`` (of the emotion.onnx it came
    from: ``tests/integration/test_openvino_backend.py`` checks it is the shipped one).

    Why this form (``moodstream bench int8 --candidates``, 2-core AMD EPYC,
    OpenVINO 2026.4: docs/results/int8_parity_amd.json): every form kept FER+
    Valid within 0.12 points, but with every layer quantized the top emotion
    changed on 3.3% of the 510 faces MTCNN finds in 200 WIDER images (bound: 2%),
    with the first convolution or the dense layers alone in fp32 on 2.4% / 2.9%,
    with both on 1.96%, at about the same speed (2.0x fp32). Percentile ranges or
    500 images did worse on Valid (-0.17 and -0.23 points against -0.06 for
    min-max on 2,000, all layers quantized)."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from moodstream.trainer.data import load_split

    if keep_fp32 not in INT8_KEEP_FP32:  # before any file or face is read
        raise ConfigError(f"keep_fp32 must be one of {', '.join(INT8_KEEP_FP32)}, got {keep_fp32!r}")
    src = Path(out_dir) / EMOTION_FILE  # (``out``: write the int8 file there instead, e.g. to compare forms)
    if not src.is_file():
        raise ModelError(f"{src} not found: write it first with `moodstream export onnx --out {out_dir}`")
    source = onnx.load(str(src))
    meta = {p.key: p.value for p in source.metadata_props}
    if meta.get("format") != EMOTION_FORMAT:
        raise ModelError(f"{src} is not a moodstream emotion model; write it first with `moodstream export onnx`")
    # at the model's own input size (train --input-size: 16..512), as the classifier feeds it
    train = load_split(ferplus, "train", size=int(meta.get("input_size", 48)), count=images, pick_seed=seed)
    if len(train.labels) < images:
        raise DataError(f"{ferplus} has {len(train.labels)} Train faces, fewer than --images {images}")
    mean, std = np.float32(meta["mean"]), np.float32(meta["std"])
    x = ((train.images.astype(np.float32) / np.float32(255) - mean) / std)[:, None]
    x = np.concatenate([x, x[..., ::-1]])  # the classifier runs each face and its mirror image (flip TTA)

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": np.ascontiguousarray(x[i:i + 64])} for i in range(0, len(x), 64)])

        def get_next(self):
            return next(self.batches, None)

    out = Path(out) if out else Path(out_dir) / OPENVINO_DIR / INT8_FILES[EMOTION_FILE]
    with writing(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"  # fp16 casts folded, shapes inferred: what quantization reads
        quant_pre_process(str(src), str(folded), skip_symbolic_shape=True)
        nodes = onnx.load(str(folded)).graph.node
        kept = ([n.name for n in nodes if n.op_type == "Conv"][:1] if "first" in keep_fp32 else []) + \
               ([n.name for n in nodes if n.op_type == "Gemm"] if "dense" in keep_fp32 else [])
        quantized = Path(tmp) / "quantized.onnx"
        quantize_static(str(folded), str(quantized), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=kept)
        model = onnx.load(str(quantized))
    store_half(model)  # the fp32 layers' weights, fp16 values in the checkpoint: half the bytes
    del model.metadata_props[:]
    how = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "weights": "int8 per channel",
           "activations": "uint8, min-max", "calibration": f"{images} FER+ Train faces and their mirror images",
           "seed": seed, "fp32": kept}
    for key, value in {**meta, "quantization": json.dumps(how), "source_sha256": sha256_of(src)}.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "moodstream"
    with writing(out), replacing(out) as staged:  # never half a file where the last was
        onnx.save(model, str(staged))
    return out


def export_all(out_dir: Path, checkpoint_path: Path | None = None) -> list[Path]:
    """Every file is written into a hidden folder inside ``out_dir`` and moved into place once all
    are whole: they were written in place, and a full disk midway left the folder (by default the
    package's own) with a truncated file among the others."""
    out_dir = Path(out_dir)
    ckpt = load_checkpoint(checkpoint_path)  # a bad one fails before any file is written
    staging = None
    try:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            with deferred_stop():  # a stop signal inside mkdtemp: raised once ``staging`` names the folder
                staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
        except OSError as exc:  # what --out's check cannot see (/proc, a full or read-only file system)
            raise ConfigError(f"cannot make the output folder {out_dir}: {exc.strerror or exc}") from None
        with writing(out_dir):
            staged = export_mtcnn(staging) + [export_emotion(staging, checkpoint_path, ckpt)]
            paths = []
            for path in staged:
                dst = out_dir / path.relative_to(staging)
                dst.parent.mkdir(exist_ok=True)
                os.replace(path, dst)
                paths.append(dst)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    for path in paths:
        log.info("export: wrote %s (%d bytes)", path, path.stat().st_size)
    return paths


class ExportGroup(StopSignalsGroup):
    # SIGTERM left export onnx's hidden staging folder in --out (the package's folder by default)
    stopped_note = "the files in --out left as they were"


@click.group(cls=ExportGroup)
def export() -> None:
    """Export the shipped models to other formats."""


@export.command("onnx")
@click.option("--out", "out_dir", default=ONNX_DIR, show_default="worker/data/onnx, inside the package",
              type=OutputFolder(), help="Folder for mtcnn_{pnet,rnet,onet}.onnx and emotion.onnx.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Emotion checkpoint to export [default: the shipped one].")
def onnx_cmd(out_dir: Path, checkpoint: Path | None) -> None:
    """Export the MTCNN nets (facenet-pytorch's weights) and the emotion model
    to ONNX, for the torch-free CPU backend (onnxruntime).

    The emotion file records the checkpoint's version and sha256; run this
    again whenever the shipped checkpoint changes. Another --checkpoint than
    the shipped one needs --out (naming the package's folder replaces the
    shipped files on purpose).
    """
    ctx = click.get_current_context()
    if (checkpoint is not None and checkpoint.resolve() != SHIPPED_CHECKPOINT.resolve()
            and ctx.get_parameter_source("out_dir") is click.core.ParameterSource.DEFAULT):
        # the torch-free backend then served another model than the shipped emotion.pt (and its int8 file)
        raise click.UsageError(f"--checkpoint {checkpoint} is not the shipped model: give --out "
                               f"(the default, {ONNX_DIR}, holds the shipped ONNX files; name it to replace them on "
                               "purpose)")
    for path in export_all(out_dir, checkpoint):
        click.echo(f"{printable(str(path))}  {path.stat().st_size:,} bytes")


@export.command("int8")
@click.option("--ferplus", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="FER+ folder (../shared/data/ferplus): Train faces calibrate the activation ranges.")
@click.option("--out", "out_dir", default=ONNX_DIR, show_default="worker/data/onnx, inside the package",
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder holding emotion.onnx; writes openvino/emotion_int8.onnx in it.")
@click.option("--images", default=INT8_IMAGES, show_default=True, type=click.IntRange(16),
              help="FER+ Train faces to calibrate on (each also mirrored).")
@click.option("--seed", default=0, show_default=True, type=int, help="Which Train faces.")
def int8_cmd(ferplus: Path, out_dir: Path, images: int, seed: int) -> None:
    """Quantize the emotion net to int8 for OpenVINO: what precision auto runs
    on most CPUs (`moodstream bench int8` measures it).

    Run it again whenever emotion.onnx changes (after `export onnx` with a new
    checkpoint): the file records which emotion.onnx it came from.
    """
    path = export_int8(out_dir, ferplus, images, seed)
    click.echo(f"{printable(str(path))}  {path.stat().st_size:,} bytes")
