r"""Does a seed ensemble lower the kernel error? (DIV2KRK protocol.)

  python -m benchmarks.ensemble_accuracy --set_dir=/tmp/div2krk_sk \
      --num_images=4 --seeds=3 --iters=3000

For each image, the seeds 0..N-1 train together (`batch.estimate_kernels`);
the kernel error (`metrics.kernel_error` vs the ground truth) of every seed,
of each combination in `ensemble.METHODS`, and of the seed whose kernel
the reliability score trusts most (`reliability.select_name`, the choice
`estimator='select'` makes; no ground truth needed) is recorded. Builds the set first
if `--set_dir` holds none. Writes
benchmarks/results/ensemble[-<tag>]-<device>-<date>.{json,md}.
"""

import json
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax import div2krk
from kernelgan_jax import ensemble
from kernelgan_jax import metrics
from kernelgan_jax import reliability
from kernelgan_jax.config import get_config

_SET_DIR = flags.DEFINE_string("set_dir", "/tmp/div2krk_sk", "Set folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 4, "Images to evaluate.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per image (0..N-1).",
                              lower_bound=2)
_ITERS = flags.DEFINE_integer("iters", 3000, "Training iterations.")
_OUT = flags.DEFINE_string("results_dir", "benchmarks/results",
                           "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string("tag", "", "Inserted into the results' names.")
# Not an `ensemble.METHODS` entry: it needs the LR image.
RELIABILITY_PICK = "reliability_pick"


def score_image(example: div2krk.Example, kernels: list[np.ndarray]
                ) -> dict:
  """Kernel errors of every seed and of every ensemble method."""
  truth = example.kernel_x2
  row = {"seed_errors": [metrics.kernel_error(k, truth) for k in kernels]}
  for method in ensemble.METHODS:
    row[method] = metrics.kernel_error(ensemble.combine(kernels, method),
                                       truth)
  row[RELIABILITY_PICK] = row["seed_errors"][reliability.select_name(
      example.lr, dict(enumerate(kernels)))]
  return row


def markdown(rows: list[dict], meta: dict) -> str:
  """The results table."""
  methods = list(ensemble.METHODS) + [RELIABILITY_PICK]
  lines = [
      f"Seed ensembles on a DIV2KRK-protocol set ({meta['set']}), "
      f"{meta['iters']} iterations, seeds 0..{meta['seeds'] - 1} per image "
      f"(vmapped), {meta['device']}, {meta['date']}. Kernel error "
      "(metrics.kernel_error, L2 after centre-of-mass alignment; lower is "
      "better).",
      "",
      "| image | per seed | mean of seeds | best seed (oracle) | "
      + " | ".join(methods) + " | seconds |",
      "|---|---|---|---|" + "---|" * len(methods) + "---|",
  ]
  for r in rows:
    errors = r["seed_errors"]
    lines.append(
        f"| {r['name']} | {' '.join(f'{e:.4f}' for e in errors)} "
        f"| {np.mean(errors):.4f} | {np.min(errors):.4f} | "
        + " | ".join(f"{r[m]:.4f}" for m in methods)
        + f" | {r['seconds']:.0f} |")
  mean = lambda f: np.mean([f(r) for r in rows])
  lines.append(
      "| **mean** | | " f"{mean(lambda r: np.mean(r['seed_errors'])):.4f} | "
      f"{mean(lambda r: np.min(r['seed_errors'])):.4f} | "
      + " | ".join(f"{mean(lambda r, m=m: r[m]):.4f}" for m in methods)
      + " | |")
  lines.append("")
  for m in methods:
    wins = sum(r[m] < np.mean(r["seed_errors"]) for r in rows)
    lines.append(f"* {m}: below the image's mean single-seed error on "
                 f"{wins} of {len(rows)} images.")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  examples = div2krk.load_or_make_set(_SET_DIR.value, _NUM_IMAGES.value)
  config = get_config(max_iters=_ITERS.value)
  seeds = tuple(range(_SEEDS.value))
  rows = []
  for example in examples:
    start = time.perf_counter()
    [estimates] = batch.estimate_kernels([example.lr], config, seeds)
    seconds = time.perf_counter() - start
    kernels = [e.kernel_x2 for e in estimates]
    row = dict(name=example.name, lr_shape=list(example.lr.shape),
               seconds=seconds, kernels_x2=[k.tolist() for k in kernels],
               **score_image(example, kernels))
    rows.append(row)
    print(json.dumps({k: v for k, v in row.items() if k != "kernels_x2"}),
          flush=True)
  meta = dict(machine.describe(), set=_SET_DIR.value, iters=_ITERS.value,
              seeds=_SEEDS.value)
  machine.save_results(
      _OUT.value, f"ensemble{'-' + _TAG.value if _TAG.value else ''}-"
      f"{meta['device']}-{meta['date']}",
      meta, rows, markdown(rows, meta))


if __name__ == "__main__":
  app.run(main)
