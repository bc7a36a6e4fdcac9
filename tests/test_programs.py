"""Executables kept on disk: a later process runs them without tracing, with
the results of the jitted functions."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from jax.experimental.compilation_cache import compilation_cache

from kernelgan_jax import batch
from kernelgan_jax import config as config_lib
from kernelgan_jax import data as data_lib
from kernelgan_jax import programs
from kernelgan_jax import train

CONFIG = config_lib.get_config(max_iters=6)


@pytest.fixture
def folder(tmp_path):
  programs.use_folder(str(tmp_path))
  programs._loaded.clear()  # pylint: disable=protected-access
  yield tmp_path
  programs.use_folder(None)
  programs._loaded.clear()  # pylint: disable=protected-access


def _run(config):
  rng = np.random.default_rng(0)
  image = np.kron(rng.random((25, 25, 3)), np.ones((4, 4, 1)))  # 100x100.
  data_key, init_key = train.seed_keys(3)
  data = data_lib.prepare(image, config, data_key)
  state, history = train.train(train.init_state(init_key, config), data,
                               config)
  return data, train.final_kernel(state, config), history


def test_a_later_process_loads_without_tracing(folder, monkeypatch):
  programs.use_folder(None)
  reference = _run(CONFIG)  # The jitted functions.
  programs.use_folder(str(folder))
  traces = []
  step = train._train_step  # pylint: disable=protected-access
  monkeypatch.setattr(train, "_train_step",
                      lambda *args: traces.append(1) or step(*args))
  _run(CONFIG)  # Compiles and writes.
  assert traces
  names = {p.name.split("-")[0] for p in folder.iterdir()}
  assert names == {"seed_keys", "corner_uniforms", "init_state",
                   "init_state_values", "train_chunk_6", "fold"}
  programs._loaded.clear()  # pylint: disable=protected-access  # A new process.
  traces.clear()
  data, kernel, history = _run(CONFIG)
  assert not traces
  np.testing.assert_array_equal(data.g_corners, reference[0].g_corners)
  np.testing.assert_array_equal(kernel, reference[1])
  np.testing.assert_array_equal(history["loss_generator"],
                                reference[2]["loss_generator"])


def test_a_later_process_reads_the_initial_state_of_a_known_key(
    folder, monkeypatch):
  (_, init_key), (_, other_key) = train.seed_keys(3), train.seed_keys(4)
  programs.use_folder(None)
  reference = train.init_state(init_key, CONFIG)
  programs.use_folder(str(folder))
  first = train.init_state(init_key, CONFIG)  # Runs the program, keeps both.
  programs._loaded.clear()  # pylint: disable=protected-access  # A new process.
  loads = []
  load = programs._load_or_compile  # pylint: disable=protected-access
  monkeypatch.setattr(programs, "_load_or_compile",
                      lambda *args: loads.append(args[0]) or load(*args))
  for config in (CONFIG, CONFIG.replace(max_iters=70, d_lr=1e-3)):
    again = train.init_state(init_key, config)
    for state in (first, again):
      for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
        if jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
          got, want = jax.random.key_data(got), jax.random.key_data(want)
        np.testing.assert_array_equal(got, want)
        assert got.sharding == want.sharding
  assert not loads  # Neither loaded nor ran the program.
  other = train.init_state(other_key, CONFIG)  # Another key: the program.
  assert [p.split("/")[-1].split("-")[0] for p in loads] == ["init_state"]
  assert not all(np.array_equal(a, b) for a, b in zip(other.g_params,
                                                     reference.g_params))


def test_a_damaged_result_is_computed_again(folder):
  kept = programs.stored_result("plus_one", jax.jit(lambda x: x + 1), "")
  np.testing.assert_array_equal(kept(np.arange(3)), [1, 2, 3])
  [path] = folder.iterdir()
  path.write_bytes(b"not a pickle")
  np.testing.assert_array_equal(kept(np.arange(3)), [1, 2, 3])
  np.testing.assert_array_equal(kept(np.arange(1, 4)), [2, 3, 4])
  assert len(list(folder.iterdir())) == 2


def test_keys_tell_apart_what_shapes_do_not(folder):
  """The uniforms' count is no input shape: it must be in the key."""
  key = jax.random.key(0)
  image = np.random.default_rng(1).random((100, 100, 3))
  short, long = (data_lib.prepare(image, CONFIG.replace(max_iters=n), key)
                 for n in (6, 9))
  assert len(short.g_corners) == 6 and len(long.g_corners) == 9


def test_inside_a_transformation_it_is_the_jitted_function(folder):
  keys = jax.random.split(jax.random.key(0), 2)
  states = jax.vmap(lambda k: train.init_state(k, CONFIG))(keys)
  assert states.step.shape == (2,)
  assert not list(folder.iterdir())


def test_a_kept_program_adds_no_entry_to_jax_cache(folder, tmp_path_factory):
  """JAX's cache would keep a second copy that is never read."""
  jax_cache = tmp_path_factory.mktemp("jax_cache")
  min_seconds = jax.config.jax_persistent_cache_min_compile_time_secs
  compilation_cache.reset_cache()
  jax.config.update("jax_compilation_cache_dir", str(jax_cache))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    kept = programs.stored("doubled", jax.jit(lambda x: 2.0 * x + 1.0), "")
    np.testing.assert_array_equal(kept(np.arange(3.0)), [1.0, 3.0, 5.0])
    jax.jit(lambda x: x - 7.0)(np.arange(3.0))  # An ordinary compile.
  finally:
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      min_seconds)
    compilation_cache.reset_cache()
  assert [p.name.split("-")[0] for p in folder.iterdir()] == ["doubled"]
  entries = [p.name for p in jax_cache.iterdir()]
  assert entries  # The cache is on: the ordinary compile is in it.
  assert not [e for e in entries if "doubled" in e]


def test_the_batch_path_loads_its_programs_too(folder, monkeypatch):
  rng = np.random.default_rng(0)
  images = [np.kron(rng.random((25, 30, 3)), np.ones((4, 4, 1))),
            np.kron(rng.random((28, 25, 3)), np.ones((4, 4, 1)))]
  def run():
    return batch.estimate_kernels(images, CONFIG, [0, 1], strategy="vmap")
  programs.use_folder(None)
  reference = run()
  programs.use_folder(str(folder))
  run()  # Compiles and writes.
  assert {p.name.split("-")[0] for p in folder.iterdir()} >= {
      "init_state", "stack_states", "batch_chunk_6", "fold_over_1_axes"}
  programs._loaded.clear()  # pylint: disable=protected-access  # A new process.
  traces = []
  step = train._train_step  # pylint: disable=protected-access
  monkeypatch.setattr(train, "_train_step",
                      lambda *args: traces.append(1) or step(*args))
  loaded = run()
  assert not traces
  for ref, got in zip(reference, loaded):
    for r, g in zip(ref, got):
      np.testing.assert_array_equal(g.raw_kernel, r.raw_kernel)
      np.testing.assert_array_equal(g.history["loss_generator"],
                                    r.history["loss_generator"])


def test_runs_of_any_length_share_one_step_program(folder):
  """`max_iters` and `x4` are not read by the step: no new program."""
  short, long = CONFIG.replace(max_iters=3), CONFIG.replace(max_iters=70,
                                                            x4=True)
  programs.use_folder(None)  # The jitted functions themselves.
  assert train.jitted_step(short) is train.jitted_step(long)
  assert train.jitted_chunk(short, 2) is train.jitted_chunk(long, 2)
  assert batch.batched_chunk(short, 2) is batch.batched_chunk(long, 2)
  programs.use_folder(str(folder))
  image = np.random.default_rng(2).random((100, 100, 3))
  data_key, init_key = train.seed_keys(0)
  data = data_lib.prepare(image, long, data_key)
  for config in (short, long):
    state = train.init_state(init_key, config)
    train.chunk_program(config, 2)(state, data_lib.crops(data, config, 0, 2))
  assert len([p for p in folder.iterdir()
              if p.name.startswith("train_chunk_2")]) == 1


_ESTIMATE_IN_A_PROCESS = """
import sys
import numpy as np
from kernelgan_jax import config, estimate, programs
programs.use_folder(sys.argv[1])
image = np.kron(np.random.default_rng(0).random((25, 25, 3)),
                np.ones((4, 4, 1)))
estimate.estimate_kernel(image, config.get_config(max_iters=6))
print(sorted(m for m in ("flax", "optax") if m in sys.modules))
"""


def test_a_process_with_kept_programs_imports_neither_flax_nor_optax(
    tmp_path):
  """They are needed only to build and trace the programs (the state holds
  their leaves packed, `train.pack`), and cost much of the start-up."""
  def imported():
    return subprocess.run(
        [sys.executable, "-c", _ESTIMATE_IN_A_PROCESS, str(tmp_path)],
        check=True, capture_output=True, text=True).stdout.split("\n")[-2]
  assert imported() == "['flax', 'optax']"  # Builds and keeps them.
  assert imported() == "[]"
