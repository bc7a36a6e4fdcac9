r"""How many cores the train step uses on CPU, and why.

  python -m benchmarks.cores [--rounds=8]

Three measurements, each in its own fresh process, alternated `--rounds`
times (medians; ratios pair by pair):
- the scanned chunk's time per iteration (50-iteration chunks of
  `train.jitted_chunk`, the shipped example image) on every core, and
  restricted to one core (`os.sched_setaffinity`);
- XLA:CPU's inter-op concurrency: one chain of ten dependent 400x64 @ 64x64
  products (D's 1x1-conv size) per scanned iteration against two
  independent such chains;
- its intra-op parallelism: one product of D's size, and one of 10x its
  rows, on every core and on one.
PyTorch's port keeps both cores busy; these say whether the JAX step can.
Writes benchmarks/results/cores-<device>-<date>.{json,md}.
"""

import os
import subprocess
import sys
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine

_ROUNDS = flags.DEFINE_integer("rounds", 8, "Alternations of each pair.")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")

# Each prints one float: microseconds of the measured unit.
_STEP = r"""
import time, jax, numpy as np
from kernelgan_jax import data, images, train
from kernelgan_jax.config import get_config
config, length = get_config("paper"), 50
image = images.as_float_rgb(images.read_image("tests/data/example_lr.png"))
data_key, init_key = train.seed_keys(0)
prepared = data.prepare(image, config, data_key)
crops = data.crops(prepared, config, 0, length)
chunk = train.jitted_chunk(config, length)
state, _ = chunk(train.init_state(init_key, config), crops)
jax.block_until_ready(state)
times = []
for _ in range(5):
  start = time.perf_counter()
  for _ in range(4):
    state, _ = chunk(state, crops)
  jax.block_until_ready(state)
  times.append((time.perf_counter() - start) / (4 * length))
print(np.median(times) * 1e6)
"""

_CHAINS = r"""
import sys, time, jax, jax.numpy as jnp, numpy as np
chains, rows = int(sys.argv[1]), 400
w = jnp.asarray(np.random.default_rng(0).random((64, 64), np.float32) / 64)
def body(xs, _):
  out = []
  for x in xs:
    for _ in range(10):
      x = jnp.tanh(x @ w)
    out.append(x)
  return tuple(out), None
run = jax.jit(lambda xs: jax.lax.scan(body, xs, None, length=300)[0])
xs = tuple(jnp.ones((rows, 64)) for _ in range(chains))
jax.block_until_ready(run(xs))
times = []
for _ in range(5):
  start = time.perf_counter()
  jax.block_until_ready(run(xs))
  times.append((time.perf_counter() - start) / 300)
print(np.median(times) * 1e6)
"""

_PRODUCT = r"""
import sys, time, jax, jax.numpy as jnp, numpy as np
rows = int(sys.argv[1])
a = jnp.ones((rows, 64)); b = jnp.ones((64, 64))
product = jax.jit(lambda a, b: a @ b)
jax.block_until_ready(product(a, b))
reps = max(1, 400_000 // rows)
times = []
for _ in range(7):
  start = time.perf_counter()
  for _ in range(reps):
    out = product(a, b)
  jax.block_until_ready(out)
  times.append((time.perf_counter() - start) / reps)
print(np.median(times) * 1e6)
"""

_ONE_CORE = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"


def _run(code: str, *args: str, one_core: bool = False) -> float:
  """Microseconds a fresh process reports for `code`."""
  out = subprocess.run(
      [sys.executable, "-c", (_ONE_CORE if one_core else "") + code, *args],
      check=True, capture_output=True, text=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  return float(out.stdout.strip().splitlines()[-1])


def _pairs(first, second, rounds: int) -> dict:
  """Both in turn `rounds` times: medians and the pairwise ratio."""
  a, b = [], []
  for _ in range(rounds):
    a.append(first())
    b.append(second())
  ratio = np.array(b) / np.array(a)
  return {"first_us": float(np.median(a)), "second_us": float(np.median(b)),
          "ratio_median": float(np.median(ratio)),
          "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max())}


def main(argv: Sequence[str]) -> None:
  del argv
  rounds = _ROUNDS.value
  rows = [
      dict(what="train step per iteration: all cores, then one core",
           **_pairs(lambda: _run(_STEP),
                    lambda: _run(_STEP, one_core=True), rounds)),
      dict(what="one chain of 10 products per iteration, then two "
                "independent chains",
           **_pairs(lambda: _run(_CHAINS, "1"), lambda: _run(_CHAINS, "2"),
                    rounds)),
  ]
  for size in (400, 4000):
    rows.append(dict(
        what=f"{size}x64 @ 64x64: all cores, then one core",
        **_pairs(lambda size=size: _run(_PRODUCT, str(size)),
                 lambda size=size: _run(_PRODUCT, str(size), one_core=True),
                 rounds)))
  meta = dict(machine.describe(), rounds=rounds,
              load_average=list(os.getloadavg()))
  table = "\n".join(
      [f"Cores used by the JAX step: {meta['device']} ({meta['processor']}), "
       f"jax {meta['jax']}, {meta['date']}; {rounds} alternations, each "
       "measurement in a fresh process, medians; ratio = second / first, "
       "pair by pair.", "",
       "| measurement | first | second | ratio (min-max) |",
       "|---|---|---|---|"]
      + [f"| {r['what']} | {r['first_us']:.1f} us | {r['second_us']:.1f} us "
         f"| {r['ratio_median']:.2f} ({r['ratio_min']:.2f}-"
         f"{r['ratio_max']:.2f}) |" for r in rows]) + "\n"
  machine.save_results(_RESULTS.value,
                       f"cores-{meta['device']}-{meta['date']}", meta, rows,
                       table)


if __name__ == "__main__":
  app.run(main)
