"""Tests for kernelgan_jax.sr_metrics: SR image scores, plain and aligned."""

import math

import numpy as np
from scipy import ndimage
import pytest

from kernelgan_jax import sr_metrics


@pytest.fixture(scope="module")
def photo():
  """A smooth 64x64 RGB picture in [0.1, 0.9]."""
  pytest.importorskip("skimage")  # The scores' SSIM (a test extra).
  rows, cols = np.mgrid[0:64, 0:64] / 64.0
  channels = [np.sin(5 * rows + 3 * cols), np.cos(4 * rows * cols + 2 * rows),
              np.sin(7 * cols) * np.cos(3 * rows)]
  return 0.5 + 0.4 * np.stack(channels, -1)


def test_luma_is_matlab_rgb2ycbcr_y():
  # MATLAB: rgb2ycbcr(uint8([255 0 0])) gives Y = 81; white 235, black 16.
  rgb = np.array([[1.0, 0, 0], [1, 1, 1], [0, 0, 0]])
  np.testing.assert_allclose(sr_metrics.luma(rgb) * 255,
                             [81.481, 235.0, 16.0], atol=1e-9)


def test_identical_images_score_the_psnr_cap_and_ssim_one(photo):
  scores = sr_metrics.y_psnr_ssim(photo, photo, shave=2)
  assert scores["psnr"] == pytest.approx(120.0)
  assert scores["ssim"] == pytest.approx(1.0)


def test_psnr_of_a_constant_offset(photo):
  # Y = 0.257 R + 0.504 G + 0.098 B + 16/255, so +0.01 on RGB is +0.00859 Y.
  scores = sr_metrics.y_psnr_ssim(photo, photo + 0.01, shave=2)
  assert scores["psnr"] == pytest.approx(
      -20 * np.log10(0.01 * sr_metrics._Y_WEIGHTS.sum()), abs=1e-6)


def test_aligned_score_finds_and_undoes_a_sub_pixel_shift(photo):
  # The test image's content sits 0.5 px up and 0.75 px right of the truth:
  # shifting it by (+0.5, -0.75) puts it back.
  moved = ndimage.shift(photo, (-0.5, 0.75, 0), order=3, mode="nearest")
  plain = sr_metrics.y_psnr_ssim(photo, moved, shave=3)
  aligned = sr_metrics.aligned_y_psnr_ssim(photo, moved, scale=2,
                                           max_shift=1.0)
  assert (aligned["shift_row"], aligned["shift_col"]) == (0.5, -0.75)
  assert aligned["psnr"] > plain["psnr"] + 20
  assert aligned["ssim"] > plain["ssim"]


def test_aligned_score_of_a_blurred_aligned_image_is_its_plain_score(photo):
  blurred = ndimage.gaussian_filter(photo, (1.0, 1.0, 0))
  aligned = sr_metrics.aligned_y_psnr_ssim(photo, blurred, scale=2,
                                           max_shift=1.0)
  assert (aligned["shift_row"], aligned["shift_col"]) == (0.0, 0.0)
  plain = sr_metrics.y_psnr_ssim(photo, blurred,
                                 shave=sr_metrics.aligned_shave(2, 1.0))
  assert aligned["psnr"] == pytest.approx(plain["psnr"])
  assert aligned["ssim"] == pytest.approx(plain["ssim"])


def test_gap_closed_is_the_fraction_of_the_zssr_psnr_gap():
  assert sr_metrics.gap_closed(
      {"zssr_bicubic": 30.0, "zssr_kernelgan": 31.0, "zssr_true": 34.0}
  ) == pytest.approx(0.25)
  assert sr_metrics.gap_closed(
      {"zssr_bicubic": 30.0, "zssr_kernelgan": 29.0, "zssr_true": 32.0}
  ) == pytest.approx(-0.5)
  assert math.isnan(sr_metrics.gap_closed(
      {"zssr_bicubic": 30.0, "zssr_kernelgan": 29.0, "zssr_true": 29.5}))
