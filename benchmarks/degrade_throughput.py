r"""Throughput of `python -m kernelgan_jax.degrade` at DIV2K size.

  python -m benchmarks.degrade_throughput [--images=8] [--runs=3] \
      [--scale=2] [--noise_sigma=0] [--batch_sizes=1,4] [--stem_suffix=]

Makes `--images` synthetic HR PNGs of 2040x1356 (scikit-image's astronaut,
tiled and cropped, each flipped/rolled differently), a pool of DIV2KRK-style
x2 kernels, then, per batch size, runs `degrade.degrade_folder` (read, blur
and subsample under jit, noise, quantise, atomic PNG write, manifest) into
a fresh folder: once to warm up (compiling for the canvas), then `--runs`
timed runs. Reports the median images per second, the median time per
image of the jitted blur alone (`degrade.downscale_batch` on a batch of
that size), and of reading one HR image. Writes
benchmarks/results/degrade-<device>-<date><stem_suffix>.{json,md}.
"""

import os
import statistics
import tempfile
import time
from typing import Sequence

from absl import app
from absl import flags
import imageio.v3 as iio
import numpy as np

from benchmarks import machine
from kernelgan_jax import degrade
from kernelgan_jax import div2krk
from kernelgan_jax import images
from kernelgan_jax import pool as pool_lib

_IMAGES = flags.DEFINE_integer("images", 8, "HR images per run.")
_RUNS = flags.DEFINE_integer("runs", 3, "Timed runs after the warm-up.")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_NOTE = flags.DEFINE_string("note", "", "A line for the report.")
_SCALE = flags.DEFINE_enum("scale", "2", ["2", "4"], "As degrade's --scale.")
_NOISE_SIGMA = flags.DEFINE_float("noise_sigma", 0.0,
                                  "As degrade's --noise_sigma.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "4"],
                                 "degrade's --batch_size values to time.")
_STEM_SUFFIX = flags.DEFINE_string(
    "stem_suffix", "", "Appended to the results' file name (e.g. b, for a "
    "second measurement on one day).")

HEIGHT, WIDTH = 1356, 2040


def hr_image(index: int) -> np.ndarray:
  from skimage import data  # pylint: disable=g-import-not-at-top
  tile = data.astronaut()
  tiled = np.tile(tile, (HEIGHT // tile.shape[0] + 1,
                         WIDTH // tile.shape[1] + 1, 1))[:HEIGHT, :WIDTH]
  tiled = np.roll(tiled, 97 * index, axis=1)
  return tiled[:, ::-1] if index % 2 else tiled


def main(argv: Sequence[str]) -> None:
  del argv
  scale, noise_sigma = int(_SCALE.value), _NOISE_SIGMA.value
  rng = np.random.default_rng(0)
  kernels = [div2krk.random_kernel_x2(rng) for _ in range(16)]
  pool = {"names": np.array([str(i) for i in range(16)]),
          "kernels_x2": pool_lib.on_canvas(kernels, 2),
          "has_x4": np.ones(16, bool)}
  pool["kernels_x4"] = pool_lib.on_canvas(
      [div2krk.random_kernel_x2(rng, 33) for _ in range(16)], 4)
  kernel = pool["kernels_x2" if scale == 2 else "kernels_x4"][0]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    hr_dir = os.path.join(tmp, "hr")
    os.makedirs(hr_dir)
    for i in range(_IMAGES.value):
      iio.imwrite(os.path.join(hr_dir, f"hr{i:02d}.png"), hr_image(i))
    paths = degrade.hr_files(hr_dir)
    read_seconds = []
    for run in range(_RUNS.value + 1):
      start = time.perf_counter()
      image = images.read_image(paths[0]).astype(np.float32)
      if run:
        read_seconds.append(time.perf_counter() - start)
    for batch_size in map(int, _BATCH_SIZES.value):
      seconds, blur_seconds = [], []
      load_average = os.getloadavg()
      for run in range(_RUNS.value + 1):
        start = time.perf_counter()
        counts = degrade.degrade_folder(
            paths, pool, scale, os.path.join(tmp, f"lr{batch_size}-{run}"),
            seed=run, noise_sigma=noise_sigma, batch_size=batch_size)
        elapsed = time.perf_counter() - start
        assert counts["written"] == len(paths), counts
        if run:
          seconds.append(elapsed)
      for run in range(_RUNS.value + 1):
        start = time.perf_counter()
        degrade.downscale_batch([image] * batch_size, [kernel] * batch_size,
                                scale)
        if run:
          blur_seconds.append((time.perf_counter() - start) / batch_size)
      median = statistics.median(seconds)
      rows.append({
          "images": len(paths), "height": HEIGHT, "width": WIDTH,
          "scale": scale, "kernel_size": int(kernel.shape[0]),
          "noise_sigma": noise_sigma, "batch_size": batch_size,
          "run_seconds": seconds, "median_seconds": median,
          "images_per_second": len(paths) / median,
          "blur_seconds_per_image": blur_seconds,
          "median_blur_seconds_per_image": statistics.median(blur_seconds),
          "load_average_before": load_average})
  meta = machine.describe()
  row = rows[0]
  table = "\n".join([
      f"# degrade throughput, {meta['device']}, {meta['date']}",
      "",
      f"Machine: {meta['processor']}, {meta['cores']} cores, "
      f"{meta['device_kind']}; Python {meta['python']}, JAX {meta['jax']}.",
      *([_NOTE.value] if _NOTE.value else []),
      "",
      f"`degrade.degrade_folder` on {len(paths)} synthetic {WIDTH}x{HEIGHT} "
      f"RGB PNGs (tiled `skimage.data.astronaut()`), x{scale}, "
      f"{row['kernel_size']}x{row['kernel_size']} kernels, noise "
      f"{noise_sigma} levels: read, blur and subsample "
      "(`degrade.downscale_batch`: `degradation.downscale` under jit and "
      "vmap, float32), noise, quantise, atomic PNG write, manifest line. "
      "Per batch size one warm-up run (compiles for the canvas), then "
      f"{len(row['run_seconds'])} timed runs; median. The blur alone: "
      "`degrade.downscale_batch` on a batch of that size, per image. "
      "Reading one HR PNG alone (`images.read_image`, then float32): "
      f"{statistics.median(read_seconds):.3f} s (median).",
      "",
      "| batch size | images per second | seconds per image | "
      "jitted blur alone, s per image | load average before (1, 5, 15 min) |",
      "|---|---|---|---|---|",
      *(f"| {r['batch_size']} | {r['images_per_second']:.2f} | "
        f"{r['median_seconds'] / len(paths):.2f} | "
        f"{r['median_blur_seconds_per_image']:.3f} | "
        + ", ".join(f"{x:.1f}" for x in r["load_average_before"]) + " |"
        for r in rows),
      "",
      *(f"Batch size {r['batch_size']}: runs (s) "
        + ", ".join(f"{s:.2f}" for s in r["run_seconds"]) + "; blur (s per "
        "image) " + ", ".join(f"{s:.3f}" for s in r["blur_seconds_per_image"])
        + "." for r in rows),
      ""])
  for r in rows:
    r["read_seconds"] = read_seconds
  machine.save_results(
      _RESULTS.value,
      f"degrade-{meta['device']}-{meta['date']}{_STEM_SUFFIX.value}", meta,
      rows, table)


if __name__ == "__main__":
  app.run(main)
