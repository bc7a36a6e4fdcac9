"""The pure train step: compiled once, reproducible, vmap-able, loops agree."""

import functools

import chex
import jax
import numpy as np
import pytest

from kernelgan_jax import config as config_lib
from kernelgan_jax import data as data_lib
from kernelgan_jax import estimate
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import prior as prior_lib
from kernelgan_jax import train

CONFIG = config_lib.get_config(max_iters=6)


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  image = np.kron(rng.random((25, 25, 3)), np.ones((4, 4, 1)))  # 100x100.
  return data_lib.prepare(image, CONFIG, jax.random.key(0))


def _leaves_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def _step_crops(data, i):
  """Iteration i's crops, unstacked."""
  return jax.tree.map(lambda x: x[0], data_lib.crops(data, CONFIG, i, 1))


def test_step_is_traced_once(batch):
  @chex.assert_max_traces(n=1)
  def step_fn(state, crops):
    return train.train_step(state, crops, config=CONFIG)

  step = jax.jit(step_fn, donate_argnums=0)
  state = train.init_state(jax.random.key(1), CONFIG)
  for i in range(3):
    state, metrics = step(state, _step_crops(batch, i))
  assert int(state.step) == 3
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_python_loop_is_reproducible_and_compiles_once(batch):
  runs = []
  for _ in range(2):
    state = train.init_state(jax.random.key(2), CONFIG)
    runs.append(train.train(state, batch, CONFIG, loop="python", chunk=4))
  assert train.jitted_step(CONFIG)._cache_size() == 1
  (state_a, hist_a), (state_b, hist_b) = runs
  _leaves_close(state_a.g_params, state_b.g_params, rtol=0, atol=0)
  assert hist_a["loss_discriminator"].shape == (6,)
  assert np.isfinite(hist_a["loss_generator"]).all()
  # Adam grew G's kernel from its ~1e-7 start (all six layers move).
  nets = train.networks(CONFIG)
  start = train.init_state(jax.random.key(2), CONFIG)
  sums = [float(train.generator_kernel(
      nets.g_def, train.unpack(s, CONFIG).g_params).sum())
          for s in (start, state_a)]
  assert abs(sums[1]) > 10 * abs(sums[0])


def test_scan_loop_matches_python_loop(batch):
  s1, h1 = train.train(train.init_state(jax.random.key(3), CONFIG), batch,
                       CONFIG, loop="python")
  s2, h2 = train.train(train.init_state(jax.random.key(3), CONFIG), batch,
                       CONFIG, loop="scan", chunk=3)
  # The first iteration agrees to rounding. After it the two compilations
  # drift apart: at G's ~1e-7 start Adam's update is sign-like, so rounding
  # flips a few tiny gradients, each by up to about one step (lr 2e-4), and
  # the losses follow within a few percent over the first iterations.
  # (The centre of mass of a kernel summing to ~0 is ill-conditioned, so
  # its loss, weighted 0 this early, is left out.)
  del h1["loss_centralized"], h2["loss_centralized"]
  _leaves_close(jax.tree.map(lambda x: x[0], h1),
                jax.tree.map(lambda x: x[0], h2), rtol=1e-5)
  _leaves_close(jax.tree.map(lambda x: x[:3], h1),
                jax.tree.map(lambda x: x[:3], h2), rtol=2e-2, atol=1e-5)
  _leaves_close(s1.g_params, s2.g_params, rtol=0, atol=6 * 2 * 2e-4)
  _leaves_close(s1.schedule, s2.schedule, rtol=1e-6)


def test_a_scanned_chunk_reuses_each_steps_fold_to_the_bit(batch):
  """The chunk carries G's fold from step to step (`train.folded_step`);
  folding again in every step (`train.train_step`) gives the same state to
  the bit (the two programs sum some logged losses in another order)."""
  state = train.init_state(jax.random.key(5), CONFIG)
  crops = jax.tree.map(lambda *xs: np.stack(xs),
                       *[_step_crops(batch, i) for i in range(4)])
  step = functools.partial(train.train_step, config=CONFIG)
  @jax.jit
  def refolding(state, crops):
    noise = train.chunk_noise(state, CONFIG, 4)
    return jax.lax.scan(lambda s, xs: step(s, *xs), state, (crops, noise))
  expected, expected_metrics = refolding(state, crops)
  got, metrics = train.jitted_chunk(CONFIG, 4)(state, crops)  # Donated.
  assert int(got.step) == 4
  _leaves_close(got._replace(key=None), expected._replace(key=None), rtol=0,
                atol=0)
  _leaves_close(metrics, expected_metrics, rtol=2e-6)


def test_step_vmaps_over_seeds_unchanged(batch):
  keys = jax.random.split(jax.random.key(4), 2)
  states = jax.vmap(lambda k: train.init_state(k, CONFIG))(keys)
  step = functools.partial(train.train_step, config=CONFIG)
  batched = jax.jit(jax.vmap(step, in_axes=(0, None)))
  singles = [train.init_state(k, CONFIG) for k in keys]
  for i in range(2):
    crops = _step_crops(batch, i)
    states, _ = batched(states, crops)
    singles = [train.jitted_step(CONFIG)(s, crops)[0] for s in singles]
  for i, single in enumerate(singles):
    _leaves_close(jax.tree.map(lambda x: x[i], states.g_params),
                  single.g_params, rtol=0, atol=2 * 2 * 2e-4)
    _leaves_close(jax.tree.map(lambda x: x[i], states.d_stats),
                  single.d_stats, rtol=0, atol=1e-3)


def test_estimate_kernel_returns_all_kernels():
  rng = np.random.default_rng(5)
  image = (np.kron(rng.random((30, 30)), np.ones((4, 4))) * 255).astype(
      np.uint8)  # Gray uint8, 120x120.
  result = estimate.estimate_kernel(image, CONFIG, seed=1)
  assert result.raw_kernel.shape == (13, 13)
  size = result.kernel_x2.shape[0]
  assert size % 2 == 1 and size >= 15
  assert result.kernel_x4.shape == (2 * size - 1,) * 2
  assert result.kernel_x4.sum() == pytest.approx(1.0)
  assert set(result.history) >= {"loss_bicubic", "loss_adversarial"}


def test_chunk_noise_is_each_steps_own_draw():
  state = train.init_state(jax.random.key(4), CONFIG)._replace(
      step=jax.numpy.int32(2))
  stacked = train.chunk_noise(state, CONFIG, 3)
  shape = (CONFIG.g_output_size, CONFIG.g_output_size, 3)
  assert stacked.real.shape == (3, *shape)
  for j in range(3):
    single = train.draw_noise(state.key, 2 + j, shape)
    np.testing.assert_array_equal(stacked.real[j], single.real)
    np.testing.assert_array_equal(stacked.fake[j], single.fake)
  assert not np.allclose(stacked.real[0], stacked.fake[0])


def test_prior_generator_trains_a_latent_on_the_sphere(batch):
  config = CONFIG.replace(generator="prior")
  start = train.init_state(jax.random.key(5), config)
  assert train.unpack(start, config).g_params.shape == (121,)
  state, history = train.train(start, batch, config)
  z = np.asarray(train.unpack(state, config).g_params)
  np.testing.assert_allclose(np.linalg.norm(z), 10.0, rtol=1e-5)
  assert not np.allclose(z, np.asarray(prior_lib.initial_latent()))
  kernel = train.final_kernel(state, config)
  assert kernel.shape == (13, 13)
  # The 11x11 prior kernel sits bottom-right, its centre of mass near
  # KernelGAN's 6.5.
  assert not kernel[:2].any() and not kernel[:, :2].any()
  rows = (kernel.sum(1) * np.arange(13)).sum() / kernel.sum()
  assert abs(rows - 6.5) < 0.5
  result = kernel_lib.estimate_from_raw(kernel, history, 0, config)
  assert result.kernel_x2.sum() == pytest.approx(1.0, abs=1e-5)
  assert result.kernel_x2.min() >= -1e-4  # Spline ringing of the shift.
  assert np.isfinite(history["loss_generator"]).all()


def test_training_settings_share_one_compiled_initial_state():
  key = train.seed_keys(3)[1]
  base = config_lib.get_config(max_iters=7)
  other = base.replace(max_iters=9, g_lr=1e-3, d_lr=3e-4,
                       lambda_sparse_end=2.0, n_filtering=20)
  programs_before = train._jitted_init.cache_info().currsize
  state = train.init_state(key, other)
  assert train._jitted_init.cache_info().currsize <= programs_before + 1
  chex.assert_trees_all_equal(state, train.init_state(key, base))
  # The same state as the whole config would build.
  whole = jax.jit(functools.partial(train._build_state, config=other))(key)
  chex.assert_trees_all_equal(state, whole)
  np.testing.assert_array_equal(train.final_kernel(state, other),
                                train.final_kernel(whole, base))
  narrower = train.init_state(key, base.replace(g_chan=32))
  assert (jax.tree.leaves(narrower.g_params)[0].shape
          != jax.tree.leaves(state.g_params)[0].shape)
