"""A few iterations: checks the whole pipeline, estimates nothing useful."""

from kernelgan_jax.config import Config


def get_config() -> Config:
  return Config(max_iters=20)
