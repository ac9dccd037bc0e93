#!/usr/bin/env bash
# The OpenPose GPU benchmark (issue 18) after the TensorRT 8.6 and TensorRT-RTX parts are staged (README, "GPU
# benchmark"); start it with setsid/nohup and poll $W/done. One lane per input size, each prepare (python3: torch,
# cv2, scipy) then bench (TensorRT 8.6); with two GPUs the lanes run side by side, with one in SIZES order.
#   W=/tmp/op LEVEL=1 SIZES="224x224 480x640" bash bench/gpu_openpose.sh
# No build starts after the deadline (DEADLINE s after the start, or DEADLINE_AT, seconds since the epoch); a size
# whose turn comes less than PREP_S before it is not prepared, and its result file lists its rows as skipped.
# Results: $W/<size>/openpose_torch.json, $W/<size>/gpu.json, logs beside them; the merged table ($W/table.txt):
#   W=/tmp/op SIZES="224x224 480x640" bash bench/gpu_openpose.sh table
set -uo pipefail
W=${W:-/tmp/op}; LEVEL=${LEVEL:-1}; SIZES=${SIZES:-"224x224 480x640"}; PLAN=${PLAN:-}; DEADLINE=${DEADLINE:-100000}
PREP_S=${PREP_S:-45}  # a size is prepared only if this many seconds remain before the deadline
TORCH_PY=${TORCH_PY:-python3}; TRT_PY=${TRT_PY:-/tmp/gpu-trt/python}  # python3 with torch; TensorRT 8.6
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}  # GPUS=1 with CUDA_VISIBLE_DEVICES=N: the sizes one after the other on GPU N
export PYTHONUNBUFFERED=1

lane() {  # SIZE GPU
  local d="$W/$1"; mkdir -p "$d"
  [ -n "$2" ] && export CUDA_VISIBLE_DEVICES=$2
  if [ $(( $(date +%s) + PREP_S )) -le "$END" ]; then  # else no build could start after the preparation
    echo "$(date +%T) OpenPose $1: prepare, log $d/prepare.log"
    PYTHONPATH=/tmp/rtx/site:. $TORCH_PY bench/gpu_openpose.py prepare --work "$d" --sizes "$1" > "$d/prepare.log" 2>&1
  fi
  echo "$(date +%T) OpenPose $1: TensorRT, log $d/bench.log"
  PYTHONPATH=. $TRT_PY bench/gpu_openpose.py bench --work "$d" --sizes "$1" --opt-level "$LEVEL" \
    --out "$d/gpu.json" --profile --deadline-at "$END" ${PLAN:+--plan "$PLAN"} > "$d/bench.log" 2>&1
  touch "$d/done"
}

table() {  # every size's results in one table, sizes without a result file named with the reason
  local files
  files=$(for size in $SIZES; do printf '%s,' "$W/$size/gpu.json"; done)
  PYTHONPATH=. python3 bench/gpu_openpose.py table --out "${files%,}" > "$W/table.txt" 2>&1
}
[ "${1:-}" = table ] && { table; exit; }  # the table alone (bench/gpu_session.sh runs the sizes as queue items)

END=${DEADLINE_AT:-$(( $(date +%s) + DEADLINE ))}  # no build starts after this (seconds since the epoch)
i=0
for size in $SIZES; do
  if [ "$GPUS" -ge 2 ]; then lane "$size" $((i % GPUS)) & else lane "$size" ""; fi
  i=$((i + 1))
done
wait
table
touch "$W/done"
