"""ZSSR hyper-parameters: the original's defaults and a faster CPU preset.

Defaults follow ZSSRforKernelGAN's `zssr_configs.py` (KernelGAN spec 8.3 and
11), i.e. ZSSR (Shocher et al., CVPR 2018) as KernelGAN (Bell-Kligler et al.,
NeurIPS 2019) runs it: no augmentation, no geometric self-ensemble, a
gradient-weighted L1 loss and the adaptive learning-rate policy.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ZSSRConfig:
  """ZSSR training and inference settings.

  Attributes:
    width: feature channels of the hidden conv layers.
    depth: number of 3x3 conv layers (ReLU after all but the last).
    init_variance: weight variance times fan-in (std = sqrt(v / fan_in)).
    crop_size: side of the HR-father crops (smaller if the image is).
    learning_rate: initial Adam learning rate.
    min_learning_rate: training stops once the rate falls below this.
    max_iters: iteration cap per scale.
    min_iters: least iterations between two learning-rate changes.
    run_test_every: reconstruction test period (iterations).
    lr_check_every: the policy runs when (iteration + 1) % this == 0.
    lr_slope_range: iterations spanned by the fitted test errors; the fit
      uses the last `lr_slope_range // run_test_every` tests.
    lr_change_ratio: decay when -ratio * slope < std-error of the slope.
    back_projection_iters: iterations on the output, and as many again on
      the (single-output) median, i.e. twice this in total; 0 in real mode.
    real_noise_std: std of the noise added to LR sons in real mode, times
      `noise_scale`.
    loss_map_window: box size of the gradient-magnitude loss map.
    chunk_size: with loop 'scan', at most this many iterations per jitted
      `lax.scan` (a scan never spans a reconstruction test; the 'python'
      loop reads the stop flag back at every policy check).
    loop: how the host drives the iterations (`progress.LOOPS`): 'python' (a
      host loop over a jitted step), 'scan' (`lax.scan` over chunks), or
      None: 'python' on CPU, where XLA's while loops run convolutions far
      slower, 'scan' elsewhere.
    matmul_precision: of convolutions and matrix products: 'highest' (full
      float32 on every backend, as the original), 'high' or 'default'.
  """
  width: int = 64
  depth: int = 8
  init_variance: float = 0.1
  crop_size: int = 128
  learning_rate: float = 1e-3
  min_learning_rate: float = 9e-6
  max_iters: int = 3000
  min_iters: int = 256
  run_test_every: int = 50
  lr_check_every: int = 60
  lr_slope_range: int = 256
  lr_change_ratio: float = 1.5
  back_projection_iters: int = 2
  real_noise_std: float = 0.0125
  loss_map_window: int = 5
  chunk_size: int = 50
  loop: str | None = None
  matmul_precision: str = "highest"

  @property
  def num_fit_points(self) -> int:
    """How many recorded test errors the learning-rate fit uses."""
    return max(3, self.lr_slope_range // self.run_test_every)


def fast_cpu_config() -> ZSSRConfig:
  """A preset for CPUs: 64x64 crops and at most 1000 iterations.

  Every other setting is the original's. A 64 crop is a quarter of the
  arithmetic of a 128 crop and still far wider than the network's 17-pixel
  receptive field; what it costs in PSNR is measured in benchmarks/README.md
  (ZSSR, the `fast` and `paper` presets).
  """
  return ZSSRConfig(crop_size=64, max_iters=1000)
