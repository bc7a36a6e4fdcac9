r"""The host's work per image of a folder, outside training.

  python -m benchmarks.host_work --image_dir=/tmp/folder_scale/LR \
      --num_images=4 --repeats=3 [--threads=1,2] [--tag=...]

A folder run (`pipeline.estimate_files`) reads every image, prepares it
(crop probability maps, crop corners: `batch.prepare_jobs`) and, once its
kernel is estimated, scores its reliability (`reliability.score`) in a pool
of threads. On a GPU, where a batch of 100 DIV2KRK-size images trains in
seconds, this work is most of a warm run's time. Times each stage
in-process, one image at a time, `--repeats` passes over `--num_images`
PNGs of `--image_dir` (e.g. those `benchmarks/folder_scale.py` makes);
with `--threads`, also the whole of an image's host work (read, prepare,
score, write its outputs) for all `--num_images` through a pool of each
number of threads, as the folder run does it, with numpy's BLAS on its
default threads and on one (`pipeline._one_blas_thread`): how well it
spreads over cores (Amdahl's serial share from the speed-up at two
threads);
the reliability score's cost does not depend on the kernel's values, so
MATLAB's bicubic kernel stands in for an estimate. Medians per image.
Writes <results_dir>/host_work[-<tag>]-<device>-<date>.{json,md}.
"""

from concurrent import futures
import contextlib
import glob
import os
import tempfile
import time
from typing import Callable, Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics
from kernelgan_jax import outputs
from kernelgan_jax import pipeline
from kernelgan_jax import reliability
from kernelgan_jax.config import get_config

_IMAGE_DIR = flags.DEFINE_string("image_dir", "/tmp/folder_scale/LR",
                                 "A folder of PNG images.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 4, "Images timed.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Passes over the images.")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string("tag", "", "Appended to the results' file names.")
_THREADS = flags.DEFINE_list(
    "threads", [], "Pool sizes for the whole per-image work, e.g. 1,2.")


def median_seconds(function: Callable, inputs: Sequence, repeats: int
                   ) -> float:
  """Median wall seconds of function(x) over `repeats` passes of inputs."""
  times = []
  for _ in range(repeats):
    for x in inputs:
      start = time.perf_counter()
      function(x)
      times.append(time.perf_counter() - start)
  return float(np.median(times))


def whole_image_work(path: str, config, kernel: np.ndarray,
                     out_dir: str) -> None:
  """One image's host work in a folder run: read, prepare, score, write."""
  image = images.read_image(path)
  batch.prepare_jobs(image, config, [0], image_index=0)
  estimate = kernel_lib.KernelEstimate(
      kernel, kernel_lib.analytic_kernel_x4(kernel.astype(np.float64)),
      np.zeros((13, 13), np.float32), {}, 0)
  trust = reliability.score(image, estimate)
  name = os.path.splitext(os.path.basename(path))[0]
  outputs.write_outputs(os.path.join(out_dir, name), name, estimate, config,
                        {"reliability": trust})


def pool_seconds(paths: Sequence[str], threads: int, repeats: int,
                 config, kernel: np.ndarray, one_blas_thread: bool) -> float:
  """Median wall seconds of every path's `whole_image_work` in a pool, with
  numpy's BLAS on its default threads or on one, as the pipeline runs it."""
  limit = (pipeline._one_blas_thread if one_blas_thread  # pylint: disable=protected-access
           else contextlib.nullcontext)
  times = []
  for _ in range(repeats):
    with tempfile.TemporaryDirectory() as out_dir, limit():
      start = time.perf_counter()
      with futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: whole_image_work(p, config, kernel, out_dir),
                      paths))
      times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  paths = sorted(glob.glob(os.path.join(_IMAGE_DIR.value, "*.png")))
  paths = paths[:_NUM_IMAGES.value]
  if not paths:
    raise app.UsageError(f"no PNG images in {_IMAGE_DIR.value}")
  config = get_config()
  kernel = metrics.bicubic_kernel_x2()
  loaded = [images.read_image(p) for p in paths]
  batch.prepare_jobs(loaded[0], config, [0], image_index=0)  # Warm-up.
  reliability.score(loaded[0], kernel)
  stages = {
      "read": median_seconds(images.read_image, paths, _REPEATS.value),
      "prepare": median_seconds(
          lambda im: batch.prepare_jobs(im, config, [0], image_index=0),
          loaded, _REPEATS.value),
      "reliability": median_seconds(
          lambda im: reliability.score(im, kernel), loaded, _REPEATS.value),
  }
  pools = {(int(n), blas): pool_seconds(paths, int(n), _REPEATS.value,
                                        config, kernel, blas == "one")
           for n in _THREADS.value for blas in ("default", "one")}
  meta = dict(machine.describe(), image_dir=_IMAGE_DIR.value,
              images=len(paths), shape=list(loaded[0].shape),
              repeats=_REPEATS.value, tag=_TAG.value,
              pool_seconds={f"{n} threads, BLAS {blas}": t
                            for (n, blas), t in pools.items()})
  lines = [
      f"The host's work per image outside training, {len(paths)} images of "
      f"{loaded[0].shape[1]}x{loaded[0].shape[0]} from {_IMAGE_DIR.value}, "
      f"{_REPEATS.value} passes, one thread"
      + (f", {_TAG.value}" if _TAG.value else "")
      + f": {meta['device']} ({meta['processor']}, {meta['cores']} cores), "
      f"jax {meta['jax']}, {meta['date']}. Median seconds per image.", "",
      "| stage | seconds |", "|---|---|",
      *[f"| {name} | {seconds:.3f} |" for name, seconds in stages.items()],
      f"| total | {sum(stages.values()):.3f} |"]
  if pools:
    lines += ["", f"The whole per-image work (read, prepare, score, write the "
              f"outputs) of all {len(paths)} images through a pool of threads,"
              " median wall seconds, with numpy's BLAS on its default "
              "threads and on one (as `pipeline.estimate_files` runs it):", "",
              "| threads | BLAS default | speed-up | one BLAS thread | speed-up |",
              "|---|---|---|---|---|"]
    base = {b: pools.get((1, b)) for b in ("default", "one")}
    for n in sorted({n for n, _ in pools}):
      cells = []
      for blas in ("default", "one"):
        t = pools[(n, blas)]
        cells += [f"{t:.2f}", f"{base[blas] / t:.2f}x" if base[blas] else ""]
      lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if base["default"] and (2, "default") in pools:
      lines += ["", "Serial share by Amdahl's law from the two-thread speed-up "
                "(at that share 16 threads give at most the last figure):"]
      for blas in ("default", "one"):
        serial = min(max(2 * pools[(2, blas)] / base[blas] - 1, 0.0), 1.0)
        meta[f"serial_share_blas_{blas}"] = serial
        lines.append(f"- BLAS {blas}: {serial:.2f}, "
                     f"{1 / (serial + (1 - serial) / 16):.1f}x")
  tag = f"-{_TAG.value}" if _TAG.value else ""
  machine.save_results(_RESULTS.value,
                       f"host_work{tag}-{meta['device']}-{meta['date']}",
                       meta, [stages], "\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
