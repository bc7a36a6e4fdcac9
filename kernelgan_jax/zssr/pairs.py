"""ZSSR training pairs: HR fathers cropped from the input, LR sons made
from them with the degradation kernel, and the gradient-based loss map.

ZSSR (Shocher et al., CVPR 2018) as configured by KernelGAN (Bell-Kligler
et al., NeurIPS 2019): augmentation is off, so a father is a uniformly
placed integer crop of the input image, and its son is the father correlated
with the (estimated) kernel and subsampled, plus noise in real mode.
"""

import jax
import jax.numpy as jnp
import jax.scipy.signal

from kernelgan_jax import data as data_lib
from kernelgan_jax import degradation
from kernelgan_jax.imresize import imresize


def to_gray(image_hwc: jax.Array) -> jax.Array:
  """Luma of the first three channels (`data.luma`, as the original's
  rgb2gray), or the channel mean if C < 3."""
  if image_hwc.shape[-1] >= 3:
    return data_lib.luma(image_hwc)
  return jnp.mean(image_hwc, axis=-1)


@jax.jit(static_argnames="window")
def gradient_loss_map(image_hwc: jax.Array, window: int = 5) -> jax.Array:
  """Per-pixel loss weights from the local gradient magnitude.

  The original's `create_loss_map`: `np.gradient` magnitude of the gray
  image, box-summed over window x window ('same', zero fill), a zero frame
  of (window + window % 2) // 2 pixels, clipped to [0, 255], scaled to mean
  1 over the whole image (all ones for a flat image). Works for any channel
  count (the original crashes on gray images, issue #81).

  Args:
    image_hwc: (H, W, C) image in [0, 1].
    window: box size.

  Returns:
    (H, W, 1) float32 weights, broadcast over channels by the loss.
  """
  gray = to_gray(jnp.asarray(image_hwc, jnp.float32))
  grad_rows, grad_cols = jnp.gradient(gray)
  magnitude = jnp.sqrt(grad_rows**2 + grad_cols**2)
  box = jnp.ones((window, window), jnp.float32)
  summed = jax.scipy.signal.convolve2d(magnitude, box, mode="same")
  margin = (window + window % 2) // 2
  framed = jnp.zeros_like(summed).at[margin:-margin, margin:-margin].set(
      jnp.clip(summed[margin:-margin, margin:-margin], 0.0, 255.0))
  mean = jnp.mean(framed)
  return jnp.where(mean > 0, framed / jnp.where(mean > 0, mean, 1.0),
                   1.0)[..., None]


def crop_shape(image_hw: tuple[int, int], crop_size: int) -> tuple[int, int]:
  """Father size: crop_size, or the image size where that is smaller."""
  return min(crop_size, image_hw[0]), min(crop_size, image_hw[1])


def crop_corner(key: jax.Array, slack_hw: jax.Array) -> jax.Array:
  """A father's top-left corner: round(U[0, 1) * slack) per axis, as the
  original's integer-shift warp.

  Args:
    key: PRNG key.
    slack_hw: (2,) image size minus crop size, per axis (an array, so that
      the draw does not depend on the image's size).

  Returns:
    (2,) int32 (top, left).
  """
  fractions = jax.random.uniform(key, (2,))
  return jnp.round(fractions * slack_hw.astype(jnp.float32)).astype(jnp.int32)


def crop(image_hwc: jax.Array, loss_map_hw1: jax.Array, corner: jax.Array,
         crop_hw: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
  """The father at `corner` (`crop_corner`) and its loss-map crop.

  Args:
    image_hwc: (H, W, C) source image.
    loss_map_hw1: (H, W, 1) loss weights of the source image.
    corner: (2,) int32 top-left corner.
    crop_hw: static (h, w) of the crop.

  Returns:
    ((h, w, C) father, (h, w, 1) weights).
  """
  top, left = corner[0], corner[1]
  father = jax.lax.dynamic_slice(image_hwc, (top, left, 0),
                                 crop_hw + (image_hwc.shape[-1],))
  weights = jax.lax.dynamic_slice(loss_map_hw1, (top, left, 0), crop_hw + (1,))
  return father, weights


def downscale(image_hwc: jax.Array, kernel_kk: jax.Array | None,
              scale: int) -> jax.Array:
  """Degrades an HR image: kernel correlation + subsampling, or, without a
  kernel, MATLAB bicubic downscaling (the original's 'cubic' default).
  """
  if kernel_kk is None:
    return imresize(image_hwc, 1.0 / scale)
  return degradation.downscale(image_hwc, kernel_kk, scale)


def upscale(image_hwc: jax.Array, scale: int,
            output_hw: tuple[int, int]) -> jax.Array:
  """Bicubic (MATLAB) upscale by `scale` to exactly `output_hw`."""
  return imresize(image_hwc, float(scale), output_shape=output_hw)


def father_to_son(key: jax.Array, father_hwc: jax.Array,
                  kernel_kk: jax.Array | None, scale: int,
                  noise_std: float) -> jax.Array:
  """LR son of a father: downscale, add N(0, noise_std^2), clip to [0, 1].

  Args:
    key: PRNG key for the noise (unused when noise_std is 0).
    father_hwc: (h, w, C) HR image.
    kernel_kk: (k, k) degradation kernel, or None for bicubic.
    scale: integer scale factor.
    noise_std: static noise level (0 for synthetic images).

  Returns:
    (ceil(h / scale), ceil(w / scale), C) son in [0, 1].
  """
  son = downscale(father_hwc, kernel_kk, scale)
  if noise_std:
    # A flat draw compiles much faster on XLA:CPU than a 3-D one.
    noise = jax.random.normal(key, (son.size,), son.dtype).reshape(son.shape)
    son = son + noise_std * noise
  return jnp.clip(son, 0.0, 1.0)
