"""Which device ``auto`` means, torch-free: the one device resolver, for the pipeline
(which may run without torch), the trainer and the benchmarks."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

from moodstream.shared.errors import ConfigError


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (False too where it is blocked in sys.modules)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked (sys.modules[name] = None) or half-imported
        return False


def cuda_available() -> bool:
    """torch sees a CUDA device. Without an NVIDIA driver the answer is no without
    importing torch (seconds and ~300 MB for nothing); once torch is loaded, it asks."""
    if sys.modules.get("torch") is None:
        if not installed("torch") or not Path("/proc/driver/nvidia/gpus").exists():
            return False
    import torch

    return torch.cuda.is_available()


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` where torch sees a GPU, else ``cpu``; any other name as given,
    a CUDA one checked (one line where there is no torch or no GPU). The one resolver:
    callers resolve once and pass the result down (``torch.device(result)`` for torch)."""
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name.startswith("cuda"):
        if not installed("torch"):
            raise ConfigError(f"device {name!r} needs torch: pip install 'moodstream[worker]'")
        if not cuda_available():
            raise ConfigError(f"device {name!r}: no CUDA device is available here; use cpu or auto")
    return name


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """fp32 convolutions and matrix products computed in fp32 inside, not in TF32.

    torch runs fp32 convolutions on Ampere and later GPUs in TF32 by default (a 10-bit
    mantissa). Measured on an H200: our MTCNN's boxes then moved up to 0.46 px off the CPU's
    (95.5% of facenet-pytorch's CPU boxes at IoU 0.95 on street_1080p's first 16 frames) and
    the emotion net's probabilities 2.3e-4 on the same crops; with this, 1e-4 px and 5e-7, at
    about 8% of the GPU pipeline's speed. The caller's settings come back after. A no-op for
    CPU code (the flags concern CUDA only)."""
    import torch

    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul
