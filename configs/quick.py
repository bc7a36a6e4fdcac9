"""A quick look: 750 iterations (the first LR period), x4 kernel too."""

from kernelgan_jax.config import Config


def get_config() -> Config:
  return Config(max_iters=750, x4=True)
