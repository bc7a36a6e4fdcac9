"""The kernels FKP's prior is trained on, and kernels brought to its grid.

FKP's generator (`data/prepare_dataset.py`, spec 3.1) draws an anisotropic
Gaussian with variances lambda_1, lambda_2 ~ U[0.175 sf, min(2.5 sf, 10)]
and angle theta ~ U[0, pi), centred at k // 2 + 0.5 (sf - k % 2), moves its
centre of mass to (k - sf) / 2 with a cubic-spline shift (zero outside) and
divides it by its sum. There is no multiplicative noise for the prior.

Training draws 50,000 kernels per 500 steps, so the generator works on a
whole batch at once: the per-kernel helpers (`div2krk.anisotropic_gaussian`,
`kernel.shift_center_of_mass`) would take far longer than the training
itself for the millions of kernels of a run, and `tests/test_prior.py`
checks that the batched path below equals them.
"""

import numpy as np
from jaxtyping import Float
from scipy import ndimage

from kernelgan_jax import div2krk
from kernelgan_jax import kernel as kernel_lib

MIN_VARIANCE_PER_SCALE = div2krk.MIN_VARIANCE_PER_SCALE  # 0.175
MAX_VARIANCE_PER_SCALE = div2krk.MAX_VARIANCE_PER_SCALE  # 2.5
MAX_VARIANCE = 10.0
VALIDATION_STEP = 0.3  # Grid step of the variances (spec 3.2).
VALIDATION_ANGLE_STEP = 0.2  # Grid step of theta.


def kernel_size(scale: int) -> int:
  """k = min(4 sf + 3, 21): 11 for x2 (spec 1.1)."""
  return min(4 * scale + 3, 21)


def variance_range(scale: int) -> tuple[float, float]:
  """[0.175 sf, min(2.5 sf, 10)]: [0.35, 5] for x2 (spec 3.1)."""
  return (MIN_VARIANCE_PER_SCALE * scale,
          min(MAX_VARIANCE_PER_SCALE * scale, MAX_VARIANCE))


def center_of_mass_target(size: int, scale: int) -> float:
  """FKP's centre of mass, (k - sf) / 2 per axis: 4.5 for 11 and x2.

  FKP centres for `F.conv2d` (spec 3.1), one pixel up-left of the mean of
  its Gaussians and of `kernel.center_of_mass_target` (KernelGAN's
  convention for `ndimage.correlate`, 5.5 for 11).
  """
  return (size - scale) / 2


def _cubic_bspline_weights(fraction: np.ndarray) -> list[np.ndarray]:
  """Cubic B-spline weights of the samples floor(x) - 1, ..., floor(x) + 2
  for x = floor(x) + fraction."""
  rest = 1 - fraction
  return [rest**3 / 6, 2 / 3 - fraction**2 + fraction**3 / 2,
          2 / 3 - rest**2 + rest**3 / 2, fraction**3 / 6]


def _spline_shift_matrices(shifts: Float[np.ndarray, "b"], size: int
                           ) -> Float[np.ndarray, "b size size"]:
  """A[b] with A[b] @ v == ndimage.shift(v, shifts[b], order=3,
  mode='constant') for every length-`size` vector v.

  SciPy's 1-D spline shift is linear: its prefilter (a fixed matrix, got by
  filtering the identity with SciPy itself), then cubic B-spline weights
  at x = i - shift over coefficients mirrored at the ends, and zero where x
  falls outside [0, size - 1].
  """
  prefilter = ndimage.spline_filter1d(np.eye(size), order=3, axis=0,
                                      mode="constant")
  x = np.arange(size)[None, :] - shifts[:, None]  # [b, i]
  floor = np.floor(x)
  inside = (x >= 0) & (x <= size - 1)
  columns = np.arange(size)
  weights = 0.0
  for offset, weight in enumerate(_cubic_bspline_weights(x - floor)):
    j = np.abs(floor.astype(np.int64) + offset - 1)
    mirrored = np.where(j > size - 1, 2 * (size - 1) - j, j)
    weight = np.where(inside, weight, 0.0)
    weights = weights + weight[..., None] * (mirrored[..., None] == columns)
  return weights @ prefilter


def shift_centers_of_mass(kernels: Float[np.ndarray, "b k k"],
                          target: float) -> Float[np.ndarray, "b k k"]:
  """`kernel.shift_center_of_mass` of every kernel of a batch, at once.

  The cubic-spline shift is separable (a product of 1-D shifts along rows
  and columns), so each kernel becomes A_rows K A_cols^T.
  """
  kernels = np.asarray(kernels, np.float64)
  size = kernels.shape[-1]
  index = np.arange(size, dtype=np.float64)
  total = kernels.sum(axis=(1, 2))
  row_com = kernels.sum(axis=2) @ index / total
  col_com = kernels.sum(axis=1) @ index / total
  shift_rows = _spline_shift_matrices(target - row_com, size)
  shift_cols = _spline_shift_matrices(target - col_com, size)
  return shift_rows @ kernels @ np.swapaxes(shift_cols, 1, 2)


def gaussian_kernels(lambda_1: Float[np.ndarray, "b"],
                     lambda_2: Float[np.ndarray, "b"],
                     theta: Float[np.ndarray, "b"],
                     scale: int = 2) -> Float[np.ndarray, "b k k"]:
  """FKP's `gen_kernel_fixed` without noise, for a batch (spec 3.1).

  The Gaussian is `div2krk.anisotropic_gaussian` (variances, not standard
  deviations; the vector is (column, row) - mean), then the centre of mass
  goes to `center_of_mass_target` and each kernel is divided by its sum.

  Returns:
    float64 kernels, k = `kernel_size(scale)`.
  """
  size = kernel_size(scale)
  lambda_1, lambda_2, theta = (np.asarray(v, np.float64).reshape(-1)
                               for v in (lambda_1, lambda_2, theta))
  cos, sin = np.cos(theta), np.sin(theta)
  # Inverse of R diag(l1, l2) R^T is R diag(1/l1, 1/l2) R^T.
  inv_xx = cos**2 / lambda_1 + sin**2 / lambda_2
  inv_yy = sin**2 / lambda_1 + cos**2 / lambda_2
  inv_xy = cos * sin * (1 / lambda_1 - 1 / lambda_2)
  mean = kernel_lib.center_of_mass_target(size, scale)
  rows, cols = np.meshgrid(np.arange(size) - mean, np.arange(size) - mean,
                           indexing="ij")
  quadratic = (inv_xx[:, None, None] * cols**2
               + 2 * inv_xy[:, None, None] * cols * rows
               + inv_yy[:, None, None] * rows**2)
  centred = shift_centers_of_mass(np.exp(-0.5 * quadratic),
                                  center_of_mass_target(size, scale))
  return centred / centred.sum(axis=(1, 2), keepdims=True)


def random_kernels(rng: np.random.Generator, count: int, scale: int = 2
                   ) -> Float[np.ndarray, "count k k"]:
  """`count` fresh training kernels, as FKP's `gen_kernel_random`."""
  low, high = variance_range(scale)
  lambdas = rng.uniform(low, high, size=(count, 2))
  theta = rng.uniform(0.0, np.pi, size=count)
  return gaussian_kernels(lambdas[:, 0], lambdas[:, 1], theta, scale)


def validation_kernels(scale: int = 2) -> Float[np.ndarray, "n k k"]:
  """FKP's fixed validation grid (spec 3.2): 4,624 kernels for x2.

  Variances `arange(0.175 sf, min(2.5 sf, 10) + 0.3, 0.3)` each (17
  values for x2, up to 5.15), theta `arange(0, pi, 0.2)` (16 values),
  in the original's loop order (lambda_1, lambda_2, theta).
  """
  low, high = variance_range(scale)
  lambdas = np.arange(low, high + VALIDATION_STEP, VALIDATION_STEP)
  thetas = np.arange(0.0, np.pi, VALIDATION_ANGLE_STEP)
  l1, l2, th = np.meshgrid(lambdas, lambdas, thetas, indexing="ij")
  return gaussian_kernels(l1.ravel(), l2.ravel(), th.ravel(), scale)


def normalization_constant(scale: int = 2) -> float:
  """c_sf: the peak of the narrowest kernel, rounded to 5 decimals, + 0.01.

  0.2335 for x2 (spec 1.3b); it brings the largest tap just below 1.
  """
  low, _ = variance_range(scale)
  peak = gaussian_kernels([low], [low], [0.0], scale).max()
  return round(float(peak), 5) + 0.01


def to_prior_grid(kernel: Float[np.ndarray, "n n"], size: int = 11,
                  scale: int = 2) -> Float[np.ndarray, "size size"]:
  """Any kernel (e.g. KernelGAN's 13x13) on the prior's grid.

  Normalises the kernel to sum 1, pads it onto a canvas, moves its centre
  of mass to the prior's target (`center_of_mass_target`, 4.5 for 11x11)
  with `kernel.shift_center_of_mass`, crops size x size, clamps at 0 and
  renormalises. Host-side (SciPy), not differentiable.

  Raises:
    ValueError: for a kernel that is not square or sums to <= 0.
  """
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
    raise ValueError(f"expected a square 2-D kernel, got {kernel.shape}")
  total = kernel.sum()
  if not total > 0:
    raise ValueError(f"the kernel sums to {total}, not a positive value")
  canvas_size = max(kernel.shape[0], size) + 4
  canvas = np.zeros((canvas_size, canvas_size))
  start = (canvas_size - kernel.shape[0]) // 2
  canvas[start:start + kernel.shape[0], start:start + kernel.shape[0]] = (
      kernel / total)
  corner = (canvas_size - size) // 2
  shifted = kernel_lib.shift_center_of_mass(
      canvas, corner + center_of_mass_target(size, scale))
  cropped = np.maximum(shifted[corner:corner + size, corner:corner + size],
                       0.0)
  return cropped / cropped.sum()
