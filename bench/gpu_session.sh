#!/usr/bin/env bash
# The whole GPU proof in ONE 30-minute device session on two GPUs (nvidia-h200-x2), unattended, after TensorRT 8.6
# (/tmp/gpu-trt), TensorRT-RTX (/tmp/rtx/site) and the serving wheels (/tmp/serve-parts) are staged (below). One
# worker per GPU takes the next item of ONE list ordered by value (ITEMS), so both GPUs stay busy and no timing ever
# shares a GPU; an item waits for the item it needs (yolo_prepare, pose_files). The session ends SESSION_S seconds
# after the start (default 1440: 25 usable minutes less one for the last poll). No build starts with less than the
# item's longest build (NEED) left, no item starts without its preparation on top; at the end whatever still runs is
# stopped (its finished rows are kept: every result file is rewritten, atomically, after each row). Then the
# tables, then serving if its 300 s are left. Seconds on the H200 (2026-11-30 runs; "~": estimated):
#   (a) yolo_prepare 50 | yolo_implicit >1500 at level 3 (TensorRT's implicit INT8: its level-3 build was stopped
#       unfinished after 1496 s on 2026-11-30, so it fits no session; 800 s at level 1, 3 min of it calibration; a
#       saved engine or calibration cache from the same files is reused; NEED 1800 keeps it from starting)
#       | yolo_netdef 750
#       (netdef FP16 680 + INT8 60, level 3; Y_NETDEF=int8: INT8 alone) | yolo_variants ~150 (netdef INT8 with the
#       head convs in INT8: docs/int8.md 4)
#       | yolo_r3b (netdef INT8 with the shortcuts quantized after the activation, R3b: the placement before R3c)
#       | yolo_<kind>_<level> (one netdef engine at one builder level; kind fp16, int8, int8head, int8stem: FP16 at
#       level 5 731 s, INT8 at level 5 454-513 s, INT8 at level 3 26-504 s (504 s beside a level-5 build on the
#       other GPU; over 145 s on the one-GPU kind's 16 cores), seventh session)
#       | int8_kernels 322 for YOLOv4's six cases (eighth session; one conv + activation at YOLOv4's and OpenPose's
#       shapes as FP16, netdef INT8, raw output quantized and TensorRT's implicit INT8: which kernels each gets;
#       bench/int8_kernels.py)
#       | r50 440 (ResNet-50 netdef FP16, netdef INT8, implicit INT8, level 3; measured 2026-11-30, so last but one)
#   (b) pose_files 20-45 | pose_torch 70-125 (eager, torch.compile) | pose512_fp16 255 per raw + parsed pair at level 1
#       (+150 with the ONNX path) | pose256_fp16 365 (raw, parsed, ONNX path) | pose512_more 530 (FP32 raw, FP32 ONNX
#       path, INT8 raw at level 3: its build 372 s) | pose256_more ~400
#       | pose_parse 65 (the HigherHRNet parse alone at 512 and 256, each of PARSE_FORMS: bench/gpu_parse.py)
#   (c) openpose_224x224 ~170 | openpose_480x640 330 (each: prepare, parse check, 7 engines at level 1, image to
#       people; 3 engines at level 3: 245-260)
#   (d) serve 300-410 (bench/serve.py on both GPUs, the models of SERVE_MODELS), after every other item; the workers
#       end their items its NEED and a minute early, so it is not crowded out
# With these numbers one session holds (a) without r50 and part of (b); (c), r50 and (d) run only where builds beat
# the estimates or SKIP frees time (e.g. SKIP="yolo_implicit yolo_variants" for a pose and serving session; the
# implicit YOLOv4 engine is reused from a seed). `dry-run` prints the plan's outcome.
# YOLOv4 runs at level 3 (Y_LEVEL; level 1's tactic search made netdef INT8 1.5x slower than the same definition at
# level 3: docs/int8.md 4). Issue 14 at level 3: ITEMS="yolo_prepare yolo_netdef yolo_variants pose_files
# pose512_fp16 pose512_more" (netdef INT8 builds took 37-320 s at level 3, FP16 11 min; TensorRT 8.6 refused every
# seeded timing cache, "Myelin error from unknown graph", so a seed shortens nothing).
#
#   bash bench/gpu_session.sh start          copy this tree to $W/src and start there (setsid nohup), return
#   bash bench/gpu_session.sh poll SECONDS   wait up to SECONDS (or the end), print one status line per item (done,
#                                            running, waiting, skipped, failed, stopped, with the reason and its
#                                            result files' rows), pack results and logs into $OUT/results.tgz and
#                                            the caches a later session can reuse into $OUT/seed.tgz; call again
#                                            until it prints "all done" (the tables follow)
#   bash bench/gpu_session.sh dry-run        the same on this machine: fake interpreters (bench/gpu_session_fake.py),
#                                            every duration divided by TIME_DIV_DRY (default 60: 25 s)
# On the device (the lead; each line one `run` on nvidia-h200-x2 from the project root, carry as named; one part
# per call, as a call carries 64 MiB):
#   carry .gpu/parts/trt-part-XX (XX = aa..ak):  mkdir -p /tmp/gpu-trt && cp .gpu/parts/trt-part-XX /tmp/gpu-trt/
#   carry .gpu/rtx/rtx-libs-part-XX (aa, ab):    mkdir -p /tmp/rtx && cp .gpu/rtx/rtx-libs-part-XX /tmp/rtx/
#   carry .gpu/serve/serve-part-XX (aa, ab):     mkdir -p /tmp/serve-parts && cp .gpu/serve/serve-part-XX /tmp/serve-parts/
#   carry .gpu/small, .gpu/rtx/small:  bash .gpu/small/setup.sh && bash .gpu/rtx/small/setup.sh && bash bench/gpu_session.sh start
#   no carry:                          bash bench/gpu_session.sh poll 570     (again until "all done")
# Each poll's $OUT/results.tgz and $OUT/seed.tgz come back; a later session unpacks seed.tgz into .gpu/seed and
# carries it in its own call (cp -r .gpu/seed /tmp/gs-seed), then starts with SEED=/tmp/gs-seed.
# Knobs: ITEMS (names in order of value; also yolo_onnx: the ONNX-path FP16 cross-check of YOLOv4), SKIP (names),
# POSE_FP16 / POSE_MORE (the pose items' plans; POSE_FP16_512, POSE_MORE_256, ... for one size), PARSE_FORMS,
# OPENPOSE_LEVEL (builder level of the OpenPose items, default 3: INT8 0.65 / 0.62x FP16 at 480x640 where level 1 gave
# 0.72 / 0.63, FP16 the same), OPENPOSE_PLAN (their PRECISION:PATH:OUTPUTS),
# SESSION_S, NEED ("item=seconds ..."), SERVE_ARGS, SERVE_MODELS (MODEL:INPUT_DTYPE ...), GPUS, RESUME=1 (keep $W's
# engines and caches), SEED (a folder copied into $W first; default .gpu/seed), TORCH_PY / TRT_PY (the interpreters).
set -uo pipefail
export W=${W:-/tmp/gs} OUT=${OUT:-/tmp/out} SKIP=${SKIP:-} SEED=${SEED:-.gpu/seed} SESSION_S=${SESSION_S:-1440}
export ITEMS=${ITEMS:-"yolo_prepare pose_files yolo_implicit yolo_netdef yolo_variants pose_torch pose512_fp16 \
pose256_fp16 pose512_more pose256_more openpose_224x224 openpose_480x640 r50 serve"}
export NEED=${NEED:-} TIME_DIV=${TIME_DIV:-1} POLL_STEP=${POLL_STEP:-10}
export TORCH_PY=${TORCH_PY:-python3} TRT_PY=${TRT_PY:-/tmp/gpu-trt/python} SERVE_SETUP=${SERVE_SETUP:-"bash bench/serve_setup.sh"}
serve_args="--clients 1,16,64 --instances 1,2,4 --gpu-instances 4,8 --duration 2 --warmup 0.5 --phases"
export SERVE_ARGS=${SERVE_ARGS:-$serve_args}
# MODEL:INPUT_DTYPE[:mps] in order (":mps": under a private CUDA MPS daemon, so the instances' processes share the
# GPU at once); uint8 first: 4x fewer bytes, the best row (H200)
export SERVE_MODELS=${SERVE_MODELS:-"resnet50:uint8 resnet50:uint8:mps yolov4:float32 resnet50:float32"}
export POSE_FP16=${POSE_FP16:-"fp16:netdef:raw,fp16:onnx:raw,fp16:netdef:parsed"}
# HigherHRNet INT8 at level 3: at level 1 its 32-channel blocks' conv1 ran 6x slower (sixth session, docs/int8.md 4)
export POSE_MORE=${POSE_MORE:-"int8:netdef:raw:3,fp32:netdef:raw,fp32:onnx:raw,int8:netdef:parsed:3"}
export PARSE_SIZES=${PARSE_SIZES:-512,256} PARSE_FORMS=${PARSE_FORMS:-default}
export OPENPOSE_SIZES="224x224 480x640" OPENPOSE_LEVEL=${OPENPOSE_LEVEL:-3} OPENPOSE_PLAN=${OPENPOSE_PLAN:-}
export PYTHONUNBUFFERED=1
stamp() { echo "$(date +%T) +$(( $(date +%s) - ${T0:-$(date +%s)} )) s $*" >> "$W/progress.log"; }
skipped() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }
queued() { case " $ITEMS " in *" $1 "*) return 0 ;; esac; return 1; }

# --- the items: run in $W/src by `item NAME`, CUDA_VISIBLE_DEVICES and DEADLINE_AT (no build after) set ----------
item() {
  case "$1" in
    yolo_prepare) W="$W/int8" bash bench/gpu_int8.sh step prepare_y ;;
    yolo_implicit) W="$W/int8" bash bench/gpu_int8.sh step implicit ;;
    yolo_netdef) W="$W/int8" bash bench/gpu_int8.sh step netdef_y ;;
    yolo_onnx) W="$W/int8" bash bench/gpu_int8.sh step onnx_y ;;
    yolo_variants) W="$W/int8" bash bench/gpu_int8.sh step variants_y ;;
    yolo_r3b) W="$W/int8" bash bench/gpu_int8.sh step r3b_y ;;
    yolo_*_[0-5])  # one engine at one builder level, yolo_<kind>_<level> (row_y checks the kind)
      local kind=${1#yolo_}; W="$W/int8" Y_KIND=${kind%_*} Y_LEVEL=${kind##*_} bash bench/gpu_int8.sh step row_y ;;
    r50) W="$W/int8" bash bench/gpu_int8.sh step r50 ;;
    int8_kernels)  # one conv + activation per case, four ways (bench/int8_kernels.py); K_CASES, K_LEVEL
      mkdir -p "$W/int8/k"
      PYTHONPATH=. $TRT_PY bench/int8_kernels.py --work "$W/int8/k" --out "$W/int8/kernels.json" \
        --level "${K_LEVEL:-3}" ${K_CASES:+--cases "$K_CASES"} --deadline-at "$DEADLINE_AT" \
        > "$W/int8/kernels.log" 2>&1 ;;
    pose_files) W="$W/pose" GPUS=1 bash bench/gpu_pose.sh files ;;
    pose_torch) W="$W/pose" GPUS=1 bash bench/gpu_pose.sh torch ;;
    pose_parse)  # the HigherHRNet parse alone, each of PARSE_FORMS
      PYTHONPATH=. $TRT_PY bench/gpu_parse.py --work "$W/pose" --sizes "$PARSE_SIZES" --forms "$PARSE_FORMS" \
        --out "$W/pose/parse.json" > "$W/pose/parse.log" 2>&1 ;;
    pose512_fp16|pose256_fp16|pose512_more|pose256_more)  # POSE_FP16_512 etc. replace POSE_FP16 for one size
      local size=${1:4:3} kind=${1:8} list
      list=POSE_${kind^^}_$size; [ -n "${!list:-}" ] || list=POSE_${kind^^}
      W="$W/pose" GPUS=1 POSE_ITEMS=${!list} bash bench/gpu_pose.sh trt "$size" "$kind" ;;
    openpose_224x224|openpose_480x640)  # PREP_S=0: NEED is the guard
      W="$W/openpose" GPUS=1 PREP_S=0 SIZES=${1#openpose_} LEVEL=$OPENPOSE_LEVEL PLAN=$OPENPOSE_PLAN \
        bash bench/gpu_openpose.sh ;;
    serve)  # both GPUs; the ResNet-50 FP16 engine of r50 where it exists
      local engine
      engine=$(ls "$W"/int8/r/resnet50-netdef-fp16-level*.engine 2>/dev/null | head -n 1)
      unset CUDA_VISIBLE_DEVICES
      $SERVE_SETUP > "$W/logs/serve_setup.log" 2>&1 || { echo "serving setup failed: see serve_setup.log"; return 4; }
      local rc=0 one left
      local model dtype
      for one in $SERVE_MODELS; do  # MODEL:INPUT_DTYPE[:mps]
        left=$(( END - $(date +%s) - 30 / TIME_DIV ))  # serve.py starts no model or row after this
        [ "$left" -gt $(( 60 / TIME_DIV )) ] || { echo "serving $one: not started, ${left} s left"; continue; }
        model=${one%%:*} dtype=${one#*:}; dtype=${dtype%%:*}
        PYTHONPATH=. $TRT_PY bench/serve.py --work "$W/serve" --out "$W/serve-${one//:/-}.json" --deadline "$left" \
          --models "$model" --input-dtype "$dtype" $(case "$one" in *:mps) echo --mps ;; esac) \
          $([ "$model:$dtype" = resnet50:float32 ] && [ -n "$engine" ] && echo --engine "resnet50=$engine") \
          $SERVE_ARGS || rc=$?
      done
      return $rc ;;
    *) echo "no item $1"; return 127 ;;
  esac
}

results_of() {  # the result files an item writes, relative to $W
  case "$1" in
    yolo_implicit) echo int8/y/trt_yolo_implicit.json ;; yolo_netdef) echo int8/y/trt_yolo_netdef.json ;;
    yolo_onnx) echo int8/y/trt_yolo_onnx.json ;; r50) echo int8/r/trt_r50.json ;;
    int8_kernels) echo int8/kernels.json ;;
    yolo_variants) echo int8/y/trt_yolo_variant_head_q.json ;;
    yolo_r3b) echo int8/y/trt_yolo_variant_r3b.json ;;
    yolo_*_[0-5])
      local kind=${1#yolo_}; echo "int8/y/trt_yolo_${kind%_*}_level${kind##*_}.json" ;;
    pose_files) echo pose/files.json ;; pose_torch) echo pose/torch_pose.json ;; pose_parse) echo pose/parse.json ;;
    pose*_fp16|pose*_more) echo "pose/trt_${1:4}.json" ;;
    openpose_*) echo "openpose/${1#openpose_}/gpu.json" ;;
    serve) local one; for one in $SERVE_MODELS; do echo "serve-${one//:/-}.json"; done ;;
  esac
}

logs_of() {  # the logs an item's scripts write, relative to $W (besides logs/ITEM.log, the item's own output)
  case "$1" in
    yolo_prepare) echo int8/y/prepare.log ;; yolo_implicit) echo int8/y/bench_implicit.log ;;
    yolo_netdef) echo int8/y/bench_netdef.log ;; yolo_onnx) echo int8/y/bench_onnx.log ;;
    yolo_variants) echo int8/y/bench_variants.log ;; yolo_r3b) echo int8/y/bench_r3b.log ;;
    yolo_*_[0-5])
      local kind=${1#yolo_}; echo "int8/y/bench_${kind%_*}_level${kind##*_}.log" ;;
    int8_kernels) echo int8/kernels.log ;;
    r50) echo int8/r/prepare.log int8/r/bench.log ;; pose_files) echo pose/files.log ;; pose_torch) echo pose/torch.log ;;
    pose_parse) echo pose/parse.log ;;
    pose*_fp16|pose*_more) echo "pose/trt_${1:4}.log" ;;
    openpose_*) echo "openpose/${1#openpose_}/prepare.log" "openpose/${1#openpose_}/bench.log" ;;
  esac
}

needs() {  # the item whose success this one waits for
  case "$1" in
    yolo_implicit|yolo_netdef|yolo_onnx|yolo_variants|yolo_r3b) echo yolo_prepare ;;
    yolo_*_[0-5]) echo yolo_prepare ;;
    pose_torch|pose*_fp16|pose*_more|pose_parse) echo pose_files ;;
  esac
}

need_s() {  # seconds an item's longest build takes (no build starts later); NEED="item=seconds ..." overrides
  local s="" kv
  for kv in $NEED; do [ "${kv%%=*}" = "$1" ] && s=${kv#*=}; done
  [ -z "$s" ] && case "$1" in
    yolo_prepare|pose_files|openpose_224x224) s=60 ;; yolo_implicit) s=1800 ;; yolo_netdef) s=700 ;;
    yolo_onnx) s=700 ;; yolo_variants|yolo_r3b) s=150 ;; pose_parse) s=60 ;;
    yolo_fp16_[0-3]) s=700 ;; yolo_fp16_?) s=750 ;; yolo_int8*_[0-3]) s=300 ;; yolo_int8*_?) s=520 ;;
    int8_kernels) s=120 ;;
    r50) s=240 ;; pose_torch) s=130 ;; pose512_*) s=180 ;; pose256_*) s=130 ;; openpose_480x640) s=110 ;;
    serve) s=300 ;; *) s=60 ;;
  esac
  s=$(( s / TIME_DIV )); echo $(( s > 0 ? s : 1 ))
}

prep_s() {  # seconds an item prepares before its first build (added to NEED for its start)
  local s=0
  case "$1" in openpose_224x224) s=30 ;; openpose_480x640) s=70 ;; r50) s=40 ;; esac
  echo $(( s / TIME_DIV ))
}

# --- status: one JSON file per item, $W/status/NN-item.json (bench/session_status.py prints them) ---------------
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\037')"; }

put_status() {  # ITEM STATE WHERE [WHY] [EXTRA JSON FIELDS]
  local pos=0 n f files="" logs="\"logs/$1.log\"," file
  for n in $ITEMS; do pos=$((pos + 1)); [ "$n" = "$1" ] && break; done
  for f in $(results_of "$1"); do files+="\"$f\","; done
  for f in $(logs_of "$1"); do logs+="\"$f\","; done
  file=$(printf '%s/status/%02d-%s.json' "$W" "$pos" "$1")
  printf '{"item": "%s", "position": %s, "state": "%s", "where": "%s", "why": %s, "results": [%s], "logs": [%s]%s}\n' \
    "$1" "$pos" "$2" "$3" "$(json_str "${4:-}")" "${files%,}" "${logs%,}" "${5:+, $5}" > "$file.tmp" \
    && mv "$file.tmp" "$file"
}

finish() {  # ITEM STATE WHERE WHY [EXTRA]: the final status; what waits on it learns whether it succeeded
  put_status "$@"
  if [ "$2" = done ]; then touch "$W/markers/$1.ok"; else echo "$2" > "$W/markers/$1.failed"; fi
  stamp "$3: $1 $2${4:+ ($4)}"
}

last_line() {  # ITEM: "; " + the last line of the newest of its logs that has one (a failure or the last step)
  local f line
  for f in $(cd "$W" && ls -t "logs/$1.log" $(logs_of "$1") 2>/dev/null); do
    line=$(grep -v '^\s*$' "$W/$f" | tail -n 1 | cut -c1-200)
    [ -n "$line" ] && { echo "; $line"; return; }
  done
}

run_item() {  # WHERE ITEM
  local where=$1 name=$2 need dep left t0 rc secs f any="" end=$WORK_END
  [ "$name" = serve ] && end=$END
  need=$(need_s "$name")
  if skipped "$name"; then finish "$name" skipped "$where" "SKIP"; return; fi
  for dep in $(needs "$name"); do
    queued "$dep" || continue  # not queued: prepared by an earlier session (RESUME, SEED)
    put_status "$name" waiting "$where" "for $dep"
    while [ ! -f "$W/markers/$dep.ok" ]; do
      if [ -f "$W/markers/$dep.failed" ]; then
        finish "$name" skipped "$where" "needs $dep, which $(sed 's/^stopped$/was stopped/; s/^skipped$/was skipped/' \
          "$W/markers/$dep.failed")"
        return
      fi
      if [ $(( end - $(date +%s) )) -le "$need" ]; then
        finish "$name" skipped "$where" "deadline while waiting for $dep"; return
      fi
      sleep 1
    done
  done
  left=$(( end - $(date +%s) ))
  if [ "$left" -le $(( need + $(prep_s "$name") )) ]; then
    finish "$name" skipped "$where" "deadline: needs ~$(( need + $(prep_s "$name") )) s, $left s left"; return
  fi
  t0=$(date +%s)
  put_status "$name" running "$where" "" "\"since\": $t0, \"builds_until\": $(( end - need )), \"end\": $end"
  stamp "$where: $name (needs ~$need s, $left s left)"
  DEADLINE_AT=$(( end - need )) timeout -k 10 "$left" bash bench/gpu_session.sh item "$name" \
    > "$W/logs/$name.log" 2>&1 < /dev/null
  rc=$?; secs=$(( $(date +%s) - t0 ))
  for f in $(results_of "$name"); do [ -f "$W/$f" ] && any=1; done
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    finish "$name" stopped "$where" "the session's end$(last_line "$name")" "\"seconds\": $secs"
  elif [ $rc -ne 0 ]; then
    finish "$name" failed "$where" "exit $rc$(last_line "$name")" "\"seconds\": $secs"
  elif [ -n "$(results_of "$name")" ] && [ -z "$any" ]; then
    finish "$name" failed "$where" "wrote none of its results$(last_line "$name")" "\"seconds\": $secs"
  else
    finish "$name" done "$where" "" "\"seconds\": $secs"
  fi
}

worker() {  # GPU: take the first unclaimed item (serving waits for all workers) until none is left
  local name
  export CUDA_VISIBLE_DEVICES=$1
  while :; do
    name=""
    for n in $ITEMS; do
      [ "$n" = serve ] && continue
      mkdir "$W/claims/$n" 2>/dev/null && { name=$n; break; }
    done
    [ -z "$name" ] && return
    run_item "gpu$1" "$name"
  done
}

tables() {
  W="$W/int8" bash bench/gpu_int8.sh summarize > "$W/logs/int8_summary.log" 2>&1
  W="$W/pose" GPUS=1 bash bench/gpu_pose.sh table > "$W/logs/pose_table.log" 2>&1
  W="$W/openpose" GPUS=1 SIZES="$OPENPOSE_SIZES" bash bench/gpu_openpose.sh table > "$W/logs/openpose_table.log" 2>&1
  stamp "tables written"
}

run() {
  mkdir -p "$W/status" "$W/markers" "$W/logs" "$W/claims" "$W/int8" "$W/pose" "$W/openpose"
  export T0 END GPUS WORK_END
  T0=$(date +%s); END=$(( T0 + SESSION_S )); echo "$T0 $END" > "$W/clock"
  # serving runs after the workers: their items end its NEED earlier, so it is not crowded out (unless serving
  # would take over half the session: then it has no reserve and runs only if time is left); a minute on top for
  # the tables written before it and its own guard
  local reserve; reserve=$(( $(need_s serve) + (60 / TIME_DIV > 2 ? 60 / TIME_DIV : 2) ))
  WORK_END=$END
  queued serve && ! skipped serve && [ $(( 2 * reserve )) -lt $(( END - T0 )) ] && WORK_END=$(( END - reserve ))
  GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}; [ "$GPUS" -ge 1 ] 2>/dev/null || GPUS=1
  for n in $ITEMS; do put_status "$n" waiting "-"; done
  stamp "start: $GPUS GPUs, items in order: $ITEMS; the end at +$SESSION_S s"
  local g
  for g in $(seq 0 $((GPUS - 1))); do worker "$g" & done
  wait
  tables
  queued serve && run_item "gpus" serve
  stamp "all done"; touch "$W/done"
}

pack() {  # every small result and log into $OUT/results.tgz; what a later session can reuse into $OUT/seed.tgz
  mkdir -p "$OUT"
  local limit=15000000  # a file over 16 MiB would not come back at all
  pack_results -o -name '*.gz'
  [ "$(stat -c %s "$OUT/results.tgz" 2>/dev/null || echo 0)" -le $limit ] || pack_results  # without the layer lists
  # TensorRT's calibration caches (KB) and the per-engine timing caches: unpack into .gpu/seed, carry it next time
  (cd "$W" && find . -path ./src -prune -o -type f \( -name '*_trt_entropy.cache' -o -path '*/timing/*.cache' \) \
     -size -8M -print | tar czf "$OUT/seed.tgz" -T - 2>/dev/null)
  if [ "$(stat -c %s "$OUT/seed.tgz" 2>/dev/null || echo 0)" -gt $limit ]; then  # too big: calibration only
    (cd "$W" && find . -path ./src -prune -o -type f -name '*_trt_entropy.cache' -print | tar czf "$OUT/seed.tgz" -T -)
  fi
  return 0
}

pack_results() {  # [MORE FIND NAME TESTS]
  (cd "$W" && find . \( -path ./src -o -path ./claims \) -prune -o -type f -size -8M \( -name '*.json' -o -name '*.log' \
     -o -name '*.txt' -o -name '*.md' -o -name 'clock' "$@" \) -print | tar czf "$OUT/results.tgz" -T - 2>/dev/null)
}

poll() {  # SECONDS
  local limit=${1:-570} t0
  t0=$(date +%s)
  [ -d "$W/status" ] || { echo "nothing started in $W"; return 1; }
  while [ ! -f "$W/done" ] && [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do sleep "$POLL_STEP"; done
  tail -n 12 "$W/progress.log" 2>/dev/null
  pack
  if [ -f "$W/done" ]; then
    echo "all done"
    for f in "$W/int8/int8_table.txt" "$W/pose/table.md" "$W/openpose/table.txt"; do
      [ -f "$f" ] && { echo "--- ${f#$W/}"; cat "$f"; }
    done
  else
    echo "not done yet: poll again"
  fi
  local clock end
  read -r clock end < "$W/clock" 2>/dev/null  # the session's own clock: a poll need not repeat its SESSION_S
  clock=${clock:-$(date +%s)}
  echo "--- items at +$(( $(date +%s) - clock )) s of $(( ${end:-$(( clock + SESSION_S ))} - clock )) s" \
    "(results: $OUT/results.tgz)"
  python3 "$W/src/bench/session_status.py" "$W"
}

start() {
  if [ -n "${RESUME:-}" ] && [ -d "$W" ]; then  # keep engines and caches; every item runs again
    rm -rf "$W/src" "$W/status" "$W/markers" "$W/claims" "$W/done" "$W/progress.log"
  else
    rm -rf "$W"
  fi
  mkdir -p "$W/src" "$W/status"
  [ -n "$SEED" ] && [ -d "$SEED" ] && cp -r "$SEED/." "$W/" && echo "seeded $W from $SEED"
  tar --exclude=./.git --exclude=./.gpu -cf - . | (cd "$W/src" && tar xf -)
  (cd "$W/src" && setsid nohup bash bench/gpu_session.sh run > "$W/session.log" 2>&1 < /dev/null &)
  echo "started in $W/src: $ITEMS; the end at +$SESSION_S s"
}

case "${1:-}" in
  start) start ;;
  poll) poll "${2:-570}" ;;
  run) run ;;
  item) item "${2:?item name}" ;;
  dry-run)  # this tree on this machine: fake interpreters, every duration and guard divided by TIME_DIV
    export TIME_DIV=${TIME_DIV_DRY:-60} GPUS=${GPUS:-2} POLL_STEP=1 SERVE_SETUP=true W=${DRY_W:-/tmp/gs-dry} \
      OUT=${DRY_OUT:-/tmp/gs-dry-out} SEED=${DRY_SEED:-} TORCH_PY="python3 bench/gpu_session_fake.py" TRT_PY="python3 bench/gpu_session_fake.py"
    export SESSION_S=$(( SESSION_S / TIME_DIV )) FAKE_TIME_DIV=$TIME_DIV
    start && poll $(( SESSION_S + 60 )) ;;
  *) echo "usage: bash bench/gpu_session.sh start | poll SECONDS | dry-run | run | item NAME" >&2; exit 2 ;;
esac
