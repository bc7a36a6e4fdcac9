"""Tests for kernelgan_jax.metrics."""

import math
import os

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage

from kernelgan_jax import degradation
from kernelgan_jax import div2krk
from kernelgan_jax import imresize
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics

DATA_DIR = os.path.join(os.path.dirname(__file__), 'data')


def _gaussian(size, sigma_r, sigma_c, center_r, center_c):
  rows, cols = np.mgrid[:size, :size]
  kernel = np.exp(-0.5 * (((rows - center_r) / sigma_r) ** 2 +
                          ((cols - center_c) / sigma_c) ** 2))
  return kernel / kernel.sum()


def _smooth_image(rng, shape, sigma=2.0):
  image = ndimage.gaussian_filter(rng.random(shape), (sigma, sigma, 0))
  image -= image.min()
  return image / image.max()


# ---------------------------------------------------------------- kernel_error


def test_kernel_error_zero_for_padded_shifted_copy():
  kernel = div2krk.random_kernel_x2(np.random.default_rng(0))
  copy = np.pad(kernel, ((4, 1), (0, 6)))  # 16 x 17, integer-shifted.
  assert metrics.kernel_error(kernel, copy) < 1e-8
  assert metrics.kernel_error(kernel, 3.0 * copy) < 1e-8  # Scale-free.


def test_kernel_error_small_for_subpixel_shift_of_smooth_kernel():
  kernel = _gaussian(17, 2.0, 1.3, 8.0, 8.0)
  shifted = _gaussian(17, 2.0, 1.3, 8.4, 7.7)
  # Only the cubic-spline resampling error remains (~0.4 %).
  assert metrics.kernel_error(kernel, shifted, relative=True) < 1e-2
  other = _gaussian(17, 1.3, 2.0, 8.0, 8.0)
  assert metrics.kernel_error(kernel, other, relative=True) > 0.3


def test_kernel_error_positive_and_symmetric():
  rng = np.random.default_rng(1)
  first = div2krk.random_kernel_x2(rng)
  second = np.pad(div2krk.random_kernel_x2(rng), 3)  # 17 x 17.
  forward = metrics.kernel_error(first, second)
  backward = metrics.kernel_error(second, first)
  assert forward > 1e-2
  np.testing.assert_allclose(forward, backward, rtol=1e-12)


def test_kernel_error_hand_value():
  # Both already centred and symmetric: no shift, plain L2 of the taps.
  delta = np.ones((1, 1))
  row = np.array([[0.25, 0.5, 0.25]])
  expected = math.sqrt(0.5 ** 2 + 2 * 0.25 ** 2)
  np.testing.assert_allclose(metrics.kernel_error(row, delta), expected,
                             rtol=1e-12)
  np.testing.assert_allclose(
      metrics.kernel_error(row, delta, relative=True), expected, rtol=1e-12)
  # Relative to the row's own norm, which equals the difference's here.
  np.testing.assert_allclose(
      metrics.kernel_error(delta, row, relative=True), 1.0, rtol=1e-12)


def test_kernel_error_mixed_sizes():
  kernel = _gaussian(13, 1.5, 1.5, 6.5, 6.5)
  same_wide = _gaussian(33, 1.5, 1.5, 16.0, 17.0)
  different = _gaussian(17, 3.0, 1.0, 8.5, 8.5)
  assert metrics.kernel_error(kernel, same_wide, relative=True) < 1e-2
  assert metrics.kernel_error(kernel, different, relative=True) > 0.3
  assert metrics.kernel_error(np.ones((11, 11)), different) > 0.0


def test_center_on_canvas_puts_com_at_centre():
  kernel = _gaussian(11, 1.2, 2.0, 3.3, 6.8)
  canvas = metrics.center_on_canvas(kernel, 33)
  np.testing.assert_allclose(ndimage.center_of_mass(canvas), (16.0, 16.0),
                             atol=1e-6)
  np.testing.assert_allclose(canvas.sum(), 1.0, atol=1e-6)


def test_kernel_error_rejects_bad_kernels():
  with pytest.raises(ValueError):
    metrics.kernel_error(np.zeros((5, 5)), np.ones((5, 5)))
  with pytest.raises(ValueError):
    metrics.kernel_error(np.ones(5), np.ones((5, 5)))


# ------------------------------------------------------------- bicubic kernel


def _keys_cubic(x):
  """MATLAB's cubic (a = -0.5)."""
  x = np.abs(x)
  return np.where(x <= 1, 1.5 * x ** 3 - 2.5 * x ** 2 + 1,
                  np.where(x <= 2, -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2,
                           0.0))


def test_bicubic_taps_are_antialiased_matlab_cubic():
  # LR pixel i is centred on HR 2 i + 0.5; HR offsets -3..4 from 2 i.
  distances = np.arange(-3, 5) - 0.5
  taps = _keys_cubic(distances / 2) / 2
  np.testing.assert_allclose(taps / taps.sum(), imresize.BICUBIC_X2_TAPS,
                             rtol=1e-12)


def test_bicubic_kernel_layout():
  kernel = metrics.bicubic_kernel_x2()
  assert kernel.shape == (13, 13)
  np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-12)
  np.testing.assert_allclose(kernel[6, 6], 0.18800354, atol=1e-8)
  np.testing.assert_allclose(ndimage.center_of_mass(kernel), (6.5, 6.5))
  np.testing.assert_allclose(kernel[6, 3:11] / kernel[6, 6],
                             imresize.BICUBIC_X2_TAPS / (111 / 256))
  assert not kernel[:3].any() and not kernel[11:].any()
  assert metrics.bicubic_kernel_x2(9).shape == (9, 9)
  with pytest.raises(ValueError):
    metrics.bicubic_kernel_x2(8)


def test_bicubic_samples_a_ramp_at_half_pixel():
  # Cubic interpolation is exact on linear data: LR i = ramp(2 i + 0.5).
  ramp = np.tile(np.arange(40.0)[:, None, None], (1, 6, 1))
  lr = degradation.downscale_np(ramp, metrics.bicubic_kernel_x2(), fft=True)
  np.testing.assert_allclose(lr[3:-3, 2, 0], 2 * np.arange(3, 17) + 0.5,
                             atol=1e-12)


# ------------------------------------------------------- resynthesis and PSNR


def test_psnr_hand_values():
  reference = np.zeros((10, 10))
  assert metrics.psnr(reference, reference) == math.inf
  np.testing.assert_allclose(metrics.psnr(reference, reference + 0.1), 20.0)
  noisy = reference.copy()
  noisy[0, :] = 1.0  # Only in the shaved border.
  assert metrics.psnr(reference, noisy, border=1) == math.inf


def test_shift_grid_and_integer_kernel_shift():
  grid = metrics.shift_grid(1.0, 0.5)
  assert grid.shape == (25, 2)
  assert any(np.all(grid == 0.0, axis=1))
  kernel = np.random.default_rng(4).random((5, 5))
  shifted = metrics.shifted_kernel(kernel, np.array([1.0, -1.0]))
  expected = np.roll(np.pad(kernel, 2), (1, -1), axis=(0, 1))
  np.testing.assert_allclose(shifted, expected, atol=1e-12)


def _synthetic_example(seed=0, size=96):
  rng = np.random.default_rng(seed)
  hr = np.round(_smooth_image(rng, (size, size, 3), 1.5) * 255) / 255
  kernel = div2krk.random_kernel_x2(rng)
  lr = div2krk.degrade_image(hr, kernel) / 255.0
  return hr, lr, kernel


def test_resynthesis_psnr_true_kernel_near_quantisation_ceiling():
  hr, lr, kernel = _synthetic_example()
  true_psnr = metrics.resynthesis_psnr(hr, lr, kernel, refine=False)
  # Uniform rounding error alone gives 10 log10(12 * 255^2) = 58.9 dB.
  assert 56.0 < true_psnr < 62.0
  bicubic_psnr = metrics.resynthesis_psnr(hr, lr, metrics.bicubic_kernel_x2(),
                                          refine=False)
  assert bicubic_psnr < true_psnr - 10.0


def test_resynthesis_psnr_is_shift_invariant():
  hr, lr, kernel = _synthetic_example(seed=1)
  reference = metrics.resynthesis_psnr(hr, lr, kernel, refine=False)
  # 13 x 13 with origin 6: the taps move by (+1, -1) relative to the origin.
  moved = np.pad(kernel, ((2, 0), (0, 2)))
  np.testing.assert_allclose(
      metrics.resynthesis_psnr(hr, lr, moved, refine=False), reference,
      rtol=1e-9)
  # A sub-pixel offset costs a lot on the grid; refinement recovers it.
  subpixel = ndimage.shift(np.pad(kernel, 2), (0.3, -0.2))
  grid_only = metrics.resynthesis_psnr(hr, lr, subpixel, refine=False)
  refined = metrics.resynthesis_psnr(hr, lr, subpixel, refine=True)
  assert refined > grid_only + 3.0
  assert refined > reference - 3.0


def test_resynthesis_psnr_crops_odd_hr():
  hr, lr, kernel = _synthetic_example(seed=2, size=64)
  odd_hr = np.pad(hr, ((0, 1), (0, 1), (0, 0)), mode='edge')
  np.testing.assert_allclose(
      metrics.resynthesis_psnr(odd_hr, lr, kernel, refine=False),
      metrics.resynthesis_psnr(hr, lr, kernel, refine=False))


def test_resynthesis_psnr_on_shipped_example():
  pytest.importorskip('skimage')
  hr = div2krk.sample_photographs(('astronaut',), hr_size=384)['astronaut']
  lr = iio.imread(os.path.join(DATA_DIR, 'example_lr.png')) / 255.0
  kernel = np.load(os.path.join(DATA_DIR, 'example_kernel_x2.npy'))
  true_psnr = metrics.resynthesis_psnr(hr, lr, kernel, refine=False)
  bicubic_psnr = metrics.resynthesis_psnr(hr, lr, metrics.bicubic_kernel_x2(),
                                          refine=False)
  assert true_psnr > 55.0
  assert bicubic_psnr < 35.0


def test_bicubic_kernel_equals_matlab_imresize_half():
  rng = np.random.default_rng(5)
  image = rng.random((24, 30))
  rows = imresize.resize_matrix(24, 12, 0.5)
  cols = imresize.resize_matrix(30, 15, 0.5)
  expected = rows @ image @ cols.T  # MATLAB imresize(image, 0.5).
  got = degradation.downscale_np(image, metrics.bicubic_kernel_x2(),
                                 fft=True)
  np.testing.assert_allclose(got, expected, atol=1e-12)


# ------------------------------------------------------------- score_kernel


def _example(seed=3, size=128):
  hr, lr, kernel = _synthetic_example(seed, size)
  lr_x4 = div2krk.degrade_image(hr, kernel, 4) / 255.0
  return div2krk.Example(name='synthetic', hr=hr, lr=lr, kernel_x2=kernel,
                         params={}, lr_x4=lr_x4)


def test_score_kernel_x2_is_both_metrics_against_the_example():
  example = _example()
  estimate = metrics.bicubic_kernel_x2()
  assert metrics.true_kernel(example) is example.kernel_x2
  assert metrics.score_kernel(estimate, example) == {
      'kernel_error': metrics.kernel_error(estimate, example.kernel_x2),
      'resynthesis_psnr': metrics.resynthesis_psnr(example.hr, example.lr,
                                                   estimate)}


def test_score_kernel_x4_uses_the_analytic_x4_kernel_and_x4_image():
  example = _example()
  truth_x4 = metrics.true_kernel(example, x4=True)
  np.testing.assert_array_equal(
      truth_x4, kernel_lib.analytic_kernel_x4(example.kernel_x2))
  scores = metrics.score_kernel(truth_x4, example, x4=True)
  assert scores['kernel_error'] == 0.0
  assert scores['resynthesis_psnr'] == metrics.resynthesis_psnr(
      example.hr, example.lr_x4, truth_x4, scale=4)
  assert scores['resynthesis_psnr'] > 45.0
