"""FKP's kernel prior: the flow, its training kernels, the shipped weights
and the training command (shared/spec/fkp.md sections 1-3 and 8)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from kernelgan_jax import div2krk
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import prior as prior_api
from kernelgan_jax.prior import flow
from kernelgan_jax.prior import kernels as kernels_lib
from kernelgan_jax.prior import training as train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _perturbed_prior(seed=0):
  """An untrained prior with non-trivial batch norms and statistics."""
  prior = flow.init_prior(jax.random.key(seed))
  keys = iter(jax.random.split(jax.random.key(seed + 1), 64))
  params = {
      name: (jax.tree.map(
          lambda a: 0.1 * jax.random.normal(next(keys), a.shape), block)
             if name.startswith("norms") else block)
      for name, block in prior.params.items()}
  shape = prior.running_mean.shape
  return prior._replace(
      params=params,
      running_mean=jax.random.normal(next(keys), shape),
      running_var=jax.random.uniform(next(keys), shape, minval=0.2,
                                     maxval=3.0))


@pytest.fixture(scope="module")
def shipped():
  return flow.load_prior()


@pytest.fixture(scope="module")
def shipped_samples(shipped):
  kernels = flow.sample(shipped, jax.random.key(0), 500)
  return np.asarray(kernels, np.float64)


def test_forward_then_inverse_is_the_identity_with_opposite_log_dets():
  prior = _perturbed_prior()
  y = 3.0 * jax.random.normal(jax.random.key(5), (16, flow.LATENT_SIZE)) - 4
  u, logdet = jax.jit(flow.forward)(prior, y)
  back, logdet_inverse = jax.jit(flow.inverse)(prior, u)
  np.testing.assert_allclose(back, y, atol=2e-4)
  np.testing.assert_allclose(logdet, -logdet_inverse, rtol=1e-5, atol=1e-3)
  # The log-det is log|det| of the Jacobian (one sample, in float32).
  jacobian = jax.jit(jax.jacfwd(lambda x: flow.forward(prior, x)[0]))(y[0])
  _, expected = np.linalg.slogdet(np.asarray(jacobian, np.float64))
  np.testing.assert_allclose(logdet[0], expected, rtol=1e-4, atol=1e-2)


def test_flow_batch_norm_train_mode_uses_unbiased_variance():
  prior = _perturbed_prior()
  y = jax.random.normal(jax.random.key(6), (10, flow.LATENT_SIZE))
  first = flow.Coupling(flow.hidden_size(2), flow.N_HIDDEN).apply(
      {"params": prior.params["couplings_0"]}, y, prior.masks[0])[0]
  mean, var = first.mean(0), first.var(0, ddof=1)
  _, _, updated = jax.jit(flow.forward_train)(prior, y)
  np.testing.assert_allclose(updated.running_mean[0],
                             0.9 * prior.running_mean[0] + 0.1 * mean,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(updated.running_var[0],
                             0.9 * prior.running_var[0] + 0.1 * var,
                             rtol=1e-5, atol=1e-6)
  norm = flow.FlowBatchNorm(flow.LATENT_SIZE)
  bn_params = prior.params["norms_0"]
  out, logdet = norm.apply({"params": bn_params}, first,
                           *flow.batch_statistics(first))
  gamma = np.exp(bn_params["log_gamma"])
  expected = gamma * (first - mean) / np.sqrt(var + 1e-5) + bn_params["beta"]
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(  # One scalar for the whole batch.
      logdet, np.sum(np.log(gamma) - 0.5 * np.log(var + 1e-5)), rtol=1e-5)
  assert logdet.shape == ()


def test_initialisation_t_equals_s_and_torch_bounds():
  prior = flow.init_prior(jax.random.key(3))
  for j in range(flow.N_BLOCKS):
    block = prior.params[f"couplings_{j}"]
    same = jax.tree.map(np.array_equal, block["s_net"], block["t_net"])
    assert all(jax.tree.leaves(same))
    for layer in block["s_net"].values():
      bound = 1 / np.sqrt(layer["kernel"].shape[0])
      for a in (layer["kernel"], layer["bias"]):
        assert np.abs(a).max() <= bound
      assert np.abs(layer["kernel"]).max() > 0.9 * bound  # Uniform, wide.
    norm = prior.params[f"norms_{j}"]
    assert not np.any(norm["log_gamma"]) and not np.any(norm["beta"])
  assert not np.any(prior.running_mean) and np.all(prior.running_var == 1)
  np.testing.assert_array_equal(prior.masks[0], np.arange(121) % 2)
  np.testing.assert_array_equal(prior.masks[1], 1 - np.arange(121) % 2)
  # For odd k the mask is a checkerboard.
  board = np.indices((11, 11)).sum(0) % 2
  np.testing.assert_array_equal(prior.masks[2].reshape(11, 11), board)


def test_parameter_counts_and_normalization_constants():
  assert flow.parameter_count(flow.init_prior(jax.random.key(0))) == 41_270
  x3 = jax.eval_shape(lambda: flow.init_prior(jax.random.key(0), scale=3))
  assert sum(a.size for a in jax.tree.leaves(x3.params)) == 98_900
  for scale, constant in ((2, 0.2335), (3, 0.31311), (4, 0.16908)):
    assert kernels_lib.normalization_constant(scale) == pytest.approx(
        constant, abs=1e-12)


def test_batched_training_kernels_equal_the_per_kernel_helpers():
  rng = np.random.default_rng(0)
  lambdas = rng.uniform(0.35, 5.0, (40, 2))
  theta = rng.uniform(0, np.pi, 40)
  batched = kernels_lib.gaussian_kernels(lambdas[:, 0], lambdas[:, 1], theta)
  for kernel, (l1, l2), angle in zip(batched, lambdas, theta):
    raw = div2krk.anisotropic_gaussian(11, l1, l2, angle, 5.5)
    expected = kernel_lib.shift_center_of_mass(raw, 4.5)
    np.testing.assert_allclose(kernel, expected / expected.sum(), atol=1e-13)
  arbitrary = rng.random((20, 11, 11)) ** 3
  arbitrary[0] = np.eye(11)[3][:, None] * np.eye(11)[7]  # Integer shift.
  for target in (4.5, 0.2, 9.9, -0.7):
    np.testing.assert_allclose(
        kernels_lib.shift_centers_of_mass(arbitrary, target),
        [kernel_lib.shift_center_of_mass(k, target) for k in arbitrary],
        atol=1e-13)
  com = np.array([ndimage.center_of_mass(k) for k in batched])
  # (k - sf) / 2, to within what the truncated spline shift leaves.
  np.testing.assert_allclose(com, 4.5, atol=0.05)
  grid = kernels_lib.validation_kernels()
  assert grid.shape == (4624, 11, 11)
  np.testing.assert_allclose(grid.sum((1, 2)), 1.0, atol=1e-12)


def test_pre_and_post_process_are_inverse():
  prior = flow.init_prior(jax.random.key(0))
  kernels = kernels_lib.random_kernels(np.random.default_rng(1), 8)
  y_host = flow.pre_process(kernels, 0.2335, 1e-6)
  assert y_host.dtype == np.float64 and y_host.shape == (8, 121)
  y = flow.pre_process(jnp.asarray(kernels, jnp.float32),
                       prior.normalization, prior.alpha)
  np.testing.assert_allclose(y, y_host, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(flow.post_process(prior, y_host),
                             np.maximum(kernels, 0), atol=1e-7)
  assert -14 < y_host.min() and y_host.max() < 2  # Spec 1.3d.


def test_learning_rate_schedule_halves_at_20k_to_45k():
  schedule = train_lib.learning_rate(50_000)
  rates = [float(schedule(s)) for s in (0, 19_999, 20_000, 25_000, 44_999,
                                        45_000, 49_999)]
  np.testing.assert_allclose(
      rates, [1e-4, 1e-4, 5e-5, 2.5e-5, 3.125e-6, 1.5625e-6, 1.5625e-6])


def test_public_api_is_pure_jittable_and_differentiable(shipped):
  assert (prior_api.LATENT_SIZE, prior_api.KERNEL_SIZE) == (121, 11)
  assert prior_api.LATENT_RADIUS == 10.0
  z0 = prior_api.initial_latent()
  np.testing.assert_array_equal(z0, prior_api.initial_latent(1))
  assert z0.shape == (121,) and 8 < float(jnp.linalg.norm(z0)) < 14
  kernel = jax.jit(prior_api.kernel_from_latent)(shipped, z0)
  assert kernel.shape == (11, 11)
  np.testing.assert_allclose(kernel, prior_api.kernel_from_latent(shipped, z0),
                             atol=1e-7)
  batch = jnp.stack([z0, -z0])
  many = jax.vmap(prior_api.kernel_from_latent, in_axes=(None, 0))(
      shipped, batch)
  np.testing.assert_allclose(many[0], kernel, atol=1e-7)
  grad = jax.grad(lambda z: prior_api.kernel_from_latent(shipped, z)[5, 5])(z0)
  assert grad.shape == (121,) and np.all(np.isfinite(grad)) and np.any(grad)
  # The latent of a kernel maps back to that kernel (taps above the tails).
  real = kernels_lib.random_kernels(np.random.default_rng(2), 3)
  z = prior_api.latent_from_kernel(shipped, real)
  back = prior_api.kernel_from_latent(shipped, z)
  np.testing.assert_allclose(back, np.maximum(real, 0), atol=1e-5)
  assert prior_api.log_prob(shipped, real[0]).shape == ()
  assert prior_api.log_prob(shipped, real).shape == (3,)


def test_shipped_samples_are_valid_kernels(shipped_samples):
  kernels = shipped_samples
  # Sigmoid - alpha cancels in the tails: tiny negatives only (spec 8.1).
  assert kernels.min() >= -1e-5
  sums = kernels.sum((1, 2))
  # No renormalisation (spec 1.4): the original's weights give sums of
  # 1.001 +- 0.051 ranging over [0.57, 1.48]; the mean is 1 to within
  # about one std / 10 of a well-trained flow.
  assert abs(sums.mean() - 1) < 0.05, sums.mean()
  assert sums.std() < 0.1
  # Its extremes over 5,000 samples are 0.65 and 1.37; these weights have
  # rarer but longer tails (0.04% above 1.5): bound 99% of the sums to
  # 1 +- 0.2 (4 std of the original) and every one to [0.5, 2].
  assert np.mean(np.abs(sums - 1) < 0.2) >= 0.99
  assert 0.5 <= sums.min() and sums.max() <= 2.0, (sums.min(), sums.max())
  com = np.array([ndimage.center_of_mass(np.maximum(k, 0)) for k in kernels])
  np.testing.assert_allclose(com.mean(0), 4.5, atol=0.1)  # (k - sf) / 2.


def test_shipped_weights_beat_an_untrained_flow(shipped):
  meta = flow.load_metadata()
  assert meta["steps"] >= 10_000 and meta["batch_size"] == 100
  validation = train_lib.validation_logits(0.2335)
  [(nll, _)] = train_lib.negative_log_likelihood(shipped, validation)
  assert nll == pytest.approx(meta["heldout_nll"], abs=1e-2)
  [(untrained, _)] = train_lib.negative_log_likelihood(
      flow.init_prior(jax.random.key(0)), validation)
  assert nll < -30 and untrained > 100, (nll, untrained)
  # Kernels of the training distribution are likelier than flat ones.
  real = kernels_lib.random_kernels(np.random.default_rng(3), 50)
  flat = np.full((50, 11, 11), 1 / 121)
  key = jax.random.key(4)
  assert (prior_api.log_prob(shipped, real, key).mean()
          > prior_api.log_prob(shipped, flat, key).mean() + 100)


def test_to_prior_grid_centres_any_kernel(shipped):
  rng = np.random.default_rng(5)
  # FKP's own kernels are centred to within 0.04 px: a tiny shift only.
  for fkp in kernels_lib.random_kernels(rng, 4):
    on_grid = prior_api.to_prior_grid(fkp)
    np.testing.assert_allclose(on_grid, fkp, atol=2e-3)
    np.testing.assert_allclose(ndimage.center_of_mass(on_grid), 4.5,
                               atol=0.01)
  # A KernelGAN-sized 13x13 kernel centred at 6.5 (its convention).
  raw = div2krk.anisotropic_gaussian(13, 1.5, 3.0, 0.4, 6.5)
  grid = prior_api.to_prior_grid(3 * raw)
  assert grid.shape == (11, 11) and grid.min() >= 0
  assert grid.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(ndimage.center_of_mass(grid), 4.5, atol=0.02)
  assert np.isfinite(prior_api.log_prob(shipped, grid))
  with pytest.raises(ValueError):
    prior_api.to_prior_grid(np.zeros((13, 13)))


def _one_line_value_error(path):
  with pytest.raises(ValueError) as error:
    flow.load_prior(str(path))
  message = str(error.value)
  assert str(path) in message and "\n" not in message
  return message


def test_load_prior_refuses_missing_and_corrupt_files(tmp_path):
  assert "no such file" in _one_line_value_error(tmp_path / "none.npz")
  text = tmp_path / "text.npz"
  text.write_text("not a weights file\nsecond line\n")
  _one_line_value_error(text)
  good = tmp_path / "good.npz"
  flow.save_prior(str(good), flow.init_prior(jax.random.key(0)), steps=0)
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(good.read_bytes()[:5000])
  _one_line_value_error(truncated)
  arrays = dict(np.load(good))
  del arrays["running_var"]
  partial = tmp_path / "partial.npz"
  np.savez(partial, **arrays)
  assert "running_var" in _one_line_value_error(partial)
  arrays = dict(np.load(good))
  arrays["params/couplings_0/s_net/linear_0/kernel"] = np.zeros((3, 3))
  wrong = tmp_path / "wrong.npz"
  np.savez(wrong, **arrays)
  _one_line_value_error(wrong)
  loaded = flow.load_prior(str(good))
  assert jax.tree.all(jax.tree.map(
      np.array_equal, loaded, flow.init_prior(jax.random.key(0))))
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "kernelgan_jax.prior.train", *args],
      capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_training_command_end_to_end(tmp_path):
  out = tmp_path / "tiny.npz"
  result = _run("--steps=20", "--seed=3", f"--output={out}")
  assert result.returncode == 0, result.stderr
  assert "20/20" in result.stderr  # The progress bar.
  assert "held-out NLL" in result.stdout
  prior = flow.load_prior(str(out))
  assert flow.parameter_count(prior) == 41_270
  meta = flow.load_metadata(str(out))
  assert (meta["steps"], meta["seed"]) == (20, 3)
  assert np.isfinite(meta["heldout_nll"])
  assert sorted(os.listdir(tmp_path)) == ["tiny.npz"]


def test_training_command_rejects_bad_flags_in_one_line(tmp_path):
  # Each case in its own process: the command's absl flags are global, and
  # other modules of the suite define flags of the same names.
  for args, message in [(["--no_such_flag"], "no_such_flag"),
                        (["--steps=0"], "--steps"),
                        (["positional"], "unexpected"),
                        ([f"--output={tmp_path}/no/x.npz"],
                         "does not exist")]:
    result = _run(*args)
    assert result.returncode == 1, args
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr, result.stderr
  assert not os.listdir(tmp_path)
