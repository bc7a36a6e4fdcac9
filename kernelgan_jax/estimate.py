"""The public estimator: one image in, its SR kernels out.

`estimate_kernel` chains the algorithm's stages: training data (`data`),
GAN training (`train`), then the kernel G represents, post-processed
(`kernel`). Bell-Kligler et al., NeurIPS 2019. 'fkp' (its own training,
`fkp`) and 'select' (two candidate runs) go through `batch`.
"""

from typing import Optional

import numpy as np

from kernelgan_jax import batch
from kernelgan_jax import data as data_lib
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import train as train_lib
from kernelgan_jax.config import Config, estimator_config
from kernelgan_jax.kernel import KernelEstimate
from kernelgan_jax.progress import ProgressFn


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
      the kernel `reliability.select` trusts kept); see
      `config.ESTIMATORS`.
    progress: optional callback progress(done, total, metrics).
    loop: 'scan' or 'python' (`progress.LOOPS`).

  Returns:
    A `KernelEstimate`.

  Raises:
    ImageError: for an image too small or without texture.
    ValueError: for an unknown estimator or a bad config.
  """
  if estimator in ("fkp", "select"):
    # select's candidates one per device (`batch.run_estimators`): side by
    # side where there are several CPU devices.
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
  return kernel_lib.estimate_from_raw(train_lib.final_kernel(state, config),
                                      history, seed, config)
