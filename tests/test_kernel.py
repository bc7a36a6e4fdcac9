"""Kernel folding, the fast exact G, post-processing, geometry, x4 kernel."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage, signal

from kernelgan_jax import config as config_lib
from kernelgan_jax import degradation
from kernelgan_jax import div2krk
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import models

SMALL = config_lib.get_config(g_chan=4)


def _random_generator(config, seed):
  g = models.LinearGenerator(config, rngs=nnx.Rngs(seed))
  for layer in g.layers:  # Unit-scale weights make the test sensitive.
    layer.kernel[...] = jax.random.normal(
        jax.random.key(seed + 7), layer.kernel[...].shape)
    seed += 1
  return g


def _numpy_fold(kernels):
  """Pushes a delta through the stride-1 network with scipy, then flips."""
  maps = [np.pad(np.ones((1, 1)), 12)]
  for w in kernels:
    w = np.asarray(w, np.float64)
    maps = [sum(signal.correlate2d(maps[i], w[:, :, i, o], mode="valid")
                for i in range(w.shape[2])) for o in range(w.shape[3])]
  return maps[0][::-1, ::-1]


def test_extract_kernel_matches_an_independent_numpy_fold():
  g = _random_generator(SMALL, 0)
  k = kernel_lib.extract_kernel(g.conv_kernels())
  assert k.shape == (13, 13)
  expected = _numpy_fold(g.conv_kernels())
  np.testing.assert_allclose(k, expected, rtol=1e-4,
                             atol=1e-4 * np.abs(expected).max())


def test_fast_fold_equals_the_delta_fold_values_and_gradients():
  g = _random_generator(SMALL, 5)
  kernels = g.conv_kernels()
  delta = kernel_lib.fold_delta(kernels)
  scale = float(jnp.abs(delta).max())
  np.testing.assert_allclose(kernel_lib.extract_kernel(kernels), delta,
                             atol=1e-5 * scale)
  weights = jax.random.normal(jax.random.key(6), (13, 13))
  grads = [jax.grad(lambda ws: jnp.sum(weights * fold(ws)))(kernels)
           for fold in (kernel_lib.fold_delta, kernel_lib.extract_kernel)]
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(a).max()))


def test_fold_gradients_from_the_kept_stage_inputs_equal_autodiff():
  g = _random_generator(SMALL, 7)
  kernels = g.conv_kernels()
  weights = jax.random.normal(jax.random.key(8), (13, 13))
  expected = jax.grad(
      lambda ws: jnp.sum(weights * kernel_lib.extract_kernel(ws)))(kernels)
  folded = kernel_lib.fold(kernels)
  np.testing.assert_array_equal(folded.kernel,
                                kernel_lib.extract_kernel(kernels))
  got = jax.jit(kernel_lib.fold_gradients)(kernels, folded, weights)
  assert [w.shape for w in got] == [w.shape for w in kernels]
  for a, b in zip(expected, got):
    np.testing.assert_allclose(b, a, rtol=0,
                               atol=1e-6 * float(jnp.abs(a).max()))


def test_fast_path_equals_layered_forward_values_and_gradients():
  g = _random_generator(SMALL, 3)
  graph, params = nnx.split(g)
  x = jax.random.normal(jax.random.key(1), (64, 64, 3))
  target = jax.random.normal(jax.random.key(2), (26, 26, 3))

  def layered(p):
    return jnp.sum((nnx.merge(graph, p)(x) - target) ** 2)

  def fast(p):
    k = kernel_lib.extract_kernel(nnx.merge(graph, p).conv_kernels())
    fake = degradation.downscale(x, k, padding="valid")
    return jnp.sum((fake - target) ** 2)

  np.testing.assert_allclose(g(x), degradation.downscale(
      x, kernel_lib.extract_kernel(g.conv_kernels()), padding="valid"),
                             rtol=1e-4, atol=1e-3)
  (v1, g1), (v2, g2) = (jax.value_and_grad(f)(params)
                        for f in (layered, fast))
  assert float(v1) == pytest.approx(float(v2), rel=1e-4)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * np.abs(a).max())


def test_soft_threshold_by_hand():
  k = np.arange(169, dtype=np.float64).reshape(13, 13)
  out = kernel_lib.soft_threshold(k, n_filtering=40)
  threshold = 0.75 * 128  # The 41st largest of 0..168 is 128.
  kept = np.clip(k - threshold, 0, None)
  np.testing.assert_allclose(out, kept / kept.sum())
  assert np.count_nonzero(out) == 168 - 96


@pytest.mark.parametrize("top, left, size", [(6, 6, 15), (5, 6, 17),
                                              (4, 7, 19), (6, 3, 21)])
def test_kernel_shift_centres_mass_for_x2(top, left, size):
  k = np.zeros((13, 13))
  k[top:top + 2, left:left + 2] = 1.0
  shifted = kernel_lib.kernel_shift(k, scale=2)
  # Padding is ceil(max |shift|) + 1 on every side.
  assert shifted.shape == (size, size)
  com = ndimage.center_of_mass(shifted)
  np.testing.assert_allclose(com, [size // 2 + 0.5] * 2, atol=1e-6)
  assert shifted.sum() == pytest.approx(k.sum(), rel=1e-6)


def test_post_process_and_analytic_x4():
  k = np.zeros((13, 13))
  k[5:9, 5:9] = 1.0
  k = ndimage.gaussian_filter(k, 1.5)
  k2 = kernel_lib.post_process(k)
  # The centre of mass is 6.5 up to rounding: any shift > 0 pads by 2.
  assert k2.dtype == np.float32 and k2.shape == (17, 17)
  assert k2.sum() == pytest.approx(1.0, abs=1e-3)
  k3 = ndimage.shift(k, (1.4, -0.3), order=1)
  k2 = kernel_lib.post_process(k3)
  assert k2.shape == (19, 19)
  k4 = kernel_lib.analytic_kernel_x4(k2.astype(np.float64))
  assert k4.shape == (37, 37)
  assert k4.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(ndimage.center_of_mass(k4), [37 // 2 + 1.5] * 2,
                             atol=0.05)
  assert kernel_lib.center_of_mass_target(13, 2) == 6.5
  assert kernel_lib.center_of_mass_target(33, 4) == 17.5


@pytest.mark.parametrize("theta", [0.0, 0.5, 1.2, -0.7, np.pi / 2])
def test_principal_axes_of_an_anisotropic_gaussian(theta):
  # Variances 9 and 2.25 (sigmas 3 and 1.5) at theta in DIV2KRK's
  # (x = column, y = row) frame; rows grow downwards, so the angle as
  # displayed, counter-clockwise, is -theta. Off-centre, and not normalised.
  gaussian = 5 * div2krk.anisotropic_gaussian(41, 9.0, 2.25, theta, 19.6)
  major, minor, angle = kernel_lib.principal_axes(gaussian)
  np.testing.assert_allclose([major, minor], [3.0, 1.5], rtol=1e-6)
  assert 0.0 <= angle < 180.0
  np.testing.assert_allclose(
      (angle - np.degrees(-theta) + 90) % 180 - 90, 0.0, atol=1e-6)
  up_right = np.eye(7)[::-1]  # A line from bottom left to top right.
  major, minor, angle = kernel_lib.principal_axes(up_right)
  assert (minor, angle) == pytest.approx((0.0, 45.0))
  assert major == pytest.approx(np.sqrt(2 * 4))  # Var of 0..6 is 4 per axis.
  delta = np.zeros((5, 5))
  delta[2, 3] = 1.0
  assert kernel_lib.principal_axes(delta)[:2] == (0.0, 0.0)
