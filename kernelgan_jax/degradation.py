"""Kernel degradation: correlate with a blur kernel, then subsample (JAX).

This is the degradation model of KernelGAN and of the DIV2KRK benchmark:

  lr = correlate(hr, kernel, mode='reflect')[::scale, ::scale]   (per channel)

where `correlate` is `scipy.ndimage.correlate` with its default origin, i.e.
the kernel tap at index (k // 2, k // 2) multiplies the pixel being computed,
for odd and even kernel sizes alike. scipy's 'reflect' border mode repeats the
edge pixel (d c b a | a b c d | d c b a), which is numpy's 'symmetric' pad.

`downscale` computes only the kept output pixels with one strided
`jax.lax.conv_general_dilated` call, so it is cheap, jit-able and vmap-able.
"""

import jax
import jax.numpy as jnp


def _symmetric_pad_widths(kernel_size: int) -> tuple[int, int]:
  """Before/after padding that turns 'same' correlation into 'valid'.

  Args:
    kernel_size: Side length k of the kernel along one axis.

  Returns:
    (k // 2, k - 1 - k // 2): the kernel origin sits at index k // 2.
  """
  before = kernel_size // 2
  return before, kernel_size - 1 - before


def downscale(image_hwc: jax.Array, kernel_kk: jax.Array,
              scale: int = 2) -> jax.Array:
  """Blurs every channel with `kernel_kk` and keeps every `scale`-th pixel.

  Equals, per channel c,
  `scipy.ndimage.correlate(image_hwc[..., c], kernel_kk, mode='reflect')`
  `[::scale, ::scale]`, but only the kept pixels are computed.

  Args:
    image_hwc: Image of shape (H, W, C) (a 2-D (H, W) image is also accepted
      and gives a 2-D result), any float dtype.
    kernel_kk: Correlation kernel of shape (k, k), odd or even k (a
      rectangular (kh, kw) kernel also works). It is not normalised here.
    scale: Integer subsampling factor (static under jit).

  Returns:
    Array of shape (ceil(H / scale), ceil(W / scale), C) (or 2-D for a 2-D
    input) in the result dtype of image and kernel.
  """
  image_hwc = jnp.asarray(image_hwc)
  kernel_kk = jnp.asarray(kernel_kk)
  if kernel_kk.ndim != 2:
    raise ValueError(f'kernel must be 2-D (k, k), got {kernel_kk.shape}')
  if image_hwc.ndim == 2:
    return downscale(image_hwc[..., None], kernel_kk, scale)[..., 0]
  if image_hwc.ndim != 3:
    raise ValueError(f'image must be (H, W, C), got {image_hwc.shape}')
  dtype = jnp.result_type(image_hwc.dtype, kernel_kk.dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.float32
  pad_rows = _symmetric_pad_widths(kernel_kk.shape[0])
  pad_cols = _symmetric_pad_widths(kernel_kk.shape[1])
  # Channels become the batch of a single-feature convolution: (C, 1, H, W).
  image_c1hw = jnp.transpose(image_hwc.astype(dtype), (2, 0, 1))[:, None]
  padded = jnp.pad(image_c1hw, ((0, 0), (0, 0), pad_rows, pad_cols),
                   mode='symmetric')
  out_c1hw = jax.lax.conv_general_dilated(
      padded,
      kernel_kk.astype(dtype)[None, None],
      window_strides=(scale, scale),
      padding='VALID',
      dimension_numbers=('NCHW', 'OIHW', 'NCHW'),
      precision=jax.lax.Precision.HIGHEST)
  return jnp.transpose(out_c1hw[:, 0], (1, 2, 0))
