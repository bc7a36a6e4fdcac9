"""Files to output folders: per-image outputs as the CLI writes them, bad files
skipped and reported, restarts skip finished images."""

import csv
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
  assert sorted(os.listdir(out)) == ["kernels.png", "square", "summary.csv",
                                     "wide"]
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


def _summary(out):
  with open(os.path.join(out, "summary.csv"), newline="") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def test_summary_has_a_row_per_input_and_a_contact_sheet(first_run, inputs):
  out, rows = first_run
  columns, records = _summary(out)
  assert columns == [
      "name", "path", "status", "message", "seconds", "kernel_size",
      "sigma_major", "sigma_minor", "angle_deg", "reliability", "unreliable",
      "kernel_x2_mat", "kernel_x2_npy", "kernel_x4_mat", "kernel_x4_npy",
      "picture", "log", "sr_image", "sr_kernel", "sr_kernel_width"]
  assert [(r["name"], r["path"], r["status"]) for r in records] == [
      (r["name"], path, r["status"]) for r, path in zip(rows, inputs)]
  broken = records[1]
  assert "cannot read" in broken["message"] and broken["kernel_size"] == ""
  assert broken["kernel_x2_mat"] == ""
  for record, row in zip(records, rows):
    if row["status"] != "ok":
      continue
    name = record["name"]
    kernel = np.load(os.path.join(out, record["kernel_x2_npy"]))
    assert int(record["kernel_size"]) == kernel.shape[0]
    assert float(record["sigma_major"]) >= float(record["sigma_minor"]) > 0
    assert 0 <= float(record["angle_deg"]) < 180
    assert float(record["reliability"]) == pytest.approx(row["reliability"],
                                                         abs=1e-4)
    assert float(record["seconds"]) == pytest.approx(row["seconds"], abs=1e-3)
    assert record["unreliable"] in ("true", "false")
    assert record["kernel_x2_mat"] == os.path.join(name,
                                                   f"{name}_kernel_x2.mat")
    assert record["picture"] == os.path.join(name, f"{name}_kernels.png")
    assert record["kernel_x4_npy"] == record["sr_image"] == ""
    assert record["sr_kernel"] == record["sr_kernel_width"] == ""
    # The picture is labelled: taller than the bare 12x enlarged kernel.
    picture = iio.imread(os.path.join(out, record["picture"]))
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert picture.shape[0] > 12 * kernel.shape[0] + 60
  sheet = iio.imread(os.path.join(out, "kernels.png"))
  assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
  assert not [f for f in os.listdir(out) if f.startswith(".")]


def test_restart_skips_finished_images_and_refuses_partial_ones(
    first_run, inputs):
  out, _ = first_run
  _, before = _summary(out)
  os.remove(os.path.join(out, "square", "square_kernels.png"))
  rows = pipeline.estimate_files(inputs, out, CONFIG, batch_size=2,
                                seeds=SEEDS)
  statuses = {r["name"]: r["status"] for r in rows}
  assert statuses == {"wide": "skipped", "broken": "error",
                      "tiny": "error", "square": "error"}
  assert "--overwrite" in rows[3]["message"]
  # The manifest is complete again: a skipped image's numbers and files
  # come from its folder; only this run's seconds are blank.
  _, after = _summary(out)
  assert [r["status"] for r in after] == [r["status"] for r in rows]
  assert {**before[0], "status": "skipped", "message": "outputs exist",
          "seconds": ""} == after[0]
  assert after[3]["kernel_size"] == after[3]["picture"] == ""


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
  assert sorted(os.listdir(tmp_path)) == ["kernels.png", "square",
                                          "summary.csv"]


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


@pytest.mark.parametrize("headline,fallback,narrow,how", [
    (0.0, True, True, "bicubic"),
    (0.0, False, False, "estimate"),
    (-0.12, True, True, "narrowed"),
    (-0.3, True, True, "estimate"),
])
def test_sr_falls_back_to_the_bicubic_kernel_or_narrows_the_kernel(
    inputs, tmp_path, monkeypatch, headline, fallback, narrow, how):
  from kernelgan_jax import reliability  # pylint: disable=g-import-not-at-top
  from kernelgan_jax import zssr  # pylint: disable=g-import-not-at-top
  score = reliability.score
  monkeypatch.setattr(reliability, "score", lambda *args, **kwargs: dict(
      score(*args, **kwargs), unreliable=float(
          headline > reliability.WARN_ABOVE),
      **{reliability.HEADLINE: headline}))
  kernels = []
  def super_resolve(image, kernel_x2, **kwargs):
    kernels.append((kernel_x2, kwargs["kernel_x4"]))
    return np.zeros((2 * image.shape[0], 2 * image.shape[1], 3))
  monkeypatch.setattr(zssr, "super_resolve", super_resolve)
  rows = pipeline.estimate_files(
      [inputs[3]], str(tmp_path), CONFIG, sr=pipeline.SuperResolution(
          zssr.fast_cpu_config(), fallback=fallback, narrow=narrow))
  assert rows[0]["status"] == "ok"
  folder = tmp_path / "square"
  log = json.loads((folder / "square_log.json").read_text())
  estimate = np.load(folder / "square_kernel_x2.npy")
  assert log["sr_kernel"] == how
  _, (record,) = _summary(str(tmp_path))
  assert record["sr_kernel"] == how
  assert record["sr_kernel_width"] == str(log.get("sr_kernel_width", ""))
  if how == "bicubic":
    assert kernels == [(None, None)]
    assert "ZSSR used the bicubic kernel" in rows[0]["warning"]
  elif how == "estimate":
    np.testing.assert_array_equal(kernels[0][0], estimate)
    assert "sr_kernel_width" not in log
    assert "ZSSR" not in rows[0].get("warning", "") + rows[0]["message"]
  else:
    factor = reliability.sr_width_factor(headline)
    assert log["sr_kernel_width"] == round(factor, 3)
    assert rows[0]["message"] == (
        f"ZSSR with the kernel narrowed to {factor:.2f}x")
    np.testing.assert_allclose(
        kernels[0][0], reliability.stretch_kernel(estimate, factor),
        atol=1e-6)
    assert "warning" not in rows[0]
  assert os.path.exists(folder / "ZSSR_square.png")


def test_sr_at_x4_narrows_both_kernels(inputs, tmp_path, monkeypatch):
  from kernelgan_jax import kernel as kernel_lib  # pylint: disable=g-import-not-at-top
  from kernelgan_jax import reliability  # pylint: disable=g-import-not-at-top
  from kernelgan_jax import zssr  # pylint: disable=g-import-not-at-top
  score = reliability.score
  monkeypatch.setattr(reliability, "score", lambda *args, **kwargs: dict(
      score(*args, **kwargs), unreliable=0.0,
      **{reliability.HEADLINE: -0.12}))
  kernels = []
  def super_resolve(image, kernel_x2, **kwargs):
    kernels.append((kernel_x2, kwargs["kernel_x4"]))
    return np.zeros((4 * image.shape[0], 4 * image.shape[1], 3))
  monkeypatch.setattr(zssr, "super_resolve", super_resolve)
  config = config_lib.get_config(max_iters=6, x4=True)
  rows = pipeline.estimate_files(
      [inputs[3]], str(tmp_path), config,
      sr=pipeline.SuperResolution(zssr.fast_cpu_config()), summary=False)
  assert rows[0]["status"] == "ok"
  estimate = np.load(tmp_path / "square" / "square_kernel_x2.npy")
  [(kernel_x2, kernel_x4)] = kernels
  np.testing.assert_allclose(kernel_x2, reliability.stretch_kernel(
      estimate, reliability.sr_width_factor(-0.12)), atol=1e-6)
  np.testing.assert_allclose(kernel_x4,
                             kernel_lib.analytic_kernel_x4(kernel_x2))


def test_the_host_work_runs_numpy_blas_on_one_thread(inputs, tmp_path,
                                                     monkeypatch):
  import threadpoolctl  # pylint: disable=g-import-not-at-top
  from kernelgan_jax import reliability  # pylint: disable=g-import-not-at-top
  score, seen = reliability.score, []
  def recording_score(image, estimate, **kwargs):
    seen.append({info["num_threads"] for info in
                 threadpoolctl.threadpool_info()
                 if info["user_api"] == "blas"})
    return score(image, estimate, **kwargs)
  monkeypatch.setattr(reliability, "score", recording_score)
  before = threadpoolctl.threadpool_info()
  rows = pipeline.estimate_files([inputs[0], inputs[3]], str(tmp_path),
                                 CONFIG, summary=False)
  assert [r["status"] for r in rows] == ["ok", "ok"] and len(seen) == 2
  assert set().union(*seen) <= {1}  # Every BLAS found (none: no limit).
  assert threadpoolctl.threadpool_info() == before  # Restored.


SR_SIDE_BY_SIDE = """
import json, sys, threading
import jax
import numpy as np
from kernelgan_jax import config as config_lib, pipeline, zssr
assert len(jax.local_devices()) == {devices}, jax.local_devices()
both_running = threading.Barrier(2, timeout=120)
devices, resolve = [], zssr.super_resolve
def super_resolve(image, *args, **kwargs):
  devices.append(jax.config.jax_default_device)
  if {devices} == 2 and len(devices) <= 2:
    both_running.wait()  # Fails unless the two runs overlap.
  return resolve(image, *args, **kwargs)
zssr.super_resolve = super_resolve
reports = []
sr = pipeline.SuperResolution(
    zssr.ZSSRConfig(width=8, depth=3, crop_size=16, max_iters=6,
                    lr_check_every=3),
    progress=lambda: lambda done, total, _: reports.append((done, total)))
rows = pipeline.estimate_files({paths!r}, {out!r},
                               config_lib.get_config(max_iters=6), sr=sr,
                               summary=False)
assert [r["status"] for r in rows] == ["ok", "ok"], rows
print(json.dumps([str(d) for d in devices]))
print(json.dumps(reports[-1]))
"""


def test_a_batchs_zssr_runs_train_side_by_side_on_cpu_devices(inputs,
                                                              tmp_path):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  used, reports = {}, {}
  for devices in (1, 2):
    script = SR_SIDE_BY_SIDE.format(devices=devices,
                                    out=str(tmp_path / str(devices)),
                                    paths=[inputs[0], inputs[3]])
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
        f"--xla_force_host_platform_device_count={devices}"))
    lines = subprocess.run([sys.executable, "-c", script], env=env,
                           check=True, capture_output=True,
                           text=True).stdout.splitlines()
    used[devices], reports[devices] = map(json.loads, lines[-2:])
  assert used[1] == ["None", "None"]  # One after the other, as before.
  assert sorted(used[2]) == ["cpu:0", "cpu:1"]  # At once, a device each.
  assert reports[2] == [12, 12]  # The two runs' iterations, summed.
  for name in ("wide", "square"):  # The same pixels either way.
    np.testing.assert_array_equal(
        iio.imread(tmp_path / "2" / name / f"ZSSR_{name}.png"),
        iio.imread(tmp_path / "1" / name / f"ZSSR_{name}.png"))


def test_ctrl_c_stops_the_other_side_by_side_zssr_runs(monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.local_devices()[0]
  monkeypatch.setattr(jax, "local_devices", lambda: [device, device])
  ends = {}
  def interrupted(row, _, image, sr):
    raise KeyboardInterrupt  # As Ctrl-C during this image's ZSSR.
  def long_run(row, _, image, sr):
    report = sr.progress()
    for done in range(10**7):
      report(done, 10**7, {})
    ends[row["name"]] = "finished"
  image = np.zeros((8, 8, 3))
  sr = pipeline.SuperResolution(config=None)
  calls = [([row], None, function, row, None, image, sr)
           for row, function in (({"name": "a"}, interrupted),
                                 ({"name": "b"}, long_run))]
  with pytest.raises(KeyboardInterrupt):
    pipeline._write_side_by_side(calls, sr, x4=False)  # pylint: disable=protected-access
  assert ends == {}  # b stopped at a progress report, wrote nothing.
