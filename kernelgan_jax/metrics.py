"""Scores for estimated SR kernels (numpy/scipy, host side).

Conventions: kernels are correlation kernels in the `scipy.ndimage.correlate`
convention (origin at index k // 2) used with reflecting borders and
subsampling at rows/columns 0, sf, 2 sf, ... (`degradation.downscale_np`).

* `kernel_error`: shift-invariant distance between two kernels of any sizes.
  Both are normalised to sum 1, placed on a common zero canvas and
  cubic-spline shifted so that their centres of mass sit at the canvas
  centre; the error is the L2 (Frobenius) norm of the difference, or that
  norm divided by the L2 norm of the aligned truth (`relative=True`).
* `resynthesis_psnr`: PSNR (peak 1, all channels, border shaved) between the
  given LR image and the HR image degraded by the estimated kernel, maximised
  over global sub-pixel kernel shifts within +-1 HR pixel (a grid in half
  pixels, then a Nelder-Mead refinement): a global shift cannot be
  identified from the LR image, and tools differ by half pixels.
* `bicubic_kernel_x2`: MATLAB's antialiased x2 bicubic downscaling as a
  kernel in the same convention: the reference "floor" kernel.
"""

import math
from typing import Optional, TYPE_CHECKING

import numpy as np

from kernelgan_jax import degradation
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax.imresize import BICUBIC_X2_TAPS

if TYPE_CHECKING:  # The data-set generator: not needed to score a kernel.
  from kernelgan_jax import div2krk

MIN_CANVAS_SIZE = 33
DEFAULT_BORDER = 8


def _normalized(kernel: np.ndarray) -> np.ndarray:
  """Float64 copy divided by its sum (which must be positive)."""
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2:
    raise ValueError(f'kernel must be 2-D, got shape {kernel.shape}')
  total = kernel.sum()
  if not total > 0:
    raise ValueError(f'kernel sum must be positive, got {total}')
  return kernel / total


def _canvas_size(*shapes: tuple[int, ...]) -> int:
  """Odd canvas side with room for every kernel plus its COM shift."""
  size = max(MIN_CANVAS_SIZE, 2 * max(max(s) for s in shapes) + 1)
  return size + 1 - size % 2


def center_on_canvas(kernel: np.ndarray, canvas_size: int) -> np.ndarray:
  """Places a kernel on a zero canvas with its COM at the canvas centre.

  Args:
    kernel: (h, w) kernel, normalised to sum 1 here.
    canvas_size: Odd side of the square canvas, larger than h and w.

  Returns:
    (canvas_size, canvas_size) float64 array whose centre of mass is at
    index canvas_size // 2 on both axes (cubic-spline sub-pixel shift,
    zeros outside).
  """
  kernel = _normalized(kernel)
  height, width = kernel.shape
  if height > canvas_size or width > canvas_size:
    raise ValueError(f'kernel {kernel.shape} larger than canvas {canvas_size}')
  canvas = np.zeros((canvas_size, canvas_size))
  top, left = (canvas_size - height) // 2, (canvas_size - width) // 2
  canvas[top:top + height, left:left + width] = kernel
  return kernel_lib.shift_center_of_mass(canvas, canvas_size // 2)


def kernel_error(estimate: np.ndarray, truth: np.ndarray,
                 relative: bool = False,
                 canvas_size: Optional[int] = None) -> float:
  """Shift-invariant L2 error between two kernels of any sizes.

  Both kernels are normalised to sum 1, placed on a common odd square zero
  canvas (side max(33, 2 max_size + 1) by default) and sub-pixel shifted
  (scipy.ndimage.shift, cubic spline) so that each centre of mass lies at
  the canvas centre. The error is ||a - b||_2 over the canvas (sum of
  squared tap differences, square-rooted); with `relative=True` it is
  divided by ||b||_2 of the aligned truth, so 0 is perfect and about 1 or
  more means no useful agreement. Symmetric in its arguments unless
  `relative`.

  Args:
    estimate: (h1, w1) estimated kernel.
    truth: (h2, w2) ground-truth kernel.
    relative: Divide by the norm of the aligned truth.
    canvas_size: Override the canvas side (odd, at least both sizes).

  Returns:
    The error, a non-negative float.
  """
  size = canvas_size or _canvas_size(np.shape(estimate), np.shape(truth))
  aligned_estimate = center_on_canvas(estimate, size)
  aligned_truth = center_on_canvas(truth, size)
  error = float(np.linalg.norm(aligned_estimate - aligned_truth))
  if relative:
    error /= float(np.linalg.norm(aligned_truth))
  return error


def psnr(reference_01: np.ndarray, test_01: np.ndarray,
         border: int = 0) -> float:
  """PSNR in dB with peak 1 over all pixels and channels, border shaved."""
  reference = np.asarray(reference_01, np.float64)
  test = np.asarray(test_01, np.float64)
  if border:
    reference = reference[border:-border, border:-border]
    test = test[border:-border, border:-border]
  mse = float(np.mean((reference - test) ** 2))
  return math.inf if mse == 0 else -10.0 * math.log10(mse)


def shift_grid(max_shift: float = 1.0, step: float = 0.5) -> np.ndarray:
  """(n, 2) row/column kernel shifts in [-max_shift, max_shift]^2."""
  offsets = np.arange(-max_shift, max_shift + step / 2, step)
  rows, cols = np.meshgrid(offsets, offsets, indexing='ij')
  return np.stack([rows.ravel(), cols.ravel()], axis=-1)


def shifted_kernel(kernel: np.ndarray, shift_rc: np.ndarray) -> np.ndarray:
  """`kernel.shift_kernel` (grown to fit) of the float64 kernel.

  A zero shift only pads the kernel (by 1, as the growth would), leaving
  its taps exact: the spline's identity is off by about 1e-16.
  """
  kernel = np.asarray(kernel, np.float64)
  if not np.any(shift_rc):
    return np.pad(kernel, 1)
  return kernel_lib.shift_kernel(kernel, shift_rc, grow=True)


def _crop_hr_to_lr(hr: np.ndarray, lr_shape: tuple[int, ...],
                   scale: int) -> np.ndarray:
  """Crops the HR image (bottom/right) so that it matches scale x LR."""
  height, width = scale * lr_shape[0], scale * lr_shape[1]
  if hr.shape[0] < height or hr.shape[1] < width:
    raise ValueError(f'HR {hr.shape} smaller than {scale} x LR {lr_shape}')
  return hr[:height, :width]


def resynthesis_psnrs(hr_01: np.ndarray, lr_01: np.ndarray,
                      kernel: np.ndarray, scale: int = 2,
                      border: int = DEFAULT_BORDER, max_shift: float = 1.0,
                      shift_step: float = 0.5
                      ) -> tuple[np.ndarray, np.ndarray]:
  """PSNRs of the re-synthesised LR image for every global kernel shift.

  Args:
    hr_01: (H, W[, C]) HR image in [0, 1].
    lr_01: (h, w[, C]) given LR image in [0, 1] (e.g. uint8 / 255).
    kernel: (k, k) estimated kernel; normalised to sum 1 here.
    scale: Downscaling factor of the kernel.
    border: LR pixels shaved on every side before the PSNR.
    max_shift: Largest kernel shift, in HR pixels, on each axis.
    shift_step: Grid step in HR pixels.

  Returns:
    (shifts (n, 2) in HR pixels (row, col), psnrs (n,) in dB).
  """
  lr = np.asarray(lr_01, np.float64)
  hr = _crop_hr_to_lr(np.asarray(hr_01, np.float64), lr.shape, scale)
  kernel = _normalized(kernel)
  shifts = shift_grid(max_shift, shift_step)
  psnrs = []
  for shift_rc in shifts:
    synthetic = degradation.downscale_np(
        hr, shifted_kernel(kernel, shift_rc), scale, fft=True)
    psnrs.append(psnr(lr, np.clip(synthetic, 0.0, 1.0), border))
  return shifts, np.array(psnrs)


def _refined_psnr(hr: np.ndarray, lr: np.ndarray, kernel: np.ndarray,
                  scale: int, border: int, max_shift: float,
                  start_rc: np.ndarray) -> float:
  """Nelder-Mead maximum of the PSNR over shifts in the max_shift box."""

  def negative_psnr(shift_rc: np.ndarray) -> float:
    shift_rc = np.clip(shift_rc, -max_shift, max_shift)
    synthetic = degradation.downscale_np(
        hr, shifted_kernel(kernel, shift_rc), scale, fft=True)
    return -psnr(lr, np.clip(synthetic, 0.0, 1.0), border)

  from scipy import optimize  # pylint: disable=g-import-not-at-top  # Slow.
  result = optimize.minimize(
      negative_psnr, start_rc, method='Nelder-Mead',
      options={'xatol': 0.01, 'fatol': 0.001, 'initial_simplex': [
          start_rc, start_rc + [0.2, 0.0], start_rc + [0.0, 0.2]]})
  return -float(result.fun)


def resynthesis_psnr(hr_01: np.ndarray, lr_01: np.ndarray,
                     kernel: np.ndarray, scale: int = 2,
                     border: int = DEFAULT_BORDER, max_shift: float = 1.0,
                     shift_step: float = 0.5, refine: bool = True) -> float:
  """Best PSNR of LR vs the HR re-degraded by `kernel`, over kernel shifts.

  The HR image is correlated with the kernel (normalised to sum 1,
  reflecting borders) and subsampled at 0, sf, 2 sf, ... as in the DIV2KRK
  protocol; the result is clipped to [0, 1] (not quantised) and compared
  with `lr_01` (PSNR, peak 1, all channels, `border` LR pixels shaved). The
  kernel is first shifted globally by every (dr, dc) on the grid
  {-max_shift, ..., max_shift} step `shift_step` (default -1..1 HR pixel in
  half pixels: 25 shifts) and the best PSNR is returned, because a global
  sub-pixel shift is not identifiable from the LR image. With `refine` (the
  default), a Nelder-Mead search (shifts clipped to the same box) continues
  from the best grid point, since the PSNR is very sensitive to the shift
  (a 0.3 px offset of the true kernel costs ~17 dB on a 384 px photo) and an
  estimate's offset may fall between grid points.

  With the true kernel and an 8-bit LR image the ceiling is set by the
  quantisation (about 58.9 dB for uniform rounding error).

  Args:
    hr_01: (H, W[, C]) HR image in [0, 1]; cropped to scale x LR size.
    lr_01: (h, w[, C]) given LR image in [0, 1].
    kernel: (k, k) estimated kernel, any size.
    scale: Downscaling factor of the kernel (2 for x2 kernels).
    border: LR pixels shaved on every side.
    max_shift: Largest global kernel shift (HR pixels) on each axis.
    shift_step: Shift grid step (HR pixels).
    refine: Continue with a continuous search from the best grid shift
      (about 2.5x the cost of the grid alone).

  Returns:
    The best PSNR in dB.
  """
  shifts, psnrs = resynthesis_psnrs(hr_01, lr_01, kernel, scale, border,
                                    max_shift, shift_step)
  best = float(np.max(psnrs))
  if not refine:
    return best
  lr = np.asarray(lr_01, np.float64)
  hr = _crop_hr_to_lr(np.asarray(hr_01, np.float64), lr.shape, scale)
  refined = _refined_psnr(hr, lr, _normalized(kernel), scale, border,
                          max_shift, shifts[int(np.argmax(psnrs))])
  return max(best, refined)


def bicubic_kernel_x2(size: int = 13) -> np.ndarray:
  """MATLAB's antialiased x2 bicubic downscaling as a correlation kernel.

  MATLAB `imresize(x, 0.5)` (bicubic, antialiasing) computes LR pixel i
  (0-based) from HR pixels 2 i - 3 .. 2 i + 4 with the 1-D taps
  [-3, -9, 29, 111, 111, 29, -9, -3] / 256 (centred on 2 i + 0.5); the 2-D
  kernel is their outer product. In the correlate-then-subsample convention
  (origin k // 2) the taps start at index k // 2 - 3, so the centre of mass
  is at k // 2 + 0.5 (6.5 for the default 13x13, KernelGAN's convention).

  Args:
    size: Odd kernel side, at least 9.

  Returns:
    (size, size) float64 kernel summing to 1.
  """
  if size < 9 or size % 2 == 0:
    raise ValueError(f'size must be odd and >= 9, got {size}')
  taps = np.zeros(size)
  start = size // 2 - 3
  taps[start:start + len(BICUBIC_X2_TAPS)] = BICUBIC_X2_TAPS
  return np.outer(taps, taps)


# ------------------------------------------- an estimate vs a DIV2KRK example
# How the benchmarks score a kernel: against its example's true kernel, HR
# and LR images, at x2 or x4. (SR images are scored by `sr_metrics`.)


def true_kernel(example: "div2krk.Example", x4: bool = False) -> np.ndarray:
  """An example's true kernel: its x2 kernel, or that kernel's analytic x4."""
  if not x4:
    return example.kernel_x2
  return kernel_lib.analytic_kernel_x4(example.kernel_x2)


def score_kernel(kernel: np.ndarray, example: "div2krk.Example",
                 x4: bool = False) -> dict[str, float]:
  """How well an estimated kernel matches a DIV2KRK example.

  Args:
    kernel: (k, k) estimated x2 kernel, or x4 kernel with `x4`.
    example: The image it was estimated from (`div2krk.load_set`); with
      `x4`, one with x4 LR images.
    x4: Score against the analytic x4 of the true kernel, re-synthesising
      the x4 LR image.

  Returns:
    {'kernel_error': `kernel_error` against `true_kernel`,
     'resynthesis_psnr': `resynthesis_psnr` of the HR image re-degraded}.
  """
  lr, scale = (example.lr_x4, 4) if x4 else (example.lr, 2)
  return {'kernel_error': kernel_error(kernel, true_kernel(example, x4)),
          'resynthesis_psnr': resynthesis_psnr(example.hr, lr, kernel,
                                               scale=scale)}
