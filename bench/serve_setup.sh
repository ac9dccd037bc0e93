#!/usr/bin/env bash
# On the GPU machine: adds the serving stack packed by bench/serve_prepare.sh to the Python 3.10 bundle
# (/tmp/gpu-trt, from .gpu/small/setup.sh), then checks that PyTriton serves there (bench/serve.py --check-env:
# a numpy model through netdef.serve and a plain callable, answered over HTTP and gRPC; no GPU work). Idempotent.
set -euo pipefail
S=${GPU_TRT_DIR:-/tmp/gpu-trt}; P=${SERVE_PARTS_DIR:-/tmp/serve-parts}
[ -f $S/ready ] || { echo "run 'bash .gpu/small/setup.sh' first (the TensorRT 8.6 bundle)" >&2; exit 1; }
if [ ! -f $S/serve-ready ]; then
  ls $P/serve-part-* >/dev/null 2>&1 || { echo "no parts in $P: bring .gpu/serve/serve-part-* there first" >&2; exit 1; }
  rm -rf $P/wheels && cat $P/serve-part-* | tar x -C $P
  for w in $P/wheels/*.whl; do python3 -m zipfile -e "$w" $S/site; done
  touch $S/serve-ready
fi
cd "$(dirname "$0")/.." && PYTHONPATH=. $S/python bench/serve.py --check-env --log-file /tmp/serve-check-triton.log
