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
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib

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
  # The Gaussian's mean is KernelGAN's centre-of-mass target.
  assert kernel_lib.center_of_mass_target(11, 2) == 5.5
  assert div2krk.target_center_of_mass(11, 2) == 6.0
  assert kernel_lib.center_of_mass_target(12, 2) == 7.0
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
  once = degradation.downscale_np(hr[:24], kernel)
  twice = degradation.downscale_np(once, kernel)
  assert lr_x4.shape == (6, 6, 3)
  np.testing.assert_array_equal(lr_x4, div2krk.quantize(twice))


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
    # The pixels the command line reads, so benchmarks get its kernels.
    np.testing.assert_array_equal(
        example.lr, images.read_image(os.path.join(out_dir, 'LR',
                                                   name + '.png')))
    assert example.lr.dtype == np.float64
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


# Non-Gaussian kernel families.


def _moments(kernel):
  """Centre (row, col), covariance in (x, y) = (col, row), offsets dx, dy."""
  rows, cols = np.mgrid[:kernel.shape[0], :kernel.shape[1]].astype(float)
  center = np.array([np.sum(kernel * rows), np.sum(kernel * cols)])
  dy, dx = rows - center[0], cols - center[1]
  cov = np.array([[np.sum(kernel * dx * dx), np.sum(kernel * dx * dy)],
                  [np.sum(kernel * dx * dy), np.sum(kernel * dy * dy)]])
  return center, cov, dx, dy


def _principal_axis_stats(kernel):
  """(variance ratio major/minor, angle of major axis in [0, pi), kurtosis
  along the major axis): a Gaussian's kurtosis along any axis is 3.
  """
  _, cov, dx, dy = _moments(kernel)
  eigenvalues, eigenvectors = np.linalg.eigh(cov)
  major = eigenvectors[:, 1]
  along = major[0] * dx + major[1] * dy
  kurtosis = np.sum(kernel * along**4) / eigenvalues[1]**2
  angle = np.arctan2(major[1], major[0]) % np.pi
  return eigenvalues[1] / eigenvalues[0], angle, kurtosis


def _radial_kurtosis(kernel):
  """E[r^4] / E[r^2]^2 about the centre: 2 for an isotropic Gaussian (more
  for an anisotropic one), 4/3 for a uniform disk.
  """
  _, _, dx, dy = _moments(kernel)
  r2 = dx**2 + dy**2
  return np.sum(kernel * r2**2) / np.sum(kernel * r2)**2


def _border_mass(kernel):
  inner = kernel[1:-1, 1:-1].sum()
  return kernel.sum() - inner


NONGAUSSIAN_SAMPLERS = {
    'motion': div2krk.random_motion_kernel_x2_with_params,
    'disk': div2krk.random_disk_kernel_x2_with_params,
}


def test_kernel_families():
  families = div2krk.KERNEL_FAMILIES
  assert set(families) == {'gaussian', 'motion', 'disk', 'nongaussian'}
  assert families['gaussian'] == (div2krk.random_kernel_x2_with_params,)
  assert families['nongaussian'] == (NONGAUSSIAN_SAMPLERS['motion'],
                                     NONGAUSSIAN_SAMPLERS['disk'])
  rng = np.random.default_rng(0)
  kinds = [div2krk.random_family_kernel_x2_with_params(
      rng, 'nongaussian', index)[1]['family'] for index in range(4)]
  assert kinds == ['motion', 'disk', 'motion', 'disk']
  with pytest.raises(ValueError, match='unknown kernel family'):
    div2krk.random_family_kernel_x2_with_params(rng, 'box')


@pytest.mark.parametrize('family', ['motion', 'disk'])
def test_nongaussian_kernel_properties(family):
  rng = np.random.default_rng(123)
  for _ in range(25):
    kernel, params = NONGAUSSIAN_SAMPLERS[family](rng)
    assert kernel.shape == (11, 11) and kernel.dtype == np.float64
    assert kernel.min() >= 0.0
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ndimage.center_of_mass(kernel), (6.0, 6.0),
                               atol=1e-3)
    assert _border_mass(kernel) < 1e-4  # Fits the canvas.
    assert params['family'] == family
    assert params['target_center_of_mass'] == 6.0
    assert json.loads(json.dumps(params)) == params
    assert 0.2 <= params['sigma'] <= 0.4
    if family == 'motion':
      assert 3.5 <= params['length'] <= params['max_length'] <= 7.5
      assert 0.0 <= params['theta'] < np.pi
      assert abs(params['ramp']) <= 0.5
    else:
      assert 2.0 <= params['radius'] <= params['max_radius'] <= 4.0


@pytest.mark.parametrize('family', ['motion', 'disk'])
def test_nongaussian_kernel_other_sizes(family):
  rng = np.random.default_rng(4)
  for size in (12, 13):
    kernel, _ = NONGAUSSIAN_SAMPLERS[family](rng, size)
    target = div2krk.target_center_of_mass(size)
    np.testing.assert_allclose(ndimage.center_of_mass(kernel),
                               (target, target), atol=1e-3)
    assert _border_mass(kernel) < 1e-4
  with pytest.raises(ValueError, match='too small'):
    NONGAUSSIAN_SAMPLERS[family](rng, 7)


@pytest.mark.parametrize('family', ['motion', 'disk'])
def test_nongaussian_kernel_seeded(family):
  sampler = NONGAUSSIAN_SAMPLERS[family]
  first, first_params = sampler(np.random.default_rng(5))
  again, again_params = sampler(np.random.default_rng(5))
  other, _ = sampler(np.random.default_rng(6))
  np.testing.assert_array_equal(first, again)
  assert first_params == again_params
  assert np.abs(first - other).max() > 1e-3


def test_motion_kernel_orientation_convention():
  # theta = 0 runs along a row (x), theta = pi / 2 along a column (y).
  horizontal = div2krk.motion_kernel(5.0, 0.0, 0.25)
  vertical = div2krk.motion_kernel(5.0, np.pi / 2, 0.25)
  np.testing.assert_allclose(vertical, horizontal.T, atol=1e-10)
  assert horizontal[6].sum() > 0.85
  # Uniform speed: flat along the line (the middle taps are equal).
  np.testing.assert_allclose(horizontal[6, 5:8], horizontal[6, 6], rtol=1e-3)


def test_motion_kernels_are_lines_not_gaussians():
  rng = np.random.default_rng(7)
  for _ in range(25):
    kernel, params = div2krk.random_motion_kernel_x2_with_params(rng)
    ratio, angle, kurtosis = _principal_axis_stats(kernel)
    assert ratio > 3.0
    difference = abs(angle - params['theta']) % np.pi
    # Up to ~0.1 rad: a thin line is sampled coarsely across its width.
    assert min(difference, np.pi - difference) < 0.15
    # A box along the line (kurtosis 1.8, smoothed), not a Gaussian (3).
    assert kurtosis < 2.5
    if abs(params['ramp']) > 0.2:
      # Brighter at the +theta end when ramp > 0: skewed, unlike a Gaussian.
      _, _, dx, dy = _moments(kernel)
      along = np.cos(params['theta']) * dx + np.sin(params['theta']) * dy
      skewness = np.sum(kernel * along**3) / np.sum(kernel * along**2)**1.5
      assert np.sign(skewness) == -np.sign(params['ramp'])
      assert abs(skewness) > 0.05
  # Control: an untruncated Gaussian as elongated has kurtosis 3.
  gaussian = div2krk.anisotropic_gaussian(41, 4.0, 0.2, 0.4, 20.0)
  ratio, angle, kurtosis = _principal_axis_stats(gaussian / gaussian.sum())
  assert ratio > 3.0 and abs(angle - 0.4) < 1e-4 and kurtosis > 2.9


def test_disk_kernels_are_flat_topped_not_gaussians():
  rng = np.random.default_rng(8)
  rows, cols = np.mgrid[:11, :11] - 6.0
  for _ in range(25):
    kernel, params = div2krk.random_disk_kernel_x2_with_params(rng)
    ratio, _, _ = _principal_axis_stats(kernel)
    assert ratio < 1.05  # Isotropic.
    assert _radial_kurtosis(kernel) < 1.75  # Any Gaussian: >= 2.
    inner = np.hypot(rows, cols) <= params['radius'] - 1.0
    plateau = kernel[inner].min() / kernel[inner].max()
    assert plateau > 0.9
    # A Gaussian with the same covariance falls off over that plateau.
    _, cov, _, _ = _moments(kernel)
    variance = np.trace(cov) / 2
    gaussian = div2krk.anisotropic_gaussian(11, variance, variance, 0.0, 6.0)
    assert gaussian[inner].min() / gaussian[inner].max() < 0.8
  # Control: the statistic is 2 for an untruncated isotropic Gaussian.
  gaussian = div2krk.anisotropic_gaussian(41, 2.0, 2.0, 0.0, 20.0)
  np.testing.assert_allclose(_radial_kurtosis(gaussian / gaussian.sum()), 2.0,
                             atol=1e-3)


def test_default_family_is_the_gaussian_protocol(tmp_path):
  kernel, params = div2krk.random_family_kernel_x2_with_params(
      np.random.default_rng(0))
  expected, expected_params = div2krk.random_kernel_x2_with_params(
      np.random.default_rng(0))
  np.testing.assert_array_equal(kernel, expected)
  assert params == expected_params and 'family' not in params
  np.testing.assert_allclose(
      kernel, np.load(os.path.join(DATA_DIR, 'example_kernel_x2.npy')),
      rtol=1e-10, atol=1e-14)
  rng = np.random.default_rng(3)
  photos = {'a': rng.random((20, 24, 3)), 'b': rng.random((16, 18, 3))}
  default = div2krk.write_set(str(tmp_path / 'default'), photos, seed=2)
  explicit = div2krk.write_set(str(tmp_path / 'explicit'), photos, seed=2,
                               family='gaussian')
  assert default == explicit and default['family'] == 'gaussian'
  for name in photos:
    for sub, suffix in (('LR', '.png'), ('kernels', '_kernel_x2.npy')):
      paths = [tmp_path / d / sub / (name + suffix)
               for d in ('default', 'explicit')]
      assert paths[0].read_bytes() == paths[1].read_bytes()


def test_write_and_load_nongaussian_set_round_trip(tmp_path):
  rng = np.random.default_rng(3)
  photos = {'a': rng.random((40, 36, 3)), 'b': rng.random((30, 45, 3)),
            'c': rng.random((24, 24, 3))}
  out_dir = str(tmp_path / 'set')
  manifest = div2krk.write_set(out_dir, photos, seed=11, x4=True,
                               family='nongaussian')
  assert manifest['family'] == 'nongaussian'
  assert div2krk.read_manifest(out_dir) == manifest
  loaded = div2krk.load_set(out_dir)
  assert list(loaded) == ['a', 'b', 'c']
  assert [e.family for e in loaded.values()] == ['motion', 'disk', 'motion']
  kernel_rng = np.random.default_rng(11)
  samplers = [NONGAUSSIAN_SAMPLERS['motion'], NONGAUSSIAN_SAMPLERS['disk']]
  for index, (name, example) in enumerate(loaded.items()):
    expected_kernel, expected_params = samplers[index % 2](kernel_rng)
    np.testing.assert_array_equal(example.kernel_x2, expected_kernel)
    assert example.params['kernel_x2'] == expected_params
    mat = scipy.io.loadmat(
        os.path.join(out_dir, 'kernels', name + '_kernel_x2.mat'))
    np.testing.assert_array_equal(mat['Kernel'], expected_kernel)
    hr_01 = div2krk.quantize(div2krk.crop_to_multiple(photos[name], 4)) / 255.0
    np.testing.assert_array_equal(
        div2krk.quantize(example.lr),
        div2krk.degrade_image(hr_01, expected_kernel, 2))
    np.testing.assert_array_equal(
        div2krk.quantize(example.lr_x4),
        div2krk.degrade_image(hr_01, expected_kernel, 4))
    assert example.lr.shape[0] * 2 == example.hr.shape[0]
    assert example.lr_x4.shape[0] * 4 == example.hr.shape[0]


def test_load_or_make_set_checks_family(tmp_path):
  rng = np.random.default_rng(3)
  photos = {'a': rng.random((20, 24, 3)), 'b': rng.random((16, 18, 3))}
  set_dir = str(tmp_path / 'set')
  div2krk.write_set(set_dir, photos, seed=0, family='disk')
  examples = div2krk.load_or_make_set(set_dir, 1, family='disk')
  assert [e.name for e in examples] == ['a'] and examples[0].family == 'disk'
  with pytest.raises(ValueError, match="holds a 'disk' set"):
    div2krk.load_or_make_set(set_dir, 1, family='gaussian')
  assert div2krk.load_or_make_set(set_dir, 2)[1].family == 'disk'  # Any.
  # A manifest from before families existed reads as a Gaussian set.
  old_dir = str(tmp_path / 'old')
  div2krk.write_set(old_dir, photos, seed=0)
  path = os.path.join(old_dir, 'manifest.json')
  with open(path) as f:
    manifest = json.load(f)
  del manifest['family']
  with open(path, 'w') as f:
    json.dump(manifest, f)
  assert div2krk.read_manifest(old_dir)['family'] == 'gaussian'
  examples = div2krk.load_or_make_set(old_dir, 2)
  assert [e.family for e in examples] == ['gaussian', 'gaussian']


def test_write_set_rejects_unknown_family(tmp_path):
  with pytest.raises(ValueError, match='unknown kernel family'):
    div2krk.write_set(str(tmp_path / 'set'), {'a': np.zeros((8, 8, 3))},
                      seed=0, family='box')
  assert not (tmp_path / 'set').exists()
