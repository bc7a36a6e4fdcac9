"""The kernel G represents: folding, post-processing, kernel geometry, and
the `KernelEstimate` every estimator returns.

G is linear, so its six convolutions compose into one 13x13 cross-correlation
kernel k with G(x) = correlate_valid(x, k)[::2, ::2] (spec 7.1). Training
runs G through that identity (`degradation.downscale(..., padding='valid')`),
which is exact and about 1/100 of the arithmetic of the layered forward. The
post-processing and the analytic x4 kernel follow the original (spec 7.2 and
7.3); `estimate_from_raw` turns a trained G's kernel into the estimate. The
centre-of-mass target and the spline shift that every kernel of the package
is aligned with live here too.
"""

import dataclasses
from typing import NamedTuple, Sequence

import jax
from jax import lax
import jax.numpy as jnp
from jaxtyping import Array, Float
import numpy as np

from kernelgan_jax.config import Config

_NHWC = ("NHWC", "HWIO", "NHWC")


def fold_delta(conv_kernels: Sequence[Float[Array, "kh kw ci co"]]
               ) -> Float[Array, "k k"]:
  """The original's fold (spec 7.1), the definition of G's kernel.

  A 1x1 delta, zero-padded by k - 1, goes through every conv of G with
  stride 1 (`lax.conv`); the result, flipped, is k. `fold` computes the
  same kernel at a fraction of the cost and is what training uses.
  """
  size = sum(w.shape[0] for w in conv_kernels) - len(conv_kernels) + 1
  x = jnp.pad(jnp.ones((1, 1, 1, 1)),
              ((0, 0), (size - 1, size - 1), (size - 1, size - 1), (0, 0)))
  for w in conv_kernels:
    x = lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                 dimension_numbers=_NHWC)
  return x[0, ::-1, ::-1, 0]


def _full_conv_indicator(size_a: int, size_b: int) -> np.ndarray:
  """S[t, j, s] = 1 where 2-D offsets j (in a) and s (in b) sum to t.

  Flattened to [t, j * s]; t runs over the (size_a + size_b - 1)^2 output.
  """
  size = size_a + size_b - 1
  ja, jb, sa, sb = np.meshgrid(*[np.arange(n) for n in (size_a, size_a,
                                                         size_b, size_b)],
                               indexing="ij")
  t = (ja + sa) * size + (jb + sb)
  indicator = np.zeros((size * size, size_a**2 * size_b**2), np.float32)
  indicator[t.ravel(), np.arange(t.size)] = 1.0
  return indicator


def _compose(after: Float[Array, "ka ka cm co"],
             before: Float[Array, "kb kb ci cm"]
             ) -> Float[Array, "k k ci co"]:
  """The HWIO kernel of `after` applied to the output of `before`.

  Two valid cross-correlations compose into one whose kernel is the full
  *convolution* of the two kernels, contracted over the middle channels:
  c[t] = sum over j + s = t of after[j] . before[s]. Computed as two
  matrix products (all pairwise channel contractions, then a constant
  0/1 matrix that sums each output offset), which XLA runs far faster on
  CPU than a convolution with one output channel.
  """
  size_a, size_b = after.shape[0], before.shape[0]
  size = size_a + size_b - 1
  pairs = jnp.einsum("jmo,sim->jsio",
                     after.reshape(size_a**2, *after.shape[2:]),
                     before.reshape(size_b**2, *before.shape[2:]))
  indicator = jnp.asarray(_full_conv_indicator(size_a, size_b))
  out = indicator @ pairs.reshape(size_a**2 * size_b**2, -1)
  return out.reshape(size, size, before.shape[2], after.shape[3])


class Fold(NamedTuple):
  """G's kernel and what entered each stage of `fold`, which is all
  `fold_gradients` needs (every stage is linear in each argument)."""
  kernel: Float[Array, "k k"]
  inputs: tuple[Array, ...]


def _times(x: Float[Array, "c m"], w: Float[Array, "1 1 m o"]
           ) -> Float[Array, "c o"]:
  return x @ w[0, 0]


def _onto_spatial(x: Float[Array, "m o"], w: Float[Array, "kh kw ci m"]
                  ) -> Float[Array, "kh kw ci o"]:
  return jnp.einsum("hwim,mo->hwio", w, x)


def _stages(conv_kernels: Sequence[Array]) -> tuple[int, list]:
  """The fold's order: the first 1x1 layer's index, then (index, stage)
  for every other layer, each stage mapping (running value, its kernel)
  to the next value."""
  spatial = [i for i, w in enumerate(conv_kernels) if w.shape[0] > 1]
  pointwise = [i for i, w in enumerate(conv_kernels) if w.shape[0] == 1]
  return pointwise[0], ([(i, _times) for i in pointwise[1:]]
                        + [(spatial[-1], _onto_spatial)]
                        + [(i, _compose) for i in reversed(spatial[:-1])])


def fold(conv_kernels: Sequence[Float[Array, "kh kw ci co"]]) -> Fold:
  """Folds G's convs into its single cross-correlation kernel (spec 7.1).

  The original pushes a delta forward through the layers (`fold_delta`);
  this computes the same kernel from the other end (the fold transposed):
  the trailing 1x1 layers contract into one vector, then the spatial layers
  are composed as full convolutions, last to first. Its value and gradient
  cost a fraction of the delta fold's (`benchmarks/fold_order.py`,
  benchmarks/README.md).

  Args:
    conv_kernels: G's HWIO kernels, first layer first; spatial ones first,
      then any number (at least one) of 1x1 layers.

  Returns:
    k such that G(x) == correlate_valid(x, k)[::2, ::2] per channel, and
    each stage's input, for `fold_gradients`.
  """
  first, stages = _stages(conv_kernels)
  value, inputs = conv_kernels[first][0, 0], []
  for index, stage in stages:
    inputs.append(value)
    value = stage(value, conv_kernels[index])
  return Fold(value[:, :, 0, 0], tuple(inputs))


def extract_kernel(conv_kernels: Sequence[Float[Array, "kh kw ci co"]]
                   ) -> Float[Array, "k k"]:
  """`fold`'s kernel alone (differentiable)."""
  return fold(conv_kernels).kernel


def fold_gradients(conv_kernels: Sequence[Float[Array, "kh kw ci co"]],
                   folded: Fold, kernel_grad: Float[Array, "k k"]
                   ) -> list[Float[Array, "kh kw ci co"]]:
  """The gradient of a loss with respect to each conv kernel, from its
  gradient with respect to the folded kernel: backpropagation through
  `fold`, reading the stage inputs `folded` kept instead of folding
  again. Equals autodiff through `extract_kernel`.
  """
  first, stages = _stages(conv_kernels)
  grads = [None] * len(conv_kernels)
  grad = kernel_grad[:, :, None, None]
  for (index, stage), value in zip(reversed(stages),
                                   reversed(folded.inputs)):
    # Each stage is linear in each argument, so its pullback reads only the
    # inputs; the stage's own output, unused, is dropped by XLA.
    _, pullback = jax.vjp(stage, value, conv_kernels[index])
    grad, grads[index] = pullback(grad)
  grads[first] = grad[None, None]
  return grads


def soft_threshold(kernel: np.ndarray, n_filtering: int = 40) -> np.ndarray:
  """Spec 7.2 step 1: subtract 0.75 x the (n+1)-th largest value, clip at 0,
  renormalise. Keeps every entry above the threshold, shrunk by it.
  """
  threshold = 0.75 * np.sort(kernel.ravel())[-n_filtering - 1]
  kept = np.clip(kernel - threshold, 0, 100)
  return kept / kept.sum()


def center_of_mass_target(size: int, scale: int) -> float:
  """Where a size x size kernel's centre of mass belongs for a x`scale`
  downscale: size//2 + 0.5 * (scale - size % 2) (6.5 for 13 and x2).
  """
  return size // 2 + 0.5 * (scale - size % 2)


def shift_kernel(kernel: np.ndarray, shift_rc: np.ndarray,
                 grow: bool = False) -> np.ndarray:
  """Cubic-spline sub-pixel shift by (rows, cols) pixels, zeros outside.

  Args:
    kernel: (h, w) kernel; the result keeps its dtype.
    shift_rc: (2,) shift in pixels.
    grow: first zero-pad ceil(max |shift|) + 1 pixels on every side, so
      that nothing is cut off.

  Returns:
    The shifted kernel, not renormalised.
  """
  if grow:
    kernel = np.pad(kernel, int(np.ceil(np.max(np.abs(shift_rc)))) + 1)
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  # Slow.
  return ndimage.shift(kernel, shift_rc, order=3, mode="constant")


def shift_center_of_mass(kernel: np.ndarray, target: float,
                         grow: bool = False) -> np.ndarray:
  """`shift_kernel` moving the centre of mass to `target` on both axes.

  The target is an index of `kernel`, before any growth.
  """
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  # Slow.
  current = np.array(ndimage.center_of_mass(kernel))
  return shift_kernel(kernel, target - current, grow)


def kernel_shift(kernel: np.ndarray, scale: int) -> np.ndarray:
  """Spec 7.2 step 2: pad, then spline-shift the centre of mass to its
  target (`center_of_mass_target`). No renormalisation, as the original.
  """
  return shift_center_of_mass(
      kernel, center_of_mass_target(kernel.shape[0], scale), grow=True)


def post_process(raw_kernel: np.ndarray, n_filtering: int = 40
                 ) -> np.ndarray:
  """The saved x2 kernel: soft threshold, then centre-of-mass shift.

  Args:
    raw_kernel: the 13x13 kernel folded out of G.
    n_filtering: how many largest values set the threshold.

  Returns:
    float32 kernel, typically 17x17 (the size follows the shift).
  """
  kernel = soft_threshold(np.asarray(raw_kernel, np.float32), n_filtering)
  return kernel_shift(kernel, scale=2).astype(np.float32)


def centred_kernel(kernel: np.ndarray, scale: int = 2) -> np.ndarray:
  """A kernel clipped at 0, normalised and shifted to its centre of mass
  target (`kernel_shift`): the post-processing of kernels from the FKP
  prior, which have no noisy tails to threshold away (float32)."""
  kernel = np.clip(np.asarray(kernel, np.float64), 0.0, None)
  return kernel_shift(kernel / kernel.sum(), scale).astype(np.float32)


def second_moments(weights: Float[np.ndarray, "h w"]
                   ) -> tuple[Float[np.ndarray, "2"], Float[np.ndarray, "2 2"]]:
  """The centre of mass (row, col) and the covariance (px^2, rows first)
  of non-negative weights that sum to 1."""
  rows, cols = np.indices(weights.shape, np.float64)
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  # Slow.
  com = np.array(ndimage.center_of_mass(weights))
  d_row, d_col = rows - com[0], cols - com[1]
  covariance = np.array([
      [np.sum(weights * d_row**2), np.sum(weights * d_row * d_col)],
      [np.sum(weights * d_row * d_col), np.sum(weights * d_col**2)]])
  return com, covariance


def principal_axes(kernel: Float[np.ndarray, "h w"]
                   ) -> tuple[float, float, float]:
  """A kernel's spread along its principal axes, and their direction.

  The kernel is clipped at 0 and normalised; its covariance about the
  centre of mass (`second_moments`) gives the axes.

  Args:
    kernel: (h, w) kernel with a positive sum.

  Returns:
    (sigma_major, sigma_minor, angle_deg): the standard deviations along
    the major and minor axes in pixels of the kernel's grid (the input
    image's), and the major axis' angle in degrees in [0, 180),
    counter-clockwise from the horizontal as the image is displayed (rows
    grow downwards). The angle means little when the sigmas are close.
  """
  kernel = np.clip(np.asarray(kernel, np.float64), 0.0, None)
  _, covariance = second_moments(kernel / kernel.sum())
  small, large = np.linalg.eigvalsh(covariance)
  (var_row, cov_rc), (_, var_col) = covariance
  # Upwards on screen is minus a row, so the covariance of (x, y-up) has
  # -cov_rc off the diagonal; its major axis is half the angle of
  # (var_x - var_y, 2 cov_xy).
  angle = 0.5 * np.degrees(np.arctan2(-2.0 * cov_rc, var_col - var_row))
  angle %= 180.0
  return (float(np.sqrt(max(large, 0.0))), float(np.sqrt(max(small, 0.0))),
          float(angle) if angle < 180.0 else 0.0)  # -1e-17 % 180 is 180.


def analytic_kernel_x4(kernel_x2: np.ndarray) -> np.ndarray:
  """The x4 kernel of two successive x2 downscalings with k2 (spec 7.3).

  Sums k2[r, c] * k2 into the block at (2r, 2c) of a (3s-2)^2 canvas (k2
  dilated by 2, composed with k2), crops s//2 from each side, normalises.
  """
  size = kernel_x2.shape[0]
  canvas = np.zeros((3 * size - 2, 3 * size - 2))
  for r in range(size):
    for c in range(size):
      canvas[2 * r:2 * r + size, 2 * c:2 * c + size] += (
          kernel_x2[r, c] * kernel_x2)
  crop = size // 2
  cropped = canvas[crop:-crop, crop:-crop]
  return cropped / cropped.sum()


@dataclasses.dataclass(frozen=True)
class KernelEstimate:
  """The result of one estimation.

  Attributes:
    kernel_x2: the post-processed x2 kernel (float32, typically 17x17), what
      the original saves as `<name>_kernel_x2.mat`.
    kernel_x4: the analytic x4 kernel built from it (float64, 2s-1 square).
    raw_kernel: the 13x13 kernel folded out of the trained G.
    history: per-iteration losses and the bicubic weight, numpy arrays.
    seed: the seed of the run.
    estimator: the estimator whose kernel this is (`config.ESTIMATORS`;
      'select' keeps one of its candidates' names).
  """
  kernel_x2: Float[np.ndarray, "s s"]
  kernel_x4: Float[np.ndarray, "t t"]
  raw_kernel: Float[np.ndarray, "13 13"]
  history: dict[str, np.ndarray]
  seed: int
  estimator: str = "kernelgan"


def estimate_from_raw(raw_kernel: np.ndarray, history: dict[str, np.ndarray],
                      seed: int, config: Config) -> KernelEstimate:
  """The post-processed x2 and analytic x4 kernels of a trained G's kernel:
  the original's soft threshold and shift, or for the prior's kernels
  (no noisy tails) only the shift (`centred_kernel`)."""
  if config.generator == "prior":
    kernel_x2 = centred_kernel(raw_kernel, 2)
  else:
    kernel_x2 = post_process(raw_kernel, config.n_filtering)
  return KernelEstimate(
      kernel_x2=kernel_x2,
      kernel_x4=analytic_kernel_x4(kernel_x2.astype(np.float64)),
      raw_kernel=raw_kernel, history=history, seed=seed,
      estimator="fkp_lite" if config.generator == "prior" else "kernelgan")
