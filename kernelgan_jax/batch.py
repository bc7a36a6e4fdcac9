"""Many images and seeds at once: the unchanged train step under `jax.vmap`.

KernelGAN (Bell-Kligler et al., NeurIPS 2019) trains one small GAN per image.
Here a batch of independent runs, one per (image, seed) "job", trains in one
compiled program: `train.train_step` is vmapped over the leading axis of a
stacked `GanState` and a stacked `TrainData`.

* Keys. Job (image, seed) uses exactly the keys `estimate_kernel(image,
  config, seed)` uses, so each job's result is that single-image result
  (up to float rounding of the batched arithmetic).
* Shapes. Each image is prepared on its own (`data.prepare`: its crop
  corners are clamped inside the real image), then its `image` field is
  zero-padded to a bucket shape (H and W rounded up to `bucket` pixels, the
  elementwise maximum over the batch), so a folder compiles to few shapes
  and no crop ever reads padding.
* Devices. The job axis is sharded over the local devices (`Mesh`,
  `NamedSharding`, the step under `shard_map`), padding the batch with
  copies of its last job to a multiple of the device count. Jobs are independent, so on several hosts
  (after `jax.distributed.initialize()`) each process simply runs its own
  share of the images (`process_share`) on its local devices; nothing is
  exchanged between hosts.
* Loops. As `train.train` (`train.drive`): `lax.scan` chunks by default,
  or a host loop over the jitted step; each is jitted once per (config,
  bucket shape, batch size).
"""

import functools
from typing import NamedTuple, Optional, Sequence, TypeVar

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import jax.numpy as jnp
from jaxtyping import Float
import numpy as np

from kernelgan_jax import data as data_lib
from kernelgan_jax import estimate as estimate_lib
from kernelgan_jax import train as train_lib
from kernelgan_jax.config import Config, validate
from kernelgan_jax.data import TrainData
from kernelgan_jax.estimate import KernelEstimate
from kernelgan_jax.train import GanState

DEFAULT_BUCKET = 64
BATCH_AXIS = "batch"
T = TypeVar("T")


class Job(NamedTuple):
  """One run: an image's prepared data and initial state for one seed."""
  image_index: int
  seed: int
  data: TrainData  # Unpadded: `image` has the image's own shaved shape.
  state: GanState


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
  rgb = estimate_lib.as_float_rgb(image)
  jobs = []
  for seed in seeds:
    data_key, init_key = estimate_lib.seed_keys(seed)
    jobs.append(Job(image_index, seed, data_lib.prepare(rgb, config, data_key),
                    train_lib.init_state(init_key, config)))
  return jobs


def bucket_shape(rows: int, cols: int, bucket: int = DEFAULT_BUCKET
                 ) -> tuple[int, int]:
  """(rows, cols) rounded up to multiples of `bucket`."""
  return (-(-rows // bucket) * bucket, -(-cols // bucket) * bucket)


def batch_shape(jobs: Sequence[Job], bucket: int = DEFAULT_BUCKET
                ) -> tuple[int, int]:
  """The padded image shape of a batch: the largest bucket on each axis."""
  shapes = [bucket_shape(*job.data.image.shape[:2], bucket) for job in jobs]
  return tuple(int(s) for s in np.max(shapes, axis=0))


def pad_image(image: Float[jax.Array, "h w c"], shape: tuple[int, int]
              ) -> Float[jax.Array, "H W c"]:
  """Zero-pads an image at the bottom and right to `shape`."""
  rows, cols = image.shape[:2]
  return jnp.pad(image, ((0, shape[0] - rows), (0, shape[1] - cols), (0, 0)))


def stack_trees(trees: Sequence[T]) -> T:
  """Stacks equally shaped pytrees along a new leading axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def stack_jobs(jobs: Sequence[Job], bucket: int = DEFAULT_BUCKET
               ) -> tuple[GanState, TrainData]:
  """The batch's stacked states and data, images padded to one shape."""
  shape = batch_shape(jobs, bucket)
  data = [job.data._replace(image=pad_image(job.data.image, shape))
          for job in jobs]
  return stack_trees([job.state for job in jobs]), stack_trees(data)


def batch_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all local devices)."""
  devices = list(devices or jax.local_devices())
  return Mesh(np.array(devices), (BATCH_AXIS,))


def pad_to_multiple(jobs: Sequence[Job], multiple: int) -> list[Job]:
  """Repeats the last job until the count is a multiple of `multiple`."""
  jobs = list(jobs)
  return jobs + [jobs[-1]] * (-len(jobs) % multiple)


def shard(tree: T, mesh: Mesh) -> T:
  """Places every leaf with its leading (job) axis split over the mesh."""
  sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
  return jax.device_put(tree, sharding)


def process_share(items: Sequence[T]) -> list[T]:
  """This process's share of `items` in a multi-host run (every n-th one)."""
  return list(items)[jax.process_index()::jax.process_count()]


def _vmapped_step(config: Config, mesh: Optional[Mesh]) -> train_lib.StepFn:
  """The step vmapped over jobs; with a mesh, each device runs its shard.

  `shard_map` keeps every job's arithmetic on one device (XLA's automatic
  partitioning of the vmapped convolutions fails on grouped convolutions).
  """
  step = jax.vmap(functools.partial(train_lib.train_step, config=config))
  if mesh is None or mesh.size == 1:
    return step
  spec = PartitionSpec(BATCH_AXIS)
  return jax.shard_map(step, mesh=mesh, in_specs=spec, out_specs=spec)


def batched_step(config: Config, mesh: Optional[Mesh] = None
                 ) -> train_lib.StepFn:
  """The vmapped step, jitted (one trace per shape), state donated."""
  return _jitted_step(config, mesh)


def batched_chunk(config: Config, length: int, mesh: Optional[Mesh] = None
                  ) -> train_lib.StepFn:
  """`length` vmapped train steps in one on-device `lax.scan`."""
  return _jitted_chunk(config, length, mesh)


@functools.lru_cache(maxsize=None)
def _jitted_step(config, mesh):
  return jax.jit(_vmapped_step(config, mesh), donate_argnums=0)


@functools.lru_cache(maxsize=None)
def _jitted_chunk(config, length, mesh):
  step = _vmapped_step(config, mesh)
  def chunk(states, data):
    noise = jax.vmap(
        lambda s, d: train_lib.chunk_noise(s, d, config, length),
        out_axes=1)(states, data)
    return train_lib.scan_steps(step, states, data, noise)
  return jax.jit(chunk, donate_argnums=0)


def train_batch(states: GanState, data: TrainData, config: Config, *,
                loop: Optional[str] = None, chunk: int = 50,
                mesh: Optional[Mesh] = None,
                progress: Optional[train_lib.ProgressFn] = None
                ) -> tuple[GanState, dict[str, np.ndarray]]:
  """Runs `config.max_iters` iterations of every job, as `train.train`.

  Args:
    states: stacked `GanState`s, leading axis = jobs.
    data: stacked `TrainData`, same leading axis.
    config: the run's settings.
    loop: 'python' or 'scan'; None picks the backend's faster one.
    chunk: iterations between host syncs (progress reports).
    mesh: the devices the job axis is sharded over (see `shard`); None for
      one device.
    progress: progress(done, total, metrics averaged over the jobs).

  Returns:
    The final states and the metrics as numpy arrays of shape (iters, jobs).
  """
  return train_lib.drive(
      states, data, config.max_iters, batched_step(config, mesh),
      lambda length: batched_chunk(config, length, mesh), loop=loop,
      chunk=chunk, progress=progress)


def raw_kernels(states: GanState, config: Config) -> np.ndarray:
  """The (jobs, 13, 13) kernels the batch's generators represent."""
  g_def = train_lib.networks(config).g_def
  fold = jax.vmap(lambda p: train_lib.generator_kernel(g_def, p))
  return np.asarray(fold(states.g_params))


def default_strategy(backend: Optional[str] = None) -> str:
  """'vmap' on GPU/TPU; 'sequential' on CPU, where on 2 cores a vmapped
  batch (0.11, 0.16, 0.10 images/s at batch 1, 4, 16) is no faster than the
  unbatched step once per image (~0.17 images/s; benchmarks/results/batch-*).
  """
  backend = backend or jax.default_backend()
  return "sequential" if backend == "cpu" else "vmap"


def run_sequentially(jobs: Sequence[Job], config: Config, *,
                     bucket: int = DEFAULT_BUCKET,
                     loop: Optional[str] = None,
                     progress: Optional[train_lib.ProgressFn] = None
                     ) -> list[KernelEstimate]:
  """The jobs one after another with `train.train`, images padded to the
  batch's bucket shape so the single step compiles once per bucket."""
  shape = batch_shape(jobs, bucket)
  results = []
  for job in jobs:
    data = job.data._replace(image=pad_image(job.data.image, shape))
    state, history = train_lib.train(job.state, data, config, loop=loop,
                                     progress=progress)
    results.append(estimate_lib.estimate_from_raw(
        train_lib.final_kernel(state, config), history, job.seed, config))
  return results


def run_jobs(jobs: Sequence[Job], config: Config, *,
             bucket: int = DEFAULT_BUCKET, loop: Optional[str] = None,
             devices: Optional[Sequence[jax.Device]] = None,
             progress: Optional[train_lib.ProgressFn] = None,
             strategy: str = "vmap") -> list[KernelEstimate]:
  """Trains `jobs` as one batch and returns their estimates, in job order.

  Args:
    jobs: from `prepare_jobs`, any image sizes.
    config: the run's settings.
    bucket: image sides are padded up to multiples of this.
    loop: 'python' or 'scan'; None picks the backend's faster one.
    devices: devices to shard the jobs over (default: all local ones).
    progress: progress(done, total, mean metrics).
    strategy: 'vmap' (one program for all jobs) or 'sequential' (one job
      at a time; as fast or faster on XLA:CPU, see `default_strategy`).

  Returns:
    One `KernelEstimate` per job.
  """
  if strategy == "sequential":
    return run_sequentially(jobs, config, bucket=bucket, loop=loop,
                            progress=progress)
  if strategy != "vmap":
    raise ValueError(f"strategy must be 'vmap' or 'sequential', got "
                     f"{strategy!r}")
  mesh = batch_mesh(devices)
  padded = pad_to_multiple(jobs, mesh.size)
  states, data = stack_jobs(padded, bucket)
  if mesh.size > 1:
    states, data = shard(states, mesh), shard(data, mesh)
  else:
    mesh = None
  states, history = train_batch(states, data, config, loop=loop, mesh=mesh,
                                progress=progress)
  raw = raw_kernels(states, config)
  return [estimate_lib.estimate_from_raw(
      raw[j], {k: v[:, j] for k, v in history.items()}, job.seed, config)
          for j, job in enumerate(jobs)]


def estimate_kernels(images: Sequence[np.ndarray],
                     config: Optional[Config] = None,
                     seeds: Sequence[int] = (0,), *,
                     bucket: int = DEFAULT_BUCKET, loop: Optional[str] = None,
                     devices: Optional[Sequence[jax.Device]] = None,
                     progress: Optional[train_lib.ProgressFn] = None,
                     strategy: str = "vmap"
                     ) -> list[list[KernelEstimate]]:
  """Estimates the kernels of several images, several seeds each, at once.

  All (image, seed) runs train in one vmapped program; image [i] seed [s]
  gives what `estimate_kernel(images[i], config, seeds[s])` gives, up to
  float rounding.

  Args:
    images: H x W [x C] arrays of any sizes; uint8/uint16, or float [0, 1].
    config: settings; the original's defaults when None.
    seeds: seeds run for every image.
    bucket: image sides are padded up to multiples of this.
    loop: 'python' or 'scan'; None picks the backend's faster one.
    devices: devices to shard the runs over (default: all local ones).
    progress: progress(done, total, metrics averaged over the runs).
    strategy: 'vmap' or 'sequential' (see `run_jobs`, `default_strategy`).

  Returns:
    estimates[i][s], a `KernelEstimate` per image and seed.

  Raises:
    ImageError: if an image is too small or constant.
  """
  config = validate(config or Config())
  jobs = [job for i, image in enumerate(images)
          for job in prepare_jobs(image, config, seeds, image_index=i)]
  results = run_jobs(jobs, config, bucket=bucket, loop=loop, devices=devices,
                     progress=progress, strategy=strategy)
  per_image = [[] for _ in images]
  for job, result in zip(jobs, results):
    per_image[job.image_index].append(result)
  return per_image
