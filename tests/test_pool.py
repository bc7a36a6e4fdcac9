"""End to end: `python -m kernelgan_jax.pool` on a small results folder."""

import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import io as scipy_io

from kernelgan_jax import degradation
from kernelgan_jax import div2krk
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import pool as pool_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pool(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "kernelgan_jax.pool", *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)


def make_results(root: str) -> dict[str, np.ndarray]:
  """Three names: a 17x17 .npy with x4, a 13x13 .npy, a 19x19 .mat only
  (the PyTorch layout), plus a .mat shadowed by its .npy."""
  rng = np.random.default_rng(0)
  kernels = {"a": div2krk.random_kernel_x2(rng, 17).astype(np.float32),
             "b": div2krk.random_kernel_x2(rng, 13).astype(np.float32),
             "torch/c": div2krk.random_kernel_x2(rng, 19)}
  for name in ("a", "b"):
    os.makedirs(os.path.join(root, name))
    np.save(os.path.join(root, name, f"{name}_kernel_x2.npy"), kernels[name])
  scipy_io.savemat(os.path.join(root, "b", "b_kernel_x2.mat"),
                   {"Kernel": np.ones((5, 5))})  # The .npy wins.
  np.save(os.path.join(root, "a", "a_kernel_x4.npy"),
          kernel_lib.analytic_kernel_x4(kernels["a"]))
  os.makedirs(os.path.join(root, "torch", "c"))
  scipy_io.savemat(os.path.join(root, "torch", "c", "c_kernel_x2.mat"),
                   {"Kernel": kernels["torch/c"]})
  return kernels


def test_pool_end_to_end(tmp_path):
  kernels = make_results(str(tmp_path / "results"))
  output = tmp_path / "out" / "pool.npz"
  result = run_pool(f"--results={tmp_path / 'results'}", f"--output={output}")
  assert result.returncode == 0, result.stderr
  assert (tmp_path / "out" / "pool.png").exists()
  sheet = iio.imread(tmp_path / "out" / "pool.png")
  assert sheet.ndim == 3 and sheet.shape[2] == 3
  pool = pool_lib.load_pool(str(output))
  assert list(pool["names"]) == ["a", "b", "torch/c"]
  assert pool["kernels_x2"].shape == (3, 19, 19)
  np.testing.assert_allclose(pool["kernels_x2"].sum(axis=(1, 2)), 1.0)
  assert list(pool["has_x4"]) == [True, False, False]
  x4 = kernel_lib.analytic_kernel_x4(kernels["a"])
  assert pool["kernels_x4"].shape == (3,) + x4.shape
  assert not pool["kernels_x4"][1:].any()
  assert np.isnan(pool["sigma_major_x4"][1:]).all()
  for i, name in enumerate(pool["names"]):
    expected = kernel_lib.principal_axes(kernels[name])
    got = (pool["sigma_major"][i], pool["sigma_minor"][i],
           pool["angle_deg"][i])
    np.testing.assert_allclose(got, expected, atol=1e-5)
  # Padding keeps the origin: the pool kernel degrades as its file does.
  image = np.random.default_rng(1).random((24, 30))
  for i, name in enumerate(pool["names"]):
    kernel = kernels[name] / kernels[name].sum()
    np.testing.assert_allclose(
        degradation.downscale_np(image, pool["kernels_x2"][i]),
        degradation.downscale_np(image, kernel), atol=1e-6)


def test_pool_refuses_empty_folder(tmp_path):
  (tmp_path / "results" / "x").mkdir(parents=True)
  (tmp_path / "results" / "x" / "x.png").write_bytes(b"not a kernel")
  output = tmp_path / "out" / "pool.npz"
  result = run_pool(f"--results={tmp_path / 'results'}", f"--output={output}")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("kernelgan_jax.pool: error:")
  assert not (tmp_path / "out").exists()


def test_bad_file_reported_and_left_out(tmp_path):
  make_results(str(tmp_path))
  np.save(tmp_path / "a" / "a_kernel_x2.npy", np.zeros((5, 5)))
  pool, errors = pool_lib.build_pool(str(tmp_path))
  assert list(pool["names"]) == ["b", "torch/c"]
  assert len(errors) == 1 and "a_kernel_x2.npy" in errors[0]
  assert "kernels_x4" not in pool and not pool["has_x4"].any()


@pytest.mark.parametrize("shape", [(4, 4), (3, 6), (5, 5)])
def test_on_canvas_keeps_origin(shape):
  kernel = np.random.default_rng(2).random(shape)
  kernel /= kernel.sum()
  canvas = pool_lib.on_canvas([kernel, np.ones((9, 9)) / 81], 2)[0]
  assert canvas.shape == (9, 9)
  image = np.random.default_rng(3).random((20, 22))
  np.testing.assert_allclose(degradation.downscale_np(image, canvas),
                             degradation.downscale_np(image, kernel),
                             atol=1e-12)
