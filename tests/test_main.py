"""The command line end to end, and every bad input it must refuse."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import io as scipy_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "tests", "data", "example_lr.png")


# Runs the command line with a function patched: an unexpected failure
# (as an out-of-memory inside XLA would be) for the images 110 pixels wide.
FAILING = """
import sys
from kernelgan_jax import main, reliability
real_score = reliability.score
def score(image, estimate, **kwargs):
  if image.shape[1] == 110:
    raise RuntimeError("RESOURCE_EXHAUSTED: simulated\\nsecond line")
  return real_score(image, estimate, **kwargs)
reliability.score = score
main.run()
"""


def _run(*args, cwd=ROOT, env=None, script=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
  env["PYTHONPATH"] = os.pathsep.join(  # This checkout, also for a script.
      [ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
  command = ["-c", script] if script else ["-m", "kernelgan_jax.main"]
  return subprocess.run([sys.executable, *command, *args],
                        capture_output=True, text=True, cwd=cwd, env=env,
                        timeout=600)


def _gray_crop(path):
  iio.imwrite(path, iio.imread(EXAMPLE)[:100, :110, 1])
  return str(path)


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
  assert result.stdout == result.stderr == ""  # --quiet: nothing but errors.
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


# Runs the command line with a kernel that --sr narrows (score -0.12) and a
# stand-in for ZSSR.
NARROWED = """
import numpy as np
from kernelgan_jax import main, reliability, zssr
real_score = reliability.score
def score(image, estimate, **kwargs):
  return dict(real_score(image, estimate, **kwargs), unreliable=0.0,
              **{reliability.HEADLINE: -0.12})
reliability.score = score
zssr.super_resolve = lambda image, kernel_x2, **_: np.zeros(
    (2 * image.shape[0], 2 * image.shape[1]) + image.shape[2:])
main.run()
"""


def test_sr_says_when_it_narrowed_the_kernel(tmp_path):
  from kernelgan_jax import reliability  # pylint: disable=g-import-not-at-top
  gray = _gray_crop(tmp_path / "gray.png")
  result = _run(f"--image={gray}", f"--output_dir={tmp_path}", "--iters=3",
                "--sr", script=NARROWED)
  assert result.returncode == 0, result.stderr
  factor = reliability.sr_width_factor(-0.12)
  assert 0.7 < factor < 1
  assert (f"ZSSR with the kernel narrowed to {factor:.2f}x"
          in result.stderr.splitlines())
  log = json.loads((tmp_path / "gray" / "gray_log.json").read_text())
  assert log["sr_kernel"] == "narrowed"


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
          "--batch_size=2")
  first = _run(*args, "--quiet")
  assert first.returncode == 1  # One file failed ...
  assert first.stdout == ""  # ... and --quiet says only that:
  lines = first.stderr.splitlines()
  assert len(lines) == 2, first.stderr
  assert lines[0].startswith("kernelgan_jax: error: cannot read ")
  assert "broken.png" in lines[0]
  assert lines[1] == "kernelgan_jax: error: 1 of 3 images failed"
  for name in ("a", "b"):  # Every other image got its kernel.
    assert (out / name / f"{name}_kernel_x2.mat").exists()
  summary = (out / "summary.csv").read_text().splitlines()
  assert summary[0].startswith("name,path,status,message,seconds,")
  assert [line.split(",")[2] for line in summary[1:]] == ["ok", "ok", "error"]
  assert iio.imread(out / "kernels.png").shape[2] == 3
  (photos / "broken.png").unlink()
  again = _run(*args)
  assert again.returncode == 0, again.stderr
  assert "2 skipped" in again.stdout
  assert f"{out / 'summary.csv'}" in again.stdout


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
  log = json.loads((tmp_path / "select" / "a" / "a_log.json").read_text())
  assert log["estimator"] == "select"
  assert len(log["selected"]) == 1
  assert log["selected"][0] in ("kernelgan", "fkp_lite")


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


def test_version_and_help_grouped_by_purpose():
  version = _run("--version")
  assert version.returncode == 0, version.stderr
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    expected = tomllib.load(f)["project"]["version"]
  assert version.stdout == f"kernelgan_jax {expected}\n"
  shown = _run("--help")
  assert shown.returncode == 0, shown.stderr
  sections = {block.split(":\n")[0]: block
              for block in shown.stdout.split("\n\n")}
  for heading, names in (
      ("Input", ["image", "images", "input_dir"]),
      ("Estimation", ["estimator", "config", "iters", "seeds", "x4"]),
      ("Output", ["output_dir", "overwrite"]),
      ("Super-resolution", ["sr", "sr_config", "sr_iters"]),
      ("Run", ["batch_size", "quiet", "verbose", "version"])):
    for name in names:
      assert f"\n  --{name}" in sections[heading], (heading, name)
  for foreign in ("--jax_", "--logtostderr", "--only_check_args", "--pdb"):
    assert foreign not in shown.stdout  # Those are under --helpfull.


def test_help_shows_every_flag_of_the_command_line():
  # In a fresh process: the benchmarks' flags, imported by other tests,
  # share some names with the command line's.
  code = textwrap.dedent("""
      from absl import flags
      from kernelgan_jax import main
      defined = {f.name for f in flags.FLAGS.get_flags_for_module(main)}
      shown = [h.name for group in main.HELP_GROUPS.values() for h in group]
      print(sorted(shown) == sorted(defined), sorted(defined))
      """)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.stdout.startswith("True "), result.stdout + result.stderr


def test_unexpected_failure_names_the_error_and_the_image(tmp_path):
  gray = _gray_crop(tmp_path / "gray.png")
  out = tmp_path / "out"
  args = ("--iters=3", "--config=configs/smoke.py", f"--output_dir={out}")
  line = (f"kernelgan_jax: error: {gray}: RuntimeError: RESOURCE_EXHAUSTED: "
          "simulated")
  result = _run(f"--image={gray}", *args, "--quiet", script=FAILING)
  assert result.returncode == 1
  assert result.stderr.splitlines() == [line]
  assert not out.exists()
  verbose = _run(f"--image={gray}", *args, "--quiet", "--verbose",
                 script=FAILING)
  assert verbose.returncode == 1
  assert "Traceback (most recent call last)" in verbose.stderr
  assert "second line" in verbose.stderr
  assert verbose.stderr.splitlines()[-1] == line
  photos = tmp_path / "photos"
  photos.mkdir()
  (photos / "a.png").write_bytes(open(EXAMPLE, "rb").read())
  _gray_crop(photos / "gray.png")
  many = _run(f"--images={photos}/*.png", *args, script=FAILING)
  assert many.returncode == 1  # The other image goes on.
  row = next(r for r in many.stdout.splitlines() if r.startswith("gray "))
  assert "error" in row and "RuntimeError: RESOURCE_EXHAUSTED" in row
  assert "1 estimated, 0 skipped (done), 1 failed" in many.stdout
  assert (out / "a" / "a_kernel_x2.mat").exists()
  assert not (out / "gray").exists()


def test_sr_refuses_an_image_too_large_for_the_memory(tmp_path):
  out = tmp_path / "out"
  little = {"KERNELGAN_JAX_MEMORY_LIMIT_BYTES": str(2**20)}
  args = (f"--output_dir={out}", "--sr", "--sr_config=fast", "--iters=3",
          "--sr_iters=2")
  result = _run(f"--image={EXAMPLE}", *args, env=little)
  assert result.returncode == 1
  lines = result.stderr.splitlines()  # One line: no training started.
  assert len(lines) == 1, result.stderr
  assert "ZSSR x2 of this 192x192 image needs about" in lines[0]
  assert "0.0 GiB is free" in lines[0] and "smaller" in lines[0]
  photos = tmp_path / "photos"
  photos.mkdir()
  (photos / "a.png").write_bytes(open(EXAMPLE, "rb").read())
  _gray_crop(photos / "gray.png")
  many = _run(f"--images={photos}/*.png", *args, "--x4", env=little)
  assert many.returncode == 1
  assert "0 estimated, 0 skipped (done), 2 failed" in many.stdout
  assert many.stdout.count("needs about") == 2
  assert not out.exists()  # Nothing written.


def test_ctrl_c_leaves_no_partial_folder(tmp_path):
  out = tmp_path / "out"
  # PYTHONFAULTHANDLER: a process that does not stop dumps every thread's
  # stack on SIGABRT, and the failure shows where it hung.
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
             PYTHONFAULTHANDLER="1")
  process = subprocess.Popen(
      [sys.executable, "-m", "kernelgan_jax.main", f"--image={EXAMPLE}",
       f"--output_dir={out}", f"--iters={10**6}"], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      # As a terminal's Ctrl-C finds it even where this test runs with
      # SIGINT ignored (a background job), which the child would inherit.
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  try:
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # Until training reports progress.
      line = process.stderr.readline()
      lines.append(line)
      if not line or " it/s " in line:
        break
    assert " it/s " in lines[-1], "".join(lines)
    process.send_signal(signal.SIGINT)
    try:
      _, rest = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
      process.send_signal(signal.SIGABRT)
      pytest.fail("no exit 120 s after Ctrl-C; its threads:\n"
                  + process.communicate(timeout=60)[1][-6000:])
  finally:
    process.kill()
  assert process.returncode == 130, rest
  assert rest.splitlines()[-1] == (
      "kernelgan_jax: interrupted; nothing written for example_lr")
  assert not out.exists() or os.listdir(out) == []


def test_accelerator_extras_name_jax_builds():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  for extra in ("cuda12", "cuda13", "tpu"):
    assert [r.split(">=")[0] for r in extras[extra]] == [f"jax[{extra}]"]
