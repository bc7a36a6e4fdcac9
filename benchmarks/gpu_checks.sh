#!/usr/bin/env bash
# The GPU checks, as one bounded script (run from the repository root on a
# machine whose python3 has JAX for its GPU; nothing is installed):
#   OUT=/tmp/out SETS=.sets PARTS="smoke compile" bash benchmarks/gpu_checks.sh
# PARTS picks the parts, in this order (default: what is still unmeasured,
# smoke folder compile, at most 9.3 minutes by their limits: the folder's
# initial states changed on 2026-12-01, and folder_scale now records XLA's
# seconds per program of each run; the other parts were measured on an H200
# on 2026-11-30, zssr_cache not yet):
#   smoke       one small image through the command line (the others need it)
#   folder      issue 15: 100 DIV2KRK-size images through one call (cold,
#               warm, and warm with 50 iterations: where the time goes)
#   compile     issue 15: the folder again with XLA_FLAGS that shorten GPU
#               compilation (autotuning off; no Triton GEMMs), each its own
#               empty cache
#   zssr_cache  ZSSR `paper` on three images of three sizes in one process
#               (what a new image size costs on a GPU)
#   zssr_memory ZSSR's peak device memory on large images, x2 and x4, against
#               `zssr.memory`'s formula (its device path is unmeasured; the
#               last step runs in tiles since 2026-12-01)
#   zssr        issue 14: ZSSR with the original settings (`paper`) on the
#               seed-0 x2 set, one process per job, all at once; a job is
#               estimator:kernels:image, the kernels from
#               $SETS/kernels-cpu-sk-x2-<kernels>.npz. By default `--sr`'s
#               narrowing (2026-12-01 CPU kernels): KernelGAN's kernels on
#               the 8 images (wk) and the narrowed ones on the 4 it narrows
#               (narrowed); ZSSR_JOBS picks others. The bicubic and true
#               columns come from the 2026-11-25 CPU run where the LR
#               matches, so only the estimated column runs (then score:
#               sr_fallback.py --narrowed). Those default jobs ran on
#               2 CPU cores on 2026-12-01; KernelGAN's and fkp_lite's
#               2026-11-30 kernels ran here on an H200 on 2026-11-30.
#   zssr4       issue 14: the same at x4 on div2krk_sk4 (7 images; chelsea's
#               LR is below KernelGAN's minimum), all four columns per image
#               (no x4 `paper` run to take them from), KernelGAN's kernels
#               ($SETS/kernels-cpu-sk4-x4.npz) and the narrowed ones on the 2
#               it narrows (-x4-narrowed, the estimated column only; then
#               zssr_merge.py and sr_fallback.py --x4 --narrowed); ZSSR4_JOBS
#               picks others. Alone: its runs may take its whole limit.
#   estimators  issue 14: every estimator's kernels on the four sets
#   tf32        issue 15: what TF32 (GPUs' default precision) would change
#   fkp         KernelGAN-FKP as published: far costlier
# SETS holds the sets and kernels the README's commands make:
# div2krk_sk and div2krk_ng (seed 0, Gaussian and non-Gaussian kernels, x2:
# `make_div2krk [--family=nongaussian]`), div2krk_sk4 and div2krk_ng4 (the
# same with --x4, which also writes the x4 LR images; it crops retina
# differently, so the x2 runs read the x2-only sets), and the kernels files
# the zssr part names (`benchmarks/estimators.py`, `sr_fallback.py
# --narrowed_kernels`). Every part has its own
# time limit and writes its results to OUT as it goes; device.log has what
# each part printed (the ZSSR runs print a row per image as they finish).
# ZSSR_FLAGS adds flags to the ZSSR runs (a dry run on a CPU:
# ZSSR_FLAGS="--zssr_iters=5" ZSSR_JOBS="kernelgan:wk:coffee
# kernelgan_narrowed:narrowed:coffee").
set -u
OUT=${OUT:-/tmp/gpu_out}
SETS=${SETS:-.sets}
PARTS=${PARTS:-smoke folder compile}
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
  part smoke 60 python3 -m kernelgan_jax.main \
    --image=tests/data/example_lr.png --output_dir=/tmp/smoke --iters=100 \
    --quiet
  grep -q "smoke: exit 0" "$log" || exit 1
fi

if want folder; then
  part folder_scale 200 python3 -m benchmarks.folder_scale \
    --num_images=100 --work_dir=/tmp/folder_scale --results_dir="$OUT"
fi

if want compile; then
  # Where the empty cache's 41 s of compilation goes (2026-11-30): the same
  # folder with XLA's GPU autotuning off, then without Triton GEMMs.
  for variant in autotune0:--xla_gpu_autotune_level=0 \
                 notriton:--xla_gpu_enable_triton_gemm=false; do
    XLA_FLAGS=${variant#*:} part "folder_scale ${variant#*:}" 150 \
      python3 -m benchmarks.folder_scale --num_images=100 --gather_images=0 \
      --work_dir=/tmp/folder_${variant%%:*} --tag=${variant%%:*} \
      --results_dir="$OUT"
  done
fi

zssr=(python3 -m benchmarks.zssr_eval --set_dir="$SETS/div2krk_sk"
      --preset=paper
      --baseline=benchmarks/results/zssr-paper-x2-fullsize-cpu2-2026-11-25.json
      --results_dir="$OUT" ${ZSSR_FLAGS:-})

if want zssr_cache; then
  # ZSSR's minute per image on an H200 (2026-11-30) looked like compilation
  # per image size; its training programs no longer depend on the size
  # (2026-12-01). One process, three images of three sizes: the second and
  # third say what a new size costs now.
  part "zssr paper, three sizes in one process" 150 "${zssr[@]}" \
    --kernels="$SETS/kernels-cpu-sk-x2-wk.npz" --estimator=kernelgan \
    --only=astronaut,coffee,chelsea --tag=three-sizes
fi

if want zssr_memory; then
  part "zssr memory x2" 200 python3 -m benchmarks.zssr_memory \
    --sizes=1200x1000,2000x1500 --results_dir="$OUT" --tag=tiles
  part "zssr memory x4" 200 python3 -m benchmarks.zssr_memory --x4 \
    --sizes=500x400,1000x750 --results_dir="$OUT" --tag=tiles
fi

# zssr_jobs KERNELS_PREFIX TAG_PREFIX JOBS: one `"${zssr[@]}"` process per
# job (estimator:kernels:image[:methods], the kernels from
# $SETS/kernels-cpu-<KERNELS_PREFIX>-<kernels>.npz), all at once. Each job
# logs to its own file, appended to device.log at the end.
zssr_jobs() {
  local prefix=$1 tag=$2 jobs=$3 job estimator kernels image methods
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  for job in $jobs; do
    IFS=: read -r estimator kernels image methods <<< "$job"
    log=$OUT/zssr-$tag-$estimator-$image.log part "zssr paper $tag $job" \
      "${ZSSR_LIMIT:-300}" "${zssr[@]}" --estimator="$estimator" \
      --kernels="$SETS/kernels-cpu-$prefix-$kernels.npz" --only="$image" \
      ${methods:+--methods=$methods} --tag="$tag-$estimator-$image" &
  done
  wait
  for job in $jobs; do
    IFS=: read -r estimator kernels image methods <<< "$job"
    cat "$OUT/zssr-$tag-$estimator-$image.log" >> "$log"
    rm "$OUT/zssr-$tag-$estimator-$image.log"
  done
}

if want zssr; then
  # On an H200 an image's ZSSR took about a minute with two side by side
  # and 130-185 s with eight (2026-11-30, mostly compiling for its size,
  # which it no longer does); zssr_cache tells whether one process per
  # estimator is quicker now.
  zssr_jobs sk-x2 sk "${ZSSR_JOBS:-"$(for i in astronaut coffee chelsea \
      rocket camera immunohistochemistry hubble_deep_field retina; do
      echo kernelgan:wk:$i; done)
    $(for i in coffee chelsea rocket hubble_deep_field; do
      echo kernelgan_narrowed:narrowed:$i; done)"}"
fi

if want zssr4; then
  # x4 has no `paper` run yet to take the bicubic and true columns from:
  # each image's process computes all four (three gradual ZSSR runs).
  # 2 CPU cores ran all 7 on 2026-12-01 (benchmarks/README.md).
  zssr=(python3 -m benchmarks.zssr_eval --set_dir="$SETS/div2krk_sk4" --x4
        --preset=paper --results_dir="$OUT" ${ZSSR_FLAGS:-})
  ZSSR_LIMIT=${ZSSR_LIMIT:-500} zssr_jobs sk4 sk4 "${ZSSR4_JOBS:-"$(for i in \
      astronaut coffee rocket camera immunohistochemistry hubble_deep_field \
      retina; do echo kernelgan:x4:$i; done)
    $(for i in coffee rocket; do
      echo kernelgan_narrowed:x4-narrowed:$i:zssr_kernelgan; done)"}"
fi

if want estimators; then
  for family in sk ng; do
    for scale in x2 x4; do
      flag=$([ $scale = x4 ] && echo --x4 || echo --nox4)
      set_dir=$SETS/div2krk_$family$([ $scale = x4 ] && echo 4)
      part "kernelgan+fkp_lite $family $scale" 150 python3 -m \
        benchmarks.estimators --set_dir="$set_dir" $flag \
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
# At most 8 files come back from a device call: the results travel as one.
cd "$OUT" && tar -cf results.tar --remove-files -- *.json *.md 2>/dev/null
