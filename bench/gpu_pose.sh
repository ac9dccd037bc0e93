#!/usr/bin/env bash
# HigherHRNet W32 on the GPU (issue 17), after TensorRT 8.6 (/tmp/gpu-trt) and TensorRT-RTX (/tmp/rtx/site) are staged
# as for bench/gpu_all.sh. Start it with setsid nohup from a copy in /tmp, poll $W/done, read $W/table.md.
#   1. python3: HDF5, ONNX per size, inputs + float64 references, INT8 calibration on CUDA (bench/gpu_pose_prepare.py)
#   2. TensorRT 8.6: netdef raw/parsed and ONNX-path engines, FP16 at LEVEL, FP32/INT8 at level 1 (bench/gpu_pose.py);
#      each lane starts no build after DEADLINE seconds
#   3. python3: PyTorch eager FP32/FP16, torch.compile FP16 at 512 batch 8 (bench/gpu_pose_prepare.py --stage torch)
# Two GPUs: size 512 on GPU 0; size 256 then the PyTorch timings on GPU 1 (no timing ever shares a GPU).
set -uo pipefail
W=${W:-/tmp/ndpose}; LEVEL=${LEVEL:-3}; DEADLINE=${DEADLINE:-240}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}  # GPUS=1 with CUDA_VISIBLE_DEVICES=N: one lane on GPU N
PLAN=${PLAN:-}  # SIZE:PRECISION:PATH:OUTPUTS[:LEVEL] items (default: bench/gpu_pose.py's, per lane's sizes)
export PYTHONUNBUFFERED=1
mkdir -p "$W"
prep() { PYTHONPATH=/tmp/rtx/site:. python3 bench/gpu_pose_prepare.py --work "$W" "$@"; }
trt() {
  PYTHONPATH=. /tmp/gpu-trt/python bench/gpu_pose.py --work "$W" --opt-level "$LEVEL" --deadline-s "$DEADLINE" \
    ${PLAN:+--plan "$PLAN"} "$@"
}

prep --stage files > "$W/files.log" 2>&1
if [ "$GPUS" -ge 2 ]; then
  (export CUDA_VISIBLE_DEVICES=0; trt --sizes 512 --out "$W/trt_512.json" > "$W/trt_512.log" 2>&1) &
  (export CUDA_VISIBLE_DEVICES=1; trt --sizes 256 --out "$W/trt_256.json" > "$W/trt_256.log" 2>&1
   prep --stage torch > "$W/torch.log" 2>&1) &
  wait
else
  trt --sizes 512,256 --out "$W/trt.json" > "$W/trt.log" 2>&1
  prep --stage torch > "$W/torch.log" 2>&1
fi
python3 bench/gpu_pose.py --table "$W"/torch_pose.json "$W"/trt*.json > "$W/table.md" 2>&1
touch "$W/done"
