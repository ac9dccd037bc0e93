#!/usr/bin/env bash
# The whole GPU benchmark (issue 10's table) after the TensorRT 8.6 and TensorRT-RTX parts are staged; start it
# with setsid/nohup and poll W/*/done. Two lanes, each prepare (python3 + torch) then bench (TensorRT 8.6):
#   lane r: ResNet-50, its five engines at level R_LEVEL; then YOLOv4 INT8 and FP32 (+ ONNX) at Y_LEVEL
#   lane y: YOLOv4, its FP16 pair at Y_LEVEL, then the FP16 pair again at level Y_LEVEL_2 (if set)
# With two GPUs the lanes run side by side (one GPU each; timings never share a GPU), else one after the other.
# YOLOv4 builds are GPU-bound tactic timing (H100: 1.6-3.4 min at level 1, 11 min for FP16 at level 3), hence
# the split and the levels. The README's table: W=/tmp/nd R_LEVEL=3 Y_LEVEL=1 Y_LEVEL_2=3 (about 23 minutes).
set -uo pipefail
W=${W:-/tmp/nd}; R_LEVEL=${R_LEVEL:-3}; Y_LEVEL=${Y_LEVEL:-1}; Y_LEVEL_2=${Y_LEVEL_2:-}
export PYTHONUNBUFFERED=1
mkdir -p "$W/r" "$W/y"
prep() { PYTHONPATH=/tmp/rtx/site:. python3 bench/gpu_prepare.py --work "$1" --models "$2" --compile-models "$2"; }
bench() { PYTHONPATH=. /tmp/gpu-trt/python bench/gpu.py "$@"; }

lane_r() {
  prep "$W/r" resnet50 > "$W/r/prepare.log" 2>&1
  bench --work "$W/r" --opt-level "$R_LEVEL" --out "$W/r/trt.json" \
    --plan resnet50:fp16:netdef,resnet50:fp16:onnx,resnet50:int8:netdef,resnet50:fp32:netdef,resnet50:fp32:onnx \
    > "$W/r/bench.log" 2>&1
  while [ ! -f "$W/y/prep.done" ]; do sleep 2; done
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/r/trt_yolo.json" \
    --plan yolov4:int8:netdef,yolov4:fp32:netdef,yolov4:fp32:onnx >> "$W/r/bench.log" 2>&1
  touch "$W/r/done"
}

prep_y() {
  prep "$W/y" yolov4 > "$W/y/prepare.log" 2>&1
  touch "$W/y/prep.done"
}

bench_y() {
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt.json" --plan yolov4:fp16:netdef,yolov4:fp16:onnx \
    > "$W/y/bench.log" 2>&1
  if [ -n "$Y_LEVEL_2" ]; then
    bench --work "$W/y" --opt-level "$Y_LEVEL_2" \
      --out "$W/y/trt_level$Y_LEVEL_2.json" --plan yolov4:fp16:netdef,yolov4:fp16:onnx >> "$W/y/bench.log" 2>&1
  fi
  touch "$W/y/done"
}

if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  (export CUDA_VISIBLE_DEVICES=0; lane_r) &
  (export CUDA_VISIBLE_DEVICES=1; prep_y; bench_y) &
  wait
else
  prep_y; lane_r; bench_y
fi
touch "$W/done"
