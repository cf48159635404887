"""What `bash deploy/setup.sh` installs on which machine (issue 23 item 2: the first command
installed CUDA torch, 6 GB, on machines without a GPU). SETUP_DRY_RUN prints the extras and
stops before anything is installed; a fake `nvidia-smi` on PATH and a fake cpuinfo stand in
for the hardware."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _extras(tmp_path: Path, *args: str, gpu: bool = False, cpu_flags: str = "avx2 fma") -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if gpu:
        smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
        smi.chmod(0o755)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"model name\t: test cpu\nflags\t\t: fpu sse2 {cpu_flags}\n")
    env = {**os.environ, "SETUP_DRY_RUN": "1", "CPUINFO": str(cpuinfo), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(REPO / "deploy" / "setup.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("args, gpu, flags, extras", [
    ((), False, "avx2 fma", "cpu,openvino,embedded"),  # no GPU: torch-free; AVX2: OpenVINO too (AMD EPYC)
    ((), False, "avx2 avx512f avx512_vnni amx_tile", "cpu,openvino,embedded"),  # Intel with AMX: OpenVINO too
    ((), False, "sse4_2 neon", "cpu,embedded"),  # no AVX2 (old x86, ARM): ONNX Runtime only, about 0.5 GB
    ((), True, "avx2", "train,embedded"),  # nvidia-smi finds a GPU: torch with CUDA
    (("--gpu",), False, "avx2", "train,embedded"),
    (("--train",), False, "avx2", "train,embedded"),
    (("--dev",), False, "avx2", "dev"),  # the test command: everything the tests need
])
def test_the_first_command_installs_what_the_machine_runs(tmp_path, args, gpu, flags, extras):
    out = _extras(tmp_path, *args, gpu=gpu, cpu_flags=flags)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == extras


def test_an_unknown_flag_is_refused(tmp_path):
    out = _extras(tmp_path, "--gpus")
    assert out.returncode == 2 and "unknown option --gpus" in out.stderr


def test_the_setup_stamp_covers_every_file_the_install_builds_from():
    # the stamp makes a second run a no-op; a change to the compiled module must reinstall (rebuild) it,
    # or a pulled fix to worker/detectors/_area.c would not run until someone deleted .venv
    stamp = next(line for line in (REPO / "deploy" / "setup.sh").read_text().splitlines() if line.startswith("stamp="))
    for source in ("pyproject.toml", "setup.py", "worker/detectors/_area.c", "worker/detectors/_first.c",
                   "deploy/setup.sh"):
        assert source in stamp, f"{source} is not in the setup stamp: {stamp}"
