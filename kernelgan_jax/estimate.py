"""The public estimator: one image in, its SR kernels out.

`estimate_kernel` chains the algorithm's stages: training data (`data`),
GAN training (`train`), then the kernel G represents, post-processed
(`kernel`). Bell-Kligler et al., NeurIPS 2019.
"""

from typing import Optional

import numpy as np

from kernelgan_jax import data as data_lib
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import train as train_lib
from kernelgan_jax.config import Config, validate
from kernelgan_jax.kernel import KernelEstimate
from kernelgan_jax.progress import ProgressFn


# 'kernelgan': the original; 'fkp': KernelGAN-FKP as published (module
# `fkp`); 'fkp_lite': KernelGAN's own D, losses and schedule with G
# replaced by FKP's prior of a latent vector (`Config.generator='prior'`);
# 'select': both of the last two, keeping the kernel `reliability.select`
# trusts more.
ESTIMATORS = ("kernelgan", "fkp", "fkp_lite", "select")


def estimate_from_raw(raw_kernel: np.ndarray, history: dict[str, np.ndarray],
                      seed: int, config: Config) -> KernelEstimate:
  """The post-processed x2 and analytic x4 kernels of a trained G's kernel:
  the original's soft threshold and shift, or for the prior's kernels
  (no noisy tails) only the shift (`kernel.centred_kernel`)."""
  if config.generator == "prior":
    kernel_x2 = kernel_lib.centred_kernel(raw_kernel, 2)
  else:
    kernel_x2 = kernel_lib.post_process(raw_kernel, config.n_filtering)
  return KernelEstimate(
      kernel_x2=kernel_x2,
      kernel_x4=kernel_lib.analytic_kernel_x4(kernel_x2.astype(np.float64)),
      raw_kernel=raw_kernel, history=history, seed=seed,
      estimator="fkp_lite" if config.generator == "prior" else "kernelgan")


def estimator_config(config: Optional[Config], estimator: str) -> Config:
  """The validated KernelGAN config an estimator trains with.

  Raises:
    ValueError: for an unknown estimator.
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f"unknown estimator {estimator!r}: use one of "
                     f"{', '.join(ESTIMATORS)}")
  config = validate(config or Config())
  if estimator == "fkp_lite":
    config = config.replace(generator="prior")
  return config


def estimate_kernel(image: np.ndarray, config: Optional[Config] = None,
                    seed: int = 0, *, estimator: str = "kernelgan",
                    progress: Optional[ProgressFn] = None,
                    loop: str = "scan") -> KernelEstimate:
  """Estimates the x2 (and analytic x4) SR kernel of one LR image.

  Args:
    image: H x W [x C] array; uint8/uint16, or float in [0, 1].
    config: settings; the original's defaults when None. For 'fkp' a
      `fkp.FkpConfig`, or a `Config` whose x4, real-image and precision
      fields it takes (with FKP's own iteration counts).
    seed: makes the crops, initial weights and noise reproducible.
    estimator: 'kernelgan' (the original), 'fkp' (KernelGAN-FKP, Liang et
      al., CVPR 2021: its own WGAN-GP critic and schedule, `fkp`) or
      'fkp_lite' (KernelGAN with G replaced by FKP's prior of a latent)
      or 'select' (the last two, one per device when there are several,
      the kernel `reliability.select` trusts kept); see `ESTIMATORS`.
    progress: optional callback progress(done, total, metrics).
    loop: 'scan' or 'python' (`progress.LOOPS`).

  Returns:
    A `KernelEstimate`.

  Raises:
    ImageError: for an image too small or without texture.
    ValueError: for an unknown estimator or a bad config.
  """
  if estimator == "fkp":
    from kernelgan_jax import fkp  # pylint: disable=g-import-not-at-top
    return fkp.estimate_kernel_fkp(image, fkp.from_config(config), seed,
                                   progress=progress)
  if estimator == "select":
    # Its candidates one per device (`batch.run_estimators`): side by side
    # where there are several CPU devices. `batch` imports this module.
    from kernelgan_jax import batch  # pylint: disable=g-import-not-at-top
    [[estimate]] = batch.estimate_kernels(
        [image], config, [seed], estimator=estimator, loop=loop,
        progress=progress, strategy="sequential")
    return estimate
  config = estimator_config(config, estimator)
  data_key, init_key = train_lib.seed_keys(seed)
  data = data_lib.prepare(images.as_float_rgb(image), config, data_key)
  state = train_lib.init_state(init_key, config)
  state, history = train_lib.train(state, data, config, loop=loop,
                                   progress=progress)
  return estimate_from_raw(train_lib.final_kernel(state, config), history,
                           seed, config)
