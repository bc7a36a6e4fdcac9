"""End to end: `python -m kernelgan_jax.degrade` on a tiny HR folder."""

import json
import os
import subprocess
import sys

import chex
import imageio.v3 as iio
import jax
import numpy as np
import pytest

from kernelgan_jax import degradation
from kernelgan_jax import degrade
from kernelgan_jax import div2krk
from kernelgan_jax import images
from kernelgan_jax import pool as pool_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_degrade(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "kernelgan_jax.degrade", *args], cwd=REPO,
      env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(name="setup")
def fixture_setup(tmp_path):
  rng = np.random.default_rng(0)
  hr = tmp_path / "hr"
  hr.mkdir()
  for i in range(3):
    iio.imwrite(hr / f"im{i}.png",
                (rng.random((64, 80 + i, 3)) * 255).astype(np.uint8))
  (hr / "broken.png").write_bytes(b"not a png")
  kernels = [div2krk.random_kernel_x2(rng, 13) for _ in range(4)]
  pool = {"names": np.array([f"k{i}" for i in range(4)]),
          "kernels_x2": pool_lib.on_canvas(kernels, 2),
          "has_x4": np.zeros(4, bool)}
  pool_path = tmp_path / "pool.npz"
  np.savez(pool_path, **pool)
  return tmp_path, hr, pool_path


def read_manifest(out) -> list[dict]:
  with open(out / "manifest.jsonl") as f:
    return [json.loads(line) for line in f]


def test_degrade_end_to_end(setup):
  tmp_path, hr, pool_path = setup
  out = tmp_path / "lr"
  args = [f"--hr={hr}", f"--pool={pool_path}", "--scale=2", "--seed=3",
          "--noise_sigma=0"]
  result = run_degrade(*args, f"--output_dir={out}")
  assert result.returncode == 1  # The broken file.
  errors = [line for line in result.stderr.splitlines()
            if "broken.png" in line]
  assert len(errors) == 1 and errors[0].startswith(
      "kernelgan_jax.degrade: error:")
  records = read_manifest(out)
  assert [r["lr"] for r in records] == ["im0.png", "im1.png", "im2.png"]
  pool = pool_lib.load_pool(str(pool_path))
  for record in records:
    assert record["scale"] == 2 and record["seed"] == 3
    hr_image = images.read_image(record["hr"])
    lr = iio.imread(out / record["lr"])
    assert lr.dtype == np.uint8
    assert lr.shape == (32, (hr_image.shape[1] + 1) // 2, 3)
    expected = degradation.downscale_np(
        hr_image, pool["kernels_x2"][record["kernel_index"]])
    assert np.abs(lr / 255.0 - expected).max() <= 1 / 255 + 1e-9
    np.testing.assert_allclose(lr, div2krk.quantize(expected), atol=1)

  # The same seed gives the same bytes; a restart skips finished files and
  # redoes a missing one, without duplicate lines.
  again = tmp_path / "again"
  run_degrade(*args, f"--output_dir={again}")
  for record in records:
    assert ((out / record["lr"]).read_bytes()
            == (again / record["lr"]).read_bytes())
  (again / "im1.png").unlink()
  mtime = os.path.getmtime(again / "im0.png")
  result = run_degrade(*args, f"--output_dir={again}")
  assert "1 written, 2 skipped" in result.stdout
  assert os.path.getmtime(again / "im0.png") == mtime
  assert sorted(r["lr"] for r in read_manifest(again)) == [
      "im0.png", "im1.png", "im2.png"]
  assert (out / "im1.png").read_bytes() == (again / "im1.png").read_bytes()


def test_scale4_without_x4_refused(setup):
  tmp_path, hr, pool_path = setup
  result = run_degrade(f"--hr={hr}", f"--pool={pool_path}", "--scale=4",
                       f"--output_dir={tmp_path / 'lr4'}")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "x4" in lines[0]
  assert not (tmp_path / "lr4").exists()


def test_draws_depend_on_seed_and_name_only(tmp_path):
  rng = np.random.default_rng(0)
  kernels = [div2krk.random_kernel_x2(rng, 13) for _ in range(8)]
  pool = {"names": np.array([str(i) for i in range(8)]),
          "kernels_x2": pool_lib.on_canvas(kernels, 2)}
  for i in range(4):
    iio.imwrite(tmp_path / f"im{i}.png",
                (rng.random((16, 20)) * 255).astype(np.uint8))
  paths = degrade.hr_files(str(tmp_path))
  degrade.degrade_folder(paths, pool, 2, str(tmp_path / "a"), seed=1,
                         noise_sigma=3.0)
  degrade.degrade_folder(paths[::-1][:2], pool, 2, str(tmp_path / "b"),
                         seed=1, noise_sigma=3.0)
  a = {r["lr"]: r for r in read_manifest(tmp_path / "a")}
  b = {r["lr"]: r for r in read_manifest(tmp_path / "b")}
  for name, record in b.items():
    assert record["kernel_index"] == a[name]["kernel_index"]
    assert ((tmp_path / "a" / name).read_bytes()
            == (tmp_path / "b" / name).read_bytes())
  # Noise was added: not the noiseless result.
  lr = iio.imread(tmp_path / "a" / "im0.png").astype(int)
  clean = div2krk.quantize(degradation.downscale_np(
      images.read_image(paths[0]), pool["kernels_x2"][a["im0.png"]
                                                      ["kernel_index"]]))
  assert np.abs(lr - clean).max() > 1
  # Another seed draws differently somewhere.
  degrade.degrade_folder(paths, pool, 2, str(tmp_path / "c"), seed=2)
  c = {r["lr"]: r["kernel_index"] for r in read_manifest(tmp_path / "c")}
  assert c != {k: r["kernel_index"] for k, r in a.items()}


def test_one_program_for_many_sizes_and_same_bytes_per_batch_size(
    tmp_path, monkeypatch):
  rng = np.random.default_rng(1)
  hr = tmp_path / "hr"
  hr.mkdir()
  shapes = [(40, 60, 3), (50, 33, 3), (37, 61), (64, 64, 3)]
  for i, shape in enumerate(shapes):
    iio.imwrite(hr / f"im{i}.png", (rng.random(shape) * 255).astype(np.uint8))
  kernels = [div2krk.random_kernel_x2(rng, 13) for _ in range(4)]
  pool = {"names": np.array([str(i) for i in range(4)]),
          "kernels_x2": pool_lib.on_canvas(kernels, 2)}
  paths = degrade.hr_files(str(hr))
  outs = {}
  for batch_size in (4, 1):
    # Portrait, landscape, gray and RGB images of several sizes: one
    # compiled blur.
    chex.clear_trace_counter()
    monkeypatch.setattr(degrade, "_downscale_jit", jax.jit(
        chex.assert_max_traces(degrade._downscale_canvases, n=1),
        static_argnames="scale"))
    out = tmp_path / f"lr{batch_size}"
    counts = degrade.degrade_folder(paths, pool, 2, str(out), seed=5,
                                    noise_sigma=1.0, batch_size=batch_size)
    assert counts["written"] == len(shapes)
    outs[batch_size] = out
  for i, shape in enumerate(shapes):
    name = f"im{i}.png"
    assert ((outs[4] / name).read_bytes() == (outs[1] / name).read_bytes())
  for record in read_manifest(outs[1]):
    lr = iio.imread(outs[1] / record["lr"])
    hr_image = images.read_image(record["hr"])
    assert lr.shape == (-(-hr_image.shape[0] // 2),
                        -(-hr_image.shape[1] // 2), *hr_image.shape[2:])


def test_downscale_batch_equals_downscale_np():
  rng = np.random.default_rng(2)
  hrs = [rng.random((30, 41, 3)), rng.random((45, 20, 3)), rng.random((9, 9))]
  kernels = [div2krk.random_kernel_x2(rng, 13) for _ in hrs]
  lrs = degrade.downscale_batch(hrs, kernels, 2, slots=4)
  for hr, kernel, lr in zip(hrs, kernels, lrs):
    expected = degradation.downscale_np(hr, kernel, 2)
    assert lr.dtype == np.float32 and lr.shape == expected.shape
    np.testing.assert_allclose(lr, expected, atol=1e-6)
    np.testing.assert_array_equal(degrade.noisy_quantize(lr),
                                  div2krk.quantize(expected))


def test_canvas_and_slots():
  assert degrade.canvas_shape([(1356, 2040, 3), (2040, 1200)]) == (1408,
                                                                   2048)
  assert degrade.batch_slots((1408, 2048), 4) == 4
  assert degrade.batch_slots((2048, 4096), 4) == 2
  assert degrade.batch_slots((8192, 8192), 4) == 1
