"""The original's settings: 3000 iterations, as in the paper.

A config file returns a `kernelgan_jax.config.Config`; start from a preset
(`config.PRESETS`) and change fields with `.replace(...)`, e.g.
`get_config("quick").replace(x4=True)`.
"""

from kernelgan_jax import config


def get_config() -> config.Config:
  return config.get_config("paper")
