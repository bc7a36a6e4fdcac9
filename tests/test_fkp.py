"""KernelGAN-FKP: D, the gradient penalty, the stale G steps, the driver."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import ndimage

from kernelgan_jax import fkp
from kernelgan_jax import prior as prior_lib

# Batches of 4 pairs (not 64) and 2 iterations keep the tests fast.
CONFIG = fkp.FkpConfig(batch_size=4, iters_x2=2, chunk=1)


@pytest.fixture(scope="module")
def prior():
  return prior_lib.load_prior()


def _lr_image(rows: int, cols: int, seed: int = 0) -> np.ndarray:
  """Blocky noise blurred by a known Gaussian (sigma 1.2), subsampled x2."""
  rng = np.random.default_rng(seed)
  hr = np.kron(rng.random((rows // 2, cols // 2, 3)), np.ones((4, 4, 1)))
  blurred = ndimage.gaussian_filter(hr, (1.2, 1.2, 0))
  return blurred[::2, ::2]


def _start(image, seed, config=CONFIG):
  data_key, init_key, gp_key = fkp.seed_keys(seed)
  data = fkp.prepare(image, config, data_key)
  state = fkp.init_state(init_key, gp_key, prior_lib.initial_latent(),
                         config)
  return data, state


def _leaves_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_config_lengths_and_sizes():
  assert fkp.FkpConfig().max_iters == 1000
  assert fkp.FkpConfig(x4=True).max_iters == 4000
  assert (fkp.FkpConfig().g_output_size, fkp.FkpConfig().d_output_size) == (
      27, 17)
  with pytest.raises(ValueError, match="d_conv"):
    fkp.FkpConfig().replace(d_conv="fft")


def test_discriminator_shape_parameters_and_convs():
  config = fkp.FkpConfig()
  params = fkp.init_discriminator(jax.random.key(0), config)
  assert sum(x.size for x in jax.tree.leaves(params)) == 29_185
  crops = jax.random.uniform(jax.random.key(1), (3, 27, 27, 3))
  discriminate = jax.jit(fkp.discriminate, static_argnums=0)
  scores = discriminate(fkp.networks(config).d_def, params, crops)
  assert scores.shape == (3, 17, 17)
  # The patch convs compute what XLA's convolutions do.
  xla = config.replace(d_conv="xla")
  np.testing.assert_allclose(
      discriminate(fkp.networks(xla).d_def, params, crops), scores,
      rtol=1e-4, atol=1e-5)
  # Init (spec 4.4): conv weights N(0, 0.02), biases U(+-1/sqrt(fan_in)),
  # BN scale N(1, 0.02) and bias 0.
  body = params["body"][0]
  assert abs(float(jnp.std(body["conv"]["kernel"][...])) - 0.02) < 2e-3
  assert float(jnp.max(jnp.abs(body["conv"]["bias"][...]))) <= 288**-0.5
  assert float(jnp.max(jnp.abs(body["norm"]["scale"][...] - 1))) < 0.1
  assert not np.any(body["norm"]["bias"][...])


def test_gradient_penalty_by_hand():
  rng = np.random.default_rng(0)
  real, fake = (jnp.asarray(rng.random((2, 4, 5, 3)), jnp.float32)
                for _ in range(2))
  w = jnp.array([0.3, -1.2, 0.5])
  epsilon = jnp.float32(0.25)
  # critic(x)[n, h, w] = sum_c w_c x_c^2: its input gradient is 2 w x.
  critic = lambda x: jnp.einsum("nhwc,c->nhw", jnp.square(x), w)
  mixed = np.asarray(epsilon * real + (1 - epsilon) * fake, np.float64)
  norms = np.linalg.norm(2 * np.asarray(w) * mixed, axis=-1)  # Channels.
  expected = np.mean((norms - 1) ** 2)
  penalty = fkp.gradient_penalty(critic, real, fake, epsilon)
  np.testing.assert_allclose(float(penalty), expected, rtol=1e-5)
  whole_sample = np.linalg.norm(
      (2 * np.asarray(w) * mixed).reshape(2, -1), axis=-1)
  assert abs(np.mean((whole_sample - 1) ** 2) - expected) > 0.1
  # The interpolation is detached: nothing flows back to G's output.
  grad_fake = jax.grad(
      lambda f: fkp.gradient_penalty(critic, real, f, epsilon))(fake)
  assert not np.any(grad_fake)


def test_gradient_penalty_of_d_matches_finite_differences():
  config = fkp.FkpConfig()
  d_def = fkp.networks(config).d_def
  params = fkp.init_discriminator(jax.random.key(3), config)
  x = jax.random.uniform(jax.random.key(4), (2, 27, 27, 3))
  penalty = jax.jit(lambda p, v: fkp.gradient_penalty(
      functools.partial(fkp.discriminate, d_def, p), v, v, 0.5))(params, x)
  with jax.enable_x64(True):  # Central differences in float64.
    params64, x64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                 (params, x))
    total = jax.jit(lambda v: jnp.sum(fkp.discriminate(d_def, params64, v)))
    grads = np.asarray(jax.jit(jax.grad(total))(x64))
    step = 1e-5
    for index in [(0, 13, 13, 0), (1, 2, 20, 2), (0, 26, 0, 1)]:
      bump = jnp.zeros_like(x64).at[index].set(step)
      fd = (float(total(x64 + bump)) - float(total(x64 - bump))) / (2 * step)
      np.testing.assert_allclose(grads[index], fd, rtol=1e-5, atol=1e-8)
  expected = np.mean((np.linalg.norm(grads, axis=-1) - 1) ** 2)
  np.testing.assert_allclose(float(penalty), expected, rtol=1e-4)


def test_two_sizes_trace_once_and_runs_reproduce(prior, monkeypatch):
  monkeypatch.setattr(fkp, "train_step",
                      chex.assert_max_traces(fkp.train_step, n=1))
  images = [_lr_image(120, 120), _lr_image(100, 132, seed=1)]
  runs = [fkp.estimate_kernel_fkp(image, CONFIG, seed=5, prior=prior)
          for image in images + images[:1]]
  assert fkp.jitted_chunk(CONFIG)._cache_size() == 1
  for run in runs:
    assert run.raw_kernel.shape == (11, 11)
    size = run.kernel_x2.shape[0]
    assert run.kernel_x2.shape == (size, size) and size % 2
    assert run.kernel_x4.shape == (2 * size - 1, 2 * size - 1)
    assert abs(float(run.kernel_x2.sum()) - 1) < 1e-3
    assert abs(float(run.kernel_x4.sum()) - 1) < 1e-6
    assert sorted(run.history) == ["gradient_penalty", "loss_discriminator",
                                   "loss_generator", "wasserstein_estimate"]
    for values in run.history.values():
      assert values.shape == (CONFIG.max_iters,)
      assert np.isfinite(values).all()
    # The package's x2 centre: 5.5 on the padded grid's offset.
    pad = (size - 11) // 2
    np.testing.assert_allclose(ndimage.center_of_mass(run.kernel_x2),
                               [5.5 + pad] * 2, atol=0.05)
  np.testing.assert_array_equal(runs[0].raw_kernel, runs[2].raw_kernel)
  for name in runs[0].history:
    np.testing.assert_array_equal(runs[0].history[name],
                                  runs[2].history[name])
  assert not np.array_equal(runs[0].raw_kernel, runs[1].raw_kernel)


def test_g_steps_apply_one_gradient_on_the_sphere(prior):
  config = CONFIG
  data, state = _start(_lr_image(120, 120), seed=2)
  g_crops, d_crops = fkp.chunk_crops(data, config, 0, 1)
  z0, opt0 = jax.tree.map(jnp.copy, (state.z, state.z_opt))  # Donated.
  new, _ = fkp.jitted_chunk(config)(state, prior, g_crops, d_crops)

  d_def = fkp.networks(config).d_def
  def g_loss(z):
    kernel = prior_lib.kernel_from_latent(prior, z)
    fake = fkp.downscale_crops(jnp.asarray(g_crops[0]), kernel)
    return -jnp.mean(fkp.discriminate(d_def, new.d_params, fake))
  grad = jax.jit(jax.grad(g_loss))(z0)
  adam = optax.adam(5e-4, b1=0.5, b2=0.999, eps=1e-8)
  z, opt = z0, opt0
  for _ in range(3):
    updates, opt = adam.update(grad, opt, z)
    z = 10 * (z + updates) / jnp.sqrt(jnp.sum(jnp.square(z + updates))
                                      + 1e-9)
  np.testing.assert_allclose(new.z, z, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jnp.linalg.norm(new.z), 10.0, rtol=1e-6)
  assert abs(float(jnp.linalg.norm(z0)) - 10) > 0.1  # z0 is not projected.
  # Adam's first moment after three updates with one gradient g.
  mu = new.z_opt[0].mu
  np.testing.assert_allclose(mu, (1 - 0.5**3) * grad, rtol=1e-4,
                             atol=1e-7)
  assert int(new.z_opt[0].count) == 3


def test_vmapped_chunk_matches_single_runs(prior):
  images = [_lr_image(120, 120), _lr_image(100, 132, seed=1)]
  starts = [_start(image, seed) for image, seed in zip(images, [0, 7])]
  crops = [fkp.chunk_crops(data, CONFIG, 0, 1) for data, _ in starts]
  batched_chunk = jax.jit(jax.vmap(
      functools.partial(fkp.run_chunk, config=CONFIG),
      in_axes=(0, None, 0, 0)))
  stacked = jax.tree.map(lambda *x: jnp.stack(x),
                         *[state for _, state in starts])
  batched, batched_metrics = batched_chunk(
      stacked, prior, *(np.stack(c) for c in zip(*crops)))
  for j, ((_, state), job_crops) in enumerate(zip(starts, crops)):
    single, metrics = fkp.jitted_chunk(CONFIG)(state, prior, *job_crops)
    # The losses are differences of means (WGAN-GP) of D after Adam steps
    # that rounding can tilt: up to 4.6e-4 apart (relative) on an AVX-512
    # host, 2e-5 on another; a batching mistake moves them by far more.
    _leaves_close(jax.tree.map(lambda x: x[j], batched_metrics), metrics,
                  rtol=2e-3, atol=1e-6)
    # Adam's first steps are about +-lr whatever the gradient's size, so
    # where rounding flips a tiny gradient that coordinate moves the other
    # way. The rest agree: on an AVX-512 host 6 of z's 121 coordinates and
    # 8% of D's weights were apart (z up to 2.7e-3) for the second image,
    # on another host none; a batching mistake moves nearly all.
    assert np.mean(np.abs(batched.z[j] - single.z) > 5e-5) <= 0.1
    ours = nnx.to_flat_state(jax.tree.map(lambda x: x[j], batched.d_params))
    for (path, a), (_, b) in zip(ours, nnx.to_flat_state(single.d_params)):
      # A conv bias followed by batch norm has a zero gradient, up to
      # rounding; Adam turns that rounding into steps of about +-lr, so
      # those biases agree only to 2 lr per D step (they change nothing).
      pre_norm_bias = path[-2:] == ("conv", "bias")
      if pre_norm_bias:
        np.testing.assert_allclose(a[...], b[...], rtol=0,
                                   atol=2 * CONFIG.d_lr * CONFIG.d_steps,
                                   err_msg=str(path))
      else:
        apart = np.abs(a[...] - b[...]) > 2e-5
        assert apart.mean() <= 0.2, (path, apart.mean())
