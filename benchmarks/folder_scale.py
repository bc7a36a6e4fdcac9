r"""Many DIV2KRK-size images through the command line, end to end.

  python -m benchmarks.folder_scale --num_images=100 [--work_dir=/tmp/fs]

Makes `--num_images` synthetic DIV2KRK-protocol LR images of about DIV2K's
LR size (`--lr_size`, 1020x700 by default): each HR image is a mosaic of
scikit-image photographs at their own resolution (so it keeps their
texture), degraded with its own random DIV2KRK x2 kernel
(`div2krk.degrade_image`) in a process pool. Then it times whole command-line
runs, `python -m kernelgan_jax.main --images=... --quiet` as a user types
it, from process start to the last file written: first with an empty
compilation cache (compiling), then again into a fresh output folder with the
cache that run left (warm). Each run's summary table and the log's per-batch
seconds are kept. To tell where the warm run's time goes, a third run stops
after one 50-iteration chunk (its time is about the run's fixed cost:
start-up, reading and preparing, writing), and the host's crop gathering
for one chunk (`batch.batch_crops`, which the device's work on the previous
chunk should hide) is timed in this process on `--gather_images` images.
The runs log JAX's compilations (JAX_LOG_COMPILES=1, and
JAX_LOGGING_LEVEL=WARNING past `--quiet`): each row keeps
the seconds XLA took per program, so a cold run tells which programs its
compilation time goes to.
Writes <results_dir>/folder_scale[-<tag>]-<device>-<date>.{json,md}; the
runs inherit this process's environment, XLA_FLAGS included (recorded).
"""

from concurrent import futures
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import div2krk
from kernelgan_jax.config import Config
from kernelgan_jax.config import get_config

_NUM_IMAGES = flags.DEFINE_integer("num_images", 100, "Images to make.")
_LR_SIZE = flags.DEFINE_list("lr_size", ["700", "1020"],
                             "LR rows, columns of every image.")
_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/folder_scale",
                                "Images, outputs and the cache go here.")
_ITERS = flags.DEFINE_integer("iters", None,
                              "--iters for the runs (default: the CLI's).")
_EXTRA = flags.DEFINE_list("extra_flags", [], "More flags for the CLI runs.")
_GATHER_IMAGES = flags.DEFINE_integer(
    "gather_images", 16, "Images whose crop gathering is timed in-process "
    "(0: skip).")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string(
    "tag", "", "Appended to the results' file names (e.g. which XLA_FLAGS "
    "the runs had: they are recorded, and the compilation cache is keyed "
    "by them).")


def mosaic(photos: list[np.ndarray], rows: int, cols: int,
           rng: np.random.Generator) -> np.ndarray:
  """A rows x cols HR image tiled from randomly chosen, flipped photos."""
  canvas = np.zeros((rows, cols, 3))
  top = 0
  while top < rows:
    left, height = 0, 0
    while left < cols:
      photo = photos[rng.integers(len(photos))]
      if rng.random() < 0.5:
        photo = photo[:, ::-1]
      h, w = min(photo.shape[0], rows - top), min(photo.shape[1],
                                                  cols - left)
      canvas[top:top + h, left:left + w] = photo[:h, :w]
      left, height = left + w, max(height, h)
    top += height
  return canvas


def make_image(args) -> str:
  """Writes LR image `index` (its own kernel and mosaic); returns its path."""
  index, out_dir, lr_rows, lr_cols = args
  rng = np.random.default_rng(index)
  photos = list(div2krk.sample_photographs(div2krk.SAMPLE_IMAGE_NAMES[:8])
                .values())
  hr = mosaic(photos, 2 * lr_rows, 2 * lr_cols, rng)
  kernel = div2krk.random_kernel_x2(rng)
  path = os.path.join(out_dir, f"img{index:03d}.png")
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  iio.imwrite(path, div2krk.degrade_image(hr, kernel, 2))
  return path


def make_images(out_dir: str, count: int, lr_rows: int, lr_cols: int
                ) -> float:
  """Makes the set in a process pool; returns the seconds it took."""
  start = time.perf_counter()
  os.makedirs(out_dir, exist_ok=True)
  with futures.ProcessPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(make_image, [(i, out_dir, lr_rows, lr_cols)
                               for i in range(count)]))
  return time.perf_counter() - start


def run_cli(image_dir: str, out_dir: str, cache_dir: str,
            iters: int | None = None) -> dict:
  """One command-line run over the folder, timed from outside."""
  shutil.rmtree(out_dir, ignore_errors=True)
  command = [sys.executable, "-m", "kernelgan_jax.main",
             f"--input_dir={image_dir}", f"--output_dir={out_dir}",
             f"--compile_cache={cache_dir}", "--quiet"]
  if iters or _ITERS.value:
    command.append(f"--iters={iters or _ITERS.value}")
  command += [f"--{f}" for f in _EXTRA.value]
  start = time.perf_counter()
  done = subprocess.run(command, capture_output=True, text=True,
                        env=dict(os.environ, JAX_LOG_COMPILES="1",
                                 JAX_LOGGING_LEVEL="WARNING"))
  seconds = time.perf_counter() - start
  logs = sorted(glob.glob(os.path.join(out_dir, "*", "*_log.json")))
  batch_seconds = sorted({json.load(open(p))["seconds"] for p in logs})
  return {"command": " ".join(command[1:]), "returncode": done.returncode,
          "seconds": seconds, "images_written": len(logs),
          "batch_seconds": batch_seconds,
          "compile_seconds": machine.compile_seconds(done.stderr),
          "stdout_tail": done.stdout[-2000:], "stderr_tail": done.stderr[-2000:]}


def gather_seconds(image_dir: str, count: int, length: int = 50) -> float:
  """Median seconds of the host's crop gathering for one `length`-iteration
  chunk of `count` images (`batch.batch_crops`), per image."""
  from kernelgan_jax import batch  # pylint: disable=g-import-not-at-top
  from kernelgan_jax import images  # pylint: disable=g-import-not-at-top
  config = get_config()
  paths = sorted(glob.glob(os.path.join(image_dir, "*.png")))[:count]
  jobs = [job for i, path in enumerate(paths) for job in batch.prepare_jobs(
      images.read_image(path), config, [0], image_index=i)]
  times = []
  for start in (0, length, 2 * length):
    begin = time.perf_counter()
    batch.batch_crops(jobs, config, start, length)
    times.append(time.perf_counter() - begin)
  return float(np.median(times)) / len(jobs)


def main(argv: Sequence[str]) -> None:
  del argv
  lr_rows, lr_cols = map(int, _LR_SIZE.value)
  work = _WORK_DIR.value
  image_dir = os.path.join(work, "LR")
  cache_dir = os.path.join(work, "cache")
  shutil.rmtree(cache_dir, ignore_errors=True)
  make_s = make_images(image_dir, _NUM_IMAGES.value, lr_rows, lr_cols)
  rows = []
  chunk = 50
  for name, iters in (("cold cache", None), ("warm cache", None),
                      (f"warm cache, {chunk} iterations", chunk)):
    row = dict(run=name, **run_cli(image_dir, os.path.join(work, "out"),
                                   cache_dir, iters))
    rows.append(row)
    print(json.dumps(row), flush=True)
  gather = (gather_seconds(image_dir, _GATHER_IMAGES.value, chunk)
            if _GATHER_IMAGES.value else None)
  meta = dict(machine.describe(), num_images=_NUM_IMAGES.value,
              lr_size=[lr_rows, lr_cols], make_images_s=make_s,
              iters=_ITERS.value, extra_flags=_EXTRA.value,
              xla_flags=os.environ.get("XLA_FLAGS", ""),
              gather_seconds_per_image_chunk=gather)
  lines = [
      f"{meta['num_images']} synthetic DIV2KRK-protocol LR images of "
      f"{lr_cols}x{lr_rows} through one command-line call (`--input_dir`, "
      f"default settings{', --iters=' + str(_ITERS.value) if _ITERS.value else ''}), "
      f"{meta['device']} ({meta['processor']}, {meta['cores']} cores), "
      f"jax {meta['jax']}, {meta['date']}"
      + (f", XLA_FLAGS={meta['xla_flags']}" if meta["xla_flags"] else "")
      + "; wall time from process start to the last file written.",
      "",
      "| run | seconds | images written | seconds per image | exit status |",
      "|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(f"| {r['run']} | {r['seconds']:.1f} | {r['images_written']} "
                 f"| {r['seconds'] / max(1, r['images_written']):.2f} "
                 f"| {r['returncode']} |")
  compiled = rows[0]["compile_seconds"]
  if compiled:
    lines += ["", f"XLA's compilation in the cold run: "
              f"{sum(compiled.values()):.1f} s, "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in
                          sorted(compiled.items(), key=lambda i: -i[1])
                          if seconds >= 0.05) + "."]
  total_iters = _ITERS.value or Config.max_iters  # The command line's.
  if total_iters > chunk:
    rest = rows[1]["seconds"] - rows[2]["seconds"]
    lines += ["", f"Where the warm run goes: about {rows[2]['seconds']:.1f} s "
              f"of fixed cost (the {chunk}-iteration run), and {rest:.1f} s "
              f"for the other {total_iters - chunk} iterations "
              f"({1e3 * rest / (total_iters - chunk):.1f} ms per iteration "
              f"for all {meta['num_images']} images)."]
  if gather is not None:
    lines += ["", f"Gathering one {chunk}-iteration chunk's crops on the "
              f"host: {gather * 1e3:.1f} ms per image (timed on "
              f"{_GATHER_IMAGES.value} images), {gather * meta['num_images']:.2f}"
              f" s per chunk for all {meta['num_images']}, done while the "
              "device runs the previous chunk."]
  tag = f"-{_TAG.value}" if _TAG.value else ""
  machine.save_results(_RESULTS.value,
                       f"folder_scale{tag}-{meta['device']}-{meta['date']}",
                       meta, rows, "\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
