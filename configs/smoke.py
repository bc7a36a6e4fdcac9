"""A few iterations: checks the whole pipeline, estimates nothing useful.

A config file returns a `kernelgan_jax.config.Config`; start from a preset
(`config.PRESETS`) and change fields with `.replace(...)`, e.g.
`get_config("quick").replace(x4=True)`.
"""

from kernelgan_jax import config


def get_config() -> config.Config:
  return config.get_config("smoke")
