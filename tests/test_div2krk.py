"""Tests for kernelgan_jax.div2krk (DIV2KRK-style synthetic sets)."""

import json
import os

import imageio.v3 as iio
import numpy as np
import pytest
import scipy.io
from scipy import ndimage

from kernelgan_jax import degradation
from kernelgan_jax import div2krk

DATA_DIR = os.path.join(os.path.dirname(__file__), 'data')


def _public_generator_gaussian(size, lambda_1, lambda_2, theta, mean):
  """The public notebook's meshgrid formulation (Z = stack([X, Y]))."""
  rotation = np.array([[np.cos(theta), -np.sin(theta)],
                       [np.sin(theta), np.cos(theta)]])
  sigma = rotation @ np.diag([lambda_1, lambda_2]) @ rotation.T
  inv_sigma = np.linalg.inv(sigma)[None, None]
  x, y = np.meshgrid(range(size), range(size))
  z = np.stack([x, y], 2)[:, :, :, None] - mean
  return np.exp(-0.5 * np.squeeze(z.transpose(0, 1, 3, 2) @ inv_sigma @ z))


def test_gaussian_matches_public_generator_formula():
  got = div2krk.anisotropic_gaussian(11, 4.1, 0.7, 0.9, 5.5)
  expected = _public_generator_gaussian(11, 4.1, 0.7, 0.9, 5.5)
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_gaussian_covariance_and_orientation():
  # On a large grid, the second moments in (x = column, y = row) are Sigma.
  lambda_1, lambda_2, theta = 4.0, 1.0, np.pi / 6
  kernel = div2krk.anisotropic_gaussian(41, lambda_1, lambda_2, theta, 20.0)
  kernel /= kernel.sum()
  rows, cols = np.mgrid[:41, :41] - 20.0
  cov_xy = np.array(
      [[np.sum(kernel * cols * cols), np.sum(kernel * cols * rows)],
       [np.sum(kernel * rows * cols), np.sum(kernel * rows * rows)]])
  rotation = np.array([[np.cos(theta), -np.sin(theta)],
                       [np.sin(theta), np.cos(theta)]])
  expected = rotation @ np.diag([lambda_1, lambda_2]) @ rotation.T
  np.testing.assert_allclose(cov_xy, expected, atol=1e-6)


def test_mean_and_target_conventions():
  assert div2krk.gaussian_mean(11, 2) == 5.5
  assert div2krk.target_center_of_mass(11, 2) == 6.0
  assert div2krk.gaussian_mean(12, 2) == 7.0
  assert div2krk.target_center_of_mass(12, 2) == 7.0


def test_random_kernel_properties():
  rng = np.random.default_rng(123)
  for _ in range(20):
    kernel, params = div2krk.random_kernel_x2_with_params(rng)
    assert kernel.shape == (11, 11)
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ndimage.center_of_mass(kernel), (6.0, 6.0),
                               atol=0.1)
    assert 0.35 <= params['lambda_1'] <= 5.0
    assert 0.35 <= params['lambda_2'] <= 5.0
    assert 0.0 <= params['theta'] < np.pi
    assert kernel.min() > -0.01  # Spline shift: tiny negatives at most.


def test_random_kernel_reproduces_protocol_by_hand():
  # Rebuild the kernel step by step from the same draws.
  seed = 7
  rng = np.random.default_rng(seed)
  lambdas = 0.35 + rng.random(2) * 4.65
  theta = rng.random() * np.pi
  noise = -0.4 + rng.random((11, 11)) * 0.8
  raw = _public_generator_gaussian(11, *lambdas, theta, 5.5) * (1 + noise)
  shift = 6.0 - np.array(ndimage.center_of_mass(raw))
  expected = ndimage.shift(raw, shift)
  expected /= expected.sum()
  got = div2krk.random_kernel_x2(np.random.default_rng(seed))
  np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def test_random_kernel_seeded():
  first = div2krk.random_kernel_x2(np.random.default_rng(5))
  again = div2krk.random_kernel_x2(np.random.default_rng(5))
  other = div2krk.random_kernel_x2(np.random.default_rng(6))
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - other).max() > 1e-3


def test_degrade_image_matches_scipy_and_crops():
  rng = np.random.default_rng(0)
  hr = rng.random((21, 30, 3))
  kernel = div2krk.random_kernel_x2(rng)
  lr = div2krk.degrade_image(hr, kernel)
  assert lr.dtype == np.uint8 and lr.shape == (10, 15, 3)
  even = hr[:20]
  for c in range(3):
    blurred = ndimage.correlate(even[..., c], kernel, mode='reflect')
    expected = np.round(np.clip(blurred[::2, ::2], 0, 1) * 255)
    np.testing.assert_array_equal(lr[..., c], expected)


def test_degrade_image_x4_applies_kernel_twice():
  rng = np.random.default_rng(1)
  hr = rng.random((26, 24, 3))
  kernel = div2krk.random_kernel_x2(rng)
  lr_x4 = div2krk.degrade_image(hr, kernel, scale=4)
  once = div2krk.blur_subsample(hr[:24], kernel)
  twice = div2krk.blur_subsample(once, kernel)
  assert lr_x4.shape == (6, 6, 3)
  np.testing.assert_array_equal(lr_x4, div2krk.quantize(twice))


def test_blur_subsample_agrees_with_jax_downscale():
  rng = np.random.default_rng(2)
  hr = rng.random((18, 22, 3)).astype(np.float32)
  kernel = div2krk.random_kernel_x2(rng)
  np.testing.assert_allclose(
      np.asarray(degradation.downscale(hr, kernel.astype(np.float32))),
      div2krk.blur_subsample(hr, kernel), atol=1e-6)


def test_center_crop_and_crop_to_multiple():
  image = np.zeros((7, 10, 3))
  assert div2krk.center_crop(image, 4).shape == (4, 4, 3)
  assert div2krk.center_crop(image, 8).shape == (7, 8, 3)
  assert div2krk.crop_to_multiple(image, 4).shape == (4, 8, 3)
  ramp = np.arange(10)[None, :, None] * np.ones((7, 1, 1))
  np.testing.assert_array_equal(div2krk.center_crop(ramp, 4)[0, :, 0],
                                [3, 4, 5, 6])


def test_write_and_load_set_round_trip(tmp_path):
  rng = np.random.default_rng(3)
  photos = {'a': rng.random((40, 36, 3)), 'b': rng.random((30, 45, 3))}
  out_dir = str(tmp_path / 'set')
  manifest = div2krk.write_set(out_dir, photos, seed=11, x4=True)
  loaded = div2krk.load_set(out_dir)
  assert list(loaded) == ['a', 'b']
  with open(os.path.join(out_dir, 'manifest.json')) as f:
    assert json.load(f) == manifest
  kernel_rng = np.random.default_rng(11)
  for name, example in loaded.items():
    expected_kernel = div2krk.random_kernel_x2(kernel_rng)
    np.testing.assert_array_equal(example.kernel_x2, expected_kernel)
    mat = scipy.io.loadmat(
        os.path.join(out_dir, 'kernels', name + '_kernel_x2.mat'))
    np.testing.assert_array_equal(mat['Kernel'], expected_kernel)
    hr_u8 = div2krk.quantize(div2krk.crop_to_multiple(photos[name], 4))
    np.testing.assert_array_equal(div2krk.quantize(example.hr), hr_u8)
    hr_01 = hr_u8 / 255.0
    np.testing.assert_array_equal(
        div2krk.quantize(example.lr),
        div2krk.degrade_image(hr_01, expected_kernel, 2))
    np.testing.assert_array_equal(
        div2krk.quantize(example.lr_x4),
        div2krk.degrade_image(hr_01, expected_kernel, 4))
    assert list(example.hr.shape) == example.params['hr_shape']
    assert list(example.lr.shape) == example.params['lr_shape']
    assert example.lr.shape[0] * 2 == example.hr.shape[0]
  assert loaded['b'].hr.shape == (28, 44, 3)


def test_sample_photographs_small_crop():
  pytest.importorskip('skimage')
  photos = div2krk.sample_photographs(('astronaut', 'camera'), hr_size=64)
  assert list(photos) == ['astronaut', 'camera']
  for image in photos.values():
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
  camera = photos['camera']
  np.testing.assert_array_equal(camera[..., 0], camera[..., 2])


def test_shipped_example_is_reproducible(tmp_path):
  pytest.importorskip('skimage')
  photos = div2krk.sample_photographs(('astronaut',), hr_size=384)
  div2krk.write_set(str(tmp_path), photos, seed=0)
  kernel = np.load(os.path.join(DATA_DIR, 'example_kernel_x2.npy'))
  np.testing.assert_allclose(
      np.load(tmp_path / 'kernels' / 'astronaut_kernel_x2.npy'), kernel,
      rtol=1e-10, atol=1e-14)
  shipped = iio.imread(os.path.join(DATA_DIR, 'example_lr.png'))
  again = iio.imread(tmp_path / 'LR' / 'astronaut.png')
  assert shipped.shape == (192, 192, 3) and shipped.dtype == np.uint8
  # Identical up to rare rounding ties on other platforms.
  diff = np.abs(shipped.astype(int) - again.astype(int))
  assert diff.max() <= 1 and np.mean(diff) < 1e-3
