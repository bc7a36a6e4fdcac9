"""From input files to output folders: one path for one image or many.

Each image gets `<output_dir>/<name>/` (`outputs`), written as soon as its
batch finishes, so a long run can be stopped and restarted: images whose
outputs are complete are skipped when `skip_done`. An unreadable, too small
or featureless file is reported and skipped, and so is an image whose run
fails otherwise (say, out of memory; its row holds the traceback); every
other image still gets its kernel. Images train `batch_size` at a time (`batch`); with several
seeds per image the seeds train together and their x2 kernels are combined
(`ensemble`), the log recording every seed's kernel. 'select' trains its
two candidates' batches (`batch.run_estimators`; on CPU side by side, one
per core) and keeps one per image; 'fkp' runs one image and seed at a time
(`estimate.estimate_kernel`). With
`sr`, each image is then super-resolved by ZSSR with its kernel(s), as the
original's --SR, or where the kernel looks unreliable with the bicubic
kernel (`SuperResolution.fallback`).

After `jax.distributed.initialize` each process estimates its share of the
images (`batch.process_share`) on its local devices; once every process is
done (`batch.wait_for_processes`), process 0 writes the summary of all.
"""

import collections
from concurrent import futures
import contextlib
import dataclasses
import importlib
import itertools
import os
import threading
import time
import traceback
from typing import Any, Callable, Optional, Sequence

from absl import logging
import jax
import numpy as np

from kernelgan_jax import batch as batch_lib
from kernelgan_jax import commands
from kernelgan_jax import data as data_lib
from kernelgan_jax import ensemble
from kernelgan_jax import estimate as estimate_lib
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import outputs
from kernelgan_jax import reliability
from kernelgan_jax.config import Config, estimator_config
from kernelgan_jax.progress import ProgressFn

Row = dict  # name, path, status ('ok', 'skipped', 'error'), message, ...
PENDING = "pending"
# Estimators that run one image and seed at a time.
PER_IMAGE = ("fkp",)
_BARRIERS = itertools.count()  # Same sequence in every process.


@dataclasses.dataclass(frozen=True)
class SuperResolution:
  """What `--sr` asks for: ZSSR after the kernel (`zssr.super_resolve`).

  Attributes:
    config: ZSSR's settings (a `zssr.ZSSRConfig`).
    noise_scale: scales the son noise in real-image mode.
    progress: returns a fresh progress callback for each image's ZSSR run.
    fallback: where the kernel looks unreliable (`reliability.score`),
      train ZSSR with the bicubic kernel (plain ZSSR) instead: ZSSR with a
      wrong kernel can end far below bicubic interpolation
      (benchmarks/README.md, "SR where the kernel looks unreliable"). False:
      always the estimate, as the original.
    narrow: where the kernel beats bicubic only narrowly, train ZSSR with a
      narrower copy of it (`reliability.sr_kernel`; at x4 with the
      analytic x4 kernel of that copy): a too wide kernel costs ZSSR far
      more than a too narrow one. False: the estimate as is, as the
      original.
  """
  config: Any
  noise_scale: float = 1.0
  progress: Optional[Callable[[], Optional[ProgressFn]]] = None
  fallback: bool = True
  narrow: bool = True


class Interrupted(KeyboardInterrupt):
  """Ctrl-C during `estimate_files`; `unfinished`: the names of the images
  left without outputs (those whose kernels were done are written)."""

  def __init__(self, unfinished: list[str]):
    super().__init__(unfinished)
    self.unfinished = unfinished


def outputs_complete(output_dir: str, name: str, x4: bool,
                     sr: bool = False) -> bool:
  """Whether every output file of `name` exists already."""
  return (len(outputs.existing_outputs(output_dir, name, x4, sr))
          == len(outputs.output_files(name, x4, sr)))


def plan(paths: Sequence[str], output_dir: str, config: Config,
         overwrite: bool, sr: bool = False, skip_done: bool = True
         ) -> list[Row]:
  """A row per path: 'skipped' (done, when `skip_done`), 'error' (would
  clobber, duplicate name) or pending."""
  rows, seen = [], set()
  for path in paths:
    name = outputs.image_name(path)
    row = {"name": name, "path": path, "status": PENDING, "message": ""}
    if name in seen:
      row.update(status="error", message="another input has this name")
    elif (skip_done and not overwrite
          and outputs_complete(output_dir, name, config.x4, sr)):
      row.update(status="skipped", message="outputs exist")
    else:
      try:
        row["folder"] = outputs.check_writable(output_dir, name, config.x4,
                                               overwrite, sr)
      except FileExistsError as error:
        row.update(status="error", message=str(error))
    seen.add(name)
    rows.append(row)
  return rows


def _unexpected(rows: Sequence[Row], error: Exception) -> None:
  """Marks rows failed by an error that is not the input's fault (e.g. out
  of memory): its type and first line, and the traceback."""
  message = commands.error_line(error)
  trace = "".join(traceback.format_exception(
      type(error), error, error.__traceback__))
  for row in rows:
    row.update(status="error", message=message, traceback=trace)
    logging.info("%s failed: %s", row["path"], message)


def _guarded(rows: Sequence[Row], fallback: Any, function: Callable,
             *args: Any) -> Any:
  """function(*args); on an unexpected error the rows it serves are marked
  failed and `fallback` returned, so the other images go on."""
  try:
    return function(*args)
  except Exception as error:  # pylint: disable=broad-except
    _unexpected(rows, error)
    return fallback


@contextlib.contextmanager
def _pool(rows: Sequence[Row], queue: collections.deque):
  """The run's threads. On Ctrl-C the queued reads are dropped, kernels
  already estimated are still written, and `Interrupted` names the rest."""
  pool = futures.ThreadPoolExecutor(os.cpu_count() or 1)
  try:
    yield pool
  except KeyboardInterrupt as interrupt:
    for _, prepared in queue:
      prepared.cancel()
    pool.shutdown(wait=True)
    raise Interrupted([r["name"] for r in rows if r["status"] == PENDING]
                      ) from interrupt
  finally:
    pool.shutdown(wait=True)


def _one_blas_thread() -> contextlib.AbstractContextManager:
  """numpy's BLAS on one thread while the pool's threads run numpy side by
  side (several images): each product would otherwise start the BLAS
  library's own threads in every pool thread, and they contend for the
  cores (the reliability score's products; `benchmarks/host_work.py`).
  Process-wide while it lasts, restored after."""
  from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top
  return threadpool_limits(limits=1, user_api="blas")


# Slow imports that only post-processing and writing need.
_WRITING_MODULES = ("scipy.ndimage", "scipy.io")


def _import_for_writing() -> None:
  """Imports `_WRITING_MODULES`, on a pool thread while the first batch
  trains (the main thread mostly waits on the device then)."""
  for name in _WRITING_MODULES:
    importlib.import_module(name)


def _check_sr_memory(image: np.ndarray, config: Config,
                     sr: Optional[SuperResolution]) -> None:
  """Refuses, before any training, an image whose ZSSR would not fit."""
  if sr is not None:
    from kernelgan_jax.zssr import memory  # pylint: disable=g-import-not-at-top
    memory.check_memory(image.shape, config.x4, sr.config)


def _prepare(row: Row, config: Config, seeds: Sequence[int], index: int,
             estimator: str, sr: Optional[SuperResolution] = None
             ) -> tuple[list, Optional[np.ndarray]]:
  """Reads the row's image: its jobs (`batch.Job`s, or for `PER_IMAGE`
  estimators (index, seed) pairs) and the image; ([], None) with the row
  marked as an error."""
  try:
    image, row["image_info"] = images.read_image_info(row["path"])
    _check_sr_memory(image, config, sr)
    if estimator in PER_IMAGE:
      data_lib.check_size(images.as_float_rgb(image), config)
      return [(index, seed) for seed in seeds], image
    return batch_lib.prepare_jobs(image, config, seeds,
                                  image_index=index), image
  except (images.ImageError, OSError, ValueError) as error:
    row.update(status="error", message=str(error))
    logging.info("skipping %s: %s", row["path"], error)
    return [], None


class _Cancelled(BaseException):
  """Stops a ZSSR run on another thread after Ctrl-C (not an `Exception`,
  so `_guarded` lets it through and nothing is written for its image)."""


class _MemoryBudget:
  """Bytes that ZSSR runs side by side may hold together: a run waits until
  it fits beside the running ones, or runs alone (each fits alone:
  `_check_sr_memory`)."""

  def __init__(self, total: Optional[int]):
    self.total, self.used = total, 0
    self.changed = threading.Condition()

  @contextlib.contextmanager
  def hold(self, needed: int):
    with self.changed:
      self.changed.wait_for(lambda: self.total is None or self.used == 0
                            or self.used + needed <= self.total)
      self.used += needed
    try:
      yield
    finally:
      with self.changed:
        self.used -= needed
        self.changed.notify_all()


def _write_side_by_side(calls: list[tuple], sr: SuperResolution,
                        x4: bool) -> None:
  """`_guarded(*call)` for each of a batch's `_write` calls (each with a
  ZSSR run), on CPU one per device at a time: ZSSR's step keeps about one
  core busy, and the command line makes a CPU device per core. Memory
  permitting (`zssr.memory`); the runs' progress is summed into one bar;
  on Ctrl-C the other runs stop at their next progress report."""
  devices = jax.local_devices() if jax.default_backend() == "cpu" else []
  if len(devices) < 2 or len(calls) < 2:
    for call in calls:
      _guarded(*call)
    return
  from kernelgan_jax.zssr import memory  # pylint: disable=g-import-not-at-top
  budget = _MemoryBudget(memory.memory_available())
  stop = threading.Event()
  bar = sr.progress() if sr.progress else None
  report = batch_lib.summed_progress(bar, len(calls))

  def run(index: int, call: tuple, device: jax.Device) -> None:
    if stop.is_set():  # Not started before Ctrl-C: not started at all.
      return
    def progress(done, total, metrics):
      if stop.is_set():
        raise _Cancelled()
      if report:
        report(index, done, total, metrics)
    own = dataclasses.replace(sr, progress=lambda: progress)
    image = call[5]
    with budget.hold(memory.image_memory_needed(image.shape, x4,
                                                sr.config)):
      with jax.default_device(device):
        _guarded(*call[:-1], own)

  batch_lib.one_per_device(run, calls, devices, on_interrupt=stop.set)


def _super_resolve(image: np.ndarray, kernel_x2: Optional[np.ndarray],
                   kernel_x4: Optional[np.ndarray], config: Config, seed: int,
                   sr: SuperResolution) -> np.ndarray:
  """ZSSR of the image with these kernels (None: the bicubic kernel)."""
  from kernelgan_jax import zssr  # pylint: disable=g-import-not-at-top
  return zssr.super_resolve(
      image, kernel_x2, x4=config.x4, kernel_x4=kernel_x4,
      real=config.real_image, noise_scale=sr.noise_scale, config=sr.config,
      seed=seed, progress=sr.progress() if sr.progress else None)


def _write(row: Row, estimates, image: np.ndarray,
           side: "futures.Future[reliability.ImageSide]", config: Config,
           method: str, seconds: float, batch_images: int, estimator: str,
           sr: Optional[SuperResolution]) -> None:
  """Combines the seeds, scores the kernel's reliability on the image (its
  image side computed while the kernel trained), super-resolves it when
  asked, and writes the row's folder; marks the row."""
  estimate = ensemble.combine_estimates(estimates, method)
  trust = reliability.score(image, estimate, side=side.result())
  extra = {"image": row["path"], **row["image_info"], "estimator": estimator,
           "reliability": trust, "seconds": round(seconds, 3),
           "batch_images": batch_images}
  if batch_lib.several_processes():
    extra["process"] = jax.process_index()
  if estimator == "select":
    extra["selected"] = [e.estimator for e in estimates]
  if len(estimates) > 1:
    extra.update(ensemble.ensemble_log(estimates, method))
  sr_image, plain, how = None, False, None
  if sr is not None:
    kernel_x2, how, width = reliability.sr_kernel(
        estimate.kernel_x2, trust, fallback=sr.fallback, narrow=sr.narrow)
    plain = kernel_x2 is None
    kernel_x4 = None if plain else estimate.kernel_x4
    if how == "narrowed" and config.x4:
      kernel_x4 = kernel_lib.analytic_kernel_x4(kernel_x2)
    start = time.perf_counter()
    sr_image = _super_resolve(image, kernel_x2, kernel_x4, config,
                              estimates[0].seed, sr)
    extra["seconds_sr"] = round(time.perf_counter() - start, 3)
    extra["sr_kernel"] = how
    if how == "narrowed":
      extra["sr_kernel_width"] = round(width, 3)
  try:
    written = outputs.write_outputs(row["folder"], row["name"], estimate,
                                    config, extra, sr_image)
  except OSError as error:
    row.update(status="error", message=str(error))
    logging.info("cannot write %s: %s", row["folder"], error)
    return
  row.update(status="ok", seconds=seconds, written=written,
             kernel_size=int(estimate.kernel_x2.shape[0]),
             reliability=trust[reliability.HEADLINE])
  if how == "narrowed":
    row.update(message=f"ZSSR with the kernel narrowed to {width:.2f}x")
  if trust["unreliable"]:
    row.update(message="kernel looks unreliable"
               + ("; ZSSR with the bicubic kernel" if plain else ""),
               warning=reliability.warning(row["name"], trust)
               + ("; ZSSR used the bicubic kernel (--nosr_fallback: the "
                  "estimate)" if plain else ""))
    logging.info(row["warning"])


def _train(jobs: list, by_index: dict, config: Config, estimator: str,
           strategy: str, pad_to: int, progress: Optional[ProgressFn]
           ) -> tuple[list[int], list]:
  """Trains one batch: the image index and estimate of every job."""
  if estimator in PER_IMAGE:
    return [index for index, _ in jobs], [
        estimate_lib.estimate_kernel(by_index[index], config, seed,
                                     estimator=estimator, progress=progress)
        for index, seed in jobs]
  if estimator == "select":
    return [job.image_index for job in jobs], batch_lib.select_results(
        jobs, by_index, batch_lib.run_estimators(
            jobs, config, reliability.SELECT_FROM, progress=progress,
            strategy=strategy, pad_to=pad_to))
  return [job.image_index for job in jobs], batch_lib.run_jobs(
      jobs, config, progress=progress, strategy=strategy, pad_to=pad_to)


def _finished_elsewhere(row: Row, process: int, output_dir: str, x4: bool,
                        sr: bool) -> None:
  """Marks a row of another process's share by the files it left."""
  if outputs_complete(output_dir, row["name"], x4, sr):
    row.update(status="ok", message=f"estimated by process {process}")
  else:
    row.update(status="error", message=f"process {process} wrote no "
               "outputs (see its messages)")


def estimate_files(paths: Sequence[str], output_dir: str, config: Config, *,
                   seeds: Sequence[int] = (0,),
                   estimator: str = "kernelgan",
                   batch_size: Optional[int] = None,
                   overwrite: bool = False, skip_done: bool = True,
                   sr: Optional[SuperResolution] = None,
                   progress: Optional[Callable[[], Optional[ProgressFn]]]
                   = None, method: str = "median",
                   strategy: Optional[str] = None,
                   summary: bool = True) -> list[Row]:
  """Estimates the kernels of image files and writes their outputs.

  Images are read and prepared in input order by a pool of threads, up to
  two batches ahead while the current one trains (so at most three batches
  are in memory); images of any sizes share a batch, and every batch is
  trained as one of `batch_size` images (a short one repeats its last job),
  so one compiled program serves the whole run. Outputs are written by the
  pool while the next batch trains (with `sr`, in turn, after each batch).

  Args:
    paths: image files.
    output_dir: outputs go to `<output_dir>/<name>/`.
    config: the run's settings (`config.x4` for the x4 kernel); for 'fkp'
      an `fkp.FkpConfig`.
    seeds: seeds per image; several are combined with `method`.
    estimator: one of `config.ESTIMATORS`.
    batch_size: images trained together (each with all its seeds); None
      for the backend's default (`batch.default_batch_size`), never more
      than the images to do.
    overwrite: replace existing outputs.
    skip_done: skip images whose outputs are complete (a restart); else
      existing outputs are an error unless `overwrite`. Partial outputs are
      always an error unless `overwrite`.
    sr: also super-resolve each image with ZSSR (`ZSSR_<name>.png`).
    progress: called once per batch, returns that batch's progress(done,
      total, metrics) callback (e.g. `lambda: ProgressBar(sys.stderr)`).
    method: how several seeds' kernels are combined (`ensemble.combine`).
    strategy: 'vmap' or 'sequential'; None picks the backend's faster one
      (`batch.default_strategy`).
    summary: also write `<output_dir>/summary.csv` (a row per path) and
      the contact sheet `kernels.png` (`outputs.write_summary`), unless
      every image failed (nothing is written then). With several
      processes only process 0 writes them, once every process is done.

  Returns:
    One row per path (with several processes: per path of this process's
    share, and the call returns once every process is done), in input
    order: name, path, status ('ok',
    'skipped', 'error'), message, and for 'ok' seconds (of its batch),
    kernel_size, reliability (the headline score), written (paths) and,
    for a kernel that looks unreliable, a warning. An 'error' that is not
    the input's fault (any exception but `ImageError`, `OSError`,
    `ValueError`) has message '<ExceptionType>: <first line>' and a
    traceback; with `sr`, an image too large for ZSSR in this machine's
    memory (`zssr.memory`) is an error before its kernel is trained.

  Raises:
    ValueError: for a bad batch size, method or estimator.
    Interrupted: on Ctrl-C, after writing the kernels already estimated.
  """
  if batch_size is not None and batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if method not in ensemble.METHODS:
    raise ValueError(f"method must be one of {ensemble.METHODS}")
  if estimator not in PER_IMAGE:  # Also refuses an unknown estimator.
    config = estimator_config(config, estimator)
  strategy = strategy or batch_lib.default_strategy()
  rows = plan(paths, output_dir, config, overwrite, sr is not None,
              skip_done)
  several = batch_lib.several_processes()
  # Planned over every path, so names are unique across the shares.
  mine = (batch_lib.process_share(range(len(rows))) if several
          else range(len(rows)))
  pending = [i for i in mine if rows[i]["status"] == PENDING]
  batch_size = min(batch_size or batch_lib.default_batch_size(),
                   max(len(pending), 1))
  todo, queue = iter(pending), collections.deque()
  jobs, by_index, sides, writes, trained_before = [], {}, {}, [], False
  side_by_side = len(pending) > 1
  with _pool([rows[i] for i in mine], queue) as pool, (
      _one_blas_thread() if side_by_side else contextlib.nullcontext()):
    def top_up():  # Prepares up to two batches ahead, in input order.
      while len(queue) < 2 * batch_size:
        index = next(todo, None)
        if index is None:
          return
        queue.append((index, pool.submit(
            _guarded, [rows[index]], ([], None), _prepare, rows[index],
            config, seeds, index, estimator, sr)))
    top_up()
    while queue:
      index, prepared = queue.popleft()
      new_jobs, image = prepared.result()
      top_up()
      if new_jobs:
        jobs += new_jobs
        by_index[index] = image
        sides[index] = pool.submit(reliability.image_side, image)
      if len(by_index) == batch_size or (jobs and not queue):
        if not trained_before:
          pool.submit(_import_for_writing)
          trained_before = True
        start = time.perf_counter()
        indices, results = _guarded(
            [rows[i] for i in by_index], ([], []), _train, jobs, by_index,
            config, estimator, strategy, batch_size * len(seeds),
            progress() if progress else None)
        seconds = time.perf_counter() - start
        per_image = {}
        for i, result in zip(indices, results):
          per_image.setdefault(i, []).append(result)
        batch_writes = [
            ([rows[i]], None, _write, rows[i], estimates, by_index[i],
             sides[i], config, method, seconds, len(per_image), estimator,
             sr)
            for i, estimates in per_image.items()]
        if sr is None:
          writes += [pool.submit(_guarded, *args) for args in batch_writes]
        else:  # ZSSR trains here, not beside the next batch.
          _write_side_by_side(batch_writes, sr, config.x4)
        jobs, by_index, sides = [], {}, {}
    for write in writes:
      write.result()
  for row in rows:
    row.pop("folder", None)
    row.pop("image_info", None)
  if several:
    batch_lib.wait_for_processes(f"kernelgan_jax.files.{next(_BARRIERS)}")
    if not summary or jax.process_index() != 0:
      return [rows[i] for i in mine]
    count, own = jax.process_count(), [rows[i] for i in mine]
    for i, row in enumerate(rows):
      if row["status"] == PENDING:  # Process i % count's (`process_share`).
        _finished_elsewhere(row, i % count, output_dir, config.x4,
                            sr is not None)
  else:
    own = rows
  if summary and any(r["status"] != "error" for r in rows):
    outputs.write_summary(output_dir, rows, config.x4, sr is not None)
  return own


def format_table(rows: Sequence[Row]) -> str:
  """A plain-text summary table of `estimate_files`' rows."""
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
