#!/usr/bin/env bash
# Issue 14's GPU proof, unattended: netdef INT8 against TensorRT's implicit INT8 (ONNX path, entropy calibrator on
# the same 256 calibration samples) and netdef FP16; batch 32, GPU time, one optimization level per model
# (YOLOv4 416: Y_LEVEL=1, ResNet-50: R_LEVEL=3). Needs /tmp/gpu-trt/python (TensorRT 8.6) and /tmp/rtx/site
# (TensorRT-RTX for python3 + torch) staged as the README's "GPU benchmark" says.
#
#   bash bench/gpu_int8.sh start           copy this tree to $W/src, start both lanes there (setsid nohup), return
#   bash bench/gpu_int8.sh wait SECONDS    poll up to SECONDS, then copy results and logs to $OUT; prints the INT8
#                                          table once everything is done (call again if it is not)
#   bash bench/gpu_int8.sh run             both lanes in the foreground (what `start` runs)
#   bash bench/gpu_int8.sh lane y|r        one lane in the foreground (bench/gpu_session.sh runs one per GPU),
#   bash bench/gpu_int8.sh summarize       then the table once both are done
#
# Two lanes, one GPU each (one GPU: one after the other), timings never share a GPU:
#   lane y: prepare YOLOv4 (HDF5, ONNX with the raw heads, float64 references, netdef calibration on CUDA; no
#           PyTorch timings), then the implicit-INT8 YOLOv4 engine: the long pole (9 min on the H200 at level 1)
#   lane r: prepare ResNet-50 and build its netdef FP16 engine; once lane y's preparation is done, YOLOv4 netdef
#           FP16 and INT8 (a timing cache shared by the two); then ResNet-50 netdef INT8 and implicit INT8
# Estimated on two H200s: about 11-12 minutes. Results: $OUT/int8_table.txt, $OUT/int8_summary.json, the
# bench/gpu.py result files (*trt*.json), engine layer lists, per-layer profiles and placement reports (*.gz).
set -uo pipefail
W=${W:-/tmp/nd14}; OUT=${OUT:-/tmp/out}; Y_LEVEL=${Y_LEVEL:-1}; R_LEVEL=${R_LEVEL:-3}
export PYTHONUNBUFFERED=1

prep() { PYTHONPATH=/tmp/rtx/site:. python3 bench/gpu_prepare.py --work "$1" --models "$2" --no-torch-timings \
  --compile-models "" --onnx-heads yolov4; }
bench() { PYTHONPATH=. /tmp/gpu-trt/python bench/gpu.py --yolo-heads fp16,int8 "$@"; }
stamp() { echo "$(date +%T) $*"; }

lane_y_prepare() {
  stamp "y: prepare yolov4"; prep "$W/y" yolov4 > "$W/y/prepare.log" 2>&1; touch "$W/y/prep.done"
}

lane_y_bench() {
  stamp "y: yolov4 implicit int8 (level $Y_LEVEL)"
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt_yolo_implicit.json" --plan yolov4:int8:implicit \
    > "$W/y/bench.log" 2>&1
  touch "$W/y/done"; stamp "y: done"
}

lane_r() {
  stamp "r: prepare resnet50"; prep "$W/r" resnet50 > "$W/r/prepare.log" 2>&1
  stamp "r: resnet50 netdef fp16 (level $R_LEVEL)"
  bench --work "$W/r" --opt-level "$R_LEVEL" --out "$W/r/trt_r50_fp16.json" --plan resnet50:fp16:netdef \
    > "$W/r/bench.log" 2>&1
  while [ ! -f "$W/y/prep.done" ]; do sleep 2; done
  stamp "r: yolov4 netdef fp16 + int8 (level $Y_LEVEL)"
  bench --work "$W/y" --timing-cache "$W/r/timing_yolo.cache" --opt-level "$Y_LEVEL" --out "$W/r/trt_yolo_netdef.json" \
    --plan yolov4:fp16:netdef,yolov4:int8:netdef >> "$W/r/bench.log" 2>&1
  stamp "r: resnet50 netdef int8 + implicit int8 (level $R_LEVEL)"
  bench --work "$W/r" --opt-level "$R_LEVEL" --out "$W/r/trt_r50_int8.json" \
    --plan resnet50:int8:netdef,resnet50:int8:implicit >> "$W/r/bench.log" 2>&1
  touch "$W/r/done"; stamp "r: done"
}

summarize() {
  python3 bench/gpu_table.py --int8 "$W"/*/trt_*.json --json "$W/int8_summary.json" > "$W/int8_table.txt" 2>&1
}

run() {
  mkdir -p "$W/y" "$W/r"
  if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
    (export CUDA_VISIBLE_DEVICES=0; lane_y_prepare; lane_y_bench) &
    (export CUDA_VISIBLE_DEVICES=1; lane_r) &
    wait
  else
    lane_y_prepare; lane_r; lane_y_bench
  fi
  summarize; touch "$W/done"; stamp "all done"
}

collect() {
  mkdir -p "$OUT"
  for lane in y r; do
    for f in "$W/$lane"/trt_*.json "$W/$lane"/*.log "$W/$lane"/*.gz "$W/$lane"/torch_report.json; do
      [ -f "$f" ] && cp "$f" "$OUT/${lane}_$(basename "$f")"
    done
  done
  for f in "$W/run.log" "$W/int8_table.txt" "$W/int8_summary.json"; do [ -f "$f" ] && cp "$f" "$OUT/"; done
  return 0
}

case "${1:-}" in
  start)
    if [ -f "$W/run.log" ] && [ ! -f "$W/done" ] && [ -z "${FORCE:-}" ]; then
      echo "a run is under way in $W (FORCE=1 to start over)"; exit 1
    fi
    rm -rf "$W" && mkdir -p "$W/src"
    tar --exclude=./.git --exclude=./.gpu -cf - . | (cd "$W/src" && tar xf -)
    (cd "$W/src" && setsid nohup bash bench/gpu_int8.sh run > "$W/run.log" 2>&1 < /dev/null &)
    stamp "started in $W/src (log $W/run.log)" ;;
  wait)
    limit=${2:-540}; t0=$(date +%s)
    [ -d "$W" ] || { echo "nothing started in $W"; exit 1; }
    while [ ! -f "$W/done" ] && [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do
      sleep 15
      echo "$(date +%T) $(tail -n 1 "$W/run.log" 2>/dev/null) | y: $(tail -c 200 "$W/y/bench.log" 2>/dev/null | tail -n 1 | cut -c1-100)"
    done
    collect
    if [ -f "$W/done" ]; then cat "$W/int8_table.txt"; else echo "not done yet: call wait again"; cat "$W/run.log"; fi ;;
  run) run ;;
  lane)
    mkdir -p "$W/y" "$W/r"
    case "${2:-}" in
      y) lane_y_prepare; lane_y_bench ;;
      r) lane_r ;;
      *) echo "usage: bash bench/gpu_int8.sh lane y|r" >&2; exit 2 ;;
    esac ;;
  summarize) summarize; touch "$W/done" ;;
  *) echo "usage: bash bench/gpu_int8.sh start | wait SECONDS | run" >&2; exit 2 ;;
esac
