#!/usr/bin/env bash
# Packs TensorRT-RTX (network API + ONNX parser) and h5py as cp312 wheels into .gpu/rtx/, so the GPU machine's
# own python3 (torch + CUDA, no TensorRT) can build netdef definitions for the executor and for INT8
# calibration on CUDA. Run from the project root after ../shared/gpu-trt/prepare.sh. On the GPU machine:
#   bring .gpu/rtx/rtx-libs-part-aa and -ab: mkdir -p /tmp/rtx && cp .gpu/rtx/rtx-libs-part-XX /tmp/rtx/
#   bring .gpu/rtx/small: bash .gpu/rtx/small/setup.sh; then PYTHONPATH=/tmp/rtx/site:. python3 ...
set -euo pipefail
root=$(git rev-parse --show-toplevel)
R=$root/.gpu/rtx
tmp=$(mktemp -d)
mkdir -p "$R/small"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$tmp" \
  tensorrt_rtx_cu13_bindings==1.7.1.116 tensorrt_rtx_cu13_libs==1.7.1.116 h5py tqdm
rm -f "$R"/rtx-libs-part-* "$R"/small/*.whl
split -b 48000000 "$tmp"/tensorrt_rtx_cu13_libs-*.whl "$R/rtx-libs-part-"
cp "$tmp"/tensorrt_rtx_cu13_bindings-*.whl "$tmp"/h5py-*.whl "$tmp"/tqdm-*.whl "$R/small/"
# the tensorrt_rtx package itself is pure Python (it re-exports the bindings): take the installed one
pkg=$(python3 -c "import os, tensorrt_rtx; print(os.path.dirname(tensorrt_rtx.__file__))")
rm -rf "$R/small/tensorrt_rtx_pkg" && cp -r "$pkg" "$R/small/tensorrt_rtx_pkg"
find "$R/small/tensorrt_rtx_pkg" -name __pycache__ -prune -exec rm -rf {} +
cat > "$R/small/setup.sh" <<'EOS'
#!/usr/bin/env bash
set -euo pipefail
S=/tmp/rtx; here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f $S/ready ]; then
  mkdir -p $S/site
  cat $S/rtx-libs-part-* > $S/libs.whl
  python3 -m zipfile -e $S/libs.whl $S/site
  for w in "$here"/*.whl; do python3 -m zipfile -e "$w" $S/site; done
  cp -r "$here/tensorrt_rtx_pkg" $S/site/tensorrt_rtx
  touch $S/ready
fi
PYTHONPATH=$S/site python3 -c "import tensorrt_rtx, h5py, torch; print('RTX', tensorrt_rtx.__version__, 'h5py', h5py.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"
EOS
rm -rf "$tmp"
ls -la "$R" "$R/small"
