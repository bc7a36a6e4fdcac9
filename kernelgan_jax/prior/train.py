r"""Command line: train FKP's x2 kernel prior and write its weights.

  python -m kernelgan_jax.prior.train [--steps=50000] [--seed=0] \
      [--output=kernelgan_jax/prior/fkp_x2.npz] [--quiet]

Trains as `training` describes (spec 3), then prints the held-out NLL on
FKP's validation grid and stores it with the weights. Bad flags end with one
line on stderr and exit status 1.
"""

import os
import sys
import time

from absl import flags
from absl import logging
import numpy as np

from kernelgan_jax import commands
from kernelgan_jax.prior import flow
from kernelgan_jax.prior.training import (FRESH_KERNELS, VALIDATION_SEED,
                                          negative_log_likelihood, train,
                                          training_logits, validation_logits)
from kernelgan_jax.progress import ProgressBar

_STEPS = flags.DEFINE_integer("steps", 50_000, "Training steps.",
                              lower_bound=1)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the initialisation and the training kernels.",
    lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Kernels per step.",
                                   lower_bound=2)
_OUTPUT = flags.DEFINE_string("output", flow.DEFAULT_PATH,
                              "Where to write the weights (.npz).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")


def _fail(message: str) -> None:
  commands.fail("kernelgan_jax.prior.train", message)


def main(argv: list[str]) -> None:
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  output = _OUTPUT.value
  folder = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(folder):
    _fail(f"--output: the folder {folder} does not exist")
  if os.path.isdir(output):
    _fail(f"--output: {output} is a directory")
  steps, seed = _STEPS.value, _SEED.value
  progress = None if _QUIET.value else ProgressBar(sys.stderr,
                                                   fields={"loss": "NLL"})
  start = time.perf_counter()
  prior = train(steps, seed, _BATCH_SIZE.value, progress)
  seconds = time.perf_counter() - start
  normalization = float(prior.normalization)
  validation = validation_logits(normalization)
  fresh_kernels = training_logits(np.random.default_rng(VALIDATION_SEED),
                                  FRESH_KERNELS, normalization)
  (heldout, halfwidth), (fresh, _) = negative_log_likelihood(
      prior, validation, fresh_kernels)
  try:
    flow.save_prior(output, prior, steps=steps, seed=seed,
                    batch_size=_BATCH_SIZE.value, scale=flow.SCALE,
                    heldout_nll=heldout, heldout_nll_halfwidth=halfwidth,
                    fresh_kernel_nll=fresh, train_seconds=seconds)
  except OSError as error:
    _fail(f"cannot write {output}: {error}")
  print(f"held-out NLL: {heldout:.3f} +- {halfwidth:.3f} nats per kernel "
        f"(FKP x2 validation grid, {len(validation)} kernels, eval mode); "
        f"{fresh:.3f} on {FRESH_KERNELS} fresh training kernels")
  print(f"wrote {output} ({steps} steps, seed {seed}, {seconds:.0f} s)")


def run() -> None:
  """Console entry point."""
  commands.run(main, "kernelgan_jax.prior.train")


if __name__ == "__main__":
  run()
