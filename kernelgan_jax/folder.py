"""A folder of images: batch by batch, one output folder per image.

Each image gets `<output_dir>/<name>/` exactly as the single-image command
line writes it (`io.check_writable`, `io.write_outputs`), written as soon as
its batch finishes, so a long run can be stopped and restarted: images whose
outputs are complete are skipped. An unreadable, too small or featureless
file is reported and skipped; every other image still gets its kernel. With
several seeds per image the seeds train together (`batch`) and their x2
kernels are combined (`ensemble`); the log records every seed's kernel.
"""

import collections
from concurrent import futures
import os
import time
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np

from kernelgan_jax import batch as batch_lib
from kernelgan_jax import data as data_lib
from kernelgan_jax import estimate as estimate_lib
from kernelgan_jax import ensemble
from kernelgan_jax import io
from kernelgan_jax import reliability
from kernelgan_jax.config import Config
from kernelgan_jax.data import ImageError
from kernelgan_jax.train import ProgressFn

Row = dict  # name, path, status ('ok', 'skipped', 'error'), message, ...
PENDING = "pending"


def outputs_complete(output_dir: str, name: str, x4: bool) -> bool:
  """Whether every output file of `name` exists already."""
  return (len(io.existing_outputs(output_dir, name, x4))
          == len(io.output_files(name, x4)))


def plan(paths: Sequence[str], output_dir: str, config: Config,
         overwrite: bool) -> list[Row]:
  """A row per path: 'skipped' (done), 'error' (would clobber, duplicate
  name) or pending."""
  rows, seen = [], set()
  for path in paths:
    name = io.image_name(path)
    row = {"name": name, "path": path, "status": PENDING, "message": ""}
    if name in seen:
      row.update(status="error", message="another input has this name")
    elif not overwrite and outputs_complete(output_dir, name, config.x4):
      row.update(status="skipped", message="outputs exist")
    else:
      try:
        row["folder"] = io.check_writable(output_dir, name, config.x4,
                                          overwrite)
      except FileExistsError as error:
        row.update(status="error", message=str(error))
    seen.add(name)
    rows.append(row)
  return rows


def _prepare(row: Row, config: Config, seeds: Sequence[int],
             index: int, estimator: str) -> list:
  """The row's jobs (for 'fkp', (index, seed, image) triples), or [] with
  the row marked as an error."""
  try:
    image = io.read_image(row["path"])
    if estimator == "fkp":
      data_lib.check_size(estimate_lib.as_float_rgb(image), config)
      return [(index, seed, image) for seed in seeds]
    return batch_lib.prepare_jobs(image, config, seeds, image_index=index)
  except (ImageError, OSError, ValueError) as error:
    row.update(status="error", message=str(error))
    logging.warning("skipping %s: %s", row["path"], error)
    return []


def _write(row: Row, estimates, config: Config, method: str,
           seconds: float, batch_images: int, estimator: str,
           image: np.ndarray) -> None:
  """Combines the seeds, scores the kernel's reliability on `image` (the
  shaved LR image) and writes the row's folder; marks the row."""
  estimate = ensemble.combine_estimates(estimates, method)
  trust = reliability.score(image, estimate)
  extra = {"image": row["path"], "estimator": estimator,
           "reliability": trust, "seconds": round(seconds, 3),
           "batch_images": batch_images}
  if len(estimates) > 1:
    extra.update(ensemble.ensemble_log(estimates, method))
  try:
    io.write_outputs(row["folder"], row["name"], estimate, config, extra)
  except OSError as error:
    row.update(status="error", message=str(error))
    logging.warning("cannot write %s: %s", row["folder"], error)
    return
  row.update(status="ok", seconds=seconds,
             kernel_size=int(estimate.kernel_x2.shape[0]),
             reliability=trust[reliability.HEADLINE])
  if trust["unreliable"]:
    row["message"] = "kernel looks unreliable"
    logging.warning(reliability.warning(row["name"], trust))


def _run_batch(rows: list[Row], jobs: list[batch_lib.Job], config: Config,
               method: str,
               progress: Optional[Callable[[], Optional[ProgressFn]]],
               strategy: str, pad_to: int, estimator: str,
               pool: futures.Executor) -> list[futures.Future]:
  """Trains one batch; its images' outputs are written by `pool` (while
  the next batch trains), whose futures are returned."""
  start = time.perf_counter()
  if isinstance(jobs[0], batch_lib.Job):
    results = batch_lib.run_jobs(jobs, config,
                                 progress=progress() if progress else None,
                                 strategy=strategy, pad_to=pad_to)
    indices = [job.image_index for job in jobs]
    images = {job.image_index: (job.data.image + 1.0) / 2.0 for job in jobs}
  else:  # KernelGAN-FKP: one image and seed at a time.
    results = [estimate_lib.estimate_kernel(
        image, config, seed, estimator="fkp",
        progress=progress() if progress else None)
               for _, seed, image in jobs]
    indices = [index for index, _, _ in jobs]
    images = {index: image for index, _, image in jobs}
  seconds = time.perf_counter() - start
  by_image = {}
  for index, result in zip(indices, results):
    by_image.setdefault(index, []).append(result)
  return [pool.submit(_write, rows[index], estimates, config, method, seconds,
                      len(by_image), estimator, images[index])
          for index, estimates in by_image.items()]


def estimate_folder(paths: Sequence[str], output_dir: str, config: Config,
                    batch_size: Optional[int] = None, seeds: Sequence[int] = (0,),
                    overwrite: bool = False,
                    progress: Optional[Callable[[], Optional[ProgressFn]]]
                    = None, *, method: str = "median",
                    strategy: Optional[str] = None,
                    estimator: str = "kernelgan") -> list[Row]:
  """Estimates the kernels of many images, `batch_size` images at a time.

  Images are read and prepared in input order by a pool of threads, up to
  two batches ahead while the current one trains (so at most three
  batches are in memory); images of any sizes share a batch, and every batch is trained
  as one of `batch_size` images (a short one repeats its last job), so
  one compiled program serves the whole folder.

  Args:
    paths: image files.
    output_dir: outputs go to `<output_dir>/<name>/`.
    config: the run's settings (`config.x4` for the x4 kernel).
    batch_size: images trained together (each with all its seeds); None
      for the backend's default (`batch.default_batch_size`).
    seeds: seeds per image; several are combined with `method`.
    overwrite: replace existing outputs; otherwise images with complete
      outputs are skipped and partial ones reported.
    progress: called once per batch, returns that batch's progress(done,
      total, metrics) callback (e.g. `lambda: ProgressBar(sys.stderr)`).
    method: how several seeds' kernels are combined (`ensemble.combine`).
    strategy: 'vmap' or 'sequential'; None picks the backend's faster one
      (`batch.default_strategy`).
    estimator: one of `estimate.ESTIMATORS` but 'select'.

  Returns:
    One row per path, in input order: name, path, status ('ok',
    'skipped', 'error'), message, and for 'ok' seconds (of its batch) and
    kernel_size.
  """
  if batch_size is None:
    batch_size = batch_lib.default_batch_size()
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if method not in ensemble.METHODS:
    raise ValueError(f"method must be one of {ensemble.METHODS}")
  if estimator == "select":
    raise ValueError("estimator 'select' runs one image at a time: use "
                     "estimate_kernel or --image")
  if estimator != "fkp":
    config = estimate_lib.estimator_config(config, estimator)
  strategy = strategy or batch_lib.default_strategy()
  rows = plan(paths, output_dir, config, overwrite)
  pending = [i for i, r in enumerate(rows) if r["status"] == PENDING]
  todo, queue = iter(pending), collections.deque()
  jobs, images_in_batch, writes = [], 0, []
  with futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    def top_up():  # Prepares up to two batches ahead, in input order.
      while len(queue) < 2 * batch_size:
        index = next(todo, None)
        if index is None:
          return
        queue.append(pool.submit(_prepare, rows[index], config, seeds,
                                 index, estimator))
    top_up()
    while queue:
      new_jobs = queue.popleft().result()
      top_up()
      if new_jobs:
        jobs += new_jobs
        images_in_batch += 1
      if images_in_batch == batch_size or (jobs and not queue):
        writes += _run_batch(rows, jobs, config, method, progress, strategy,
                             batch_size * len(seeds), estimator, pool)
        jobs, images_in_batch = [], 0
    for write in writes:
      write.result()
  for row in rows:
    row.pop("folder", None)
  return rows


def format_table(rows: Sequence[Row]) -> str:
  """A plain-text summary table of `estimate_folder`'s rows."""
  lines = [f"{'image':<24} {'status':<8} {'kernel':>6} {'seconds':>8} "
           f"{'reliab.':>7}  note"]
  for row in rows:
    size = row.get("kernel_size")
    seconds = row.get("seconds")
    trust = row.get("reliability")
    lines.append(
        f"{row['name'][:24]:<24} {row['status']:<8} "
        f"{f'{size}x{size}' if size else '':>6} "
        f"{f'{seconds:.1f}' if seconds is not None else '':>8} "
        f"{f'{trust:+.3f}' if trust is not None else '':>7}  "
        f"{row['message']}")
  counts = {s: sum(r["status"] == s for r in rows)
            for s in ("ok", "skipped", "error")}
  lines.append(f"{counts['ok']} estimated, {counts['skipped']} skipped "
               f"(done), {counts['error']} failed")
  return "\n".join(lines)
