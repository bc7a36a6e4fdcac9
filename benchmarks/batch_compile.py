r"""What a vmapped batch compiles in a fresh process with no caches.

  python -m benchmarks.batch_compile --batch=4 [--iters=50] [--tag=...]

The batch path (`strategy='vmap'`, the default on GPU and TPU) compiles its
programs once per batch size; with an empty cache that is most of a first
run. In this process, with JAX's compilation log on and no persistent
cache: `--batch` small random images through `batch.estimate_kernels`,
then XLA's seconds per program (`machine.compile_seconds`) and the call's
wall time. Run it in turn on two commits to compare them. Writes
<results_dir>/batch_compile[-<tag>]-<device>-<date>.{json,md}.
"""

import io
import logging
import time
from typing import Sequence

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax.config import get_config

_BATCH = flags.DEFINE_integer("batch", 4, "Images in the batch.")
_ITERS = flags.DEFINE_integer("iters", 50, "Iterations (one chunk).")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string("tag", "", "Appended to the results' file names.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  log = io.StringIO()
  handler = logging.StreamHandler(log)
  logging.getLogger("jax").addHandler(handler)
  logging.getLogger("jax").setLevel(logging.WARNING)
  jax.config.update("jax_log_compiles", True)
  rng = np.random.default_rng(0)
  images = [np.kron(rng.random((50, 60, 3)), np.ones((2, 2, 1)))
            for _ in range(_BATCH.value)]
  start = time.perf_counter()
  batch.estimate_kernels(images, get_config(max_iters=_ITERS.value),
                         strategy="vmap")
  seconds = time.perf_counter() - start
  compiled = machine.compile_seconds(log.getvalue())
  meta = dict(machine.describe(), batch=_BATCH.value, iters=_ITERS.value,
              seconds=seconds, compile_seconds=compiled, tag=_TAG.value)
  programs = ", ".join(f"{name} {s:.2f} s" for name, s in
                       sorted(compiled.items(), key=lambda i: -i[1]))
  text = (f"A vmapped batch of {_BATCH.value} images of 100x120, "
          f"{_ITERS.value} iterations, fresh process, no caches"
          + (f", {_TAG.value}" if _TAG.value else "")
          + f": {meta['device']} ({meta['processor']}), jax {meta['jax']}, "
          f"{meta['date']}. `estimate_kernels` {seconds:.2f} s, of which XLA "
          f"compiled {sum(compiled.values()):.2f} s: {programs}.\n")
  tag = f"-{_TAG.value}" if _TAG.value else ""
  machine.save_results(_RESULTS.value,
                       f"batch_compile{tag}-{meta['device']}-{meta['date']}",
                       meta, [compiled], text)


if __name__ == "__main__":
  app.run(main)
