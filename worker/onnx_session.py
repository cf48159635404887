"""The shipped ONNX files on a CPU runtime: ONNX Runtime or OpenVINO.

The ONNX files ship in ``worker/data/onnx`` (written by ``moodstream export
onnx``, see :mod:`trainer.export`); :mod:`worker.detectors.onnx_mtcnn` and
:mod:`worker.onnx_classify` open them here with :func:`open_net`, which gives
the same small interface on either runtime (:class:`Net`): ``run(x)`` -> the
outputs in graph order, and the file's ``metadata``. Which runtime and
precision a pipeline uses is decided in :mod:`worker.runtime`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from moodstream.shared.errors import ConfigError, ModelError
from moodstream.worker import net_input

ONNX_DIR = Path(__file__).parent / "data" / "onnx"
MTCNN_FILES = {"pnet": "mtcnn_pnet.onnx", "rnet": "mtcnn_rnet.onnx", "onet": "mtcnn_onet.onnx"}
# OpenVINO's form of the MTCNN files (plain PReLUs, which it fuses), in this subfolder of a model folder
OPENVINO_DIR = "openvino"
EMOTION_FILE = "emotion.onnx"
# The emotion net quantized to int8 (QDQ: int8 weights per channel, uint8 activations), for OpenVINO,
# in OPENVINO_DIR: written by `moodstream export int8` (trainer.export.export_int8) from EMOTION_FILE
INT8_FILES = {EMOTION_FILE: "emotion_int8.onnx"}
EMOTION_FORMAT = "moodstream-emotion-onnx/1"  # metadata_props["format"] of emotion.onnx (trainer.export)
RUNTIMES = ("onnx", "openvino")  # the backends that run these files, by their `backend` setting names


class Net(Protocol):
    """One ONNX file compiled for the CPU by one runtime."""

    runtime: str  # "onnx" or "openvino"
    precision: str  # "fp32", "bf16" or "int8"
    metadata: dict[str, str]  # the file's metadata_props

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The net on its one input ``x`` (float32, contiguous): its outputs in graph order."""
        ...


def net_file(folder: str | Path, name: str, runtime: str, precision: str = "fp32") -> Path:
    """The file of net ``name`` (an ONNX file name) in ``folder`` for ``runtime``:
    OpenVINO's form in ``folder/openvino`` where there is one (the MTCNN nets,
    :func:`trainer.export.export_mtcnn`), else the file in ``folder``. Both
    forms give the same outputs; each runtime is faster on its own. ``precision``
    "int8": the quantized file (:data:`INT8_FILES`, OpenVINO's only)."""
    folder = Path(folder)
    if precision == "int8":
        if runtime != "openvino" or name not in INT8_FILES:
            raise ConfigError(f"int8 runs {', '.join(INT8_FILES)} on the openvino backend only, not {name} on {runtime}")
        return folder / OPENVINO_DIR / INT8_FILES[name]
    if runtime == "openvino" and (folder / OPENVINO_DIR / name).is_file():
        return folder / OPENVINO_DIR / name
    return folder / name


def check_model_file(path: Path) -> None:
    if not path.is_file():
        export = "export int8 --ferplus DIR" if path.name in INT8_FILES.values() else "export onnx"
        raise ModelError(f"ONNX model {path} not found: reinstall moodstream, or run `moodstream {export}`")


def open_session(path: str | Path, threads: int = 1):
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op
    threads (one inter-op thread, full graph optimisation)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError("onnxruntime is not installed: pip install 'moodstream[cpu]'") from exc
    path = Path(path)
    check_model_file(path)
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between ops: these nets are small, so spinning threads burn the
    # cores other threads (and other workers on the machine) need. Measured on 2 cores,
    # 2 threads: 34 instead of 14 frames/s at 360p, 5.2 instead of 3.9 at 1080p.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a bad file
        raise ModelError(f"ONNX model {path} cannot be loaded: {exc}") from exc


class OrtNet:
    """:class:`Net` on ONNX Runtime (:func:`open_session`); full precision only."""

    runtime = "onnx"
    precision = "fp32"

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort  # open_session has checked it is installed

        self.session = open_session(path, threads)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._input = self.session.get_inputs()[0].name
        self.name = Path(path).name
        self.dims = net_input.dims(self.session.get_inputs()[0].shape)
        self._quiet = ort.RunOptions()
        self._quiet.log_severity_level = 4  # a probe below that does not fit raises; it need not log

        def fits(h: int, w: int) -> bool:
            try:
                self.session.run(None, {self._input: np.zeros((1, self.dims[1] or 1, h, w), np.float32)}, self._quiet)
            except Exception:  # onnxruntime raises its own types for an input a layer cannot take
                return False
            return True

        self.smallest = net_input.smallest(self.dims, fits)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        net_input.check(x, self.dims, self.name, self.smallest)
        if len(x) == 0:
            return net_input.empty_outputs(self.run, x)
        return self.session.run(None, {self._input: x})


def run_crops(net: Net, crops: np.ndarray) -> list[np.ndarray]:
    """``net.run`` on a batch of crops (RNet, ONet, the emotion net), each crop's outputs the
    same whatever the batch's size: a batch of one runs as two (the crop twice). OpenVINO on a
    2-core Zen 5 EPYC ran ONet and the emotion net (fp32, int8) on a single crop with another
    kernel than on two or more (4e-8 off), so a face's answer depended on its batch."""
    if len(crops) != 1:
        return net.run(crops)
    return [out[:1] for out in net.run(np.concatenate([crops, crops]))]


def open_net(path: str | Path, threads: int = 1, runtime: str = "onnx", precision: str = "fp32") -> Net:
    """The ONNX file at ``path`` on ``runtime`` ("onnx": ONNX Runtime, "openvino")
    with ``threads`` threads, computing in ``precision`` ("fp32"; "bf16" on
    OpenVINO only, where :func:`worker.runtime.resolve_precision` allowed it;
    "int8" on OpenVINO only, for a quantized file: :func:`net_file`)."""
    if runtime == "openvino":
        from moodstream.worker.openvino_net import OpenVinoNet

        check_model_file(Path(path))  # here, so openvino_net imports nothing back from this module
        return OpenVinoNet(path, threads, precision)
    if runtime != "onnx":
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision != "fp32":
        raise ConfigError(f"precision {precision} runs on the openvino backend; ONNX Runtime runs fp32")
    return OrtNet(path, threads)
