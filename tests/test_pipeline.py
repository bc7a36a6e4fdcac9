"""Files to output folders: per-image outputs as the CLI writes them, bad files
skipped and reported, restarts skip finished images."""

import json
import os

import imageio.v3 as iio
import numpy as np
import pytest

from kernelgan_jax import config as config_lib
from kernelgan_jax import ensemble
from kernelgan_jax import pipeline
from kernelgan_jax import outputs
from kernelgan_jax.kernel import KernelEstimate

# As tests/test_batch.py: two images of these sizes and two seeds compile
# to the same batched program there and here.
CONFIG = config_lib.get_config(max_iters=6)
SEEDS = (0, 1)


def _blocky_png(path, rng, rows, cols):
  image = np.kron(rng.random((rows // 4, cols // 4, 3)), np.ones((4, 4, 1)))
  iio.imwrite(path, (image * 255).astype(np.uint8))
  return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("inputs")
  rng = np.random.default_rng(0)
  paths = [_blocky_png(root / "wide.png", rng, 92, 132),
           str(root / "broken.png"),
           _blocky_png(root / "tiny.png", rng, 40, 40),
           _blocky_png(root / "square.png", rng, 100, 100)]
  with open(paths[1], "wb") as f:
    f.write(b"not a png")
  return paths


@pytest.fixture(scope="module")
def first_run(inputs, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("out"))
  rows = pipeline.estimate_files(inputs, out, CONFIG, batch_size=2,
                                seeds=SEEDS, strategy="vmap")
  return out, rows


def test_good_images_get_outputs_and_bad_ones_are_reported(first_run):
  out, rows = first_run
  assert [(r["name"], r["status"]) for r in rows] == [
      ("wide", "ok"), ("broken", "error"), ("tiny", "error"),
      ("square", "ok")]
  assert "cannot read" in rows[1]["message"]
  assert "40x40" in rows[2]["message"]
  assert sorted(os.listdir(out)) == ["square", "wide"]
  for name in ("square", "wide"):
    assert sorted(os.listdir(os.path.join(out, name))) == sorted(
        outputs.output_files(name, x4=False))
  table = pipeline.format_table(rows)
  assert "2 estimated, 0 skipped (done), 2 failed" in table


def test_saved_kernel_is_the_ensemble_of_the_logged_seeds(first_run):
  out, _ = first_run
  with open(os.path.join(out, "wide", "wide_log.json")) as f:
    log = json.load(f)
  assert log["ensemble_seeds"] == list(SEEDS)
  assert log["batch_images"] == 2
  seeds_kernels = [np.array(k, np.float32) for k in log["ensemble_kernels_x2"]]
  saved = np.load(os.path.join(out, "wide", "wide_kernel_x2.npy"))
  np.testing.assert_allclose(saved, ensemble.combine(seeds_kernels),
                             rtol=1e-5, atol=1e-7)
  assert saved.sum() == pytest.approx(1.0, abs=1e-5)


def test_restart_skips_finished_images_and_refuses_partial_ones(
    first_run, inputs):
  out, _ = first_run
  os.remove(os.path.join(out, "square", "square_kernels.png"))
  rows = pipeline.estimate_files(inputs, out, CONFIG, batch_size=2,
                                seeds=SEEDS)
  statuses = {r["name"]: r["status"] for r in rows}
  assert statuses == {"wide": "skipped", "broken": "error",
                      "tiny": "error", "square": "error"}
  assert "--overwrite" in rows[3]["message"]


def test_duplicate_names_and_bad_arguments(tmp_path, inputs):
  rows = pipeline.plan([inputs[0], inputs[0]], str(tmp_path), CONFIG, False)
  assert [r["status"] for r in rows] == [pipeline.PENDING, "error"]
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.estimate_files(inputs, str(tmp_path), CONFIG, batch_size=0)


def test_an_interrupted_write_leaves_no_folder(tmp_path, monkeypatch):
  kernel = np.full((17, 17), 1 / 289, np.float32)
  estimate = KernelEstimate(kernel, kernel, kernel[:13, :13], {}, 0)

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(outputs.iio, "imwrite", interrupted)
  folder = tmp_path / "out" / "a"
  with pytest.raises(KeyboardInterrupt):
    outputs.write_outputs(str(folder), "a", estimate, CONFIG, {})
  assert os.listdir(tmp_path) == []  # Neither the image's folder nor out.
  (tmp_path / "b").mkdir()  # A folder that was there stays, emptied.
  with pytest.raises(KeyboardInterrupt):
    outputs.write_outputs(str(tmp_path / "b"), "b", estimate, CONFIG, {})
  assert os.listdir(tmp_path / "b") == []


def test_unexpected_failures_fail_their_images_only(tmp_path, inputs,
                                                    monkeypatch):
  calls = []
  real_train = pipeline._train

  def train_failing_first(*args):
    calls.append(1)
    if len(calls) == 1:
      raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\ndetails")
    return real_train(*args)

  monkeypatch.setattr(pipeline, "_train", train_failing_first)
  good = [inputs[0], inputs[3]]
  # One image of four seeds a batch: first_run's compiled program.
  rows = pipeline.estimate_files(good, str(tmp_path), CONFIG, batch_size=1,
                                 seeds=(0, 1, 2, 3), strategy="vmap")
  assert [r["status"] for r in rows] == ["error", "ok"]
  assert rows[0]["message"] == "RuntimeError: RESOURCE_EXHAUSTED: out of memory"
  assert "Traceback" in rows[0]["traceback"]
  assert os.listdir(tmp_path) == ["square"]


def test_interrupt_reports_the_images_left_without_outputs(tmp_path, inputs,
                                                           monkeypatch):
  def interrupted(*args):
    raise KeyboardInterrupt

  monkeypatch.setattr(pipeline, "_train", interrupted)
  with pytest.raises(pipeline.Interrupted) as caught:
    pipeline.estimate_files([inputs[0], inputs[3]], str(tmp_path), CONFIG,
                            batch_size=1)
  assert caught.value.unfinished == ["wide", "square"]
  assert os.listdir(tmp_path) == []
