"""Hyper-parameters of KernelGAN (Bell-Kligler, Shocher & Irani, NeurIPS 2019).

Every default is the original's (`configs.py`, `learner.py`, `kernelGAN.py`,
`data.py` of sefibk/KernelGAN; see `../shared/spec/kernelgan.md` sections 1,
5 and 6) except the run's length: 1000 iterations, not 3000. The learning
rate drops 10x every 750 iterations, and on DIV2KRK-protocol sets the
kernels after 1000 iterations score as those after 3000, within the
seed-to-seed spread (README, `benchmarks/iterations.py`); the preset
'paper' (`configs/paper.py`) is the original's 3000. A `Config` is frozen
and hashable, so it can be closed over by `jax.jit` as a static value.
"""

import dataclasses
import importlib.util
import os
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Config:
  """All settings of one kernel estimation.

  Attributes mirror the original's names where it has them.
  """

  # Data.
  input_crop_size: int = 64  # G's input crop; D's real crop is G's output.
  shave_edges: int = 10  # Border dropped from synthetic images.
  real_image: bool = False  # Real-image mode: no edge shave.
  real_noise_std: float = 1.0 / 255  # D's real crops, [0, 1] units.
  fake_noise_std: float = 1.0 / 255  # D's fake inputs, [-1, 1] units.
  grad_map_window: int = 5
  grad_map_percentile: float = 0.97

  # Networks. G is "linear", the original's deep linear generator, or
  # "prior": FKP's trained x2 flow (`kernelgan_jax.prior`) mapping a latent
  # vector z to an 11x11 kernel (Liang et al., CVPR 2021), trained with
  # KernelGAN's own D, losses and schedule; z is kept on the sphere of
  # radius 10 and moved with Adam at `latent_lr`.
  generator: str = "linear"
  latent_lr: float = 5e-4
  prior_path: str | None = None  # The prior's weights; None: the shipped.
  g_chan: int = 64
  d_chan: int = 64
  g_structure: tuple[int, ...] = (7, 5, 3, 1, 1, 1)
  g_init_gain: float = 0.1  # Xavier-normal gain of G's convs.
  d_n_layers: int = 7
  d_kernel_size: int = 7
  bn_epsilon: float = 1e-5
  sn_epsilon: float = 1e-12

  # Optimisation.
  max_iters: int = 1000  # The original's 3000 is the 'paper' preset.
  g_lr: float = 2e-4
  d_lr: float = 2e-4
  beta1: float = 0.5
  beta2: float = 0.999
  lr_decay_every: int = 750
  lr_decay_factor: float = 10.0

  # Loss weights and their schedule (learner.py).
  lambda_bicubic: float = 5.0
  lambda_sum2one: float = 0.5
  lambda_boundaries: float = 0.5
  lambda_centralized_end: float = 1.0
  lambda_sparse_end: float = 5.0
  lambda_bicubic_min: float = 5e-6
  lambda_bicubic_decay: float = 100.0
  lambda_update_every: int = 200
  bic_loss_to_start_change: float = 0.4
  bic_loss_streak: int = 3  # Consecutive iterations below the threshold.
  constraints_at_lambda_bicubic: float = 5e-3
  boundary_mask_scale: float = 30.0
  sparsity_power: float = 0.2

  # Arithmetic: the precision of matrix products and convolutions in the
  # compiled programs. "highest" is full float32 on every backend (GPUs
  # would otherwise use TF32 and TPUs bfloat16 passes); the original ran in
  # float32. "high" or "default" trade accuracy for speed on accelerators.
  matmul_precision: str = "highest"

  # Output.
  n_filtering: int = 40  # Largest values that set the soft threshold.
  x4: bool = False

  @property
  def g_kernel_size(self) -> int:
    """Size of the kernel G represents: 7 + 5 + 3 - 2 = 13."""
    return sum(self.g_structure) - len(self.g_structure) + 1

  @property
  def g_output_size(self) -> int:
    """Side of G's output for one input crop (26 for 64)."""
    return (self.input_crop_size - self.g_kernel_size) // 2 + 1

  @property
  def d_output_size(self) -> int:
    """Side of D's score map for a real or fake patch (20 for 26)."""
    return self.g_output_size - self.d_kernel_size + 1

  @property
  def min_image_size(self) -> int:
    """Smallest input side: the G crop plus the shaved border."""
    border = 0 if self.real_image else 2 * self.shave_edges
    return self.input_crop_size + border

  def replace(self, **changes) -> "Config":
    """A copy with some fields changed (validated)."""
    return validate(dataclasses.replace(self, **changes))


MATMUL_PRECISIONS = ("highest", "high", "default")
GENERATORS = ("linear", "prior")
# 'kernelgan': the original; 'fkp': KernelGAN-FKP as published (module
# `fkp`); 'fkp_lite': KernelGAN's own D, losses and schedule with G
# replaced by FKP's prior of a latent vector (`Config.generator='prior'`);
# 'select': both of the last two, keeping the kernel `reliability.select`
# trusts more.
ESTIMATORS = ("kernelgan", "fkp", "fkp_lite", "select")

# The named presets, the one source of them: `configs/*.py` build on these.
PRESETS = {
    # The original's settings, but 1000 iterations (see the module doc).
    "default": {},
    # The original's settings, 3000 iterations as in the paper.
    "paper": {"max_iters": 3000},
    # A quick look: the first learning-rate period only.
    "quick": {"max_iters": 750},
    # A few iterations: checks the whole pipeline, estimates nothing useful.
    "smoke": {"max_iters": 20},
}


def validate(config: Config) -> Config:
  """Checks the fields that would otherwise fail deep inside training.

  Raises:
    ValueError: naming the offending field.
  """
  if config.matmul_precision not in MATMUL_PRECISIONS:
    raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, "
                     f"got {config.matmul_precision!r}")
  if config.generator not in GENERATORS:
    raise ValueError(f"generator must be one of {GENERATORS}, got "
                     f"{config.generator!r}")
  if config.max_iters < 1:
    raise ValueError(f"max_iters must be >= 1, got {config.max_iters}")
  if config.input_crop_size < config.g_kernel_size + 2 * config.d_kernel_size:
    raise ValueError(
        f"input_crop_size {config.input_crop_size} is too small for a "
        f"{config.g_kernel_size}x{config.g_kernel_size} kernel and D's "
        f"{config.d_kernel_size}x{config.d_kernel_size} receptive field")
  if config.input_crop_size % 2:
    raise ValueError("input_crop_size must be even")
  if config.n_filtering < 1 or config.n_filtering >= config.g_kernel_size**2:
    raise ValueError(
        f"n_filtering must be in [1, {config.g_kernel_size**2 - 1}], "
        f"got {config.n_filtering}")
  if tuple(config.g_structure[-3:]) != (1, 1, 1) or len(
      config.g_structure) != 6:
    raise ValueError("g_structure must be (k1, k2, k3, 1, 1, 1)")
  return config


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


def get_config(preset: str = "default", **overrides) -> Config:
  """Returns a preset by name, or loads `get_config()` from a .py file.

  Args:
    preset: a name in `PRESETS`, or the path of a Python file (e.g.
      `configs/quick.py`) that defines `get_config() -> Config`.
    **overrides: fields to change on top of the preset.

  Raises:
    ValueError: for an unknown preset or a bad field value.
  """
  if preset in PRESETS:
    config = Config(**PRESETS[preset])
  elif preset.endswith(".py"):
    config = _load_config_file(preset)
  else:
    raise ValueError(
        f"unknown config {preset!r}: use one of {sorted(PRESETS)} or the "
        "path of a .py file defining get_config()")
  return config.replace(**overrides)


def _load_config_file(path: str) -> Config:
  if not os.path.isfile(path):
    raise ValueError(f"config file not found: {path}")
  spec = importlib.util.spec_from_file_location("_kernelgan_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path} defines no get_config()")
  config = module.get_config()
  if not isinstance(config, Config):
    raise ValueError(f"get_config() in {path} must return a Config")
  return config
