"""Tests for kernelgan_jax.degradation against scipy.ndimage.correlate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from kernelgan_jax import degradation


def _x64():
  """Context manager enabling float64 in JAX (old and new spellings)."""
  if callable(getattr(jax, 'enable_x64', None)):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # pylint: disable=g-import-not-at-top
  return enable_x64()


def _scipy_downscale(image_hwc, kernel_kk, scale):
  channels = [
      ndimage.correlate(image_hwc[..., c], kernel_kk, mode='reflect')
      for c in range(image_hwc.shape[-1])
  ]
  return np.stack(channels, axis=-1)[::scale, ::scale]


@pytest.mark.parametrize('kernel_size', [1, 2, 4, 5, 11, 13])
@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('scale', [2, 3])
def test_matches_scipy(kernel_size, channels, scale):
  rng = np.random.default_rng(kernel_size * 10 + channels + scale)
  image_hwc = rng.random((23, 18, channels))
  kernel_kk = rng.random((kernel_size, kernel_size))
  expected = _scipy_downscale(image_hwc, kernel_kk, scale)
  with _x64():
    got = np.asarray(degradation.downscale(
        jnp.asarray(image_hwc), jnp.asarray(kernel_kk), scale))
  assert got.shape == (-(-23 // scale), -(-18 // scale), channels)
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_float32_close_to_scipy():
  rng = np.random.default_rng(0)
  image_hwc = rng.random((32, 32, 3)).astype(np.float32)
  kernel_kk = rng.random((13, 13)).astype(np.float32)
  kernel_kk /= kernel_kk.sum()
  got = np.asarray(degradation.downscale(image_hwc, kernel_kk))
  expected = _scipy_downscale(image_hwc.astype(np.float64),
                              kernel_kk.astype(np.float64), 2)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_kernel_larger_than_image():
  rng = np.random.default_rng(1)
  image_hwc = rng.random((5, 6, 1))
  kernel_kk = rng.random((13, 13))
  with _x64():
    got = np.asarray(degradation.downscale(image_hwc, kernel_kk))
  np.testing.assert_allclose(got, _scipy_downscale(image_hwc, kernel_kk, 2),
                             rtol=1e-12)


def test_rectangular_kernel_and_gray_2d():
  rng = np.random.default_rng(2)
  image_hw = rng.random((16, 20))
  kernel = rng.random((3, 6))
  with _x64():
    got = np.asarray(degradation.downscale(image_hw, kernel))
  expected = ndimage.correlate(image_hw, kernel, mode='reflect')[::2, ::2]
  assert got.shape == (8, 10)
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_hand_values_delta_and_box():
  image_hw = np.arange(16.0).reshape(4, 4)
  # A delta at the origin (k // 2) is plain subsampling.
  delta = np.zeros((3, 3))
  delta[1, 1] = 1.0
  np.testing.assert_allclose(
      degradation.downscale(image_hw, delta), [[0.0, 2.0], [8.0, 10.0]])
  # A 2x2 box has its origin at (1, 1): it averages rows/cols i-1 and i.
  # Pixel (0, 0) sees the reflected copy of itself -> 0; pixel (2, 2) sees
  # rows 1..2, cols 1..2 -> (5 + 6 + 9 + 10) / 4 = 7.5.
  box = np.full((2, 2), 0.25)
  np.testing.assert_allclose(
      degradation.downscale(image_hw, box), [[0.0, 1.5], [6.0, 7.5]])


def test_jit_and_vmap():
  rng = np.random.default_rng(3)
  images_nhwc = rng.random((4, 12, 12, 3)).astype(np.float32)
  kernels_nkk = rng.random((4, 5, 5)).astype(np.float32)
  fn = jax.jit(jax.vmap(degradation.downscale, in_axes=(0, 0)))
  got = np.asarray(fn(images_nhwc, kernels_nkk))
  for image_hwc, kernel_kk, out in zip(images_nhwc, kernels_nkk, got):
    np.testing.assert_allclose(
        out, _scipy_downscale(image_hwc.astype(np.float64),
                              kernel_kk.astype(np.float64), 2), atol=1e-5)


def test_gradient_wrt_kernel_is_linear_map():
  rng = np.random.default_rng(4)
  image_hwc = jnp.asarray(rng.random((10, 10, 1)), jnp.float32)
  kernel_kk = jnp.asarray(rng.random((3, 3)), jnp.float32)
  grad = jax.grad(lambda k: degradation.downscale(image_hwc, k).sum())(
      kernel_kk)
  # d/dk sum(out) = sum over kept pixels of the shifted (padded) image.
  padded = np.pad(np.asarray(image_hwc[..., 0]), 1, mode='symmetric')
  expected = np.array([[padded[r:r + 10:2, c:c + 10:2].sum()
                        for c in range(3)] for r in range(3)])
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


@pytest.mark.parametrize('kernel_size', [11, 12, 17])
@pytest.mark.parametrize('fft', [False, True])
def test_numpy_version_matches_scipy(kernel_size, fft):
  rng = np.random.default_rng(kernel_size)
  hr = rng.random((30, 26, 3))
  kernel = rng.random((kernel_size, kernel_size))
  expected = _scipy_downscale(hr, kernel, 2)
  np.testing.assert_allclose(degradation.downscale_np(hr, kernel, fft=fft),
                             expected, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(
      degradation.downscale_np(hr[..., 0], kernel, fft=fft),
      expected[..., 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('fft', [False, True])
@pytest.mark.parametrize('kernel_shape', [(11, 11), (12, 12), (5, 8)])
@pytest.mark.parametrize('scale', [2, 3])
def test_numpy_and_jax_versions_agree(fft, kernel_shape, scale):
  rng = np.random.default_rng(2)
  hr = rng.random((18, 22, 3)).astype(np.float32)
  kernel = rng.random(kernel_shape)
  kernel /= kernel.sum()
  expected = degradation.downscale_np(hr, kernel, scale, fft=fft)
  assert expected.dtype == np.float64
  np.testing.assert_allclose(
      degradation.downscale(hr, kernel.astype(np.float32), scale), expected,
      atol=1e-6)
  np.testing.assert_allclose(
      degradation.downscale(hr[..., 1], kernel.astype(np.float32), scale),
      expected[..., 1], atol=1e-6)
  with _x64():
    np.testing.assert_allclose(
        degradation.downscale(hr.astype(np.float64), kernel, scale),
        expected,
        rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('shape,kernel_shape,stride', [
    ((64, 64, 3), (13, 13), 2), ((31, 40, 1), (13, 13), 2),
    ((20, 17, 2), (5, 5), 3), ((9, 9, 1), (3, 3), 1),
    ((20, 17, 2), (3, 6), 2)])
def test_valid_equals_strided_conv(shape, kernel_shape, stride):
  x = jax.random.normal(jax.random.key(0), shape)
  k = jax.random.normal(jax.random.key(1), kernel_shape)

  def by_conv(k):
    y = jax.lax.conv_general_dilated(
        jnp.moveaxis(x, -1, 0)[..., None], k[:, :, None, None],
        (stride, stride), 'VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.moveaxis(y[..., 0], 0, -1)

  def by_matmul(k):
    return degradation.downscale(x, k, stride, padding='valid')

  expected = by_conv(k)
  assert by_matmul(k).shape == expected.shape
  np.testing.assert_allclose(by_matmul(k), expected,
                             atol=1e-5 * max(kernel_shape))
  np.testing.assert_allclose(
      degradation.downscale(x[..., 0], k, stride, padding='valid'),
      expected[..., 0], atol=1e-5 * max(kernel_shape))
  weights = jax.random.normal(jax.random.key(2), expected.shape)
  grads = [jax.grad(lambda k, f=f: jnp.sum(f(k) * weights))(k)
           for f in (by_conv, by_matmul)]
  np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-4)


def test_unknown_padding_raises():
  with pytest.raises(ValueError, match='padding'):
    degradation.downscale(np.zeros((8, 8, 1)), np.ones((3, 3)),
                          padding='same')


@pytest.mark.parametrize('kernel_shape', [(11, 11), (4, 7), (1, 1)])
def test_size_on_a_canvas_equals_each_image_alone(kernel_shape):
  rng = np.random.default_rng(5)
  shapes = [(17, 23), (24, 9), (3, 5)]  # (3, 5): kernel larger than image.
  canvas = np.full((len(shapes), 25, 30, 2), np.nan, np.float32)
  kernels = rng.random((len(shapes), *kernel_shape)).astype(np.float32)
  kernels /= kernels.sum(axis=(1, 2), keepdims=True)
  for i, (h, w) in enumerate(shapes):
    canvas[i, :h, :w] = rng.random((h, w, 2))
  fn = jax.jit(jax.vmap(
      lambda x, k, size: degradation.downscale(x, k, 3, size=size)))
  got = np.asarray(fn(canvas, kernels, np.array(shapes)))
  assert got.shape == (3, 9, 10, 2)
  alone_fn = jax.jit(degradation.downscale, static_argnames='scale')
  for i, (h, w) in enumerate(shapes):
    alone = alone_fn(canvas[i, :h, :w], kernels[i], scale=3)
    np.testing.assert_array_equal(got[i, :-(-h // 3), :-(-w // 3)], alone)
    np.testing.assert_allclose(
        alone, _scipy_downscale(canvas[i, :h, :w].astype(np.float64),
                                kernels[i].astype(np.float64), 3),
        atol=1e-6)


def test_size_only_with_reflect():
  with pytest.raises(ValueError, match='size'):
    degradation.downscale(np.zeros((8, 8, 1)), np.ones((3, 3)),
                          padding='valid', size=(8, 8))
