#!/usr/bin/env bash
# Packs the serving stack for the GPU machine's Python 3.10 bundle (../shared/gpu-trt/): nvidia-pytriton (Triton
# Inference Server + its Python backend stubs) and tritonclient with every runtime dependency, as cp310 wheels,
# tarred and split into .gpu/serve/serve-part-* of 45 MB (the wheels are ~105 MB, too much for one transfer, and
# pytriton alone is 55 MB, so they cannot simply ride in GPU_TRT_EXTRA's .gpu/small). numpy 1.26.4 (pytriton
# wants numpy < 2), h5py, tqdm and cuda-bindings come with the bundle itself.
# Run from the project root (no GPU needed). On the GPU machine, after `bash .gpu/small/setup.sh`:
#   bring each .gpu/serve/serve-part-XX: mkdir -p /tmp/serve-parts && cp .gpu/serve/serve-part-XX /tmp/serve-parts/
#   then: bash bench/serve_setup.sh     (unpacks into /tmp/gpu-trt/site, then runs bench/serve.py --check-env)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
D=$root/.gpu/serve
# The closure of nvidia-pytriton 0.7.0 and tritonclient[grpc,http] resolved by pip under CPython 3.10 (markers
# such as aiohttp's async-timeout for Python < 3.11 included), pinned. pytriton's wheel is manylinux_2_35.
WHEELS="nvidia-pytriton==0.7.0 tritonclient==2.73.0 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 async-timeout==5.0.1
aiosignal==1.4.0 annotated-doc==0.0.6 annotated-types==0.8.0 attrs==26.1.0 brotli==1.2.1 certifi==2026.10.19.post1
frozenlist==1.8.0 gevent==26.9.0 geventhttpclient==2.4.0 greenlet==3.3.2 grpcio==1.85.3 idna==3.20
importlib-metadata==9.0.1 markdown-it-py==4.3.0 mdurl==0.1.2 ml-dtypes==0.5.4 multidict==7.1.0 mypy-extensions==1.2.0
packaging==26.4 propcache==0.5.4 protobuf==6.33.6 pydantic==2.14.4 pydantic-core==2.50.5 pygments==2.21.0
python-rapidjson==1.25 pyzmq==27.3.0 rich==15.0.0 sh==2.4.0 shellingham==1.5.4 typer==0.29.1 typing-extensions==4.16.0
typing-inspect==0.9.0 typing-inspection==0.4.5 urllib3==2.8.0 wrapt==2.5.2 yarl==1.25.1 zipp==4.1.2 zope-event==6.2
zope-interface==8.6"
if [ "${1:-}" = "--list" ]; then echo $WHEELS; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
exclude=$(git rev-parse --path-format=absolute --git-path info/exclude)
mkdir -p "$tmp/wheels" "$D" "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_35_x86_64 -d "$tmp/wheels" $WHEELS
rm -f "$D"/serve-part-*
tar -C "$tmp" -cf - wheels | split -b 45000000 - "$D/serve-part-"
echo "$(ls "$tmp/wheels" | wc -l) wheels, $(du -sh "$tmp/wheels" | cut -f1), in:"
ls -la "$D"
