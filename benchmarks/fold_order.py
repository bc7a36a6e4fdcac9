r"""Which end to fold G from: the delta probe vs the contracted fold.

  python -m benchmarks.fold_order [--repeats=200]

The original pushes a 1x1 delta (zero-padded by 12) forward through G's
stride-1 convs and flips the result (spec 7.1). `kernel.extract_kernel`
folds from the other end: the three 1x1 layers contract into one vector,
then the 3x3, 5x5 and 7x7 layers are composed as full convolutions. Both
give the same kernel; this measures value-and-gradient time of each on the
current backend and writes benchmarks/results/fold_order-<device>-<date>.json.
"""

import json
import os
import time
from typing import Sequence

from absl import app
from absl import flags
from flax import nnx
import jax
import jax.numpy as jnp

from benchmarks import machine
from kernelgan_jax import config as config_lib
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import models

_REPEATS = flags.DEFINE_integer("repeats", 200, "Timed calls per variant.")
_OUT = flags.DEFINE_string("fold_results_dir", "benchmarks/results",
                           "Where the JSON goes.")


def time_grad(fold, kernels) -> float:
  """Milliseconds per jitted value-and-grad call of sum(fold(w)^2)."""
  fn = jax.jit(jax.value_and_grad(lambda ws: jnp.sum(fold(ws) ** 2)))
  jax.block_until_ready(fn(kernels))
  best = []
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(_REPEATS.value):
      out = fn(kernels)
    jax.block_until_ready(out)
    best.append((time.perf_counter() - start) / _REPEATS.value * 1e3)
  return min(best)


def main(argv: Sequence[str]) -> None:
  del argv
  config = config_lib.get_config()
  g = models.LinearGenerator(config, rngs=nnx.Rngs(0))
  kernels = g.conv_kernels()
  diff = float(jnp.max(jnp.abs(kernel_lib.fold_delta(kernels)
                               - kernel_lib.extract_kernel(kernels))))
  scale = float(jnp.max(jnp.abs(kernel_lib.fold_delta(kernels))))
  result = dict(machine.describe(), **{
      "max_abs_difference_relative": diff / scale,
      "delta_fold_grad_ms": time_grad(kernel_lib.fold_delta, kernels),
      "contracted_fold_grad_ms": time_grad(kernel_lib.extract_kernel,
                                           kernels),
  })
  print(json.dumps(result, indent=1))
  os.makedirs(_OUT.value, exist_ok=True)
  path = os.path.join(_OUT.value, f"fold_order-{result['device']}-"
                      f"{result['date']}.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
