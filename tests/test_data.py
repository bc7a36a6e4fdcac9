"""Reading, shaving, crop-probability maps and crop sampling (spec 2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from kernelgan_jax import config as config_lib
from kernelgan_jax import data
from kernelgan_jax import images
from kernelgan_jax.images import as_float_rgb

CONFIG = config_lib.get_config()


@pytest.mark.parametrize("size", [5, 13, 32])
def test_box_filter_matches_scipy_same_convolution(size):
  image = np.random.default_rng(0).random((70, 90))
  expected = signal.convolve2d(image, np.ones((size, size)), "same") / size**2
  np.testing.assert_allclose(data.box_filter(image, size), expected,
                             atol=1e-12)


def test_shave_drops_border_and_odd_rows():
  image = np.zeros((101, 120, 3))
  assert data.shave(image, CONFIG).shape == (80, 100, 3)
  real = CONFIG.replace(real_image=True)
  assert data.shave(image, real).shape == (100, 120, 3)


def test_probability_maps_are_normalised_and_framed():
  rng = np.random.default_rng(1)
  image = rng.random((120, 140, 3))
  g_map, d_map = data.crop_probability_maps(image, CONFIG)
  assert g_map.shape == d_map.shape == (120, 140)
  assert g_map.sum() == pytest.approx(1.0) and d_map.sum() == pytest.approx(1)
  assert not g_map[:32].any() and not g_map[:, -32:].any()
  assert not d_map[:13].any() and d_map[13:-13, 13:-13].all()


def test_g_map_resizes_the_luma_as_the_original_resizes_the_image():
  from kernelgan_jax.imresize import imresize  # pylint: disable=g-import-not-at-top
  image = np.random.default_rng(2).random((120, 140, 3)).astype(np.float32)
  g_map, _ = data.crop_probability_maps(image, CONFIG)
  # The original: the colour image downscaled, then its gradient map.
  small = imresize(np.asarray(image, np.float64), 0.5)
  original = data.probability_map(
      data.gradient_map(small).repeat(2, 0).repeat(2, 1),
      CONFIG.input_crop_size)
  np.testing.assert_allclose(g_map, original, rtol=1e-9, atol=1e-15)


def test_gradient_map_follows_texture():
  image = np.zeros((100, 100, 3))
  image[:, 50:] = 1.0  # One vertical edge.
  grad = data.gradient_map(image)
  assert grad.mean() == pytest.approx(1.0)
  assert grad[50, 48:52].min() > 10 * grad[50, 20]


def test_small_image_falls_back_to_uniform():
  probs = data.probability_map(np.ones((64, 64)), 64)
  np.testing.assert_allclose(probs, 1 / 64**2)


def test_constant_and_small_images_are_rejected():
  with pytest.raises(images.ImageError, match="constant"):
    data.prepare(np.full((100, 100, 3), 0.5), CONFIG, jax.random.key(0))
  with pytest.raises(images.ImageError, match="at least 84x84"):
    data.prepare(np.zeros((83, 200, 3)), CONFIG, jax.random.key(0))


def test_corners_are_even_inside_and_follow_the_map():
  probs = np.zeros((100, 120))
  probs[70, 33] = 1.0
  corners = data.sample_corners(jax.random.key(0), jnp.asarray(probs), 26, 5)
  # centre - 13 = (57, 20), both rounded down to even.
  np.testing.assert_array_equal(corners, [[56, 20]] * 5)
  probs = np.full((100, 120), 1 / 12000)
  corners = np.asarray(data.sample_corners(jax.random.key(1),
                                           jnp.asarray(probs), 64, 500))
  assert (corners % 2 == 0).all() and corners.min() >= 0
  assert corners[:, 0].max() <= 36 and corners[:, 1].max() <= 56


def test_prepare_is_seeded():
  image = np.random.default_rng(2).random((100, 110, 3))
  config = CONFIG.replace(max_iters=7)
  a = data.prepare(image, config, jax.random.key(3))
  b = data.prepare(image, config, jax.random.key(3))
  assert a.g_corners.shape == (7, 2) and a.image.shape == (80, 90, 3)
  np.testing.assert_array_equal(a.g_corners, b.g_corners)
  assert float(a.image.min()) >= -1.0 and float(a.image.max()) <= 1.0


@pytest.mark.parametrize("image, note", [
    (np.full((5, 6), 255, np.uint8), "gray"),
    (np.full((5, 6, 4), 65535, np.uint16), "RGBA 16-bit"),
    (np.full((5, 6, 2), 1.0), "gray + alpha"),
])
def test_as_float_rgb_normalises(image, note):
  rgb = as_float_rgb(image)
  assert rgb.shape == (5, 6, 3), note
  np.testing.assert_allclose(rgb, 1.0)
