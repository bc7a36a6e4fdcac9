#!/usr/bin/env bash
# The GPU checks, as one bounded script (run from the repository root on a
# machine whose python3 has JAX for its GPU; nothing is installed):
#   OUT=/tmp/out SETS=.sets bash benchmarks/gpu_checks.sh
# SETS holds div2krk_sk (Gaussian kernels, x2 and x4 LR) and div2krk_ng
# (non-Gaussian), made by `python -m benchmarks.make_div2krk --x4 ...`.
# Every part has its own time limit and writes its results to OUT as it
# goes; device.log has what each part printed.
set -u
OUT=${OUT:-/tmp/gpu_out}
SETS=${SETS:-.sets}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
log=$OUT/device.log

part() {  # part NAME SECONDS COMMAND...: one bounded, logged step.
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "=== $name (limit ${limit}s)" >> "$log"
  timeout "$limit" "$@" >> "$log" 2>&1
  echo "=== $name: exit $? after $((SECONDS - start)) s" >> "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} >> "$log" 2>&1

part smoke 150 python3 -m kernelgan_jax.main \
  --image=tests/data/example_lr.png --output_dir=/tmp/smoke --iters=100 \
  --quiet || exit 1
grep -q "smoke: exit 0" "$log" || exit 1

# Issue 15: 100 DIV2KRK-size images through one command-line call.
part folder_scale 200 python3 -m benchmarks.folder_scale --num_images=100 \
  --work_dir=/tmp/folder_scale --results_dir="$OUT"

# Issue 14: every estimator's kernels on the four sets (scored on a CPU).
for family in sk ng; do
  for scale in x2 x4; do
    flag=$([ $scale = x4 ] && echo --x4 || echo --nox4)
    part "kernelgan+fkp_lite $family $scale" 150 python3 -m \
      benchmarks.estimators --set_dir="$SETS/div2krk_$family" $flag \
      --estimators=kernelgan,fkp_lite --seeds=0,1,2 \
      --kernels="$OUT/kernels-$family-$scale.npz"
  done
done
# Issue 15: what TF32 would change (the default precision of GPUs).
part "kernelgan tf32 sk x2" 90 python3 -m benchmarks.estimators \
  --set_dir="$SETS/div2krk_sk" --estimators=kernelgan --seeds=0,1,2 \
  --matmul_precision=default --kernels="$OUT/kernels-sk-x2.npz"
# KernelGAN-FKP as published: far costlier, last.
for family in sk ng; do
  part "fkp $family x2" 150 python3 -m benchmarks.estimators \
    --set_dir="$SETS/div2krk_$family" --estimators=fkp --seeds=0 \
    --kernels="$OUT/kernels-$family-x2.npz"
done
echo "=== done" >> "$log"
