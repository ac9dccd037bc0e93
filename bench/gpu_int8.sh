#!/usr/bin/env bash
# Issue 14's GPU proof, unattended: netdef INT8 against TensorRT's implicit INT8 (ONNX path, entropy calibrator on
# the same 256 calibration samples) and netdef FP16; batch 32, GPU time, one optimization level per model
# (YOLOv4 416: Y_LEVEL=3, ResNet-50: R_LEVEL=3; TensorRT's default level). Needs /tmp/gpu-trt/python (TensorRT 8.6) and /tmp/rtx/site
# (TensorRT-RTX for python3 + torch) staged as the README's "GPU benchmark" says.
#
#   bash bench/gpu_int8.sh start           copy this tree to $W/src, start both lanes there (setsid nohup), return
#   bash bench/gpu_int8.sh wait SECONDS    poll up to SECONDS, then copy results and logs to $OUT; prints the INT8
#                                          table once everything is done (call again if it is not)
#   bash bench/gpu_int8.sh run             both lanes in the foreground (what `start` runs)
#   bash bench/gpu_int8.sh lane y|r        one lane in the foreground
#   bash bench/gpu_int8.sh step NAME       one step in the foreground (bench/gpu_session.sh queues them):
#        prepare_y   YOLOv4 preparation (HDF5, ONNX with the raw heads, float64 references, calibration on CUDA)
#        implicit    the implicit-INT8 YOLOv4 engine -> y/trt_yolo_implicit.json: the long pole (13 min on the H200
#                    at level 1, 3 of them TensorRT's calibration); an engine saved from the same ONNX file,
#                    calibration array and settings is reused, and so is TensorRT's calibration cache
#        netdef_y    YOLOv4 netdef in the precisions Y_NETDEF (default fp16,int8) -> y/trt_yolo_netdef.json (7 min;
#                    waits for prepare_y)
#        variants_y  YOLOv4 netdef INT8 with the head convs in INT8 (level Y_LEVEL) -> y/trt_yolo_variant_head_q.json
#        r3b_y       YOLOv4 netdef INT8 with shortcut branches quantized after their activation (R3b, the placement
#                    before R3c; level Y_LEVEL) -> y/trt_yolo_variant_r3b.json
#        row_y       one YOLOv4 netdef engine at one level: Y_KIND fp16, int8, int8head (the head convs in INT8) or
#                    int8stem (the stem alone quantized at its raw output: the default until the eighth session), level
#                    Y_LEVEL
#                    -> y/trt_yolo_<kind>_level<level>.json (builder levels compared: docs/int8.md 4)
#        onnx_y      YOLOv4 ONNX-path FP16, the accuracy cross-check of netdef FP16 -> y/trt_yolo_onnx.json (4 min)
#        r50         ResNet-50 preparation, netdef FP16, netdef INT8, implicit INT8 -> r/trt_r50.json (7 min)
#   bash bench/gpu_int8.sh summarize       the table of the steps' result files (missing ones named)
#
# DEADLINE_AT (seconds since the epoch): bench rows not started by then are recorded as skipped. Every engine has
# its own timing cache (TensorRT 8.6 refused every cache another network had written). TORCH_PY / TRT_PY: the
# interpreters (python3 with torch; /tmp/gpu-trt/python).
# Results: $W/int8_table.txt, $W/int8_summary.json, the bench/gpu.py result files (*/trt_*.json), engine layer
# lists, per-layer profiles and placement reports (*.gz).
set -uo pipefail
W=${W:-/tmp/nd14}; OUT=${OUT:-/tmp/out}; Y_LEVEL=${Y_LEVEL:-3}; Y_NETDEF=${Y_NETDEF:-fp16,int8}; R_LEVEL=${R_LEVEL:-3}
DEADLINE_AT=${DEADLINE_AT:-}
TORCH_PY=${TORCH_PY:-python3}; TRT_PY=${TRT_PY:-/tmp/gpu-trt/python}
export PYTHONUNBUFFERED=1

prep() { PYTHONPATH=/tmp/rtx/site:. $TORCH_PY bench/gpu_prepare.py --work "$1" --models "$2" --no-torch-timings \
  --compile-models "" --onnx-heads yolov4; }
bench() { PYTHONPATH=. $TRT_PY bench/gpu.py --yolo-heads fp16,int8 ${DEADLINE_AT:+--deadline-at "$DEADLINE_AT"} "$@"; }
stamp() { echo "$(date +%T) $*"; }

prepare_y() {
  mkdir -p "$W/y"; rm -f "$W/y/prep.done"
  stamp "y: prepare yolov4"; prep "$W/y" yolov4 > "$W/y/prepare.log" 2>&1; local rc=$?
  [ $rc -eq 0 ] && touch "$W/y/prep.done"; return $rc
}

wait_prepared() {
  while [ ! -f "$W/y/prep.done" ]; do
    [ -n "$DEADLINE_AT" ] && [ "$(date +%s)" -gt "$DEADLINE_AT" ] && { stamp "y: no YOLOv4 preparation"; return 1; }
    sleep 2
  done
}

implicit() {
  wait_prepared || return 1
  stamp "y: yolov4 implicit int8 (level $Y_LEVEL)"
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt_yolo_implicit.json" --plan yolov4:int8:implicit \
    >> "$W/y/bench_implicit.log" 2>&1
}

netdef_y() {
  wait_prepared || return 1
  stamp "y: yolov4 netdef $Y_NETDEF (level $Y_LEVEL)"
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt_yolo_netdef.json" \
    --plan "$(for p in ${Y_NETDEF//,/ }; do printf 'yolov4:%s:netdef,' "$p"; done | sed 's/,$//')" \
    >> "$W/y/bench_netdef.log" 2>&1
}

variants_y() {  # what docs/int8.md section 4 leaves open: the head convs' reformats
  wait_prepared || return 1
  stamp "y: yolov4 netdef int8 with the head convs in int8 (level $Y_LEVEL)"
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt_yolo_variant_head_q.json" --plan yolov4:int8:netdef \
    --yolo-head-q int8 >> "$W/y/bench_variants.log" 2>&1
}

r3b_y() {  # shortcut branches quantized after their activation (R3b, docs/int8.md 2): the default before R3c
  wait_prepared || return 1
  stamp "y: yolov4 netdef int8 with shortcuts quantized after the activation (level $Y_LEVEL)"
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt_yolo_variant_r3b.json" --plan yolov4:int8:netdef \
    --yolo-shortcut-q activation >> "$W/y/bench_r3b.log" 2>&1
}

row_y() {
  wait_prepared || return 1
  local kind=${Y_KIND:-int8} precision=fp16 option=""
  case "$kind" in
    fp16) ;; int8) precision=int8 ;; int8head) precision=int8 option="--yolo-head-q int8" ;;
    int8stem) precision=int8 option="--yolo-preact-q stem" ;;
    *) echo "Y_KIND=$kind: expected fp16, int8, int8head or int8stem" >&2; return 2 ;;
  esac
  stamp "y: yolov4 netdef $kind (level $Y_LEVEL)"
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt_yolo_${kind}_level$Y_LEVEL.json" \
    --plan "yolov4:$precision:netdef" $option >> "$W/y/bench_${kind}_level$Y_LEVEL.log" 2>&1
}

onnx_y() {
  wait_prepared || return 1
  stamp "y: yolov4 onnx fp16 (level $Y_LEVEL)"
  bench --work "$W/y" --opt-level "$Y_LEVEL" --out "$W/y/trt_yolo_onnx.json" --plan yolov4:fp16:onnx \
    >> "$W/y/bench_onnx.log" 2>&1
}

r50() {
  mkdir -p "$W/r"
  stamp "r: prepare resnet50"; prep "$W/r" resnet50 > "$W/r/prepare.log" 2>&1 || return 1
  stamp "r: resnet50 netdef fp16, netdef int8, implicit int8 (level $R_LEVEL)"
  bench --work "$W/r" --opt-level "$R_LEVEL" --out "$W/r/trt_r50.json" \
    --plan resnet50:fp16:netdef,resnet50:int8:netdef,resnet50:int8:implicit >> "$W/r/bench.log" 2>&1
}

summarize() {  # the table of the result files (those never written are named as missing)
  python3 bench/gpu_table.py --int8 "$W"/y/trt_yolo_{netdef,implicit}.json \
    $(ls "$W"/y/trt_yolo_onnx.json "$W"/y/trt_yolo_variant_*.json "$W"/y/trt_yolo_*_level*.json 2>/dev/null) \
    "$W"/r/trt_r50.json --json "$W/int8_summary.json" > "$W/int8_table.txt" 2>&1
}

run() {
  mkdir -p "$W/y" "$W/r"
  if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
    (export CUDA_VISIBLE_DEVICES=0; prepare_y; implicit) &
    (export CUDA_VISIBLE_DEVICES=1; netdef_y; r50; onnx_y) &
    wait
  else
    prepare_y; netdef_y; implicit; r50; onnx_y
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
      echo "$(date +%T) $(tail -n 1 "$W/run.log" 2>/dev/null) | y: $(tail -c 200 "$W/y/bench_implicit.log" 2>/dev/null | tail -n 1 | cut -c1-100)"
    done
    collect
    if [ -f "$W/done" ]; then cat "$W/int8_table.txt"; else echo "not done yet: call wait again"; cat "$W/run.log"; fi ;;
  run) run ;;
  lane)
    mkdir -p "$W/y" "$W/r"
    case "${2:-}" in
      y) prepare_y; implicit ;;
      r) netdef_y; r50; onnx_y ;;
      *) echo "usage: bash bench/gpu_int8.sh lane y|r" >&2; exit 2 ;;
    esac ;;
  step)
    mkdir -p "$W/y" "$W/r"
    case "${2:-}" in
      prepare_y|implicit|netdef_y|variants_y|r3b_y|row_y|onnx_y|r50) "$2" ;;
      *) echo "usage: bash bench/gpu_int8.sh step prepare_y|implicit|netdef_y|variants_y|r3b_y|row_y|onnx_y|r50" >&2; exit 2 ;;
    esac ;;
  summarize) summarize; touch "$W/done" ;;
  *) echo "usage: bash bench/gpu_int8.sh start | wait SECONDS | run | lane y|r | step NAME | summarize" >&2; exit 2 ;;
esac
