"""ZSSR super-resolution of one image with a given (estimated) kernel.

The SR stage of KernelGAN (Bell-Kligler et al., NeurIPS 2019, spec 8.3):
ZSSR (Shocher et al., CVPR 2018) trained on the input alone, with LR sons
made by the estimated kernel. x4 is gradual: the x2 scale is trained first,
then the same weights (and Adam state) continue at x4 with the x4 kernel,
fathers still being crops of the input. The output is one forward pass on
the whole input followed by back-projection (none in real mode).
"""

import jax
import jax.numpy as jnp
import numpy as np

from kernelgan_jax.kernel import kernel_shift
from kernelgan_jax.progress import ProgressFn
from kernelgan_jax.zssr import network
from kernelgan_jax.zssr import pairs
from kernelgan_jax.zssr import train
from kernelgan_jax.zssr.config import ZSSRConfig


def back_projection(sr_hwc: jax.Array, lr_hwc: jax.Array,
                    kernel_kk: jax.Array | None, scale: int) -> jax.Array:
  """One back-projection step: add the upscaled LR residual, clip.

  sr + bicubic_up(lr - downscale(sr, kernel)), clipped to [0, 1].

  Args:
    sr_hwc: (sH, sW, C) current SR estimate.
    lr_hwc: (H, W, C) the LR input.
    kernel_kk: degradation kernel, or None for bicubic.
    scale: integer scale factor.

  Returns:
    (sH, sW, C) corrected estimate.
  """
  residual = lr_hwc - pairs.downscale(sr_hwc, kernel_kk, scale)
  correction = pairs.upscale(residual, scale, sr_hwc.shape[:2])
  return jnp.clip(sr_hwc + correction, 0.0, 1.0)


@jax.jit(static_argnames=("scale", "iterations"))
def back_projected(sr_hwc: jax.Array, lr_hwc: jax.Array,
                   kernel_kk: jax.Array | None, scale: int,
                   iterations: int) -> jax.Array:
  """`iterations` steps of `back_projection`, in a loop: XLA compiles one
  step (unrolled, the steps' shifted slices, 31 x 31 of them at x4, took
  XLA:CPU far more memory to compile than the run needs)."""
  return jax.lax.fori_loop(
      0, iterations,
      lambda _, sr: back_projection(sr, lr_hwc, kernel_kk, scale), sr_hwc)


_upscaled = jax.jit(pairs.upscale, static_argnames=("scale", "output_hw"))


def final_output(params: network.Params, lr_hwc: jax.Array,
                 kernel_kk: jax.Array | None, scale: int,
                 back_projection_iters: int) -> np.ndarray:
  """Forward pass on the whole input, then back-projection.

  As the original's `final_test` without self-ensemble: the iterations run
  on the single output and again on the "median" of that one output. The
  network runs tile by tile (`network.apply_tiled`), so the whole image
  never holds more than its few colour channels.

  Args:
    params: trained network.
    lr_hwc: (H, W, C) input image.
    kernel_kk: degradation kernel of this scale, or None for bicubic.
    scale: integer scale factor.
    back_projection_iters: iterations per pass (two passes).

  Returns:
    (scale * H, scale * W, C) image in [0, 1], on the host.
  """
  output_hw = (scale * lr_hwc.shape[0], scale * lr_hwc.shape[1])
  upscaled = _upscaled(lr_hwc, scale, output_hw)
  sr = np.clip(network.apply_tiled(params, upscaled), 0.0, 1.0)
  return np.asarray(back_projected(sr, lr_hwc, kernel_kk, scale,
                                   2 * back_projection_iters))


def _split_alpha(image_hwc: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
  """Colour channels and, for gray+alpha or RGBA input, the alpha channel."""
  if image_hwc.shape[-1] in (2, 4):
    return image_hwc[..., :-1], image_hwc[..., -1:]
  return image_hwc, None


def _prepared_kernel(kernel: np.ndarray | None, scale: int) -> jax.Array | None:
  """The original re-shifts every kernel for its scale (spec 8.3)."""
  if kernel is None:
    return None
  return jnp.asarray(kernel_shift(np.asarray(kernel, np.float64), scale),
                     jnp.float32)


def super_resolve(image_01: np.ndarray, kernel_x2: np.ndarray | None, *,
                  x4: bool = False, kernel_x4: np.ndarray | None = None,
                  real: bool = False, noise_scale: float = 1.0,
                  config: ZSSRConfig | None = None, seed: int = 0,
                  progress: ProgressFn | None = None) -> np.ndarray:
  """Super-resolves an image x2 (or x4) with ZSSR and the given kernel(s).

  Args:
    image_01: (H, W, C) or (H, W) image in [0, 1]; C may be 1 (gray), 2
      (gray + alpha), 3 (RGB) or 4 (RGBA). Alpha is not learned: it is
      upscaled bicubically.
    kernel_x2: (k, k) x2 degradation kernel (e.g. KernelGAN's estimate), or
      None for MATLAB bicubic degradation (plain ZSSR).
    x4: also train and output the x4 scale (gradual x2 then x4).
    kernel_x4: the x4 kernel (e.g. `kernel.analytic_kernel_x4(kernel_x2)`);
      required with x4 unless kernel_x2 is None.
    real: real-image mode: noisy sons, no back-projection.
    noise_scale: multiplies the real-mode son noise std (0.0125).
    config: settings; defaults to the original's (`ZSSRConfig()`).
    seed: PRNG seed; equal seeds give equal outputs on one backend.
    progress: optional callback(done, total, metrics) during training.

  Returns:
    (2H, 2W, C) (or (4H, 4W, C) with x4; 2-D in, 2-D out) float32 in [0, 1].
  """
  config = config or ZSSRConfig()
  # Traced under the config's precision: full float32 by default, also on
  # GPUs (TF32 otherwise) and TPUs (bfloat16 passes otherwise).
  with jax.default_matmul_precision(config.matmul_precision):
    return _super_resolve(image_01, kernel_x2, x4, kernel_x4, real,
                          noise_scale, config, seed, progress)


def _super_resolve(image_01, kernel_x2, x4, kernel_x4, real, noise_scale,
                   config, seed, progress):
  if x4 and kernel_x4 is None and kernel_x2 is not None:
    raise ValueError("x4 needs kernel_x4 (analytic_kernel_x4(kernel_x2)).")
  image = np.asarray(image_01, np.float32)
  squeeze = image.ndim == 2
  image = image[..., None] if squeeze else image
  colour, alpha = _split_alpha(image)
  colour = jnp.asarray(colour)

  scales = [(2, kernel_x2)] + ([(4, kernel_x4)] if x4 else [])
  init_key, *stage_keys = jax.random.split(jax.random.key(seed),
                                           1 + len(scales))
  params = network.init_params(init_key, colour.shape[-1], config.width,
                               config.depth, config.init_variance)
  loss_map = pairs.gradient_loss_map(colour, config.loss_map_window)
  noise_std = config.real_noise_std * noise_scale if real else 0.0
  adam_state = None
  for (scale, kernel), key in zip(scales, stage_keys):
    kernel = _prepared_kernel(kernel, scale)
    state = train.init_state(params, adam_state, config)
    inputs = train.StageInputs(colour, loss_map, kernel, key)
    state = train.train_stage(state, inputs, config=config, scale=scale,
                              noise_std=noise_std, progress=progress)
    params, adam_state = state.params, state.adam

  bp_iters = 0 if real else config.back_projection_iters
  sr = final_output(params, colour, kernel, scale, bp_iters)
  if alpha is not None:
    alpha_sr = pairs.upscale(jnp.asarray(alpha), scale, sr.shape[:2])
    sr = np.concatenate([sr, np.clip(np.asarray(alpha_sr), 0, 1)], axis=-1)
  return sr[..., 0] if squeeze else sr
