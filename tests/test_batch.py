"""Batched estimation: same keys and results as one image at a time, images
of any sizes in one compiled program, sharding changes nothing."""

import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest

from kernelgan_jax import batch
from kernelgan_jax import config as config_lib
from kernelgan_jax import data as data_lib
from kernelgan_jax import estimate
from kernelgan_jax import images as images_lib
from kernelgan_jax import train

# The config (and the first image's shape) of tests/test_train.py, so the
# single-image step compiled there or here is shared.
CONFIG = config_lib.get_config(max_iters=6)
SEEDS = (0, 1)
LR = 2e-4
# At G's ~1e-7 start Adam's update is sign-like: rounding differences of the
# batched arithmetic flip a few tiny gradients, so weights agree to a
# fraction of one Adam step per iteration (as in tests/test_train.py).
WEIGHT_ATOL = CONFIG.max_iters * 2 * LR
# The centre of mass of a kernel summing to ~0 is ill-conditioned; its loss
# is weighted 0 this early, so it is left out of comparisons.
COMPARED_LOSSES = ("loss_adversarial", "loss_bicubic", "loss_sum2one",
                   "loss_discriminator", "loss_generator", "lambda_bicubic")


def blocky_image(rng, rows, cols):
  return np.kron(rng.random((rows // 4, cols // 4, 3)), np.ones((4, 4, 1)))


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  square = blocky_image(rng, 100, 100)  # Shaved 80x80.
  wide = (blocky_image(rng, 92, 132) * 255).astype(np.uint8)  # 72x112.
  return [square, wide]


@pytest.fixture(scope="module")
def trained(images):
  """The jobs of both images and seeds, trained as one batch."""
  jobs = [job for i, image in enumerate(images)
          for job in batch.prepare_jobs(image, CONFIG, SEEDS, i)]
  states, history = batch.train_batch(jobs, CONFIG)
  return jobs, states, history


def _assert_losses_agree(history, reference):
  for name in COMPARED_LOSSES:
    # The first iteration sees identical weights: float agreement.
    np.testing.assert_allclose(history[name][0], reference[name][0],
                               rtol=1e-5)
    np.testing.assert_allclose(history[name], reference[name], rtol=2e-2,
                               atol=1e-5)


def test_jobs_use_estimate_kernel_keys_and_stack_their_own_crops(images):
  jobs = [job for i, image in enumerate(images)
          for job in batch.prepare_jobs(image, CONFIG, SEEDS, i)]
  stacked = batch.batch_crops(jobs, CONFIG, 2, 3)
  assert stacked.g_input.shape == (3, 4, 64, 64, 3)
  assert stacked.d_real.shape == (3, 4, 26, 26, 3)
  for j, job in enumerate(jobs):
    data_key, _ = jax.random.split(jax.random.key(job.seed))
    reference = data_lib.prepare(
        images_lib.as_float_rgb(images[job.image_index]), CONFIG, data_key)
    np.testing.assert_array_equal(job.data.g_corners, reference.g_corners)
    np.testing.assert_array_equal(job.data.d_corners, reference.d_corners)
    own = data_lib.crops(reference, CONFIG, 2, 3)
    np.testing.assert_array_equal(stacked.g_input[:, j], own.g_input)
    np.testing.assert_array_equal(stacked.d_real[:, j], own.d_real)


@pytest.mark.parametrize("job_index", [0, 3])
def test_batched_equals_single_image(trained, job_index):
  jobs, states, history = trained
  job = jobs[job_index]
  _, init_key = train.seed_keys(job.seed)
  single, single_history = train.train(train.init_state(init_key, CONFIG),
                                       job.data, CONFIG)
  _assert_losses_agree({k: v[:, job_index] for k, v in history.items()},
                       single_history)
  mine = jax.tree.map(lambda x: x[job_index], states)
  for params in ("g_params", "d_params"):
    for a, b in zip(jax.tree.leaves(getattr(mine, params)),
                    jax.tree.leaves(getattr(single, params))):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                                 atol=WEIGHT_ATOL)
  np.testing.assert_allclose(mine.schedule.lambda_bicubic,
                             single.schedule.lambda_bicubic, rtol=1e-6)


def test_estimate_kernels_returns_the_batch_results(images, trained):
  jobs, states, history = trained
  # The default loop scans all 6 iterations in one chunk.
  compiled = batch.batched_chunk(CONFIG, CONFIG.max_iters)
  before = compiled._cache_size()
  # Other image sizes, same batch size: no new compilation.
  results = batch.estimate_kernels(images[::-1], CONFIG, SEEDS,
                                   strategy="vmap")
  assert compiled._cache_size() == before == 1
  assert [[e.seed for e in per_image] for per_image in results] == [
      [0, 1], [0, 1]]
  raw = train.final_kernel(states, CONFIG)
  for j, job in enumerate(jobs):
    result = results[1 - job.image_index][SEEDS.index(job.seed)]
    np.testing.assert_allclose(result.raw_kernel, raw[j], rtol=1e-5,
                               atol=1e-12)
    np.testing.assert_allclose(result.history["loss_generator"],
                               history["loss_generator"][:, j], rtol=1e-5)
    assert result.raw_kernel.shape == (13, 13)
    assert result.kernel_x4.shape == (2 * result.kernel_x2.shape[0] - 1,) * 2
    assert result.history["loss_bicubic"].shape == (CONFIG.max_iters,)
  # Different seeds of one image train differently.
  assert not np.allclose(raw[0], raw[1])


def test_sequential_strategy_matches_the_batch(trained):
  jobs, _, history = trained
  results = batch.run_jobs(jobs[2:], CONFIG, strategy="sequential")
  assert [r.seed for r in results] == [0, 1]
  for j, result in enumerate(results, start=2):
    _assert_losses_agree(result.history,
                         {k: v[:, j] for k, v in history.items()})
  with pytest.raises(ValueError, match="strategy"):
    batch.run_jobs(jobs, CONFIG, strategy="threads")


SHARDED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import jax
    import numpy as np
    from kernelgan_jax import batch, config as config_lib, programs
    config = config_lib.get_config(max_iters={iters})
    images = [np.load(p) for p in {paths!r}]
    assert len(jax.local_devices()) == 4, jax.local_devices()
    def run():
      return batch.estimate_kernels(images, config, {seeds!r},
                                    strategy="vmap")  # CPU's default: one by one.
    results = run()
    programs.use_folder({folder!r})  # Sharded programs kept and loaded.
    for _ in range(2):
      programs._loaded.clear()
      again = run()
      for r, a in zip(results, again):
        for e, f in zip(r, a):
          np.testing.assert_array_equal(f.raw_kernel, e.raw_kernel)
    assert any(name.startswith("batch_chunk") for name in os.listdir({folder!r}))
    print(json.dumps([[e.raw_kernel.tolist() for e in r] for r in results]))
    print(json.dumps([[e.history["loss_bicubic"].tolist() for e in r]
                      for r in results]))
""")


def test_sharded_over_four_devices_equals_one_device(images, trained,
                                                     tmp_path):
  paths = []
  for i, image in enumerate(images):
    paths.append(str(tmp_path / f"image{i}.npy"))
    np.save(paths[-1], image)
  script = SHARDED_SCRIPT.format(iters=CONFIG.max_iters, paths=paths,
                                 seeds=SEEDS, folder=str(tmp_path / "programs"))
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                       capture_output=True, text=True).stdout.splitlines()
  kernels, bicubic = json.loads(out[-2]), json.loads(out[-1])
  assert len(jax.devices()) == 1  # This process is untouched.
  jobs, states, history = trained
  raw = train.final_kernel(states, CONFIG)
  for j, job in enumerate(jobs):
    s = SEEDS.index(job.seed)
    np.testing.assert_allclose(bicubic[job.image_index][s],
                               history["loss_bicubic"][:, j], rtol=1e-4)
    # The kernel is still ~1e-7 this early and Adam's first updates are
    # sign-like, so rounding differences between 1 and 4 devices move single
    # taps by about their own size; the losses above are the tight check.
    np.testing.assert_allclose(kernels[job.image_index][s], raw[j], rtol=0,
                               atol=np.abs(raw[j]).max())


SIDE_BY_SIDE_SCRIPT = textwrap.dedent("""
    import json, threading
    import jax
    import numpy as np
    from kernelgan_jax import batch, config as config_lib, programs, train
    config = config_lib.get_config(max_iters={iters})
    images = [np.load(p) for p in {paths!r}]
    assert len(jax.local_devices()) == 2, jax.local_devices()
    programs.use_folder({folder!r})  # Each device's programs, loaded once.
    both_training = threading.Barrier(2, timeout=120)
    devices, train_once = [], train.train
    def train_side_by_side(state, *args, **kwargs):
      devices.append(jax.tree.leaves(state)[0].devices().pop().id)
      if len(devices) <= 2:
        both_training.wait()  # Fails unless the first two jobs overlap.
      return train_once(state, *args, **kwargs)
    train.train = train_side_by_side
    reports = []
    results = batch.estimate_kernels(
        images, config, {seeds!r}, strategy="sequential",
        estimator={estimator!r},
        progress=lambda done, total, _: reports.append((done, total)))
    assert sorted(devices[:2]) == [0, 1], devices
    print(json.dumps(reports[-1]))
    print(json.dumps([[e.raw_kernel.tolist() for e in r] for r in results]))
""")


def test_sequential_jobs_train_side_by_side_on_cpu_devices(images,
                                                           tmp_path):
  paths = []
  for i, image in enumerate(images):
    paths.append(str(tmp_path / f"image{i}.npy"))
    np.save(paths[-1], image)
  script = SIDE_BY_SIDE_SCRIPT.format(
      iters=CONFIG.max_iters, paths=paths, seeds=SEEDS,
      folder=str(tmp_path / "programs"), estimator="kernelgan")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                       capture_output=True, text=True).stdout.splitlines()
  last_report, kernels = json.loads(out[-2]), json.loads(out[-1])
  jobs = len(images) * len(SEEDS)
  assert last_report == [jobs * CONFIG.max_iters] * 2  # Summed over jobs.
  for image, per_seed in zip(images, kernels):
    for seed, kernel in zip(SEEDS, per_seed):
      # One job on another device, beside another job: the same bits as
      # the image alone in a one-device process.
      np.testing.assert_array_equal(
          kernel, estimate.estimate_kernel(image, CONFIG, seed).raw_kernel)


def test_select_trains_its_two_candidates_side_by_side(images, tmp_path):
  """One image, one seed: KernelGAN and fkp_lite on a CPU device each, at
  once, and the kept kernel is one of theirs as each gives it alone."""
  path = str(tmp_path / "image.npy")
  np.save(path, images[0])
  script = SIDE_BY_SIDE_SCRIPT.format(
      iters=CONFIG.max_iters, paths=[path], seeds=[0],
      folder=str(tmp_path / "programs"), estimator="select")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                       capture_output=True, text=True).stdout.splitlines()
  last_report, [[kernel]] = json.loads(out[-2]), json.loads(out[-1])
  assert last_report == [2 * CONFIG.max_iters] * 2  # Both candidates.
  alone = [estimate.estimate_kernel(images[0], CONFIG, 0,
                                    estimator=name).raw_kernel
           for name in ("kernelgan", "fkp_lite")]
  assert not np.array_equal(*alone)
  assert any(np.array_equal(kernel, a) for a in alone)


def test_a_short_batch_padded_to_the_full_size_reuses_its_program(trained):
  jobs, states, _ = trained
  compiled = batch.batched_chunk(CONFIG, CONFIG.max_iters)
  before = compiled._cache_size()
  results = batch.run_jobs(jobs[:3], CONFIG, strategy="vmap", pad_to=4)
  assert compiled._cache_size() == before
  assert [r.seed for r in results] == [job.seed for job in jobs[:3]]
  raw = train.final_kernel(states, CONFIG)
  for j, result in enumerate(results):
    np.testing.assert_allclose(result.raw_kernel, raw[j], rtol=1e-5,
                               atol=1e-12)


def test_training_settings_share_the_batched_initial_state(trained):
  jobs = trained[0][:2]
  other = CONFIG.replace(g_lr=1e-3, lambda_sparse_end=2.0, x4=True)
  states = batch.stack_states(jobs, CONFIG)
  programs_before = train._jitted_init.cache_info().currsize
  chex.assert_trees_all_equal(batch.stack_states(jobs, other), states)
  assert train._jitted_init.cache_info().currsize == programs_before


def test_a_batch_starts_from_its_jobs_own_initial_states(trained):
  jobs = trained[0]
  states = batch.stack_states(jobs, CONFIG)
  for j, job in enumerate(jobs):
    chex.assert_trees_all_equal(
        jax.tree.map(lambda leaf, j=j: leaf[j], states),
        train.init_state(job.init_key, CONFIG))


def test_default_batch_size_follows_the_backend():
  assert batch.default_batch_size("cpu") == 4  # One CPU device here.
  assert batch.default_batch_size("gpu") == batch.default_batch_size("tpu")
  assert batch.default_batch_size("gpu") > 4


def test_select_keeps_one_of_its_candidates_per_image_and_seed(images):
  config = config_lib.get_config(max_iters=2)
  kwargs = dict(seeds=SEEDS, strategy="sequential")
  chosen = batch.estimate_kernels(images, config, estimator="select",
                                  **kwargs)
  candidates = [batch.estimate_kernels(images, config, estimator=name,
                                       **kwargs)
                for name in ("kernelgan", "fkp_lite")]
  for i in range(len(images)):
    for s in range(len(SEEDS)):
      kept = [c[i][s] for c in candidates
              if np.array_equal(chosen[i][s].kernel_x2, c[i][s].kernel_x2)]
      assert kept and chosen[i][s].estimator == kept[0].estimator
  assert {c[0][0].estimator for c in candidates} == {"kernelgan", "fkp_lite"}
  one = estimate.estimate_kernel(images[0], config, SEEDS[0],
                                 estimator="select")
  np.testing.assert_array_equal(one.kernel_x2, chosen[0][0].kernel_x2)
