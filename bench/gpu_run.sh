#!/usr/bin/env bash
# Drives the GPU benchmark on the H100 test machine after the TensorRT 8.6 and TensorRT-RTX parts are staged
# (see README "GPU benchmark"). Usage: bash bench/gpu_run.sh STEP [args]; logs and results go to $OUT.
#   prepare MODELS [flags]   step 1 in python3 (torch): HDF5/ONNX/references/torch timings/INT8 calibration
#   bench LEVEL [--plan ...]   step 2 in /tmp/gpu-trt/python (TensorRT 8.6): build, run, time
#   runtime                  bench/runtime_gpu.py (ResNet-18 through the runtime)
set -uo pipefail
OUT=${OUT:-/tmp/out}; W=${W:-/tmp/nd}; mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1
step=$1; shift
case "$step" in
  prepare)
    PYTHONPATH=/tmp/rtx/site:. python3 bench/gpu_prepare.py --work "$W" --models "$1" "${@:2}" 2>&1 | tee -a "$OUT/prepare.log"
    cp "$W/torch_report.json" "$OUT/" 2>/dev/null ;;
  bench)
    PYTHONPATH=. /tmp/gpu-trt/python bench/gpu.py --work "$W" --opt-level "$1" --out "$W/gpu_results.json" "${@:2}" \
      2>&1 | tee -a "$OUT/bench.log"
    cp "$W/gpu_results.json" "$OUT/" 2>/dev/null ;;
  runtime)
    PYTHONPATH=/tmp/rtx/site:. python3 bench/runtime_gpu_ref.py "$@" 2>&1 | tee -a "$OUT/runtime.log"
    PYTHONPATH=. /tmp/gpu-trt/python bench/runtime_gpu.py "$@" 2>&1 | tee -a "$OUT/runtime.log" ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
