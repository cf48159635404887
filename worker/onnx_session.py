"""ONNX Runtime sessions for the torch-free CPU backend.

The ONNX files ship in ``worker/data/onnx`` (written by ``moodstream export
onnx``, see :mod:`trainer.export`); :mod:`worker.onnx_mtcnn` and
:mod:`worker.onnx_classify` open them here, with the same session options.
"""

from __future__ import annotations

from pathlib import Path

from moodstream.shared.errors import ConfigError, ModelError

ONNX_DIR = Path(__file__).parent / "data" / "onnx"
MTCNN_FILES = {"pnet": "mtcnn_pnet.onnx", "rnet": "mtcnn_rnet.onnx", "onet": "mtcnn_onet.onnx"}
EMOTION_FILE = "emotion.onnx"
EMOTION_FORMAT = "moodstream-emotion-onnx/1"  # metadata_props["format"] of emotion.onnx (trainer.export)


def open_session(path: str | Path, threads: int = 1):
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op
    threads (one inter-op thread, full graph optimisation)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError("onnxruntime is not installed: pip install 'moodstream[cpu]'") from exc
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model {path} not found: reinstall moodstream, or run `moodstream export onnx`")
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
