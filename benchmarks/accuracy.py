r"""Kernel accuracy on a DIV2KRK-protocol set: KernelGAN vs bicubic vs truth.

  python -m benchmarks.accuracy --set_dir=/tmp/div2krk --num_images=8

Builds the set first if `--set_dir` holds none (scikit-image photographs,
`kernelgan_jax.div2krk`). For every image it estimates the x2 kernel and
reports (`metrics.score_kernel`) the shift-invariant kernel error
(`metrics.kernel_error`, L2 after centre-of-mass alignment) of the estimate
and of MATLAB's bicubic kernel against the ground truth, and the PSNR of the
LR image re-synthesised from the HR image with each kernel
(`metrics.resynthesis_psnr`; the true kernel gives the ceiling). Writes
benchmarks/results/accuracy-<device>-<date>.{json,md}.
"""

import json
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine

from kernelgan_jax import div2krk
from kernelgan_jax import metrics
from kernelgan_jax.config import get_config
from kernelgan_jax.estimate import estimate_kernel

_SET_DIR = flags.DEFINE_string("set_dir", "/tmp/div2krk_sk", "Set folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Images to evaluate.")
_HR_SIZE = flags.DEFINE_integer("hr_size", None,
                                "Centre-crop HR photos when building a set.")
_ITERS = flags.DEFINE_integer("iters", 3000, "Training iterations.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds; each is one run.")
_OUT = flags.DEFINE_string("results_dir", "benchmarks/results",
                           "Where the JSON and markdown go.")


def markdown(rows: list[dict], meta: dict) -> str:
  lines = [
      f"Accuracy on a DIV2KRK-protocol set ({meta['set']}), {meta['iters']} "
      f"iterations, seeds {meta['seeds']}, {meta['device']}, {meta['date']}.",
      "",
      "| image | LR size | kernel error KernelGAN | kernel error bicubic "
      "| PSNR KernelGAN | PSNR bicubic | PSNR true kernel | seconds |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['name']} | {r['lr_shape'][1]}x{r['lr_shape'][0]} "
        f"| {r['kernelgan']['kernel_error']:.4f} "
        f"| {r['bicubic']['kernel_error']:.4f} "
        f"| {r['kernelgan']['resynthesis_psnr']:.2f} "
        f"| {r['bicubic']['resynthesis_psnr']:.2f} "
        f"| {r['truth']['resynthesis_psnr']:.2f} | {r['seconds']:.1f} |")
  wins = sum(r["kernelgan"]["kernel_error"] < r["bicubic"]["kernel_error"]
             for r in rows)
  mean = lambda key, m: np.mean([r[key][m] for r in rows])
  lines += [
      f"| **mean** | | {mean('kernelgan', 'kernel_error'):.4f} "
      f"| {mean('bicubic', 'kernel_error'):.4f} "
      f"| {mean('kernelgan', 'resynthesis_psnr'):.2f} "
      f"| {mean('bicubic', 'resynthesis_psnr'):.2f} "
      f"| {mean('truth', 'resynthesis_psnr'):.2f} | |",
      "",
      f"KernelGAN's kernel error is below bicubic's on {wins} of {len(rows)} "
      "images.",
  ]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  examples = div2krk.load_or_make_set(
      _SET_DIR.value, _NUM_IMAGES.value, hr_size=_HR_SIZE.value)
  config = get_config(max_iters=_ITERS.value)
  bicubic = metrics.bicubic_kernel_x2()
  rows = []
  for example in examples:
    for seed in map(int, _SEEDS.value):
      start = time.perf_counter()
      result = estimate_kernel(example.lr, config, seed=seed)
      seconds = time.perf_counter() - start
      row = {"name": example.name, "seed": seed,
             "lr_shape": list(example.lr.shape), "seconds": seconds,
             "kernelgan": metrics.score_kernel(result.kernel_x2, example),
             "bicubic": metrics.score_kernel(bicubic, example),
             "truth": metrics.score_kernel(example.kernel_x2, example)}
      rows.append(row)
      print(json.dumps(row), flush=True)
  meta = dict(machine.describe(), set=_SET_DIR.value, iters=_ITERS.value,
              seeds=_SEEDS.value)
  machine.save_results(
      _OUT.value, f"accuracy-{meta['device']}-{meta['date']}",
      meta, rows, markdown(rows, meta))


if __name__ == "__main__":
  app.run(main)
