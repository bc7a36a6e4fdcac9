#!/usr/bin/env bash
# The GPU checks, as one bounded script (run from the repository root on a
# machine whose python3 has JAX for its GPU; nothing is installed):
#   OUT=/tmp/out SETS=.sets PARTS="smoke folder zssr" bash benchmarks/gpu_checks.sh
# PARTS picks the parts, in this order (default: smoke folder zssr, at most
# 9.5 minutes by their limits; the estimator runs were measured on an H200
# on 2026-11-30):
#   smoke       one small image through the command line (the others need it)
#   folder      issue 15: 100 DIV2KRK-size images through one call (cold,
#               warm, and warm with 50 iterations: where the time goes)
#   zssr        issue 14: ZSSR with the original settings (`paper`) on the
#               8 x2 photos with KernelGAN's and select's kernels (estimated
#               on CPU, in $SETS/kernels-cpu-sk2-x2.npz, set div2krk_sk2);
#               the bicubic and true-kernel columns come from the CPU run
#               of 2026-11-25, so only the estimated column runs here
#   estimators  issue 14: every estimator's kernels on the four sets
#   tf32        issue 15: what TF32 (GPUs' default precision) would change
#   fkp         KernelGAN-FKP as published: far costlier
# SETS holds div2krk_sk (Gaussian kernels, x2 and x4 LR), div2krk_ng
# (non-Gaussian), both made by `python -m benchmarks.make_div2krk --x4 ...`,
# and div2krk_sk2 (the x2-only set of the ZSSR runs). Every part has its own
# time limit and writes its results to OUT as it goes; device.log has what
# each part printed (the ZSSR runs print a row per image as they finish).
set -u
OUT=${OUT:-/tmp/gpu_out}
SETS=${SETS:-.sets}
PARTS=${PARTS:-smoke folder zssr}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
log=$OUT/device.log

want() { [[ " $PARTS " == *" $1 "* ]]; }

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

if want smoke; then
  part smoke 90 python3 -m kernelgan_jax.main \
    --image=tests/data/example_lr.png --output_dir=/tmp/smoke --iters=100 \
    --quiet
  grep -q "smoke: exit 0" "$log" || exit 1
fi

if want folder; then
  part folder_scale 240 python3 -m benchmarks.folder_scale \
    --num_images=100 --work_dir=/tmp/folder_scale --results_dir="$OUT"
fi

if want zssr; then
  for estimator in kernelgan select; do
    part "zssr paper $estimator" 120 python3 -m benchmarks.zssr_eval \
      --set_dir="$SETS/div2krk_sk2" --preset=paper \
      --kernels="$SETS/kernels-cpu-sk2-x2.npz" --estimator=$estimator \
      --baseline=benchmarks/results/zssr-paper-x2-fullsize-cpu2-2026-11-25.json \
      --reuse_sr --tag=fullsize-$estimator --results_dir="$OUT"
  done
fi

if want estimators; then
  for family in sk ng; do
    for scale in x2 x4; do
      flag=$([ $scale = x4 ] && echo --x4 || echo --nox4)
      part "kernelgan+fkp_lite $family $scale" 150 python3 -m \
        benchmarks.estimators --set_dir="$SETS/div2krk_$family" $flag \
        --estimators=kernelgan,fkp_lite --seeds=0,1,2 \
        --kernels="$OUT/kernels-$family-$scale.npz"
    done
  done
fi

if want tf32; then
  part "kernelgan tf32 sk x2" 90 python3 -m benchmarks.estimators \
    --set_dir="$SETS/div2krk_sk" --estimators=kernelgan --seeds=0,1,2 \
    --matmul_precision=default --kernels="$OUT/kernels-sk-x2.npz"
fi

if want fkp; then
  for family in sk ng; do
    part "fkp $family x2" 150 python3 -m benchmarks.estimators \
      --set_dir="$SETS/div2krk_$family" --estimators=fkp --seeds=0 \
      --kernels="$OUT/kernels-$family-x2.npz"
  done
fi
echo "=== done" >> "$log"
