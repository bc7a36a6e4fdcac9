"""Each loss term against hand-computed numbers from the spec."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelgan_jax import losses
from kernelgan_jax.imresize import BICUBIC_X2_TAPS


def test_boundary_mask_numbers_from_the_spec():
  mask = losses.boundary_mask(13, 30.0)
  assert mask.sum() == pytest.approx(303.53, abs=0.01)
  assert np.count_nonzero(mask) == 88
  assert mask[0, 0] == pytest.approx(5.756, abs=1e-3)
  assert mask[0, 6] == pytest.approx(3.031, abs=1e-3)
  assert mask[1, 6] == pytest.approx(2.139, abs=1e-3)
  assert mask[1, 1] == pytest.approx(4.125, abs=1e-3)
  assert not mask[2:11, 2:11].any()


def test_bicubic_taps_and_channel_summing_target():
  taps = np.outer(BICUBIC_X2_TAPS, BICUBIC_X2_TAPS)
  assert BICUBIC_X2_TAPS.sum() == pytest.approx(1.0)
  assert taps[3, 3] == pytest.approx(0.18800354, abs=1e-8)
  gray = jax.random.uniform(jax.random.key(0), (64, 64, 1))
  target = losses.bicubic_target(jnp.repeat(gray, 3, -1), 26)
  assert target.shape == (26, 26)
  # The quirk: a gray image's target is 3x its bicubic downscale.
  single = losses.bicubic_target(gray, 26)
  np.testing.assert_allclose(target, 3 * single, rtol=1e-5)
  # A constant image downscales to the constant (away from the padding).
  flat = losses.bicubic_target(jnp.ones((64, 64, 1)), 26)
  np.testing.assert_allclose(flat, 1.0, rtol=1e-6)


@pytest.mark.parametrize("size,out_size", [(64, 26), (64, 32), (20, 7)])
def test_bicubic_target_equals_the_originals_padded_conv(size, out_size):
  """The original: one conv over all channels, padding 3, stride 2, then
  the centre crop (spec 5.2)."""
  x = jax.random.uniform(jax.random.key(3), (size, size, 3))
  taps = np.outer(BICUBIC_X2_TAPS, BICUBIC_X2_TAPS)
  weight = jnp.broadcast_to(jnp.asarray(taps, jnp.float32)[:, :, None, None],
                            (8, 8, 3, 1))
  full = jax.lax.conv_general_dilated(
      x[None], weight, (2, 2), [(3, 3), (3, 3)],
      dimension_numbers=("NHWC", "HWIO", "NHWC"))[0, :, :, 0]
  shave = (full.shape[0] - out_size) // 2
  np.testing.assert_allclose(
      losses.bicubic_target(x, out_size),
      full[shave:shave + out_size, shave:shave + out_size], atol=2e-6)


def test_bicubic_loss_is_mse_against_the_target():
  g_in = jax.random.uniform(jax.random.key(1), (64, 64, 3))
  out = jnp.zeros((26, 26, 3))
  expected = jnp.mean(losses.bicubic_target(g_in, 26) ** 2)
  assert float(losses.bicubic_loss(g_in, out)) == pytest.approx(
      float(expected), rel=1e-6)


def test_regularisers_by_hand():
  delta = jnp.zeros((13, 13)).at[6, 6].set(1.0)
  assert float(losses.sum_to_one_loss(delta)) == 0.0
  assert float(losses.sum_to_one_loss(0.5 * delta)) == pytest.approx(0.5)
  # Centre of mass (6, 6) vs target 6.5: mean of 0.25 and 0.25.
  assert float(losses.centralized_loss(delta, 6.5)) == pytest.approx(0.25)
  corner = jnp.zeros((13, 13)).at[0, 0].set(-2.0)
  mask = losses.boundary_mask()
  assert float(losses.boundaries_loss(corner, mask)) == pytest.approx(
      2 * mask[0, 0] / 169, rel=1e-6)
  k = jnp.zeros((13, 13)).at[0, 0].set(32.0).at[1, 1].set(-1.0)
  assert float(losses.sparsity_loss(k)) == pytest.approx(3.0 / 169)


def test_sparsity_gradient_is_finite_at_zero():
  grad = jax.grad(losses.sparsity_loss)(jnp.zeros((13, 13)).at[0, 0].set(1.0))
  assert bool(jnp.all(jnp.isfinite(grad)))
  assert float(grad[0, 0]) == pytest.approx(0.2 / 169)
  assert float(grad[5, 5]) == 0.0


def test_gan_loss_is_l1_to_labels():
  scores = jnp.array([[0.25, 0.75]])
  assert float(losses.gan_loss(scores, is_real=True)) == pytest.approx(0.5)
  assert float(losses.gan_loss(scores, is_real=False)) == pytest.approx(0.5)
  assert float(losses.gan_loss(jnp.array([0.1]), True)) == pytest.approx(0.9)
