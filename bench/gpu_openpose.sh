#!/usr/bin/env bash
# The OpenPose GPU benchmark (issue 18) after the TensorRT 8.6 and TensorRT-RTX parts are staged (README, "GPU
# benchmark"); start it with setsid/nohup from a copy in /tmp and poll $W/done. One lane per input size, each
# prepare (python3: torch, cv2, scipy) then bench (TensorRT 8.6); with two GPUs the lanes run side by side.
#   W=/tmp/op LEVEL=3 SIZES="480x640 224x224" bash bench/gpu_openpose.sh
# Results: $W/<size>/openpose_torch.json, $W/<size>/gpu.json, logs beside them; the merged table:
#   python3 bench/gpu_openpose.py table --out $W/480x640/gpu.json,$W/224x224/gpu.json
set -uo pipefail
W=${W:-/tmp/op}; LEVEL=${LEVEL:-3}; SIZES=${SIZES:-"480x640 224x224"}; PLAN=${PLAN:-}; DEADLINE=${DEADLINE:-100000}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}  # GPUS=1 with CUDA_VISIBLE_DEVICES=N: the sizes one after the other on GPU N
export PYTHONUNBUFFERED=1

lane() {  # SIZE GPU
  local d="$W/$1"; mkdir -p "$d"
  [ -n "$2" ] && export CUDA_VISIBLE_DEVICES=$2
  PYTHONPATH=/tmp/rtx/site:. python3 bench/gpu_openpose.py prepare --work "$d" --sizes "$1" > "$d/prepare.log" 2>&1
  PYTHONPATH=. /tmp/gpu-trt/python bench/gpu_openpose.py bench --work "$d" --sizes "$1" --opt-level "$LEVEL" \
    --out "$d/gpu.json" --profile --deadline-at "$END" ${PLAN:+--plan "$PLAN"} > "$d/bench.log" 2>&1
  touch "$d/done"
}

END=$(( $(date +%s) + DEADLINE ))  # no build starts after this (seconds since the epoch)
i=0
for size in $SIZES; do
  if [ "$GPUS" -ge 2 ]; then lane "$size" $((i % GPUS)) & else lane "$size" ""; fi
  i=$((i + 1))
done
wait
files=$(for size in $SIZES; do printf '%s,' "$W/$size/gpu.json"; done)
PYTHONPATH=. python3 bench/gpu_openpose.py table --out "${files%,}" > "$W/table.txt" 2>&1
touch "$W/done"
