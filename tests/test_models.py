"""Shapes, parameter counts, linearity, spectral-norm and BN semantics."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernelgan_jax import config as config_lib
from kernelgan_jax import models

CONFIG = config_lib.get_config()


def _count(module):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_parameter_counts_match_the_original():
  g = models.LinearGenerator(CONFIG, rngs=nnx.Rngs(0))
  d = models.PatchDiscriminator(CONFIG, rngs=nnx.Rngs(0))
  assert _count(g) == 150_656
  assert _count(d) == 30_977
  assert [w.shape[:2] for w in g.conv_kernels()] == [
      (7, 7), (5, 5), (3, 3), (1, 1), (1, 1), (1, 1)]


def test_shapes_and_generator_init_scale():
  g = models.LinearGenerator(CONFIG, rngs=nnx.Rngs(0))
  d = models.PatchDiscriminator(CONFIG, rngs=nnx.Rngs(0))
  fake = g(jnp.ones((64, 64, 3)))
  assert fake.shape == (26, 26, 3)
  score = d(jnp.zeros((1, 26, 26, 3)))
  assert score.shape == (1, 20, 20)
  assert bool(jnp.all((score > 0) & (score < 1)))
  # Xavier-normal gain 0.1 stds of the spec (3): first and last layer.
  stds = [float(w.std()) for w in g.conv_kernels()]
  assert stds[0] == pytest.approx(0.0025059, rel=0.1)
  assert stds[1] == pytest.approx(0.0025, rel=0.05)


def test_generator_is_linear():
  g = models.LinearGenerator(CONFIG, rngs=nnx.Rngs(1))
  a, b = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  lhs = g(2.0 * a - 3.0 * b)
  rhs = 2.0 * g(a) - 3.0 * g(b)
  np.testing.assert_allclose(lhs, rhs, atol=1e-10, rtol=1e-4)


def test_spectral_norm_matches_power_iteration_and_keeps_raw_weight():
  conv = models.SpectralConv(3, 8, 3, eps=1e-12, rngs=nnx.Rngs(0))
  raw = np.array(conv.kernel[...])
  w = raw.transpose(3, 2, 0, 1).reshape(8, -1)
  u = np.array(conv.u[...])
  x = jax.random.normal(jax.random.key(1), (1, 5, 5, 3))
  y = conv(x)
  # One PyTorch power step by hand.
  v = w.T @ u / np.linalg.norm(w.T @ u)
  u_new = w @ v / np.linalg.norm(w @ v)
  np.testing.assert_allclose(conv.u[...], u_new, rtol=1e-5)
  sigma = u_new @ w @ v
  expected = jax.lax.conv_general_dilated(
      x, raw / sigma, (1, 1), "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(conv.kernel[...], raw)  # weight_orig kept.
  for _ in range(30):
    conv(x)
  u, v = conv.u[...], None
  top = np.linalg.svd(w, compute_uv=False)[0]
  v = w.T @ np.array(u)
  assert np.linalg.norm(v) == pytest.approx(top, rel=1e-3)


def test_discriminator_uses_batch_statistics():
  d = models.PatchDiscriminator(CONFIG, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (1, 26, 26, 3))
  # Shifting the input by a constant changes nothing after the first BN
  # when statistics come from the batch (conv 1 is linear + bias).
  np.testing.assert_allclose(d(x), d(x + 0.5), atol=1e-4)


def test_a_batch_equals_successive_single_calls():
  graph, state = nnx.split(models.PatchDiscriminator(CONFIG,
                                                     rngs=nnx.Rngs(3)))
  real, fake = jax.random.normal(jax.random.key(4), (2, 1, 26, 26, 3))
  one_by_one = nnx.merge(graph, state, copy=True)
  expected = [one_by_one(real), one_by_one(fake)]
  batched = nnx.merge(graph, state, copy=True)
  scores = batched(jnp.concatenate([real, fake]))
  np.testing.assert_allclose(scores[0], expected[0][0], rtol=1e-5)
  np.testing.assert_allclose(scores[1], expected[1][0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(nnx.state(one_by_one, models.SpectralVector)),
                  jax.tree.leaves(nnx.state(batched, models.SpectralVector))):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_dense_matches_matmul_values_gradients_and_vmap():
  x = jax.random.normal(jax.random.key(0), (2, 5, 7, 6))
  w = jax.random.normal(jax.random.key(1), (6, 4))
  weights = jax.random.normal(jax.random.key(2), (2, 5, 7, 4))

  def loss(f):
    return lambda x, w: jnp.sum(f(x, w) * weights)

  np.testing.assert_allclose(models.dense(x, w), x @ w, rtol=1e-6)
  ours = jax.grad(loss(models.dense), argnums=(0, 1))(x, w)
  plain = jax.grad(loss(jnp.matmul), argnums=(0, 1))(x, w)
  for a, b in zip(ours, plain):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  per_sample = jax.vmap(jax.grad(lambda x, w, g: jnp.sum(
      models.dense(x, w) * g), argnums=1), in_axes=(0, None, 0))(
          x, w, weights)
  np.testing.assert_allclose(per_sample.sum(0), plain[1], rtol=1e-5,
                             atol=1e-5)
