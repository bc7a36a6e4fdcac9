"""Many images and seeds at once: the unchanged train step under `jax.vmap`.

KernelGAN (Bell-Kligler et al., NeurIPS 2019) trains one small GAN per image.
Here a batch of independent runs, one per (image, seed) "job", trains in one
compiled program: `train.train_step` is vmapped over the leading axis of a
stacked `GanState` and of the jobs' stacked crops.

* Keys. Job (image, seed) uses exactly the keys `estimate_kernel(image,
  config, seed)` uses, so each job's result is that single-image result
  (up to float rounding of the batched arithmetic).
* Shapes. The step reads fixed-size crops, gathered on the host a chunk at
  a time (`data.crops`), so images of any sizes batch together: no
  padding, and one compiled program per (config, batch size).
* Devices. The job axis is sharded over the local devices (`Mesh`,
  `NamedSharding`, the step under `shard_map`), padding the batch with
  copies of its last job to a multiple of the device count. Jobs are
  independent, so on several hosts (after `jax.distributed.initialize()`)
  each process simply runs its own share of the images (`process_share`)
  on its local devices; nothing but a final barrier
  (`wait_for_processes`) is exchanged between hosts. Unbatched (the
  'sequential' strategy, CPU's default) the jobs instead train one per
  device at a time (`run_sequentially`).
* Loops. As `train.train` (`train.drive`): `lax.scan` chunks by default,
  or a host loop over the jitted step ('python'); each is jitted once per
  (config, batch size).
"""

from concurrent import futures
import functools
import queue
import threading
from typing import (Callable, Mapping, NamedTuple, Optional, Sequence,
                    TypeVar)

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import jax.numpy as jnp
import numpy as np

from kernelgan_jax import data as data_lib
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import programs
from kernelgan_jax import reliability
from kernelgan_jax import train as train_lib
from kernelgan_jax.config import Config, estimator_config
from kernelgan_jax.data import TrainData
from kernelgan_jax.kernel import KernelEstimate
from kernelgan_jax.progress import ProgressFn
from kernelgan_jax.train import GanState

BATCH_AXIS = "batch"
T = TypeVar("T")
R = TypeVar("R")
DEFAULT_BATCH_SIZE = {"cpu": 4}  # Images per batch; others: 128.


class Job(NamedTuple):
  """One run: an image's prepared data and the key of its initial state."""
  image_index: int
  seed: int
  data: TrainData  # Host arrays: the image's own shaved shape.
  init_key: jax.Array


def prepare_jobs(image: np.ndarray, config: Config, seeds: Sequence[int],
                 image_index: int = 0) -> list[Job]:
  """One image's jobs, one per seed.

  Args:
    image: H x W [x C] array; uint8/uint16, or float in [0, 1].
    config: the run's settings.
    seeds: the seeds to run.
    image_index: carried in each `Job`, to find the results again.

  Returns:
    A `Job` per seed.

  Raises:
    ImageError: if the image is too small or constant.
  """
  keys = [train_lib.seed_keys(seed) for seed in seeds]
  runs = data_lib.prepare_seeds(images.as_float_rgb(image), config,
                                [data_key for data_key, _ in keys])
  return [Job(image_index, seed, data, init_key)
          for seed, data, (_, init_key) in zip(seeds, runs, keys)]


def stack_states(jobs: Sequence[Job], config: Config) -> GanState:
  """The batch's initial states, stacked along a leading job axis.

  Each job's state is `train.init_state`'s, the program a single image
  runs too (so a batch starts from the same bits as its jobs alone), then
  one small program stacks them. A vmapped initialisation would be a
  program of its own for every batch size, and a slower one to compile
  (benchmarks/README.md, "Many images and seeds").
  """
  states = [train_lib.init_state(job.init_key, config) for job in jobs]
  return programs.stored("stack_states", _stack, "")(states)


@jax.jit
def _stack(states: list[GanState]) -> GanState:
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def batch_crops(jobs: Sequence[Job], config: Config, start: int, length: int
                ) -> data_lib.Crops:
  """The jobs' crops of iterations start .. start + length - 1, stacked
  as [iterations, jobs, ...] (host arrays)."""
  per_job = [data_lib.crops(job.data, config, start, length) for job in jobs]
  return jax.tree.map(lambda *xs: np.stack(xs, axis=1), *per_job)


def batch_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all local devices)."""
  devices = list(devices or jax.local_devices())
  return Mesh(np.array(devices), (BATCH_AXIS,))


def pad_to_multiple(jobs: Sequence[Job], multiple: int) -> list[Job]:
  """Repeats the last job until the count is a multiple of `multiple`."""
  jobs = list(jobs)
  return jobs + [jobs[-1]] * (-len(jobs) % multiple)


def shard(tree: T, mesh: Mesh, axis: int = 0) -> T:
  """Places every leaf with its job axis (`axis`) split over the mesh."""
  spec = PartitionSpec(*([None] * axis), BATCH_AXIS)
  return jax.device_put(tree, NamedSharding(mesh, spec))


def several_processes() -> bool:
  """Whether this is a multi-process run (`jax.distributed.initialize` was
  called); asks no backend, so a single-process run initialises none."""
  return jax.distributed.is_initialized()


def process_share(items: Sequence[T]) -> list[T]:
  """This process's share of `items` in a multi-host run (every n-th one)."""
  return list(items)[jax.process_index()::jax.process_count()]


def wait_for_processes(name: str) -> None:
  """A barrier: returns once every process has called it with `name`.

  Uses the distributed runtime's own barrier, which involves no device
  collective, so a process may wait for as long as the slowest share
  takes; a process that dies makes the others fail (JAX's heartbeat).
  """
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = getattr(distributed.global_state, "client", None)
  if client is None or not hasattr(client, "wait_at_barrier"):
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)
    return
  client.wait_at_barrier(name, 2**31 - 1)  # Milliseconds: about 24 days.


def _vmapped_step(config: Config, mesh: Optional[Mesh],
                  step: Callable = train_lib.train_step) -> Callable:
  """`step` (`train.train_step` or `train.folded_step`) vmapped over jobs;
  with a mesh, each device runs its shard.

  `shard_map` keeps every job's arithmetic on one device (XLA's automatic
  partitioning of the vmapped convolutions fails on grouped convolutions).
  """
  step = jax.vmap(functools.partial(step, config=config))
  if mesh is None or mesh.size == 1:
    return step
  spec = PartitionSpec(BATCH_AXIS)
  return jax.shard_map(step, mesh=mesh, in_specs=spec, out_specs=spec)


def batched_step(config: Config, mesh: Optional[Mesh] = None
                 ) -> train_lib.StepFn:
  """The vmapped step, jitted (one trace per shape and `step_config`),
  state donated."""
  return _jitted_step(train_lib.step_config(config), mesh)


def batched_chunk(config: Config, length: int, mesh: Optional[Mesh] = None
                  ) -> train_lib.StepFn:
  """`length` vmapped train steps in one on-device `lax.scan`; once
  `programs.use_folder` is set, its executable kept there (as
  `train.chunk_program`), so a later process skips tracing it."""
  config = train_lib.step_config(config)
  devices = None if mesh is None else (mesh.axis_names,
                                       mesh.device_ids.tolist())
  return train_lib.kept(f"batch_chunk_{length}",
                        _jitted_chunk(config, length, mesh), config,
                        f" {devices}", donate_argnums=(0,))


# The caches behind the two above: keyed on every argument given
# positionally, so callers with and without the default mesh share one
# compiled program (`lru_cache` keys f(a, b) and f(a, b, None) apart).
@functools.lru_cache(maxsize=None)
def _jitted_step(config, mesh):
  return jax.jit(_vmapped_step(config, mesh), donate_argnums=0)


@functools.lru_cache(maxsize=None)
def _jitted_chunk(config, length, mesh):
  step = _vmapped_step(config, mesh, train_lib.folded_step)
  def chunk(states, crops):
    noise = jax.vmap(lambda s: train_lib.chunk_noise(s, config, length),
                     out_axes=1)(states)
    folded = jax.vmap(lambda s: train_lib.first_fold(s, config))(states)
    return train_lib.scan_steps(step, states, folded, crops, noise)
  return jax.jit(chunk, donate_argnums=0)


def train_batch(jobs: Sequence[Job], config: Config, *,
                loop: str = "scan", chunk: int = 50,
                mesh: Optional[Mesh] = None,
                progress: Optional[ProgressFn] = None
                ) -> tuple[GanState, dict[str, np.ndarray]]:
  """Runs `config.max_iters` iterations of every job, as `train.train`.

  Args:
    jobs: the batch, any image sizes.
    config: the run's settings.
    loop: 'scan' or 'python' (`progress.LOOPS`).
    chunk: iterations between host syncs (progress reports).
    mesh: the devices the job axis is sharded over (see `shard`); None for
      one device.
    progress: progress(done, total, metrics averaged over the jobs).

  Returns:
    The final stacked states and the metrics as numpy arrays of shape
    (iters, jobs).
  """
  states = stack_states(jobs, config)
  def crops_of(start, length):
    crops = batch_crops(jobs, config, start, length)
    return crops if mesh is None else shard(crops, mesh, axis=1)
  if mesh is not None:
    states = shard(states, mesh)
  return train_lib.drive(
      states, crops_of, config.max_iters, batched_step(config, mesh),
      lambda length: batched_chunk(config, length, mesh), loop=loop,
      chunk=chunk, progress=progress)


def default_strategy(backend: Optional[str] = None) -> str:
  """'vmap' on GPU/TPU; 'sequential' on CPU, where a vmapped batch is no
  faster than the unbatched step run once per image (measured in
  `benchmarks/batch_throughput.py`, results in benchmarks/results/batch-*).
  """
  backend = backend or jax.default_backend()
  return "sequential" if backend == "cpu" else "vmap"


def run_sequentially(jobs: Sequence[Job], config: Config | Sequence[Config],
                     *, loop: str = "scan",
                     devices: Optional[Sequence[jax.Device]] = None,
                     progress: Optional[ProgressFn] = None
                     ) -> list[KernelEstimate]:
  """The jobs unbatched, each by `train.train` (one compiled step for every
  image size), as many at a time as there are `devices` (default: all
  local ones), each on a device of its own.

  The same program on another device computes the same bits, so each
  result is `estimate_kernel`'s. On CPU this is how several cores serve a
  folder: XLA:CPU runs one job's step on about one core
  (benchmarks/README.md, "Where the CPU time goes"), and each CPU device
  (`jax_num_cpu_devices`, which the command line sets) is another core.
  `config` may also give each job its own (several estimators' runs of
  one image side by side: `run_estimators`).
  """
  configs = ([config] * len(jobs) if isinstance(config, Config)
             else list(config))
  devices = list(devices or jax.local_devices())[:max(len(jobs), 1)]
  report = summed_progress(progress, len(jobs))
  def run(index: int, job: Job, device: jax.Device) -> KernelEstimate:
    config = configs[index]
    state = train_lib.init_state(job.init_key, config)
    if len(devices) > 1:
      state = jax.device_put(state, device)
    state, history = train_lib.train(
        state, job.data, config, loop=loop,
        progress=report and functools.partial(report, index))
    return kernel_lib.estimate_from_raw(
        train_lib.final_kernel(state, config), history, job.seed, config)
  return one_per_device(run, jobs, devices)


def one_per_device(function: Callable[[int, T, jax.Device], R],
                   items: Sequence[T], devices: Sequence[jax.Device],
                   on_interrupt: Optional[Callable[[], None]] = None
                   ) -> list[R]:
  """function(index, item, device) for every item, as many at a time as
  there are devices, each call with a device no other running call has;
  the results in item order. With one device the calls run in turn on this
  thread. On Ctrl-C, `on_interrupt` runs before the running calls are
  waited for (so that it can stop them)."""
  free = queue.SimpleQueue()
  for device in devices:
    free.put(device)
  def run(index: int, item: T) -> R:
    device = free.get()
    try:
      return function(index, item, device)
    finally:
      free.put(device)
  if len(devices) == 1:
    return [run(index, item) for index, item in enumerate(items)]
  with futures.ThreadPoolExecutor(len(devices)) as pool:
    calls = [pool.submit(run, index, item)
             for index, item in enumerate(items)]
    try:
      return [call.result() for call in calls]
    except KeyboardInterrupt:
      if on_interrupt is not None:
        on_interrupt()
      raise


def summed_progress(progress: Optional[ProgressFn], count: int
                    ) -> Optional[Callable]:
  """report(job, done, total, metrics) for `count` jobs of `total`
  iterations each that may run at once: `progress` sees their iterations
  summed and the latest metrics."""
  if progress is None:
    return None
  lock, done = threading.Lock(), [0] * count
  def report(job: int, job_done: int, total: int,
             metrics: dict[str, float]) -> None:
    with lock:
      done[job] = job_done
      progress(sum(done), total * count, metrics)
  return report


def default_batch_size(backend: Optional[str] = None) -> int:
  """Images per batch when not told: on CPU 4, or one per CPU device when
  there are more (`run_sequentially` trains that many at once); 128 on
  accelerators, where one program trains them all (about 9 MiB of device
  memory per image and seed)."""
  backend = backend or jax.default_backend()
  if backend == "cpu":
    return max(DEFAULT_BATCH_SIZE["cpu"], len(jax.devices("cpu")))
  return DEFAULT_BATCH_SIZE.get(backend, 128)


def run_jobs(jobs: Sequence[Job], config: Config, *,
             loop: str = "scan",
             devices: Optional[Sequence[jax.Device]] = None,
             progress: Optional[ProgressFn] = None,
             strategy: Optional[str] = None,
             pad_to: int = 1) -> list[KernelEstimate]:
  """Trains `jobs` and returns their estimates, in job order.

  Args:
    jobs: from `prepare_jobs`, any image sizes.
    config: the run's settings.
    loop: 'scan' or 'python' (`progress.LOOPS`).
    devices: devices to shard the jobs over (default: all local ones).
    progress: progress(done, total, mean metrics).
    strategy: 'vmap' (one program for all jobs) or 'sequential' (one job
      at a time); None picks the backend's faster one (`default_strategy`).
    pad_to: with 'vmap', train at least this many jobs (repeating the
      last), so that a smaller last batch reuses the compiled program.

  Returns:
    One `KernelEstimate` per job.
  """
  strategy = strategy or default_strategy()
  if strategy == "sequential":
    return run_sequentially(jobs, config, loop=loop, devices=devices,
                            progress=progress)
  if strategy != "vmap":
    raise ValueError(f"strategy must be 'vmap' or 'sequential', got "
                     f"{strategy!r}")
  mesh = batch_mesh(devices)
  padded = pad_to_multiple(
      list(jobs) + [jobs[-1]] * max(0, pad_to - len(jobs)), mesh.size)
  states, history = train_batch(padded, config, loop=loop,
                                mesh=mesh if mesh.size > 1 else None,
                                progress=progress)
  raw = train_lib.final_kernel(states, config)
  return [kernel_lib.estimate_from_raw(
      raw[j], {k: v[:, j] for k, v in history.items()}, job.seed, config)
          for j, job in enumerate(jobs)]


def run_estimators(jobs: Sequence[Job], config: Config,
                   estimators: Sequence[str], *, loop: str = "scan",
                   devices: Optional[Sequence[jax.Device]] = None,
                   progress: Optional[ProgressFn] = None,
                   strategy: Optional[str] = None,
                   pad_to: int = 1) -> list[list[KernelEstimate]]:
  """Every job trained by each of `estimators` (KernelGAN-config ones:
  'kernelgan', 'fkp_lite'), as `run_jobs`: results[e][j].

  The jobs' data and keys serve every estimator (their configs differ in
  the generator only). Sequentially, all (estimator, job) runs share the
  devices, so on two CPU cores one image's two candidates of 'select'
  train side by side; under 'vmap', one batch per estimator.
  """
  configs = [estimator_config(config, name)
             for name in estimators]
  if (strategy or default_strategy()) == "sequential":
    results = run_sequentially(
        list(jobs) * len(configs),
        [c for c in configs for _ in jobs], loop=loop, devices=devices,
        progress=progress)
    return [results[e * len(jobs):(e + 1) * len(jobs)]
            for e in range(len(configs))]
  return [run_jobs(jobs, c, loop=loop, devices=devices, progress=progress,
                   strategy=strategy, pad_to=pad_to) for c in configs]


def estimate_kernels(images: Sequence[np.ndarray],
                     config: Optional[Config] = None,
                     seeds: Sequence[int] = (0,), *,
                     estimator: str = "kernelgan",
                     loop: str = "scan",
                     devices: Optional[Sequence[jax.Device]] = None,
                     progress: Optional[ProgressFn] = None,
                     strategy: Optional[str] = None
                     ) -> list[list[KernelEstimate]]:
  """Estimates the kernels of several images, several seeds each.

  Image [i] seed [s] gives what `estimate_kernel(images[i], config,
  seeds[s])` gives (up to float rounding of batched arithmetic under vmap).

  Args:
    images: H x W [x C] arrays of any sizes; uint8/uint16, or float [0, 1].
    config: settings; the original's defaults when None.
    seeds: seeds run for every image.
    estimator: one of `config.ESTIMATORS`; 'fkp' runs one image and
      seed at a time.
    loop: 'scan' or 'python' (`progress.LOOPS`).
    devices: devices to shard the runs over (default: all local ones).
    progress: progress(done, total, metrics averaged over the runs).
    strategy: 'vmap' or 'sequential'; None picks the backend's faster one
      (`default_strategy`), as the command line does.

  Returns:
    estimates[i][s], a `KernelEstimate` per image and seed.

  Raises:
    ImageError: if an image is too small or constant.
  """
  if estimator == "fkp":
    from kernelgan_jax import fkp  # pylint: disable=g-import-not-at-top
    return [[fkp.estimate_kernel_fkp(image, fkp.from_config(config), seed,
                                     progress=progress)
             for seed in seeds] for image in images]
  config = estimator_config(config, estimator)
  jobs = [job for i, image in enumerate(images)
          for job in prepare_jobs(image, config, seeds, image_index=i)]
  if estimator == "select":
    results = select_results(jobs, images, run_estimators(
        jobs, config, reliability.SELECT_FROM, loop=loop,
        devices=devices, progress=progress, strategy=strategy))
  else:
    results = run_jobs(jobs, config, loop=loop, devices=devices,
                       progress=progress, strategy=strategy)
  per_image = [[] for _ in images]
  for job, result in zip(jobs, results):
    per_image[job.image_index].append(result)
  return per_image


def select_results(jobs: Sequence[Job],
                   images: Sequence[np.ndarray] | Mapping[int, np.ndarray],
                   candidates: Sequence[Sequence[KernelEstimate]]
                   ) -> list[KernelEstimate]:
  """'select' per job: of its candidates' estimates (`run_estimators`),
  the one `reliability.select` keeps on the job's image
  (`images[job.image_index]`)."""
  return [reliability.select(images[job.image_index],
                             [run[j] for run in candidates])
          for j, job in enumerate(jobs)]
