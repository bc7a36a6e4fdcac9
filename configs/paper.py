"""The original's settings: 3000 iterations, as in the paper."""

from kernelgan_jax.config import Config


def get_config() -> Config:
  return Config(max_iters=3000)
