"""Kernel degradation: correlate with a blur kernel, then subsample.

This is the degradation model of KernelGAN and of the DIV2KRK benchmark:

  lr = correlate(hr, kernel, mode='reflect')[::scale, ::scale]   (per channel)

where `correlate` is `scipy.ndimage.correlate` with its default origin, i.e.
the kernel tap at index (k // 2, k // 2) multiplies the pixel being computed,
for odd and even kernel sizes alike. scipy's 'reflect' border mode repeats the
edge pixel (d c b a | a b c d | d c b a), which is numpy's 'symmetric' pad.

`downscale` is the JAX version (jit-able, vmap-able, differentiable); with
padding='valid' it is G's forward (no borders), as training runs it.
`downscale_np` is the numpy/scipy version, in float64, for data sets and
scores on the host.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int
import numpy as np


def _symmetric_pad_widths(kernel_size: int) -> tuple[int, int]:
  """Before/after padding that turns 'same' correlation into 'valid'.

  Args:
    kernel_size: Side length k of the kernel along one axis.

  Returns:
    (k // 2, k - 1 - k // 2): the kernel origin sits at index k // 2.
  """
  before = kernel_size // 2
  return before, kernel_size - 1 - before


def _column_taps(size: int, width: int, out_width: int, stride: int
                 ) -> np.ndarray:
  """sel[b, x, j] = 1 where input column x is tap b of output column j."""
  sel = np.zeros((size, width, out_width), np.float32)
  for b in range(size):
    sel[b, stride * np.arange(out_width) + b, np.arange(out_width)] = 1.0
  return sel


def _valid_banded(image_hwc: Float[Array, 'h w c'],
                  kernel_kk: Float[Array, 'kh kw'],
                  stride: int) -> Float[Array, 'h2 w2 c']:
  """Valid correlation at every stride-th pixel, as one matrix product.

  Each output row i gathers the kh input rows stride*i + a, and each kernel
  row a becomes a banded (Toeplitz) [width, out_width] matrix. On XLA:CPU
  this, with its gradient, is several times faster than a one-channel
  strided `lax.conv` (benchmarks/README.md, "Where the CPU time goes").
  """
  h, w, _ = image_hwc.shape
  size_h, size_w = kernel_kk.shape
  out_h, out_w = (h - size_h) // stride + 1, (w - size_w) // stride + 1
  banded = jnp.einsum('ab,bxj->axj', kernel_kk,
                      _column_taps(size_w, w, out_w, stride))
  rows = image_hwc[stride * np.arange(out_h)[:, None] + np.arange(size_h)]
  return jnp.einsum('iaxc,axj->ijc', rows, banded)


def _reflect_index(index: Int[Array, 'n'], size: Int[Array, '']
                   ) -> Int[Array, 'n']:
  """Where index (any integer) lands in [0, size) under 'symmetric'
  reflection (d c b a | a b c d | d c b a), repeated as often as needed."""
  folded = jnp.mod(index, 2 * size)
  return jnp.where(folded < size, folded, 2 * size - 1 - folded)


def _reflect_pad(canvas_chw: Float[Array, 'c h w'], size_hw: Int[Array, '2'],
                 kernel_shape: tuple[int, int]) -> Float[Array, 'c hp wp']:
  """The canvas's top-left size_hw image, padded as numpy's 'symmetric' for
  a 'valid' correlation with a kernel_shape kernel; the rest is arbitrary.

  `size_hw` may be traced, so one program serves every image that fits the
  canvas: only the border strips are gathered, the body is copied.
  """
  padded = canvas_chw
  for axis in (1, 2):
    before, after = _symmetric_pad_widths(kernel_shape[axis - 1])
    size = size_hw[axis - 1]
    top = jnp.take(padded, _reflect_index(jnp.arange(-before, 0), size),
                   axis=axis)
    bottom = jnp.take(padded, _reflect_index(size + jnp.arange(after), size),
                      axis=axis)
    zeros = jnp.zeros_like(bottom)
    padded = jax.lax.dynamic_update_slice_in_dim(
        jnp.concatenate([top, padded, zeros], axis=axis), bottom,
        before + size, axis=axis)
  return padded


def _valid_strided(padded_chw: Float[Array, 'c h w'],
                   kernel_kk: Float[Array, 'kh kw'],
                   stride: int) -> Float[Array, 'c h2 w2']:
  """Valid correlation at every stride-th pixel: a sum of kh * kw strided
  slices, which XLA fuses, so only kept pixels are computed.

  Each kernel row's taps are summed first and the row sums pairwise: on
  XLA:CPU that is faster than one chain of all taps and than a strided
  one-feature `lax.conv`, and as accurate as the conv at HIGHEST.
  """
  channels, h, w = padded_chw.shape
  size_h, size_w = kernel_kk.shape
  out_h, out_w = (h - size_h) // stride + 1, (w - size_w) // stride + 1
  rows = []
  for a in range(size_h):
    row = None
    for b in range(size_w):
      tap = kernel_kk[a, b] * jax.lax.slice(
          padded_chw, (0, a, b),
          (channels, a + stride * (out_h - 1) + 1,
           b + stride * (out_w - 1) + 1), (1, stride, stride))
      row = tap if row is None else row + tap
    rows.append(row)
  while len(rows) > 1:
    pairs = [rows[i] + rows[i + 1] for i in range(0, len(rows) - 1, 2)]
    rows = pairs + rows[len(rows) - len(rows) % 2:]
  return rows[0]


def downscale(image_hwc: Float[Array, 'h w *c'],
              kernel_kk: Float[Array, 'kh kw'], scale: int = 2,
              padding: str = 'reflect',
              size: Optional[Int[Array, '2']] = None
              ) -> Float[Array, 'h2 w2 *c']:
  """Blurs every channel with `kernel_kk` and keeps every `scale`-th pixel.

  With padding='reflect' (the degradation model) it equals, per channel c,
  `scipy.ndimage.correlate(image_hwc[..., c], kernel_kk, mode='reflect')`
  `[::scale, ::scale]` (`downscale_np`), but only the kept pixels are
  computed, as sums of shifted strided slices in the result dtype of image
  and kernel (`_valid_strided`). With padding='valid' it is G's forward
  through its kernel (spec 7.1): no borders, output pixel (i, j) correlates
  the window from (scale i, scale j), computed in the inputs' own dtype and
  default precision by `_valid_banded`, which trains faster.

  Args:
    image_hwc: Image of shape (H, W, C) (a 2-D (H, W) image is also accepted
      and gives a 2-D result), any float dtype.
    kernel_kk: Correlation kernel of shape (k, k), odd or even k (a
      rectangular (kh, kw) kernel also works). It is not normalised here.
    scale: Integer subsampling factor (static under jit).
    padding: 'reflect' or 'valid' (static under jit).
    size: With 'reflect' only: the image is `image_hwc[:size[0], :size[1]]`
      (the rest of this canvas is ignored) and only the result's top-left
      (ceil(size[0] / scale), ceil(size[1] / scale)) is its downscale, the
      rest arbitrary. It may be traced (under jit and vmap), so one program
      serves images of many sizes on one canvas.

  Returns:
    Array of shape (ceil(H / scale), ceil(W / scale), C) with 'reflect',
    ((H - kh) // scale + 1, (W - kw) // scale + 1, C) with 'valid' (2-D for
    a 2-D input).
  """
  if padding == 'reflect':
    image_hwc = jnp.asarray(image_hwc)
    kernel_kk = jnp.asarray(kernel_kk)
  elif padding != 'valid':
    raise ValueError(f"padding must be 'reflect' or 'valid', got {padding!r}")
  elif size is not None:
    raise ValueError("size is for padding='reflect' only")
  if kernel_kk.ndim != 2:
    raise ValueError(f'kernel must be 2-D (k, k), got {kernel_kk.shape}')
  if image_hwc.ndim == 2:
    return downscale(image_hwc[..., None], kernel_kk, scale, padding,
                     size)[..., 0]
  if image_hwc.ndim != 3:
    raise ValueError(f'image must be (H, W, C), got {image_hwc.shape}')
  if padding == 'valid':
    return _valid_banded(image_hwc, kernel_kk, scale)
  if size is None:
    size = image_hwc.shape[:2]
  return _reflect_downscale(image_hwc, kernel_kk, jnp.asarray(size), scale)


# Jitted even when called eagerly: op by op, the k * k slices would each be
# dispatched (and compiled) on their own.
@functools.partial(jax.jit, static_argnames=('scale',))
def _reflect_downscale(image_hwc: Float[Array, 'h w c'],
                       kernel_kk: Float[Array, 'kh kw'],
                       size: Int[Array, '2'], scale: int
                       ) -> Float[Array, 'h2 w2 c']:
  """`downscale` with padding='reflect' of a 3-D image."""
  dtype = jnp.result_type(image_hwc.dtype, kernel_kk.dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.float32
  # Channels first: the slices then run along contiguous rows.
  padded = _reflect_pad(jnp.transpose(image_hwc.astype(dtype), (2, 0, 1)),
                        size, kernel_kk.shape)
  out_chw = _valid_strided(padded, kernel_kk.astype(dtype), scale)
  return jnp.transpose(out_chw, (1, 2, 0))


def downscale_np(image_hwc: Float[np.ndarray, 'h w *c'],
                 kernel_kk: Float[np.ndarray, 'kh kw'], scale: int = 2,
                 fft: bool = False) -> Float[np.ndarray, 'h2 w2 *c']:
  """`downscale` (padding='reflect') in numpy/scipy, in float64.

  Args:
    image_hwc: (H, W, C) or (H, W) image.
    kernel_kk: (kh, kw) correlation kernel, origin at (kh // 2, kw // 2).
    scale: Subsampling factor.
    fft: Correlate by FFT (numpy's) instead of per channel with
      `scipy.ndimage.correlate`: faster for large images and kernels, equal
      to about 1e-15 but not bit for bit.

  Returns:
    (ceil(H / scale), ceil(W / scale)[, C]) float64 array, unquantised and
    unclipped.
  """
  image = np.asarray(image_hwc, np.float64)
  kernel = np.asarray(kernel_kk, np.float64)
  if fft:
    return _fft_downscale(image, kernel, scale)
  if image.ndim == 2:
    from scipy import ndimage  # pylint: disable=g-import-not-at-top  # Slow.
    return ndimage.correlate(image, kernel, mode='reflect')[::scale, ::scale]
  channels = [downscale_np(image[..., c], kernel, scale)
              for c in range(image.shape[-1])]
  return np.stack(channels, axis=-1)


def _fft_downscale(image: np.ndarray, kernel: np.ndarray,
                   scale: int) -> np.ndarray:
  """`downscale_np` of float64 arrays through one FFT convolution."""
  gray = image.ndim == 2
  if gray:
    image = image[..., None]
  pads = [_symmetric_pad_widths(k) for k in kernel.shape] + [(0, 0)]
  padded = np.pad(image, pads, mode='symmetric')
  flipped = kernel[::-1, ::-1, None]  # Correlation as a convolution.
  out = _fft_convolve_valid(padded, flipped)[::scale, ::scale]
  return out[..., 0] if gray else out


def _fft_convolve_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """`scipy.signal.fftconvolve(image, kernel, 'valid', axes=(0, 1))` with
  numpy's FFT (importing scipy.signal costs whole seconds)."""
  full = [i + k - 1 for i, k in zip(image.shape[:2], kernel.shape[:2])]
  sizes = [_fast_length(n) for n in full]
  product = (np.fft.rfftn(image, sizes, axes=(0, 1))
             * np.fft.rfftn(kernel, sizes, axes=(0, 1)))
  blurred = np.fft.irfftn(product, sizes, axes=(0, 1))
  rows, cols = (k - 1 for k in kernel.shape[:2])
  return blurred[rows:full[0] - rows, cols:full[1] - cols]


def _fast_length(n: int) -> int:
  """The smallest 2^a 3^b 5^c >= n (a fast FFT length)."""
  best, power5 = 2 * n, 1
  while power5 < best:
    power35 = power5
    while power35 < best:
      length = power35
      while length < n:
        length *= 2
      best = min(best, length)
      power35 *= 3
    power5 *= 5
  return best
