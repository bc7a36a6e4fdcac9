"""The command line end to end, and every bad input it must refuse."""

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
from scipy import io as scipy_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "tests", "data", "example_lr.png")


def _run(*args, cwd=ROOT):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "kernelgan_jax.main", *args],
                        capture_output=True, text=True, cwd=cwd, env=env,
                        timeout=600)


def test_end_to_end_writes_every_output(tmp_path):
  result = _run(f"--image={EXAMPLE}", f"--output_dir={tmp_path}", "--x4",
                "--iters=12", "--config=configs/smoke.py")
  assert result.returncode == 0, result.stderr
  folder = tmp_path / "example_lr"
  k2 = scipy_io.loadmat(folder / "example_lr_kernel_x2.mat")["Kernel"]
  assert k2.shape[0] % 2 == 1 and k2.shape[0] >= 15
  np.testing.assert_allclose(np.load(folder / "example_lr_kernel_x2.npy"),
                             k2)
  k4 = np.load(folder / "example_lr_kernel_x4.npy")
  assert k4.shape == (2 * k2.shape[0] - 1,) * 2
  assert iio.imread(folder / "example_lr_kernels.png").ndim == 3
  log = json.loads((folder / "example_lr_log.json").read_text())
  assert log["config"]["max_iters"] == 12 and log["seed"] == 0
  assert len(log["history"]["loss_bicubic"]) == 12
  assert "12/12" in result.stderr  # The progress indication.
  assert sorted(os.listdir(folder)) == sorted([  # Nothing else left over.
      "example_lr_kernel_x2.mat", "example_lr_kernel_x2.npy",
      "example_lr_kernel_x4.mat", "example_lr_kernel_x4.npy",
      "example_lr_kernels.png", "example_lr_log.json"])
  assert sorted(os.listdir(tmp_path)) == ["example_lr"]  # No manifest.
  again = _run(f"--image={EXAMPLE}", f"--output_dir={tmp_path}", "--iters=1")
  assert again.returncode == 1
  assert "--overwrite" in again.stderr


def test_flags_override_only_what_they_are_given(tmp_path):
  config_file = tmp_path / "mine.py"
  config_file.write_text(
      "from kernelgan_jax import config\n"
      "def get_config():\n"
      "  return config.get_config('smoke').replace(max_iters=5, x4=True,"
      " g_lr=1e-4)\n")
  result = _run(f"--image={EXAMPLE}", f"--output_dir={tmp_path}",
                f"--config={config_file}", "--quiet")
  assert result.returncode == 0, result.stderr
  log = json.loads((tmp_path / "example_lr" /
                    "example_lr_log.json").read_text())
  assert log["config"]["x4"] and log["config"]["max_iters"] == 5
  assert log["config"]["g_lr"] == 1e-4 and not log["config"]["real_image"]
  assert (tmp_path / "example_lr" / "example_lr_kernel_x4.npy").exists()
  again = _run(f"--image={EXAMPLE}", f"--output_dir={tmp_path}/b",
               f"--config={config_file}", "--nox4", "--iters=4", "--quiet")
  assert again.returncode == 0, again.stderr
  log = json.loads((tmp_path / "b" / "example_lr" /
                    "example_lr_log.json").read_text())
  assert not log["config"]["x4"] and log["config"]["max_iters"] == 4
  assert log["config"]["g_lr"] == 1e-4


def test_sr_writes_the_super_resolved_image(tmp_path):
  gray = tmp_path / "gray.png"
  iio.imwrite(gray, (iio.imread(EXAMPLE)[:100, :110, 1]))
  result = _run(f"--image={gray}", f"--output_dir={tmp_path}", "--iters=3",
                "--sr", "--sr_config=fast", "--sr_iters=3", "--quiet")
  assert result.returncode == 0, result.stderr
  sr = iio.imread(tmp_path / "gray" / "ZSSR_gray.png")
  assert sr.shape == (200, 220)  # Gray in, gray out, x2.


def test_sr_and_seeds_for_many_images(tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  iio.imwrite(photos / "gray.png", iio.imread(EXAMPLE)[:100, :110, 1])
  iio.imwrite(photos / "rgb.png", iio.imread(EXAMPLE)[:90, :96])
  result = _run(f"--images={photos}/*.png", f"--output_dir={tmp_path}/out",
                "--iters=3", "--seeds=2", "--sr", "--sr_config=fast",
                "--sr_iters=2", "--quiet")
  assert result.returncode == 0, result.stderr
  for name, shape in (("gray", (200, 220)), ("rgb", (180, 192, 3))):
    folder = tmp_path / "out" / name
    assert iio.imread(folder / f"ZSSR_{name}.png").shape == shape
    log = json.loads((folder / f"{name}_log.json").read_text())
    assert log["ensemble_seeds"] == [0, 1] and log["seconds_sr"] > 0


def test_many_images_skip_bad_files_and_finished_ones(tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  for name in ("a", "b"):
    (photos / f"{name}.png").write_bytes(open(EXAMPLE, "rb").read())
  (photos / "broken.png").write_text("not an image")
  out = tmp_path / "out"
  args = (f"--images={photos}/*.png", f"--output_dir={out}", "--iters=3",
          "--batch_size=2", "--quiet")
  first = _run(*args)
  assert first.returncode == 1  # One file failed ...
  assert "broken" in first.stdout and "1 failed" in first.stdout
  for name in ("a", "b"):  # ... every other image got its kernel.
    assert (out / name / f"{name}_kernel_x2.mat").exists()
  assert f"{out / 'summary.csv'}" in first.stdout
  summary = (out / "summary.csv").read_text().splitlines()
  assert summary[0].startswith("name,path,status,message,seconds,")
  assert [line.split(",")[2] for line in summary[1:]] == ["ok", "ok", "error"]
  assert iio.imread(out / "kernels.png").shape[2] == 3
  (photos / "broken.png").unlink()
  again = _run(*args)
  assert again.returncode == 0, again.stderr
  assert "2 skipped" in again.stdout


def test_fkp_estimators_write_the_same_outputs(tmp_path):
  """KernelGAN-FKP over a folder, and the prior generator for one image."""
  photos = tmp_path / "photos"
  photos.mkdir()
  (photos / "a.png").write_bytes(open(EXAMPLE, "rb").read())
  result = _run(f"--input_dir={photos}", f"--output_dir={tmp_path}/fkp",
                "--estimator=fkp", "--iters=2", "--x4", "--quiet")
  assert result.returncode == 0, result.stderr
  log = json.loads((tmp_path / "fkp" / "a" / "a_log.json").read_text())
  assert log["estimator"] == "fkp" and log["config"]["iters_x4"] == 2
  assert len(log["history"]["gradient_penalty"]) == 2
  assert np.load(tmp_path / "fkp" / "a" / "a_kernel_x4.npy").ndim == 2
  result = _run(f"--image={EXAMPLE}", f"--output_dir={tmp_path}/lite",
                "--estimator=fkp_lite", "--iters=3", "--quiet")
  assert result.returncode == 0, result.stderr
  log = json.loads(
      (tmp_path / "lite" / "example_lr" / "example_lr_log.json").read_text())
  assert log["estimator"] == "fkp_lite"
  assert log["config"]["generator"] == "prior"
  k2 = np.load(tmp_path / "lite" / "example_lr" / "example_lr_kernel_x2.npy")
  assert abs(k2.sum() - 1) < 1e-4
  result = _run(f"--input_dir={photos}", f"--output_dir={tmp_path}/select",
                "--estimator=select", "--iters=3", "--quiet")
  assert result.returncode == 0, result.stderr
  chosen = np.load(tmp_path / "select" / "a" / "a_kernel_x2.npy")
  assert abs(chosen.sum() - 1) < 1e-4
  assert json.loads((tmp_path / "select" / "a" /
                     "a_log.json").read_text())["estimator"] == "select"


def _bad_inputs(tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("not an image at all")
  truncated = tmp_path / "truncated.png"
  truncated.write_bytes(open(EXAMPLE, "rb").read()[:3000])
  small = tmp_path / "small.png"
  iio.imwrite(small, np.zeros((80, 200, 3), np.uint8))
  flat = tmp_path / "flat.png"
  iio.imwrite(flat, np.full((120, 120), 77, np.uint8))
  return [
      (["--image=/no/such/file.png"], "no such file"),
      ([f"--image={tmp_path}"], "is a directory"),
      ([f"--image={text}"], "cannot read"),
      ([f"--image={truncated}"], "cannot read"),
      ([f"--image={small}"], "needs at least 84x84"),
      ([f"--image={flat}"], "constant"),
      ([f"--image={EXAMPLE}", "--iters=0"], "--iters"),
      ([f"--image={EXAMPLE}", "--seed=-3"], "--seed"),
      ([f"--image={EXAMPLE}", "--config=nope"], "unknown config"),
      ([f"--image={EXAMPLE}", "--x4=maybe"], "--x4"),
      ([f"--image={EXAMPLE}", "--sr_config=slow"], "--sr_config"),
      ([], "--image"),
      ([f"--image={EXAMPLE}", f"--input_dir={tmp_path}"], "exactly one"),
      ([f"--input_dir={tmp_path}/none"], "is not a folder"),
      ([f"--images={tmp_path}/*.tif"], "matches no file"),
      ([f"--image={EXAMPLE}", "--estimator=fkq"], "--estimator"),
      ([f"--image={EXAMPLE}", "--estimator=fkp_lite", "--prior=/no.npz"],
       "no such file"),
      ([f"--image={EXAMPLE}", "--estimator=fkp_lite", f"--prior={text}",
        "--iters=2"], "cannot read the kernel prior"),
  ]


def test_bad_inputs_fail_with_one_clear_line(tmp_path):
  out = tmp_path / "out"
  for args, message in _bad_inputs(tmp_path):
    result = _run(*args, f"--output_dir={out}")
    assert result.returncode != 0, args
    assert message in result.stderr, (args, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, (args,
                                                           result.stderr)
  assert not out.exists()  # Nothing written by any failed run.


def test_an_exif_rotated_photo_is_estimated_as_shown(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  photo = tmp_path / "phone.jpg"
  exif = Image.Exif()
  exif[0x0112] = 6  # Stored 100x120, shown 120x100.
  Image.fromarray(iio.imread(EXAMPLE)[:100, :120]).save(photo, exif=exif,
                                                        quality=95)
  result = _run(f"--image={photo}", f"--output_dir={tmp_path}", "--iters=3",
                "--config=smoke", "--sr", "--sr_config=fast", "--sr_iters=2",
                "--quiet")
  assert result.returncode == 0, result.stderr
  log = json.loads((tmp_path / "phone" / "phone_log.json").read_text())
  assert log["exif_orientation"] == 6
  assert log["orientation_applied"] == "rotate 90 CW"
  assert iio.imread(tmp_path / "phone" / "ZSSR_phone.png").shape == (240, 200,
                                                                     3)


def test_a_float_tiff_in_0_255_is_refused(tmp_path):
  tiff = tmp_path / "scan.tif"
  pixels = iio.imread(EXAMPLE)[:100, :120].astype(np.float32)
  iio.imwrite(tiff, pixels)
  result = _run(f"--image={tiff}", f"--output_dir={tmp_path}/out",
                "--iters=3", "--config=smoke", "--quiet")
  assert result.returncode == 1
  assert result.stderr.startswith("kernelgan_jax: error: ")
  assert f"values in [{pixels.min():g}, {pixels.max():g}]" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not (tmp_path / "out").exists()
