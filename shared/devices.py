"""Which device ``auto`` means, torch-free: the one device resolver, for the pipeline
(which may run without torch), the trainer and the benchmarks."""

from __future__ import annotations

import importlib.util
import sys
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
