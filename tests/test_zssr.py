"""Tests for the ZSSR stage (kernelgan_jax.zssr)."""

import dataclasses
import os
import sys
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage
from scipy import signal

from kernelgan_jax import data as data_lib
from kernelgan_jax.imresize import imresize
from kernelgan_jax.zssr import memory
from kernelgan_jax.zssr import network
from kernelgan_jax.zssr import pairs
from kernelgan_jax.zssr import pipeline
from kernelgan_jax.zssr import policy as policy_lib
from kernelgan_jax.zssr import train
from kernelgan_jax.zssr.config import ZSSRConfig

# A tiny network and schedule; testing every iteration compiles one step.
_TINY = ZSSRConfig(width=8, depth=3, crop_size=16, max_iters=6,
                   run_test_every=1, lr_check_every=3, min_iters=2,
                   lr_slope_range=3, chunk_size=4)


def _gaussian_kernel(size: int = 9, sigma: float = 1.2) -> np.ndarray:
  coords = np.arange(size) - (size - 1) / 2
  kernel = np.exp(-(coords[:, None]**2 + coords[None, :]**2) / 2 / sigma**2)
  return (kernel / kernel.sum()).astype(np.float32)


def _smooth_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
  noise = np.random.default_rng(seed).random(shape)
  sigma = (1.5, 1.5) + (0,) * (len(shape) - 2)
  return ndimage.gaussian_filter(noise, sigma).astype(np.float32)


def _reference_loss_map(gray: np.ndarray, window: int = 5) -> np.ndarray:
  """The original's create_loss_map for a gray image."""
  grad_rows, grad_cols = np.gradient(gray)
  magnitude = np.sqrt(grad_rows**2 + grad_cols**2)
  summed = signal.convolve2d(magnitude, np.ones((window, window)), "same")
  margin = (window + window % 2) // 2
  loss_map = np.zeros_like(summed)
  loss_map[margin:-margin, margin:-margin] = np.clip(
      summed[margin:-margin, margin:-margin], 0, 255)
  return loss_map / (loss_map.sum() / loss_map.size)


def _reference_decay_steps(errors_by_step: dict[int, float], max_iters: int,
                           config: ZSSRConfig) -> list[int]:
  """Replays the original's learning_rate_policy with np.polyfit."""
  steps, errors, changes = [], [], [0]
  n_fit = config.lr_slope_range // config.run_test_every
  for step in range(max_iters):
    if step % config.run_test_every == 0:
      steps.append(step)
      errors.append(errors_by_step[step])
    if ((step + 1) % config.lr_check_every == 0
        and step - changes[-1] > config.min_iters):
      (slope, _), cov = np.polyfit(steps[-n_fit:], errors[-n_fit:], 1,
                                   cov=True)
      if -config.lr_change_ratio * slope < np.sqrt(cov[0, 0]):
        changes.append(step)
  return changes[1:]


class PairsTest(parameterized.TestCase):

  def test_son_matches_scipy_correlate_and_subsample(self):
    father = np.random.default_rng(1).random((20, 18, 3)).astype(np.float32)
    kernel = np.random.default_rng(2).random((7, 7)).astype(np.float32)
    kernel /= kernel.sum()
    son = pairs.father_to_son(jax.random.key(0), jnp.asarray(father),
                              jnp.asarray(kernel), 2, 0.0)
    expected = np.stack([
        ndimage.correlate(father[..., c], kernel, mode="reflect")[::2, ::2]
        for c in range(3)], axis=-1)
    np.testing.assert_allclose(np.asarray(son), np.clip(expected, 0, 1),
                               atol=1e-5)

  def test_son_noise_has_the_requested_std(self):
    father = jnp.full((128, 128, 1), 0.5, jnp.float32)
    kernel = jnp.asarray(_gaussian_kernel())
    son = pairs.father_to_son(jax.random.key(3), father, kernel, 2, 0.0125)
    np.testing.assert_allclose(float(jnp.std(son)), 0.0125, rtol=0.05)
    np.testing.assert_allclose(float(jnp.mean(son)), 0.5, atol=1e-3)

  def test_crop_is_a_window_of_image_and_loss_map(self):
    image = np.random.default_rng(4).random((30, 25, 3)).astype(np.float32)
    loss_map = np.random.default_rng(5).random((30, 25, 1)).astype(np.float32)
    corner = pairs.crop_corner(jax.random.key(6), jnp.array([14, 13]))
    father, weights = pairs.crop(jnp.asarray(image), jnp.asarray(loss_map),
                                 corner, (16, 12))
    father, weights = np.asarray(father), np.asarray(weights)
    matches = [(top, left) for top in range(15) for left in range(14)
               if np.array_equal(image[top:top + 16, left:left + 12], father)]
    self.assertLen(matches, 1)
    top, left = matches[0]
    np.testing.assert_array_equal(weights,
                                  loss_map[top:top + 16, left:left + 12])

  def test_crop_shape_shrinks_to_small_images(self):
    self.assertEqual(pairs.crop_shape((300, 90), 128), (128, 90))

  def test_loss_map_matches_the_original(self):
    rgb = _smooth_image((24, 30, 3), seed=7)
    gray = data_lib.luma(rgb)
    loss_map = np.asarray(pairs.gradient_loss_map(jnp.asarray(rgb)))
    self.assertEqual(loss_map.shape, (24, 30, 1))
    np.testing.assert_allclose(loss_map[..., 0], _reference_loss_map(gray),
                               rtol=1e-4, atol=1e-5)

  def test_loss_map_of_flat_image_is_ones(self):
    loss_map = pairs.gradient_loss_map(jnp.full((16, 16, 1), 0.3))
    np.testing.assert_array_equal(np.asarray(loss_map), 1.0)


class PolicyTest(parameterized.TestCase):

  @parameterized.parameters(
      ([5.0, 4.0, 3.1, 2.0, 1.0], False),  # Steadily falling: keep going.
      ([3.0, 3.1, 2.9, 3.05, 2.95], True),  # Flat and noisy: decay.
      ([1.0, 1.2, 1.4, 1.6, 1.8], True),  # Rising: decay.
      ([3.0, 2.0, 3.2, 1.5, 2.5], True),  # Falling within the noise: decay.
  )
  def test_should_decay_matches_polyfit(self, errors, expected):
    steps = np.array([50.0, 100.0, 150.0, 200.0, 250.0])
    errors = np.array(errors) * 1e-3
    (slope, _), cov = np.polyfit(steps, errors, 1, cov=True)
    got_slope, got_std = policy_lib.slope_and_std_error(
        jnp.asarray(steps, jnp.float32), jnp.asarray(errors, jnp.float32))
    np.testing.assert_allclose(float(got_slope), slope, rtol=1e-4)
    np.testing.assert_allclose(float(got_std), np.sqrt(cov[0, 0]), rtol=1e-3,
                               atol=1e-10)
    self.assertEqual(bool(policy_lib.should_decay(
        jnp.asarray(steps), jnp.asarray(errors))), expected)
    # A ring buffer holds the points rotated; the decision is the same.
    self.assertEqual(bool(policy_lib.should_decay(
        jnp.roll(jnp.asarray(steps), 2), jnp.roll(jnp.asarray(errors), 2))),
                     expected)

  @parameterized.parameters(0, 1, 2)
  def test_decay_iterations_match_the_original_loop(self, seed):
    config = ZSSRConfig()
    rng = np.random.default_rng(seed)
    max_iters = 1500
    # Falls fast, then plateaus with noise: a typical reconstruction curve.
    errors_by_step = {
        step: 1e-3 * (np.exp(-step / (150 + 100 * seed)) + 0.2
                      + 0.01 * rng.standard_normal())
        for step in range(0, max_iters, config.run_test_every)}
    expected = _reference_decay_steps(errors_by_step, max_iters, config)
    self.assertNotEmpty(expected)

    state = policy_lib.init_policy(config)
    update = jax.jit(policy_lib.update_learning_rate, static_argnums=2)
    decays = []
    for step in range(max_iters):
      if step in errors_by_step:
        state = policy_lib.record_test(state, jnp.asarray(step),
                                       jnp.float32(errors_by_step[step]))
      rate = float(state.learning_rate)
      state = update(state, jnp.asarray(step), config)
      if float(state.learning_rate) < rate:
        decays.append(step)
    self.assertEqual(decays, expected)
    np.testing.assert_allclose(float(state.learning_rate),
                               1e-3 / 10**len(expected), rtol=1e-5)


class NetworkTest(absltest.TestCase):

  def test_zero_weights_give_the_bicubic_input(self):
    params = network.init_params(jax.random.key(0), 3, width=8, depth=3)
    zeros = [jnp.zeros_like(p) for p in params]
    upscaled = jnp.asarray(_smooth_image((12, 10, 3)))
    output = jax.jit(network.apply)(zeros, upscaled)
    np.testing.assert_array_equal(np.asarray(output), np.asarray(upscaled))

  def test_init_std_and_shapes(self):
    params = network.init_params(jax.random.key(1), 3)
    self.assertEqual([p.shape for p in params],
                     [(3, 3, 3, 64)] + [(3, 3, 64, 64)] * 6 + [(3, 3, 64, 3)])
    np.testing.assert_allclose(float(jnp.std(params[1])),
                               np.sqrt(0.1 / (9 * 64)), rtol=0.02)

  def test_tiles_give_the_whole_image_pass(self):
    for shape, tile, batch in (((37, 53, 3), 16, 4), ((20, 9, 3), 8, 3),
                               ((16, 16, 1), 16, 1)):
      # Large weights: a residual far from zero, also at the borders.
      params = network.init_params(jax.random.key(2), shape[-1], width=8,
                                   depth=4, init_variance=2.0)
      image = _smooth_image(shape, seed=3)
      whole = np.asarray(jax.jit(network.apply)(params, image))
      tiled = network.apply_tiled(params, image, tile, batch)
      self.assertEqual(tiled.shape, shape)
      self.assertGreater(np.abs(whole - image).mean(), 0.1)
      np.testing.assert_allclose(tiled, whole, atol=1e-5)

  def test_tiles_compile_once_for_every_image_size(self):
    params = network.init_params(jax.random.key(3), 3, width=8, depth=3)
    network.apply_tiled(params, _smooth_image((30, 20, 3)), 16, 2)
    compiled = network._windows._cache_size()
    for shape in ((17, 41, 3), (64, 9, 3)):
      network.apply_tiled(params, _smooth_image(shape), 16, 2)
    self.assertEqual(network._windows._cache_size(), compiled)


class BackProjectionTest(absltest.TestCase):

  def test_back_projection_reduces_reconstruction_error(self):
    kernel = jnp.asarray(_gaussian_kernel())
    hr = jnp.asarray(_smooth_image((48, 40, 3), seed=8))
    lr = pairs.downscale(hr, kernel, 2)
    sr = pairs.upscale(lr, 2, hr.shape[:2])

    def reconstruction_error(sr):
      return float(jnp.mean((pairs.downscale(sr, kernel, 2) - lr)**2))

    before = reconstruction_error(sr)
    for _ in range(4):
      sr = pipeline.back_projection(sr, lr, kernel, 2)
    self.assertLess(reconstruction_error(sr), 0.3 * before)
    self.assertBetween(float(sr.min()), 0.0, 1.0)
    self.assertBetween(float(sr.max()), 0.0, 1.0)

  def test_looped_steps_are_the_steps(self):
    kernel = jnp.asarray(_gaussian_kernel())
    hr = jnp.asarray(_smooth_image((30, 26, 3), seed=9))
    lr = pairs.downscale(hr, kernel, 2)
    sr = pairs.upscale(lr, 2, hr.shape[:2])
    stepped = sr
    for _ in range(3):
      stepped = pipeline.back_projection(stepped, lr, kernel, 2)
    looped = pipeline.back_projected(sr, lr, kernel, 2, 3)
    np.testing.assert_allclose(np.asarray(looped), np.asarray(stepped),
                               atol=1e-6)
    self.assertGreater(float(jnp.abs(looped - sr).max()), 1e-3)


class SuperResolveTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("rgb", (24, 20, 3), (48, 40, 3)),
      ("rgba", (24, 20, 4), (48, 40, 4)),
      ("gray_2d", (24, 20), (48, 40)),
      ("gray_channel", (24, 20, 1), (48, 40, 1)),
  )
  def test_shape_and_range(self, in_shape, out_shape):
    image = _smooth_image(in_shape, seed=9)
    out = pipeline.super_resolve(image, _gaussian_kernel(), config=_TINY)
    self.assertEqual(out.shape, out_shape)
    self.assertEqual(out.dtype, np.float32)
    self.assertGreaterEqual(float(out.min()), 0.0)
    self.assertLessEqual(float(out.max()), 1.0)
    # The result is an upscale of the input: close to it after downscaling.
    down = np.asarray(imresize(out, 0.5))
    self.assertLess(float(np.mean(np.abs(down - image))), 0.05)

  def test_x4_real_mode_and_bicubic_kernel(self):
    image = _smooth_image((20, 24, 3), seed=10)
    out = pipeline.super_resolve(image, None, x4=True, real=True,
                                 config=_TINY)
    self.assertEqual(out.shape, (80, 96, 3))
    self.assertBetween(float(out.min()), 0.0, 1.0)

  def test_training_is_traced_at_the_configured_precision(self):
    seen = []
    real = jax.default_matmul_precision
    def recording(precision):
      seen.append((precision, jax.config.jax_default_matmul_precision))
      return real(precision)
    image = np.random.default_rng(3).random((20, 24, 3)).astype(np.float32)
    try:
      jax.default_matmul_precision = recording
      pipeline.super_resolve(image, _gaussian_kernel(), config=_TINY)
      pipeline.super_resolve(image, _gaussian_kernel(), config=(
          dataclasses.replace(_TINY, matmul_precision="default")))
    finally:
      jax.default_matmul_precision = real
    self.assertEqual([p for p, _ in seen], ["highest", "default"])
    # The precision set for a step is visible to what the step traces.
    with real("highest"):
      text = jax.jit(lambda a, b: a @ b).lower(
          jnp.ones((2, 2)), jnp.ones((2, 2))).as_text()
    self.assertIn("HIGHEST", text)

  def test_x4_needs_its_kernel(self):
    with self.assertRaises(ValueError):
      pipeline.super_resolve(np.zeros((20, 20, 3)), _gaussian_kernel(),
                             x4=True, config=_TINY)

  def test_reproducible_with_a_seed(self):
    image = _smooth_image((24, 20, 3), seed=11)
    run = lambda seed: pipeline.super_resolve(image, _gaussian_kernel(),
                                              config=_TINY, seed=seed)
    first, again, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(first, again)
    self.assertGreater(float(np.abs(first - other).max()), 1e-4)

  def test_scan_loop_matches_python_loop(self):
    image = jnp.asarray(_smooth_image((24, 20, 3), seed=12))
    inputs = train.StageInputs(image, pairs.gradient_loss_map(image),
                               jnp.asarray(_gaussian_kernel()),
                               jax.random.key(13))
    states = {}
    for loop in ("python", "scan"):
      # Tests every other iteration: both static variants of the step run.
      config = dataclasses.replace(_TINY, loop=loop, max_iters=8,
                                   run_test_every=2, lr_slope_range=6)
      params = network.init_params(jax.random.key(14), 3, 8, 3)
      state = train.train_stage(train.init_state(params, None, config),
                                inputs, config=config, scale=2,
                                noise_std=0.0)
      states[loop] = state
    self.assertEqual(int(states["python"].step), 8)
    self.assertEqual(int(states["scan"].step), 8)
    for loop_p, scan_p in zip(states["python"].params, states["scan"].params):
      np.testing.assert_allclose(np.asarray(loop_p), np.asarray(scan_p),
                                 atol=1e-5)

  def test_iteration_vmaps_over_images(self):
    config = dataclasses.replace(_TINY, run_test_every=2, lr_slope_range=6)
    images = jnp.asarray(_smooth_image((2, 24, 20, 3), seed=15))
    kernel = jnp.asarray(_gaussian_kernel())

    def start(image, key):
      params = network.init_params(jax.random.fold_in(key, 1), 3, 8, 3)
      inputs = train.StageInputs(image, pairs.gradient_loss_map(image),
                                 kernel, key)
      return train.init_state(params, None, config), inputs

    def iterate(state, inputs):  # One iteration, tested every other one.
      father = jax.tree.map(lambda a: a[0], train.fathers(
          inputs, state.step, 1, config.crop_size))
      state = train.adam_step(state, father, inputs.kernel, inputs.key,
                              config=config, scale=2, noise_std=0.0)
      error = train.test_error(state.params, inputs, state.step, scale=2,
                               noise_std=0.0)
      return train.end_iteration(state, error,
                                 state.step % config.run_test_every == 0,
                                 config=config)

    keys = jax.random.split(jax.random.key(16), 2)
    states, inputs = jax.vmap(start)(images, keys)
    single, single_inputs = start(images[1], keys[1])
    batched_iterate = jax.jit(jax.vmap(iterate))
    for _ in range(4):
      states = batched_iterate(states, inputs)
      single = jax.jit(iterate)(single, single_inputs)
    np.testing.assert_array_equal(np.asarray(states.step), [4, 4])
    for batched_p, single_p in zip(states.params, single.params):
      np.testing.assert_allclose(np.asarray(batched_p[1]),
                                 np.asarray(single_p), atol=1e-6)
    np.testing.assert_allclose(np.asarray(states.test_error[1]),
                               np.asarray(single.test_error), rtol=1e-5)

  @parameterized.parameters(("python", 0), ("scan", 1))
  def test_training_compiles_once_for_every_image_size(self, loop, other):
    """The fathers are cut outside the training programs, so only the test,
    the cut and the output are compiled per image size."""
    config = dataclasses.replace(_TINY, loop=loop, run_test_every=2,
                                 lr_slope_range=6, chunk_size=3)
    trained = [train.jitted_adam_step, train.jitted_end_iteration,
               train.jitted_father_corners] + (
                   [train.jitted_steps] if loop == "scan" else [])
    pipeline.super_resolve(_smooth_image((24, 20, 3), seed=17),
                           _gaussian_kernel(), config=config)
    programs = [f._cache_size() for f in trained]
    tests = train.jitted_test_error._cache_size()
    for shape in ((31 + other, 22, 3), (40, 37 + other, 3)):  # New sizes.
      pipeline.super_resolve(_smooth_image(shape, seed=18),
                             _gaussian_kernel(), config=config)
    self.assertEqual([f._cache_size() for f in trained], programs)
    self.assertEqual(train.jitted_test_error._cache_size(), tests + 2)
    self.assertGreater(train.jitted_cut_fathers._cache_size(), 0)


class MemoryTest(absltest.TestCase):

  def test_needed_grows_with_the_input_the_output_and_the_network(self):
    fixed = memory.memory_needed(0, 0)
    window = network.TILE + 2 * 8
    tiles = network.TILE_BATCH * window**2 * 4 * 3 * 64
    self.assertEqual(fixed, memory.FIXED_BYTES + tiles)
    # The reconstruction tests' whole-input pass, or at x4 the output's
    # images, whichever is larger.
    self.assertEqual(memory.memory_needed(100, 200) - fixed,
                     100 * 200 * 4 * 3 * 64)
    self.assertEqual(memory.memory_needed(100, 200, x4=True) - fixed,
                     16 * 100 * 200 * 4 * 10 * 3)
    self.assertLess(memory.memory_needed(100, 200, channels=1, x4=True),
                    memory.memory_needed(100, 200, x4=True))
    self.assertLess(memory.memory_needed(100, 200,
                                         config=ZSSRConfig(width=32)),
                    memory.memory_needed(100, 200))
    # A fast config trains on smaller crops; the whole-image passes are the
    # same.
    self.assertEqual(memory.memory_needed(100, 200, config=ZSSRConfig(
        crop_size=64, max_iters=1000)), memory.memory_needed(100, 200))

  def test_check_refuses_what_does_not_fit(self):
    needed = memory.memory_needed(300, 400, x4=True)
    with mock.patch.dict(os.environ, {memory.LIMIT_ENV: str(needed)}):
      self.assertEqual(memory.memory_available(), needed)
      memory.check_memory((300, 400, 3), x4=True)
      memory.check_memory((300, 400, 4), x4=True)  # Alpha is not learned.
      with self.assertRaisesRegex(memory.NotEnoughMemory,
                                  r"x4 of this 400x301 image needs about "
                                  r".* GiB .*drop --x4"):
        memory.check_memory((301, 400, 3), x4=True, config=ZSSRConfig(
            width=80))
      self.assertTrue(issubclass(memory.NotEnoughMemory, ValueError))

  def test_the_limit_is_read_in_any_number_notation(self):
    with mock.patch.dict(os.environ, {memory.LIMIT_ENV: "1.5e9"}):
      self.assertEqual(memory.memory_available(), 1_500_000_000)
    for bad in ("lots", "-1", "inf", "nan"):
      with mock.patch.dict(os.environ, {memory.LIMIT_ENV: bad}):
        with self.assertRaisesRegex(
            ValueError, f"{memory.LIMIT_ENV} must be a number of bytes"):
          memory.memory_available()

  def test_available_is_the_host_memory_on_cpu(self):
    with mock.patch.dict(os.environ, {memory.LIMIT_ENV: ""}):
      available = memory.memory_available()
    if sys.platform.startswith("linux"):
      self.assertGreater(available, 2**20)

  def test_terms_bound_xla_buffer_plans(self):
    """XLA's buffers for each whole-image program fit its term of the
    formula, with less than 3x to spare (the measured peak RSS, which adds
    the allocator's and the convolutions' own, is in the module
    docstring): the output-sized images around the network, the network
    on the whole input (the reconstruction test), one batch of tiles."""
    def used(jitted, *args, **static):
      plan = jitted.lower(*args, **static).compile().memory_analysis()
      return plan.temp_size_in_bytes + plan.output_size_in_bytes

    config = ZSSRConfig()
    params = network.init_params(jax.random.key(0), 3)
    kernel = jnp.ones((13, 13), jnp.float32) / 169
    lr = jax.ShapeDtypeStruct((96, 128, 3), jnp.float32)
    sr = jax.ShapeDtypeStruct((192, 256, 3), jnp.float32)
    pixels = 192 * 256
    images = (used(pipeline._upscaled, lr, scale=2, output_hw=(192, 256))
              + used(pipeline.back_projected, sr, lr, kernel, scale=2,
                     iterations=4))
    self.assertBetween(images / pixels, 4 * 10 * 3 / 3, 4 * 10 * 3)
    inputs = train.StageInputs(lr, jax.ShapeDtypeStruct((96, 128, 1),
                                                        jnp.float32),
                               kernel, jax.random.key(0))
    test = used(train.jitted_test_error, params, inputs, jnp.int32(0),
                scale=2, noise_std=0.0)
    per_input_pixel = 4 * 3 * config.width
    self.assertBetween(test / (96 * 128), per_input_pixel / 3,
                       per_input_pixel)
    side = network.TILE + 2 * config.depth
    windows = jax.ShapeDtypeStruct(
        (network.TILE_BATCH, side, side, 3), jnp.float32)
    masks = jax.ShapeDtypeStruct((network.TILE_BATCH, side, side, 1),
                                 jnp.float32)
    tiles = used(network._windows, params, windows, masks)
    per_window = network.TILE_BATCH * side * side * per_input_pixel
    self.assertBetween(tiles, per_window / 3, per_window)

if __name__ == "__main__":
  absltest.main()
