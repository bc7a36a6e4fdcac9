"""Several processes (jax.distributed on CPU): shares, barrier, summary."""

import csv
import json
import os
import socket
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["a", "b", "c", "d"]
TIMEOUT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(
      [ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
  return env


def _run_processes(pattern, out, count=2):
  """Runs `count` processes of the command line; their (rc, out, err)."""
  port = _free_port()
  command = [sys.executable, "-m", "kernelgan_jax.main",
             f"--images={pattern}", f"--output_dir={out}", "--iters=3",
             "--config=smoke", "--quiet", "--compile_cache=",
             # ZSSR too: it once asked a device of another process.
             "--sr", "--sr_config=fast", "--sr_iters=2",
             f"--coordinator_address=127.0.0.1:{port}",
             f"--num_processes={count}"]
  processes = [subprocess.Popen(command + [f"--process_id={i}"], cwd=ROOT,
                                env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
               for i in range(count)]
  try:
    results = []
    for process in processes:
      stdout, stderr = process.communicate(timeout=TIMEOUT_S)
      results.append((process.returncode, stdout, stderr))
    return results
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.communicate()


def _summary(out):
  with open(os.path.join(out, "summary.csv")) as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  """Four images estimated by two processes, then the same run again."""
  root = tmp_path_factory.mktemp("hosts")
  folder = root / "images"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for name in NAMES:
    image = np.kron(rng.random((24, 25, 3)), np.ones((4, 4, 1)))
    iio.imwrite(folder / f"{name}.png", (image * 255).astype(np.uint8))
  out = str(root / "out")
  pattern = str(folder / "*.png")
  first = _run_processes(pattern, out)
  first_summary = _summary(out) if os.path.exists(
      os.path.join(out, "summary.csv")) else None
  logs = {n: os.path.join(out, n, f"{n}_log.json") for n in NAMES}
  stamps = {n: os.stat(p).st_mtime_ns for n, p in logs.items()
            if os.path.exists(p)}
  second = _run_processes(pattern, out)
  return out, first, first_summary, stamps, second


def test_each_process_writes_its_share_once(two_processes):
  out, first, _, _, _ = two_processes
  for rc, stdout, stderr in first:
    assert rc == 0, stderr[-3000:]
    assert stdout == ""  # --quiet.
  assert sorted(e for e in os.listdir(out) if not e.startswith(".")) == [
      *NAMES, "kernels.png", "summary.csv"]
  by_process = {}
  for name in NAMES:
    files = sorted(os.listdir(os.path.join(out, name)))
    assert files == sorted([f"{name}_kernel_x2.mat", f"{name}_kernel_x2.npy",
                            f"{name}_kernels.png", f"{name}_log.json",
                            f"ZSSR_{name}.png"])
    with open(os.path.join(out, name, f"{name}_log.json")) as f:
      log = json.load(f)
    by_process.setdefault(log["process"], []).append(name)
  # Disjoint shares that cover every image: every n-th, in input order.
  assert by_process == {0: ["a", "c"], 1: ["b", "d"]}


def test_process_0_summarises_every_image_once(two_processes):
  out, _, summary, _, _ = two_processes
  assert [r["name"] for r in summary] == NAMES
  assert [r["status"] for r in summary] == ["ok"] * 4
  assert [r["message"] for r in summary][1::2] == [
      "estimated by process 1"] * 2
  for row in summary:  # Numbers and files also for the other's images.
    assert float(row["seconds"]) > 0
    assert row["kernel_size"] and row["sigma_major"] and row["reliability"]
    assert row["log"] == os.path.join(row["name"], f"{row['name']}_log.json")
  assert iio.imread(os.path.join(out, "kernels.png")).ndim == 3


def test_a_restart_skips_every_finished_image(two_processes):
  out, _, _, stamps, second = two_processes
  for rc, _, stderr in second:
    assert rc == 0, stderr[-3000:]
  assert {n: os.stat(os.path.join(out, n, f"{n}_log.json")).st_mtime_ns
          for n in NAMES} == stamps
  assert [r["status"] for r in _summary(out)] == ["skipped"] * 4


def test_one_image_with_several_processes_is_refused(tmp_path):
  image = tmp_path / "x.png"
  iio.imwrite(image, np.zeros((8, 8, 3), np.uint8))
  done = subprocess.run(
      [sys.executable, "-m", "kernelgan_jax.main", f"--image={image}",
       "--num_processes=2", "--process_id=0",
       f"--output_dir={tmp_path / 'out'}"],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      "kernelgan_jax: error: --image runs in one process; give --images or "
      "--input_dir to share images between processes"]
