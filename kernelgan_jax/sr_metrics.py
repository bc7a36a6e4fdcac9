"""Scores of super-resolved images against their HR ground truth.

Conventions: images are RGB in [0, 1]; scores are taken on the luma (the Y
of YCbCr, ITU-R BT.601 as MATLAB's rgb2ycbcr: weights 65.481, 128.553,
24.966 and offset 16, over 255) with a border shaved, as SR papers report
them.

* `y_psnr_ssim`: Y-channel PSNR (peak 1) and SSIM (Gaussian window, MATLAB
  settings) of an SR result.
* `aligned_y_psnr_ssim`: the same at the global sub-pixel shift of the
  result that maximises the PSNR (a kernel's global shift is not
  identifiable, and conventions differ by half pixels).
* `gap_closed`: the fraction of the PSNR gap from ZSSR with the bicubic
  kernel to ZSSR with the true kernel that an estimated kernel closes.

The SSIM is scikit-image's (`skimage.metrics.structural_similarity`), a test
and benchmark extra: it is imported when a score is taken, not with this
module.
"""

import math

import numpy as np
from scipy import ndimage

# MATLAB rgb2ycbcr luma for [0, 1] RGB.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0 / 255.0


def luma(image_01: np.ndarray) -> np.ndarray:
  """Y of YCbCr (BT.601, [16, 235] / 255) of an RGB image in [0, 1]."""
  return np.asarray(image_01, np.float64)[..., :3] @ _Y_WEIGHTS + _Y_OFFSET


def shift_spline(image_hw: np.ndarray, shift_rc: tuple[float, float]
                 ) -> np.ndarray:
  """Sub-pixel shift by cubic-spline interpolation; positive moves content
  to higher indices.

  Exact on smooth content; it attenuates the highest frequencies a little
  (so on white noise alone a fractional shift looks better). A phase-ramp
  (FFT) shift keeps every amplitude but rings from the image border, 1e-2
  deep inside a 64-px image, far worse on real pictures.
  """
  return ndimage.shift(image_hw, shift_rc, order=3, mode="nearest")


def _common_lumas(reference_01: np.ndarray, test_01: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Y of both images cropped to their common size, the test clipped."""
  height = min(reference_01.shape[0], test_01.shape[0])
  width = min(reference_01.shape[1], test_01.shape[1])
  return (luma(reference_01[:height, :width]),
          luma(np.clip(test_01[:height, :width], 0, 1)))


def _shaved(image_hw: np.ndarray, shave: int) -> np.ndarray:
  return image_hw[shave:image_hw.shape[0] - shave,
                  shave:image_hw.shape[1] - shave]


def y_psnr_ssim(reference_01: np.ndarray, test_01: np.ndarray,
                shave: int, shift_rc: tuple[float, float] = (0.0, 0.0)
                ) -> dict[str, float]:
  """PSNR (peak 1) and SSIM (Gaussian window, MATLAB settings) on Y.

  Args:
    reference_01: (H, W, 3) HR ground truth in [0, 1].
    test_01: (H', W', 3) SR result; both are cropped to the common size.
    shave: border pixels removed on every side (the scale factor).
    shift_rc: sub-pixel (row, col) shift applied to the test's Y first
      (`shift_spline`); `shave` must cover it.

  Returns:
    {'psnr': dB, 'ssim': in [-1, 1]}.
  """
  return _y_scores(*_common_lumas(reference_01, test_01), shave, shift_rc)


def _y_scores(reference_y: np.ndarray, test_y: np.ndarray, shave: int,
              shift_rc: tuple[float, float]) -> dict[str, float]:
  """`y_psnr_ssim` of lumas already cropped to a common size."""
  if any(shift_rc):
    test_y = shift_spline(test_y, shift_rc)
  reference, test = _shaved(reference_y, shave), _shaved(test_y, shave)
  mse = float(np.mean((reference - test)**2))
  # scikit-image is a test / benchmark extra, not a package dependency.
  import skimage.metrics  # pylint: disable=g-import-not-at-top
  ssim = skimage.metrics.structural_similarity(
      reference, test, data_range=1.0, gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False)
  return {"psnr": -10.0 * np.log10(max(mse, 1e-12)), "ssim": float(ssim)}


def aligned_shave(scale: int, max_shift: float) -> int:
  """The border `aligned_y_psnr_ssim` leaves out."""
  return scale + math.ceil(max_shift)


def aligned_y_psnr_ssim(reference_01: np.ndarray, test_01: np.ndarray,
                        scale: int, max_shift: float = 2.0
                        ) -> dict[str, float]:
  """`y_psnr_ssim` at the global sub-pixel shift that maximises PSNR.

  A global shift of the kernel cannot be identified from the LR image
  (div2krk-protocol.md), and conventions differ by half pixels: the
  protocol's generator centres LR pixel i on HR 2i + 1, bicubic
  interpolation and KernelGAN's kernels on 2i + 0.5 (1.5 HR px apart at x4
  after two x2 steps). Scoring every method at its best shift (grid of 1/4
  px, within +-max_shift, applied by `shift_spline`) compares the
  pictures, not the conventions; the border shaved grows by the largest
  shift.

  Returns:
    {'psnr', 'ssim', 'shift_row', 'shift_col'}.
  """
  shave = aligned_shave(scale, max_shift)
  grid = np.arange(-max_shift, max_shift + 1e-9, 0.25)
  reference, test = _common_lumas(reference_01, test_01)
  reference_inner = _shaved(reference, shave)

  def mse(shift_rc):
    shifted = _shaved(shift_spline(test, shift_rc), shave)
    return float(np.mean((reference_inner - shifted)**2))

  best = min(((r, c) for r in grid for c in grid), key=mse)
  scores = _y_scores(reference, test, shave, best)
  return dict(scores, shift_row=float(best[0]), shift_col=float(best[1]))


# The rows whose PSNR gap KernelGAN's kernel should close, as the paper
# claims: ZSSR with the bicubic kernel, with KernelGAN's, with the true one.
GAP_METHODS = ("zssr_bicubic", "zssr_kernelgan", "zssr_true")


def gap_closed(psnr: dict[str, float]) -> float:
  """The fraction of the PSNR gap from ZSSR with the bicubic kernel to ZSSR
  with the true kernel that ZSSR with KernelGAN's kernel closes; NaN where
  the true kernel does not score above the bicubic one (no gap to close).
  """
  low, ours, high = (psnr[m] for m in GAP_METHODS)
  return (ours - low) / (high - low) if high > low else math.nan

