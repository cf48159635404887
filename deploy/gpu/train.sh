#!/usr/bin/env bash
# Train the paper's presets and ours on one CUDA GPU, writing everything under $OUT.
# Prepared for a lent H100/H200 (about 10 minutes there); see deploy/gpu/README.md
# for carrying wheels. Usage (repo root): OUT=/tmp/out bash deploy/gpu/train.sh [presets...]
set -uo pipefail
OUT=${OUT:-runs/gpu}
DATA=${DATA:-../shared/data/ferplus}
[ -d .whl/shared_data/ferplus ] && DATA=.whl/shared_data/ferplus
presets=${*:-best paper-initial paper-resnet paper-vgg}
mkdir -p "$OUT"
if ! python3 -c 'import torch, facenet_pytorch, cv2, click, tqdm, matplotlib' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
for p in $presets; do
  python3 -m moodstream.cli -v train --preset "$p" --data "$DATA" --out "$OUT/$p" --device cuda 2>&1 \
    | tee "$OUT/$p.log" | grep -E "epoch|accuracy|Error" | tail -5
done
