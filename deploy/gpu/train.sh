#!/usr/bin/env bash
# Train the paper's presets and ours on one CUDA GPU, writing everything under $OUT.
# Prepared for a lent H100/H200 (about 10 minutes there); see deploy/gpu/README.md
# for carrying wheels. Usage (repo root): OUT=/tmp/out bash deploy/gpu/train.sh [presets...]
#
# Dry run without a GPU (checks the wiring, not the numbers):
#   DEVICE=cpu PYTHON=.venv/bin/python EXTRA="--epochs 1 --max-train 300" OUT=/tmp/train-dry bash deploy/gpu/train.sh cpu
set -uo pipefail
OUT=${OUT:-runs/gpu}
DATA=${DATA:-../shared/data/ferplus}
[ -d .whl/shared_data/ferplus ] && DATA=.whl/shared_data/ferplus
PY=${PYTHON:-python3}
# FER+ carried in parts (deploy/gpu/ferplus_pack.py; README "Training on the GPU"): unpack them first
if [ -n "${FER_PARTS:-}" ]; then
  "$PY" deploy/gpu/ferplus_pack.py unpack "$FER_PARTS" /tmp/ferplus || exit 1
  DATA=/tmp/ferplus
fi
DEVICE=${DEVICE:-cuda}
read -r -a extra <<< "${EXTRA:-}"
presets=${*:-best paper-initial paper-resnet paper-vgg}
mkdir -p "$OUT"
if ! "$PY" -c 'import torch, facenet_pytorch, cv2, click, tqdm, matplotlib, msgspec' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"
status=0
for p in $presets; do
  "$PY" -m moodstream -v train --preset "$p" --data "$DATA" --out "$OUT/$p" --device "$DEVICE" "${extra[@]}" 2>&1 \
    | tee "$OUT/$p.log" | grep -E "epoch|accuracy|Error" | tail -5
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "!!! $p failed (see $OUT/$p.log)"; status=1; }
done
exit $status
