#!/usr/bin/env bash
# The whole GPU proof in one unattended session on two GPUs (nvidia-h200-x2), after TensorRT 8.6 (/tmp/gpu-trt),
# TensorRT-RTX (/tmp/rtx/site) and the serving wheels (/tmp/serve-parts) are staged (README, "GPU benchmark").
# One queue per GPU, so no timing ever shares a GPU; each step keeps its own deadline:
#   GPU 0: INT8 lane y (YOLOv4 preparation, TensorRT's implicit-INT8 anchor) -> HigherHRNet W32 (512, 256)
#   GPU 1: INT8 lane r (ResNet-50 FP16/INT8/implicit, YOLOv4 netdef FP16/INT8) -> OpenPose (480x640, 224x224)
#   both, once the queues are done: Triton serving (bench/serve.py, reusing the lane's ResNet-50 FP16 engine)
#
#   bash bench/gpu_session.sh start          copy this tree to $W/src and start there (setsid nohup), return
#   bash bench/gpu_session.sh poll SECONDS   wait up to SECONDS, print progress, pack every result into
#                                            $OUT/results.tgz (call again until it prints "all done")
# Knobs: POSE_DEADLINE / OPENPOSE_DEADLINE (s, per TensorRT stage), SERVE_ARGS, SKIP (words: pose openpose serve).
set -uo pipefail
W=${W:-/tmp/gs}; OUT=${OUT:-/tmp/out}
POSE_DEADLINE=${POSE_DEADLINE:-270}; OPENPOSE_DEADLINE=${OPENPOSE_DEADLINE:-360}; SKIP=${SKIP:-}
# HigherHRNet: the headline FP16 rows at 512 at the default level 3, the rest at level 1 (builds are slow);
# OpenPose at level 1 throughout (netdef and the ONNX path always share the level)
POSE_PLAN=${POSE_PLAN:-"512:fp16:netdef:raw,512:fp16:onnx:raw,512:fp16:netdef:parsed,512:int8:netdef:raw:1,\
512:int8:netdef:parsed:1,256:fp16:netdef:raw:1,256:fp16:onnx:raw:1,256:fp16:netdef:parsed:1,256:int8:netdef:raw:1,\
512:fp32:netdef:raw:1,512:fp32:onnx:raw:1,256:fp32:netdef:raw:1,256:fp32:onnx:raw:1"}
OPENPOSE_LEVEL=${OPENPOSE_LEVEL:-1}
SERVE_ARGS=${SERVE_ARGS:-"--clients 1,16,64 --instances 1,2 --duration 2 --warmup 0.5"}
export PYTHONUNBUFFERED=1
stamp() { echo "$(date +%T) $*" >> "$W/progress.log"; }
skipped() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

gpu0() {
  export CUDA_VISIBLE_DEVICES=0
  stamp "gpu0: int8 lane y"; W="$W/int8" bash bench/gpu_int8.sh lane y > "$W/int8_y.log" 2>&1
  stamp "gpu0: int8 lane y done"
  if ! skipped pose; then
    stamp "gpu0: higherhrnet"
    W="$W/pose" GPUS=1 DEADLINE=$POSE_DEADLINE PLAN=$POSE_PLAN bash bench/gpu_pose.sh > "$W/pose.log" 2>&1
    stamp "gpu0: higherhrnet done"
  fi
  touch "$W/gpu0.done"
}

gpu1() {
  export CUDA_VISIBLE_DEVICES=1
  stamp "gpu1: int8 lane r"; W="$W/int8" bash bench/gpu_int8.sh lane r > "$W/int8_r.log" 2>&1
  stamp "gpu1: int8 lane r done"
  if ! skipped openpose; then
    stamp "gpu1: openpose"
    W="$W/openpose" GPUS=1 LEVEL=$OPENPOSE_LEVEL DEADLINE=$OPENPOSE_DEADLINE bash bench/gpu_openpose.sh \
      > "$W/openpose.log" 2>&1
    stamp "gpu1: openpose done"
  fi
  touch "$W/gpu1.done"
}

serve() {
  local engine
  engine=$(ls "$W"/int8/r/resnet50-netdef-fp16-level*.engine 2>/dev/null | head -n 1)
  stamp "serve (resnet50 engine: ${engine:-built anew})"
  bash bench/serve_setup.sh > "$W/serve_setup.log" 2>&1 || { stamp "serve: setup failed"; return; }
  PYTHONPATH=. /tmp/gpu-trt/python bench/serve.py --work "$W/serve" --out "$W/serve.json" \
    ${engine:+--engine resnet50=$engine} $SERVE_ARGS > "$W/serve.log" 2>&1
  stamp "serve done"
}

run() {
  mkdir -p "$W"
  stamp "start ($(nvidia-smi -L | wc -l) GPUs)"
  gpu0 & gpu1 &
  wait
  W="$W/int8" bash bench/gpu_int8.sh summarize > "$W/int8_summary.log" 2>&1
  stamp "int8 table written"
  skipped serve || serve
  stamp "all done"; touch "$W/done"
}

pack() {  # every small result and log (engines and ONNX files stay behind) into one archive under $OUT
  mkdir -p "$OUT"
  (cd "$W" && find . -path ./src -prune -o -type f \( -name '*.json' -o -name '*.log' -o -name '*.txt' -o -name '*.md' \
     -o -name '*.gz' \) -size -8M -print | tar czf "$OUT/results.tgz" -T -) 2>/dev/null
  cp "$W/progress.log" "$OUT/" 2>/dev/null
  return 0
}

case "${1:-}" in
  start)
    rm -rf "$W" && mkdir -p "$W/src"
    tar --exclude=./.git --exclude=./.gpu -cf - . | (cd "$W/src" && tar xf -)
    (cd "$W/src" && W="$W" setsid nohup bash bench/gpu_session.sh run > "$W/session.log" 2>&1 < /dev/null &)
    echo "started in $W/src" ;;
  poll)
    limit=${2:-540}; t0=$(date +%s)
    while [ ! -f "$W/done" ] && [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do sleep 10; done
    cat "$W/progress.log" 2>/dev/null
    for f in "$W"/int8/*/bench.log "$W"/pose/trt_*.log "$W"/openpose/*/bench.log "$W"/serve.log; do
      [ -f "$f" ] && echo "--- $f" && tail -n 3 "$f" | cut -c1-300
    done
    pack
    if [ -f "$W/done" ]; then echo "all done"; cat "$W/int8/int8_table.txt" 2>/dev/null; else echo "not done yet"; fi ;;
  run) run ;;
  *) echo "usage: bash bench/gpu_session.sh start | poll SECONDS | run" >&2; exit 2 ;;
esac
