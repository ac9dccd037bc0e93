#!/usr/bin/env bash
# HigherHRNet W32 on the GPU (issue 17), after TensorRT 8.6 (/tmp/gpu-trt) and TensorRT-RTX (/tmp/rtx/site) are staged
# as for bench/gpu_all.sh. Start it with setsid nohup from a copy in /tmp, poll $W/done, read $W/table.md.
#   files  python3: HDF5, ONNX per size, inputs + float64 references, INT8 calibration on CUDA (bench/gpu_pose_prepare.py)
#   trt    TensorRT 8.6: per size, netdef raw/parsed and ONNX-path engines at LEVEL (bench/gpu_pose.py), each saved,
#          checked and timed; no build starts after the deadline (DEADLINE s after the stage starts, or DEADLINE_AT)
#   torch  python3: PyTorch eager FP32/FP16, torch.compile FP16 at 512 batch 8 (bench/gpu_pose_prepare.py --stage torch)
#   table  the merged table ($W/table.md)
#   bash bench/gpu_pose.sh                 all of them; two GPUs: size 512 on GPU 0, size 256 then the PyTorch
#                                          timings on GPU 1 (no timing ever shares a GPU)
#   bash bench/gpu_pose.sh files|torch|table          one stage (bench/gpu_session.sh queues them per GPU)
#   bash bench/gpu_pose.sh trt 512[,256] [NAME]      the TensorRT items of these sizes -> $W/trt_<sizes>[_NAME].json
# LEVEL=1 for every item (a level-3 FP16 build at 512 took 377 s on the H200); POSE_ITEMS: PRECISION:PATH:OUTPUTS per
# size, comma-separated, most important first (default: bench/gpu_pose.py's); PLAN (SIZE:PRECISION:PATH:OUTPUTS[:LEVEL]
# items) overrides both. TORCH_PY / TRT_PY: the interpreters (python3 with torch; /tmp/gpu-trt/python).
set -uo pipefail
W=${W:-/tmp/ndpose}; LEVEL=${LEVEL:-1}; DEADLINE=${DEADLINE:-100000}; DEADLINE_AT=${DEADLINE_AT:-}; POSE_ITEMS=${POSE_ITEMS:-}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}  # GPUS=1 with CUDA_VISIBLE_DEVICES=N: everything on GPU N
PLAN=${PLAN:-}; TORCH_PY=${TORCH_PY:-python3}; TRT_PY=${TRT_PY:-/tmp/gpu-trt/python}
export PYTHONUNBUFFERED=1
mkdir -p "$W"
prep() { PYTHONPATH=/tmp/rtx/site:. $TORCH_PY bench/gpu_pose_prepare.py --work "$W" "$@"; }
trt() {  # SIZES [NAME]
  local out="$W/trt_${1//,/_}${2:+_$2}"
  echo "$(date +%T) HigherHRNet ${1} ${POSE_ITEMS:-$PLAN}: log ${out}.log"
  PYTHONPATH=. $TRT_PY bench/gpu_pose.py --work "$W" --opt-level "$LEVEL" --deadline-s "$DEADLINE" \
    ${DEADLINE_AT:+--deadline-at "$DEADLINE_AT"} --sizes "$1" ${POSE_ITEMS:+--items "$POSE_ITEMS"} ${PLAN:+--plan "$PLAN"} \
    --out "$out.json" > "$out.log" 2>&1
}
table() { python3 bench/gpu_pose.py --table "$W"/torch_pose.json $(ls "$W"/trt_*.json 2>/dev/null) > "$W/table.md" 2>&1; }

case "${1:-all}" in
  files) echo "$(date +%T) HigherHRNet files: log $W/files.log"; prep --stage files > "$W/files.log" 2>&1 ;;
  torch) echo "$(date +%T) HigherHRNet PyTorch timings: log $W/torch.log"; prep --stage torch > "$W/torch.log" 2>&1 ;;
  trt) trt "${2:?sizes, e.g. 512 or 512,256}" "${3:-}" ;;
  table) table ;;
  all)
    prep --stage files > "$W/files.log" 2>&1
    if [ "$GPUS" -ge 2 ]; then
      (export CUDA_VISIBLE_DEVICES=0; trt 512) &
      (export CUDA_VISIBLE_DEVICES=1; trt 256; prep --stage torch > "$W/torch.log" 2>&1) &
      wait
    else
      trt 512,256
      prep --stage torch > "$W/torch.log" 2>&1
    fi
    table
    touch "$W/done" ;;
  *) echo "usage: bash bench/gpu_pose.sh [all | files | torch | trt SIZES | table]" >&2; exit 2 ;;
esac
