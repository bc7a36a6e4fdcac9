r"""How to drive the iterations: a host loop over the jitted step, or scan.

  python -m benchmarks.loops [--iters=300] [--chunk=50]

Times `train.train` with loop='python' (one jitted step per iteration) and
loop='scan' (`lax.scan` over chunks of `--chunk` iterations on the device)
on the shipped example image, after compiling both, and writes
benchmarks/results/loops-<device>-<date>.json; `train.drive` explains the
default it chose from these numbers.
"""

import time
from typing import Sequence

from absl import app
from absl import flags
import jax

from benchmarks import machine
from kernelgan_jax import data as data_lib
from kernelgan_jax import images
from kernelgan_jax import train
from kernelgan_jax.config import get_config
from kernelgan_jax.images import as_float_rgb

_ITERS = flags.DEFINE_integer("iters", 300, "Timed iterations per loop.")
_CHUNK = flags.DEFINE_integer("chunk", 50, "Iterations per scan chunk.")
_IMAGE = flags.DEFINE_string("image", "tests/data/example_lr.png", "Image.")
_OUT = flags.DEFINE_string("loops_results_dir", "benchmarks/results",
                           "Where the JSON goes.")


def time_loop(loop: str, data, config) -> float:
  """Milliseconds per iteration, best of 3 runs after a compiling run."""
  state = train.init_state(jax.random.key(0), config)
  state, _ = train.train(state, data, config, loop=loop, chunk=_CHUNK.value)
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    state, _ = train.train(state, data, config, loop=loop,
                           chunk=_CHUNK.value)
    jax.block_until_ready(state)
    best = min(best, (time.perf_counter() - start) / config.max_iters)
  return best * 1e3


def main(argv: Sequence[str]) -> None:
  del argv
  config = get_config(max_iters=_ITERS.value)
  image = as_float_rgb(images.read_image(_IMAGE.value))
  # Enough pre-drawn crops for the compiling run and three timed runs.
  data = data_lib.prepare(image, config.replace(max_iters=4 * _ITERS.value),
                          jax.random.key(1))
  rows = [{"loop": loop, "ms_per_iter": time_loop(loop, data, config)}
          for loop in ("python", "scan")]
  meta = dict(machine.describe(), iters=_ITERS.value, chunk=_CHUNK.value,
              default_loop="scan")
  table = "\n".join(
      [f"Loop drivers, {meta['device']}, jax {meta['jax']}, {meta['date']}:",
       "", "| loop | ms / iteration |", "|---|---|"]
      + [f"| {r['loop']} | {r['ms_per_iter']:.2f} |" for r in rows]) + "\n"
  machine.save_results(_OUT.value,
                       f"loops-{meta['device']}-{meta['date']}", meta, rows,
                       table)


if __name__ == "__main__":
  app.run(main)
