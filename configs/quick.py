"""A quick look: 750 iterations, the first learning-rate period.

A config file returns a `kernelgan_jax.config.Config`; start from a preset
(`config.PRESETS`) and change fields with `.replace(...)`, e.g.
`get_config("quick").replace(x4=True)`.
"""

from kernelgan_jax import config


def get_config() -> config.Config:
  return config.get_config("quick")
