r"""KernelGAN against the FKP variants on DIV2KRK-protocol sets.

  python -m benchmarks.estimators --set_dir=/tmp/div2krk_sk [--x4] \
      [--estimators=kernelgan,fkp_lite,fkp] [--seeds=0] \
      --kernels=/tmp/kernels-gaussian-x2.npz
  python -m benchmarks.estimators --set_dir=/tmp/div2krk_sk [--x4] \
      --kernels=/tmp/kernels-gaussian-x2.npz --score --tag=gaussian

The first form estimates every image's kernels with each estimator
(`kernelgan_jax.config.ESTIMATORS`, through `batch.estimate_kernels`) and writes them, with the seconds each
estimator took, to `--kernels` (an .npz; it can run on an accelerator and
the scoring here). The second scores a kernels file (`metrics.score_kernel`):
the kernel error against the true kernel (`metrics.kernel_error`; at x4 the
analytic x4 kernels, on the x4 LR images), the re-synthesis PSNR
(`metrics.resynthesis_psnr`), how many images an estimator's kernel scores
below MATLAB's bicubic kernel, and the seconds per image, with bicubic and
the truth as floor and ceiling; where a file holds both of
`reliability.SELECT_FROM`, also what `estimator='select'` would keep of
them, and the better of them per run in hindsight (a bound on any choice
between them). Writes
benchmarks/results/estimators-<tag>[-x4]-<device of the run>-<date>.{json,md}.
"""

import json
import os
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax import data as data_lib
from kernelgan_jax import div2krk
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics
from kernelgan_jax import reliability
from kernelgan_jax.config import get_config

# Not an estimator: per run, whichever of `reliability.SELECT_FROM` has the
# lower true kernel error; the best any choice between them could do.
HINDSIGHT = "hindsight"

_SET_DIR = flags.DEFINE_string("set_dir", "/tmp/div2krk_sk", "Set folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Images to evaluate.")
_X4 = flags.DEFINE_bool("x4", False, "The x4 LR images and x4 kernels.")
_ESTIMATORS = flags.DEFINE_list(
    "estimators", ["kernelgan", "fkp_lite", "fkp"], "Estimators to run.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds per image.")
_ITERS = flags.DEFINE_integer(
    "iters", None, "Iterations (default: each estimator's own).")
_PRECISION = flags.DEFINE_string("matmul_precision", "highest",
                                 "Matrix-product precision of the runs.")
_KERNELS = flags.DEFINE_string("kernels", None, "The kernels file (.npz).")
_SCORE = flags.DEFINE_bool("score", False, "Score --kernels instead.")
_TAG = flags.DEFINE_string("tag", "gaussian", "Names the results files.")
_OUT = flags.DEFINE_string("results_dir", "benchmarks/results",
                           "Where the JSON and markdown go.")

flags.mark_flag_as_required("kernels")


def lr_of(example: div2krk.Example, x4: bool) -> np.ndarray:
  return example.lr_x4 if x4 else example.lr


def estimate_set(examples: list[div2krk.Example], estimator: str,
                 seeds: list[int], x4: bool) -> tuple[dict, dict]:
  """Every image's kernels by one estimator, and the seconds it took."""
  overrides = {"matmul_precision": _PRECISION.value, "x4": x4}
  if _ITERS.value:
    overrides["max_iters"] = _ITERS.value
  config = get_config(**overrides)
  usable = []
  for example in examples:
    try:
      data_lib.check_size(lr_of(example, x4), config)
      usable.append(example)
    except images.ImageError as error:
      print(f"skipping {example.name}: {error}", flush=True)
  start = time.perf_counter()
  results = batch.estimate_kernels(
      [lr_of(e, x4) for e in usable], config, seeds, estimator=estimator)
  seconds = time.perf_counter() - start
  kernels = {}
  for example, per_seed in zip(usable, results):
    for seed, result in zip(seeds, per_seed):
      prefix = f"{estimator}/{example.name}/{seed}"
      kernels[prefix + "/kernel_x2"] = result.kernel_x2
      kernels[prefix + "/kernel_x4"] = result.kernel_x4
      kernels[prefix + "/raw_kernel"] = result.raw_kernel
  return kernels, {"seconds": seconds, "images": len(usable),
                   "runs": len(usable) * len(seeds)}


def run(examples: list[div2krk.Example]) -> None:
  """Estimates into the kernels file, keeping what it already holds (other
  estimators, or the same one at another precision under another tag)."""
  seeds = [int(s) for s in _SEEDS.value]
  kernels, timing = {}, {}
  if os.path.exists(_KERNELS.value):
    with np.load(_KERNELS.value) as stored:
      kernels = {k: stored[k] for k in stored.files if k != "meta"}
      timing = json.loads(str(stored["meta"]))["timing"]
  for estimator in _ESTIMATORS.value:
    found, seconds = estimate_set(examples, estimator, seeds, _X4.value)
    if _PRECISION.value != "highest":  # Kept apart from the default runs.
      estimator = f"{estimator}@{_PRECISION.value}"
      found = {estimator + k[k.index("/"):]: v for k, v in found.items()}
    timing[estimator] = dict(seconds, matmul_precision=_PRECISION.value,
                             device=machine.device_name())
    kernels.update(found)
    print(f"{estimator}: {json.dumps(timing[estimator])}", flush=True)
    meta = dict(machine.describe(), set=_SET_DIR.value, x4=_X4.value,
                seeds=seeds, iters=_ITERS.value,
                matmul_precision=_PRECISION.value, timing=timing)
    # Written after every estimator, so an interrupted run keeps the rest.
    machine.write_atomically(_KERNELS.value, lambda f: np.savez(
        f, meta=json.dumps(meta), **kernels), binary=True)


def bicubic_kernel(x4: bool) -> np.ndarray:
  kernel = metrics.bicubic_kernel_x2()
  return kernel_lib.analytic_kernel_x4(kernel) if x4 else kernel


def select_one(example: div2krk.Example, stored, seed: str, x4: bool) -> str:
  """Which of `reliability.SELECT_FROM` `estimator='select'` keeps."""
  return reliability.select_name(lr_of(example, x4), {
      e: stored[f"{e}/{example.name}/{seed}/kernel_x2"]
      for e in reliability.SELECT_FROM})


def score(examples: list[div2krk.Example]) -> None:
  stored = np.load(_KERNELS.value)
  meta = json.loads(str(stored["meta"]))
  x4 = meta["x4"]
  which = "kernel_x4" if x4 else "kernel_x2"
  runs = sorted({tuple(key.split("/")[:3]) for key in stored.files
                 if key != "meta"})
  estimators = [e for e in meta["timing"] if any(r[0] == e for r in runs)]
  if all(e in estimators for e in reliability.SELECT_FROM):
    estimators += ["select", HINDSIGHT]
    meta["timing"]["select"] = {
        key: sum(meta["timing"][e][key] for e in reliability.SELECT_FROM)
        for key in ("seconds", "runs")}
    meta["timing"]["select"]["runs"] //= len(reliability.SELECT_FROM)
  rows = []
  for example in examples:
    row = {"name": example.name,
           "bicubic": metrics.score_kernel(bicubic_kernel(x4), example, x4),
           "truth": metrics.score_kernel(metrics.true_kernel(example, x4),
                                         example, x4)}
    for estimator, name, seed in runs:
      if name == example.name:
        row.setdefault(estimator, {})[seed] = metrics.score_kernel(
            stored[f"{estimator}/{name}/{seed}/{which}"], example, x4)
    if all(e in row for e in reliability.SELECT_FROM):
      row["select"] = {seed: row[select_one(example, stored, seed, x4)][seed]
                       for seed in row[reliability.SELECT_FROM[0]]}
      row[HINDSIGHT] = {
          seed: min((row[e][seed] for e in reliability.SELECT_FROM),
                    key=lambda s: s["kernel_error"])
          for seed in row[reliability.SELECT_FROM[0]]}
    if len(row) > 3:
      rows.append(row)
      print(json.dumps(row), flush=True)
  meta.update(scored_on=machine.describe(), tag=_TAG.value)
  suffix = "-x4" if x4 else ""
  machine.save_results(
      _OUT.value, f"estimators-{_TAG.value}{suffix}-{meta['device']}-"
      f"{meta['date']}", meta, rows, markdown(rows, estimators, meta))


def markdown(rows: list[dict], estimators: list[str], meta: dict) -> str:
  def mean_over_seeds(row, estimator, key):
    return float(np.mean([s[key] for s in row[estimator].values()]))
  lines = [
      f"Estimators on {meta['set']}{' (x4)' if meta['x4'] else ''}: "
      f"{len(rows)} images, seeds {meta['seeds']}, run on "
      f"{meta['device']} (jax {meta['jax']}, matmul precision "
      f"{meta['matmul_precision']}), {meta['date']}. Kernel error and "
      "re-synthesis PSNR per image (mean over seeds).",
      "",
      "| image | " + " | ".join(f"{e} error / PSNR" for e in estimators)
      + " | bicubic error / PSNR | truth PSNR |",
      "|---|" + "---|" * (len(estimators) + 2),
  ]
  for row in rows:
    cells = [f"{mean_over_seeds(row, e, 'kernel_error'):.4f} / "
             f"{mean_over_seeds(row, e, 'resynthesis_psnr'):.2f}"
             if e in row else "-" for e in estimators]
    lines.append(f"| {row['name']} | " + " | ".join(cells)
                 + f" | {row['bicubic']['kernel_error']:.4f} / "
                 f"{row['bicubic']['resynthesis_psnr']:.2f} "
                 f"| {row['truth']['resynthesis_psnr']:.2f} |")
  lines += ["", "| estimator | mean kernel error | mean PSNR | images "
            "below bicubic (error) | seconds per image (run) |",
            "|---|---|---|---|---|"]
  for e in estimators:
    scored = [r for r in rows if e in r]
    errors = [mean_over_seeds(r, e, "kernel_error") for r in scored]
    psnrs = [mean_over_seeds(r, e, "resynthesis_psnr") for r in scored]
    worse = sum(err > r["bicubic"]["kernel_error"]
                for err, r in zip(errors, scored))
    timing = meta["timing"].get(e, {})
    per_image = (f"{timing['seconds'] / timing['runs']:.1f}"
                 if timing.get("runs") else "-")
    lines.append(f"| {e} | {np.mean(errors):.4f} | {np.mean(psnrs):.2f} "
                 f"| {worse} of {len(scored)} | {per_image} |")
  lines.append(
      f"| bicubic | {np.mean([r['bicubic']['kernel_error'] for r in rows]):.4f}"
      f" | {np.mean([r['bicubic']['resynthesis_psnr'] for r in rows]):.2f} "
      "| | |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  examples = div2krk.load_or_make_set(_SET_DIR.value, _NUM_IMAGES.value,
                                      x4=_X4.value)
  if _SCORE.value:
    score(examples)
  else:
    if os.path.dirname(_KERNELS.value):
      os.makedirs(os.path.dirname(_KERNELS.value), exist_ok=True)
    run(examples)


if __name__ == "__main__":
  app.run(main)
