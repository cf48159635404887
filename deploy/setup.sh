#!/usr/bin/env bash
# Set up moodstream in ./.venv (idempotent).
# Usage: bash deploy/setup.sh [--dev | --gpu | --train]
#   (none)   what runs here: the torch-free CPU install (ONNX Runtime worker, `analyze`, the service,
#            an embedded redis-server; about 0.7 GB with OpenVINO, which it adds on x86 CPUs with AVX2),
#            or the torch one when `nvidia-smi` finds a GPU
#   --gpu    torch with CUDA, the trainer and benchmarks (about 6 GB), GPU or not
#   --train  the same as --gpu (training and the benchmarks need torch)
#   --dev    everything the test suite needs (torch, pytest, the browser-test tools, the embedded server)
# PYTHON=python3.12 picks another interpreter (3.11 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mode=${1:-auto}
case "$mode" in
  auto) if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then mode=gpu; else mode=cpu; fi ;;
  --gpu|--train) mode=gpu ;;
  --dev) mode=dev ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown option $mode; see: bash deploy/setup.sh --help" >&2; exit 2 ;;
esac
case "$mode" in
  cpu) extras="cpu,embedded"; torch=no
       # OpenVINO beside ONNX Runtime on x86 CPUs with AVX2: backend=auto measured it faster and ran it on both
       # kinds issue 26 had, an Intel Xeon with AMX (bf16) and an AMD EPYC with AVX2 only (the emotion net in
       # int8); auto still times both on the machine and keeps the faster
       if grep -qw 'avx2' "${CPUINFO:-/proc/cpuinfo}" 2>/dev/null; then extras="cpu,openvino,embedded"; fi ;;
  gpu) extras="train,embedded"; torch=yes ;;
  dev) extras="dev"; torch=yes ;;
esac
[ -n "${SETUP_DRY_RUN:-}" ] && { echo "$extras"; exit 0; }  # what would be installed (tests/install/test_setup.py)

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "moodstream needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1). Set PYTHON=..." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.moodstream-$extras-$(cat pyproject.toml setup.py worker/detectors/_area.c worker/detectors/_first.c deploy/setup.sh | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setting up .venv with moodstream[$extras] (first time: $([ $torch = yes ] && echo 'a few minutes, PyTorch is large' || echo 'about a minute')); log in .venv/setup.log" >&2
  {
    .venv/bin/python -m pip install -q --upgrade pip &&
    # torch and torchvision pinned together: a mismatched torchvision fails at import.
    if [ $torch = yes ]; then .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1; fi &&
    .venv/bin/python -m pip install -q -e ".[$extras]"
  } > .venv/setup.log 2>&1 || { tail -n 30 .venv/setup.log >&2; echo "setup failed; see .venv/setup.log" >&2; exit 1; }
  touch "$stamp"
fi
echo "moodstream ready ($extras): $(.venv/bin/moodstream --version)" >&2
