"""KernelGAN's loss terms as pure functions (spec section 5).

The GAN loss is L1 to constant label maps (neither BCE nor LSGAN; the
author confirms it in sefibk/KernelGAN#5). The kernel regularisers are the
paper's Eq. 4 (Bell-Kligler et al., NeurIPS 2019): sum-to-one, boundaries,
sparsity and centralisation, plus the original code's bicubic constraint.
"""

from jax import lax
import jax.numpy as jnp
from jaxtyping import Array, Float
import numpy as np

from kernelgan_jax import degradation
from kernelgan_jax.imresize import BICUBIC_X2_TAPS


def gan_loss(d_map: Float[Array, "h w"], is_real: bool) -> Float[Array, ""]:
  """Mean absolute difference between D's map and the label (spec 5.1)."""
  return jnp.mean(jnp.abs(d_map - (1.0 if is_real else 0.0)))


def bicubic_target(g_input_hwc: Float[Array, "h w c"], out_size: int
                   ) -> Float[Array, "s s"]:
  """The bicubic x2 downscale of G's input, as the original computes it.

  The 8x8 filter (`imresize.BICUBIC_X2_TAPS`, spec 5.2) is applied without
  groups, so the result is the SUM over colour channels of their bicubic
  downscales (spec 5.2, a kept quirk: the schedule's 0.4 threshold was
  tuned against it). Padding 3, stride 2, then
  centre-cropped to G's output size; only the kept centre is computed, with
  `degradation.downscale(..., padding='valid')` (on XLA:CPU much faster
  than the conv).
  """
  taps = np.outer(BICUBIC_X2_TAPS, BICUBIC_X2_TAPS).astype(np.float32)
  pad, size = 3, taps.shape[0]
  full = (g_input_hwc.shape[0] + 2 * pad - size) // 2 + 1
  # Output row `shave` (the first kept) reads padded rows from 2 * shave on.
  start = 2 * ((full - out_size) // 2)
  span = 2 * (out_size - 1) + size
  summed = jnp.pad(jnp.sum(g_input_hwc, -1, keepdims=True),
                   [(pad, pad), (pad, pad), (0, 0)])
  window = lax.slice(summed, (start, start, 0), (start + span, start + span, 1))
  return degradation.downscale(window, jnp.asarray(taps),
                               padding="valid")[..., 0]


def bicubic_loss(g_input_hwc: Float[Array, "h w c"],
                 g_output_hwc: Float[Array, "s s c"]) -> Float[Array, ""]:
  """MSE between G's output and the (channel-summed) bicubic target."""
  target = bicubic_target(g_input_hwc, g_output_hwc.shape[0])
  return jnp.mean((g_output_hwc - target[..., None]) ** 2)


def sum_to_one_loss(kernel: Float[Array, "k k"]) -> Float[Array, ""]:
  """|1 - sum(k)|: the kernel must preserve brightness."""
  return jnp.abs(1.0 - jnp.sum(kernel))


def boundary_mask(size: int = 13, scale: float = 30.0) -> np.ndarray:
  """Penalty weights for the kernel's outer 2-pixel frame (spec 5.3).

  `scale` x (1 - a normalised Gaussian of sigma = size), zero on the
  central block. For 13: corners 5.756, 88 non-zeros summing to 303.53.
  """
  z = np.arange(-size // 2 + 1, size // 2 + 1)
  gauss = np.exp(-z**2 / (2.0 * size**2))
  mask = 1.0 - np.outer(gauss, gauss) / gauss.max()**2
  center = size // 2 + size % 2
  margin = (size - center) // 2 - 1
  mask[margin:size - margin, margin:size - margin] = 0.0
  return scale * mask


def boundaries_loss(kernel: Float[Array, "k k"], mask: np.ndarray
                    ) -> Float[Array, ""]:
  """mean |k * mask|: pushes the kernel's frame to zero."""
  return jnp.mean(jnp.abs(kernel * mask))


def centralized_loss(kernel: Float[Array, "k k"], target: float
                     ) -> Float[Array, ""]:
  """Mean squared distance of the centre of mass from `target` (6.5)."""
  idx = jnp.arange(kernel.shape[0], dtype=kernel.dtype)
  total = jnp.sum(kernel)
  com_row = jnp.sum(idx * jnp.sum(kernel, axis=1)) / total
  com_col = jnp.sum(idx * jnp.sum(kernel, axis=0)) / total
  return 0.5 * ((com_row - target)**2 + (com_col - target)**2)


def sparsity_loss(kernel: Float[Array, "k k"], power: float = 0.2
                  ) -> Float[Array, ""]:
  """mean |k|^0.2, with a zero (not infinite) gradient at exact zeros."""
  magnitude = jnp.abs(kernel)
  nonzero = magnitude > 0
  safe = jnp.where(nonzero, magnitude, 1.0)
  return jnp.mean(jnp.where(nonzero, safe**power, 0.0))
