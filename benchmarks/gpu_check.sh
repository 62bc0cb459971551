#!/usr/bin/env bash
# One accelerator check in about 8 minutes (benchmarks/gpu_check.py), on a machine without
# internet: it installs the wheels carried in .whl/ and reads mnist5k from .gpu/mnist5k.npz.
#
#   Here, once (with internet and the project installed):
#     bash benchmarks/gpu_check.sh --prepare      # .gpu/mnist5k.npz and the wheels in .whl/
#   There:
#     bash benchmarks/gpu_check.sh                # writes gpu_check.{json,md} to ${OUT:-/tmp/gpu_check}
#   Anywhere (toy sizes, checks the script itself):
#     bash benchmarks/gpu_check.sh --smoke
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
PY=${PY:-python3}
if [ "${1:-}" = --prepare ]; then
  # What the GPU machine lacks (it has CUDA JAX, flax, optax, orbax, chex, scikit-learn,
  # matplotlib): ml-collections (+ PyYAML) and tqdm; mnist5k travels as arrays.
  mkdir -p .whl .gpu
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl ml-collections PyYAML tqdm absl-py
  $PY benchmarks/gpu_check.py --prepare --out "$OUT"
  exit 0
fi
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec $PY benchmarks/gpu_check.py --out "$OUT" "$@"
