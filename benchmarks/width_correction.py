r"""Does stretching KernelGAN's kernel towards the recurrence score's best
width lower its error?

  python -m benchmarks.width_correction --set_dirs=A,B,... [--damping=0,0.25,0.5,0.75,1]
      [--estimator=select]

For each DIV2KRK-protocol set (`benchmarks/make_div2krk.py`) it estimates
every image's x2 kernel (default settings, seed 0, `batch.estimate_kernels`
with `--estimator`, default kernelgan),
finds the width factor at which the image's cross-scale patch recurrence is
explained best (`reliability.width_scan`'s 'best_width', the log of the
factor), and scores the kernel stretched by exp(damping * best_width)
(`reliability.stretch_kernel`) against the true kernel
(`metrics.kernel_error`), for each damping (0: the kernel as estimated).
Optionally (`--kernels_out`) saves the kernels as an .npz that
`benchmarks/zssr_eval.py --kernels` reads (the estimator's name and
'<estimator>_width<damping>'). Writes
benchmarks/results/width_correction-<device>-<date>[-<tag>].{json,md}.
"""

import os
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax import div2krk
from kernelgan_jax import metrics
from kernelgan_jax import reliability

_SET_DIRS = flags.DEFINE_list("set_dirs", None, "DIV2KRK-protocol sets.")
_DAMPING = flags.DEFINE_list("damping", ["0", "0.25", "0.5", "0.75", "1"],
                             "Fractions of the best log width applied.")
_KERNELS_OUT = flags.DEFINE_string(
    "kernels_out", None, "Also save the kernels here (.npz, zssr_eval's "
    "--kernels format).")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string("tag", "", "Appended to the results' names.")
_ESTIMATOR = flags.DEFINE_string("estimator", "kernelgan",
                                 "Whose kernels are corrected.")
flags.mark_flag_as_required("set_dirs")


def main(argv: Sequence[str]) -> None:
  del argv
  damping = [float(d) for d in _DAMPING.value]
  rows, saved = [], {}
  for set_dir in _SET_DIRS.value:
    examples = list(div2krk.load_set(set_dir).values())
    estimates = batch.estimate_kernels([e.lr for e in examples], seeds=(0,),
                                       estimator=_ESTIMATOR.value)
    for example, [estimate] in zip(examples, estimates):
      name, lr, truth = example.name, example.lr, example.kernel_x2
      kernel = estimate.kernel_x2
      best = reliability.width_scan(lr, kernel)["best_width"]
      errors = {}
      for d in damping:
        stretched = (reliability.stretch_kernel(kernel, float(np.exp(d * best)))
                     if d else kernel)
        errors[str(d)] = metrics.kernel_error(stretched, truth)
        saved[f"{_ESTIMATOR.value}_width{d:g}/{name}/0/kernel_x2" if d else
              f"{_ESTIMATOR.value}/{name}/0/kernel_x2"] = stretched
      rows.append({"set": os.path.basename(os.path.normpath(set_dir)),
                   "name": name, "best_width": best, "errors": errors})
  if _KERNELS_OUT.value:
    np.savez(_KERNELS_OUT.value, **saved)
  meta = dict(machine.describe(), set_dirs=_SET_DIRS.value, damping=damping,
              estimator=f"{_ESTIMATOR.value}, default settings, seed 0")
  lines = [f"Kernel error of the x2 kernel of {_ESTIMATOR.value} stretched by "
           f"exp(damping x best_width) (`reliability.width_scan`), per set: "
           f"mean, ratio to damping 0, images made worse. "
           f"{meta['device']} ({meta['processor']}), jax {meta['jax']}, "
           f"{meta['date']}.", "",
           "| set | " + " | ".join(f"damping {d:g}" for d in damping) + " |",
           "|---|" + "---|" * len(damping)]
  for set_name in dict.fromkeys(r["set"] for r in rows):
    errors = np.array([[r["errors"][str(d)] for d in damping]
                       for r in rows if r["set"] == set_name])
    mean = errors.mean(axis=0)
    worse = (errors > errors[:, :1] + 1e-12).sum(axis=0)
    lines.append(f"| {set_name} | " + " | ".join(
        f"{m:.4f} ({m / mean[0]:.2f}x, {w} of {len(errors)})"
        for m, w in zip(mean, worse)) + " |")
  tag = f"-{_TAG.value}" if _TAG.value else ""
  machine.save_results(
      _RESULTS.value, f"width_correction-{meta['device']}-{meta['date']}{tag}",
      meta, rows, "\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
