#!/usr/bin/env bash
# One GPU check that fits in about 8 minutes on one H100 (no internet there).
#
#   Here (once):  mkdir -p .gpu && python -c "from benchmarks.gpu_data import save; save('.gpu/mnist5k.npz')"
#                 pip download ml-collections wheels into .whl (see README, "Benchmarks")
#   There:        bash benchmarks/gpu_check.sh            (writes to ${OUT:-/tmp/gpu_check})
#
# Timing uses synthetic data of the real shapes at full paper sizes (60,000
# MNIST-shaped, 50,000 CIFAR-shaped images); quality uses the real mnist5k
# arrays carried as .gpu/mnist5k.npz. SIZE=tiny runs everything at toy sizes
# (to check the script itself on a CPU). Each step has its own time limit, so
# one slow step cannot take the others down.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
NPZ=${NPZ:-.gpu/mnist5k.npz}

if [ "${SIZE:-full}" = tiny ]; then
  N_MNIST=600; N_CIFAR=256; EPOCHS=1; CIFAR_EPOCHS=1; KS=1,4; POOL=128; REPEATS=1; DTYPE=float32
  QUICK=(--config.train.epochs=1 --config.reference.epochs=1 --config.unlearn.epochs=1
         --config.mia.num_shadows=2)
  LIMIT=300
else
  N_MNIST=60000; N_CIFAR=50000; EPOCHS=20; CIFAR_EPOCHS=3; KS=1,8,32; POOL=1000; REPEATS=2; DTYPE=bfloat16
  QUICK=()
  LIMIT=150
fi

step() {  # step NAME LIMIT_S CMD...: runs CMD with a time limit, logs to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc, $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || tail -5 "$OUT/$name.log"
}

{ nvidia-smi -L 2>/dev/null; $PY -c "import jax; print(jax.__version__, jax.devices())"; } | tee "$OUT/machine.txt"

step quick $((LIMIT * 100 / 150)) $PY -m jaxunlearn.cli run --config configs/quick.py --workdir /tmp/gpu_quick \
  --config.dataset=npz:$NPZ --config.report.progress=False "${QUICK[@]}"
step speedup_mnist $((LIMIT * 70 / 150)) $PY benchmarks/speedup.py --dataset synthetic:mnist:$N_MNIST \
  --model lenet5 --epochs $EPOCHS --repeats $REPEATS --out "$OUT/speedup_mnist"
step throughput $((LIMIT * 110 / 150)) $PY benchmarks/throughput.py --models lenet5,resnet18 \
  --n_mnist $N_MNIST --n_cifar $N_CIFAR --epochs 1 --out "$OUT/throughput"
step throughput_bf16 50 $PY benchmarks/throughput.py --models resnet18 --dtype bfloat16 \
  --n_cifar $N_CIFAR --epochs 1 --no_torch --out "$OUT/throughput_bf16"
step speedup_cifar $((LIMIT * 80 / 150)) $PY benchmarks/speedup.py --dataset synthetic:cifar:$N_CIFAR \
  --model resnet18 --dtype $DTYPE --batch_size 128 --epochs $CIFAR_EPOCHS --unlearn_epochs 2 \
  --repeats 1 --out "$OUT/speedup_cifar"
step shadows 50 $PY benchmarks/shadows.py --dataset npz:$NPZ --ks $KS --epochs 2 --pool-size $POOL
if [ -f benchmarks/scaling.py ]; then
  step scaling 30 $PY benchmarks/scaling.py --platform auto --out "$OUT/scaling.md"
fi

echo; echo "================ summary ================"
cat "$OUT/machine.txt"
echo "-- quick (mnist5k, LeNet-5):"; grep -E "acc_test|speedup" "$OUT/quick.log" | tail -2
for f in speedup_mnist/speedup.md speedup_cifar/speedup.md throughput/throughput.md \
         throughput_bf16/throughput.md; do
  [ -f "$OUT/$f" ] && { echo "-- $f"; cat "$OUT/$f"; }
done
echo "-- shadows:"; grep -E "^\|" "$OUT/shadows.log" 2>/dev/null
[ -f "$OUT/scaling.md" ] && { echo "-- scaling"; grep -E "^\|" "$OUT/scaling.md"; }
exit 0
