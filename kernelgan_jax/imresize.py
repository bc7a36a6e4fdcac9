"""MATLAB-compatible image resizing (bicubic by default), numpy or JAX.

KernelGAN (Bell-Kligler et al., NeurIPS 2019) and ZSSR (Shocher et al.,
"Zero-Shot" Super-Resolution using Deep Internal Learning, CVPR 2018) both use
a Python port of MATLAB's `imresize`: the Keys cubic kernel (a = -0.5),
antialiasing by stretching the kernel by 1/scale when downscaling, symmetric
boundaries by index mirroring, and the dimension with the smaller scale
resized first. This module follows the same algorithm.

The per-axis weights are small (out_length, in_length) matrices built in numpy
at trace time (they depend only on static shapes); they are applied with a
dense matrix product per axis, so `imresize` works under `jax.jit` and
`jax.vmap`. A numpy input is resized with numpy on the host (in float64,
returned in its own float dtype): data preparation then compiles nothing,
whatever the image size.

Deviation from the Python port (matches MATLAB instead): negative source
indices are mirrored with a signed modulo (the port casts them to unsigned
first, which mirrors wrongly for some sizes), and antialiasing is decided per
axis from that axis's scale (the port uses the first axis's scale for both).
"""

from collections.abc import Callable
import math

import jax
import jax.numpy as jnp
import numpy as np

KernelFn = Callable[[np.ndarray], np.ndarray]

# imresize(., 0.5) (cubic, antialiased) as 1-D taps: 0.5 * cubic(0.5 * d)
# at HR offsets d = -3.5 .. 3.5 from the LR pixel's centre; LR pixel i
# (0-based) reads HR pixels 2 i - 3 .. 2 i + 4 (away from the borders).
BICUBIC_X2_TAPS = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256.0


def cubic(x: np.ndarray) -> np.ndarray:
  """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'cubic')."""
  absx = np.abs(x)
  absx2 = absx**2
  absx3 = absx**3
  near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1.0)
  far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * (
      (absx > 1.0) & (absx <= 2.0))
  return near + far


def _lanczos(x: np.ndarray, lobes: int) -> np.ndarray:
  return np.sinc(x) * np.sinc(x / lobes) * (np.abs(x) < lobes)


def _linear(x: np.ndarray) -> np.ndarray:
  return (x + 1.0) * ((x >= -1.0) & (x < 0.0)) + (1.0 - x) * (
      (x >= 0.0) & (x <= 1.0))


def _box(x: np.ndarray) -> np.ndarray:
  return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


# Kernel name -> (function, support width in input pixels at scale 1).
KERNELS: dict[str, tuple[KernelFn, float]] = {
    "cubic": (cubic, 4.0),
    "lanczos2": (lambda x: _lanczos(x, 2), 4.0),
    "lanczos3": (lambda x: _lanczos(x, 3), 6.0),
    "linear": (_linear, 2.0),
    "box": (_box, 1.0),
}


def resize_taps(in_length: int, out_length: int, scale: float,
                kernel: str = "cubic", antialiasing: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
  """MATLAB's imresize along one axis as taps: out[i] = sum_t w[i, t] *
  in[source[i, t]] (sources mirrored at the borders, weights summing to 1).

  Args:
    in_length: input size along the axis.
    out_length: output size along the axis.
    scale: output/input scale factor along the axis.
    kernel: one of `KERNELS`.
    antialiasing: stretch the kernel by 1/scale when downscaling.

  Returns:
    (source, weights): int (out_length, taps) indices and float64 weights.
  """
  kernel_fn, kernel_width = KERNELS[kernel]
  if antialiasing and scale < 1.0:
    weight_fn = lambda x: scale * kernel_fn(scale * x)
    kernel_width = kernel_width / scale
  else:
    weight_fn = kernel_fn
  # 1-based output coordinates mapped to (continuous) input coordinates.
  out_coords = np.arange(1, out_length + 1, dtype=np.float64)
  centers = out_coords / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(centers - kernel_width / 2.0)
  taps = int(math.ceil(kernel_width)) + 2
  indices = left[:, None] + np.arange(taps)[None, :] - 1.0  # 0-based.
  weights = weight_fn(centers[:, None] - indices - 1.0)
  sums = weights.sum(axis=1, keepdims=True)
  weights = weights / np.where(sums == 0.0, 1.0, sums)
  mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
  return mirror[np.mod(indices.astype(np.int64), 2 * in_length)], weights


def resize_matrix(in_length: int, out_length: int, scale: float,
                  kernel: str = "cubic",
                  antialiasing: bool = True) -> np.ndarray:
  """Dense 1-D resampling matrix of MATLAB's imresize along one axis.

  Args:
    in_length: input size along the axis.
    out_length: output size along the axis.
    scale: output/input scale factor along the axis.
    kernel: one of `KERNELS`.
    antialiasing: stretch the kernel by 1/scale when downscaling.

  Returns:
    (out_length, in_length) float64 matrix M with out = M @ in; rows sum to 1.
  """
  source, weights = resize_taps(in_length, out_length, scale, kernel,
                                antialiasing)
  matrix = np.zeros((out_length, in_length))
  rows = np.broadcast_to(np.arange(out_length)[:, None], source.shape)
  np.add.at(matrix, (rows, source), weights)
  return matrix


def output_size(in_shape: tuple[int, int], scale: float | None,
                output_shape: tuple[int, int] | None
                ) -> tuple[tuple[float, float], tuple[int, int]]:
  """MATLAB's rule for per-axis scales and output size (ceil of in*scale).

  Args:
    in_shape: (H, W) of the input.
    scale: a scalar scale for both axes, or None.
    output_shape: (H_out, W_out), or None.

  Returns:
    ((scale_h, scale_w), (H_out, W_out)).
  """
  if scale is None and output_shape is None:
    raise ValueError("Give scale or output_shape.")
  if output_shape is None:
    output_shape = tuple(int(math.ceil(n * scale)) for n in in_shape)
  if scale is None:
    scales = tuple(o / n for o, n in zip(output_shape, in_shape))
  else:
    scales = (float(scale), float(scale))
  return scales, tuple(int(o) for o in output_shape)


def _resize_axis_taps(image: np.ndarray, axis: int, source: np.ndarray,
                      weights: np.ndarray) -> np.ndarray:
  """`resize_taps` applied on the host: a few taps per output, not a dense
  (out x in) product."""
  moved = np.moveaxis(image, axis, 0)
  out = np.zeros((source.shape[0],) + moved.shape[1:])
  extra = (slice(None),) + (None,) * (moved.ndim - 1)
  for t in range(source.shape[1]):
    out += weights[:, t][extra] * moved[source[:, t]]
  return np.moveaxis(out, 0, axis)


def _resize_axis(image: jax.Array, axis: int, matrix: np.ndarray) -> jax.Array:
  moved = jnp.moveaxis(image, axis, 0)
  resized = jnp.tensordot(jnp.asarray(matrix, image.dtype), moved, axes=1,
                          precision=jax.lax.Precision.HIGHEST)
  return jnp.moveaxis(resized, 0, axis)


def imresize(image: jax.Array, scale: float | None = None,
             output_shape: tuple[int, int] | None = None,
             kernel: str = "cubic", antialiasing: bool = True) -> jax.Array:
  """Resizes an image like MATLAB's imresize.

  Args:
    image: (H, W) or (H, W, C) array; integer inputs become float32. A numpy
      array is resized with numpy in float64 and returned as numpy (integer
      inputs as float64).
    scale: scale factor for both spatial axes (output = ceil(scale * size)).
    output_shape: (H_out, W_out); with `scale`, overrides the size only.
    kernel: interpolation kernel, one of `KERNELS` ('cubic' by default).
    antialiasing: stretch the kernel when downscaling (MATLAB default).

  Returns:
    (H_out, W_out[, C]) array of the input's float dtype.
  """
  if isinstance(image, np.ndarray):
    dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else (
        np.float64)
    return _imresize(image.astype(np.float64), scale, output_shape, kernel,
                     antialiasing).astype(dtype)
  image = jnp.asarray(image)
  if not jnp.issubdtype(image.dtype, jnp.floating):
    image = image.astype(jnp.float32)
  return _imresize(image, scale, output_shape, kernel, antialiasing)


def _imresize(image, scale, output_shape, kernel, antialiasing):
  """`imresize` of a float numpy or JAX array, in its own dtype."""
  scales, out_shape = output_size(image.shape[:2], scale, output_shape)
  for axis in np.argsort(scales, kind="stable"):
    if scales[axis] == 1.0 and out_shape[axis] == image.shape[axis]:
      continue
    if isinstance(image, np.ndarray):
      image = _resize_axis_taps(image, int(axis), *resize_taps(
          image.shape[axis], out_shape[axis], scales[axis], kernel,
          antialiasing))
      continue
    matrix = resize_matrix(image.shape[axis], out_shape[axis], scales[axis],
                           kernel, antialiasing)
    image = _resize_axis(image, int(axis), matrix)
  return image
