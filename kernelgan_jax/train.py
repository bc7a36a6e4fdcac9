"""The pure KernelGAN train step and the loops that drive it (spec 6).

One iteration is one G step then one D step (spec 6.1), D evaluated three
times (in the G step, on the real crop, on the fake), each time with one
spectral-norm power iteration. All mutable things live in `GanState`, a
pytree, so the step is a pure function: jitted once, and `jax.vmap`-able
over images and seeds as it stands. It reads only fixed-size crops
(`data.Crops`), gathered on the host a chunk at a time, so one compiled
program serves every image size.

Flax and optax are imported where the step is built and traced, not with
this module: the state holds the networks' and optimisers' leaves in flat
tuples (`pack`), so a process whose programs come from the kept folder
(`programs`) never needs them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, TYPE_CHECKING

import jax
from jax import lax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int
import numpy as np

from kernelgan_jax import degradation
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import losses
from kernelgan_jax import programs
from kernelgan_jax import schedule as schedule_lib
from kernelgan_jax.config import Config
from kernelgan_jax import data as data_lib
from kernelgan_jax.data import Crops, TrainData
from kernelgan_jax.progress import LOOPS, ProgressFn

if TYPE_CHECKING:
  from flax import nnx
  import optax
  from kernelgan_jax import prior as prior_lib

Metrics = dict[str, Float[Array, ""]]


class GanState(NamedTuple):
  """Everything that changes during training, for one image and seed.

  The first five fields are Flax states or optax states; `init_state` and
  the step hand them out packed (`pack`: each a tuple of its leaves), the
  step's own code sees them unpacked (`unpack`).
  """
  g_params: Any  # G's weights (nnx.State), or the prior generator's z.
  d_params: Any  # nnx.State.
  d_stats: Any  # nnx.State: the spectral-norm u vectors.
  g_opt: Any  # optax.OptState.
  d_opt: Any
  schedule: schedule_lib.ScheduleState
  step: Int[Array, ""]
  key: jax.Array


_PACKED = ("g_params", "d_params", "d_stats", "g_opt", "d_opt")


def pack(state: GanState) -> GanState:
  """`state` with each of `_PACKED` as the tuple of its leaves."""
  return state._replace(**{name: tuple(jax.tree.leaves(getattr(state, name)))
                           for name in _PACKED})


def unpack(state: GanState, config: Config) -> GanState:
  """A `pack`ed state with its Flax and optax states rebuilt."""
  trees = networks(config).trees
  return state._replace(**{
      name: jax.tree.unflatten(tree, getattr(state, name))
      for name, tree in trees.items()})


class Networks(NamedTuple):
  """The static halves of G and D, G's kernel map and the optimisers.

  `fold_of(g_params)` is G's kernel (its `.kernel`) with what its gradient
  needs (a `kernel.Fold`); `fold_grads(g_params, fold, kernel_grad)` maps a
  loss's gradient with respect to the kernel to one with respect to
  `g_params` (for the prior generator by differentiating it again).
  `trees` are the structures of `GanState`'s packed fields, by name
  (`unpack`).
  """
  g_def: nnx.GraphDef | None  # None for the prior generator.
  d_def: nnx.GraphDef
  fold_of: Callable[[nnx.State | Array], kernel_lib.Fold]
  fold_grads: Callable[[nnx.State | Array, kernel_lib.Fold,
                        Float[Array, "k k"]], nnx.State | Array]
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  trees: Mapping[str, jax.tree_util.PyTreeDef]


@functools.lru_cache(maxsize=None)
def networks(config: Config) -> Networks:
  """Graph definitions and optimisers (cached: one per config).

  The modules are built abstractly (`nnx.eval_shape`): only their
  structure is kept, so no weights are computed.
  """
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from kernelgan_jax.models import LinearGenerator, PatchDiscriminator  # pylint: disable=g-import-not-at-top
  d_def, d_params, d_stats = nnx.split(nnx.eval_shape(
      lambda: PatchDiscriminator(config, rngs=nnx.Rngs(0))), nnx.Param, ...)
  def adam(lr):
    return optax.adam(schedule_lib.learning_rate(lr, config),
                      b1=config.beta1, b2=config.beta2, eps=1e-8)
  def trees(g_params, g_tx, d_tx):  # Of GanState's packed fields.
    return dict(zip(_PACKED, (jax.tree.structure(x) for x in (
        g_params, d_params, d_stats, jax.eval_shape(g_tx.init, g_params),
        jax.eval_shape(d_tx.init, d_params)))))
  if config.generator == "prior":
    from kernelgan_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top  # Only for it.
    prior = prior_lib.load_prior(config.prior_path)
    kernel_of = functools.partial(prior_kernel, prior)
    g_tx, d_tx = adam(config.latent_lr), adam(config.d_lr)
    return Networks(None, d_def, lambda z: kernel_lib.Fold(kernel_of(z), ()),
                    lambda z, _, grad: jax.vjp(kernel_of, z)[1](grad)[0],
                    g_tx, d_tx, trees(jax.eval_shape(prior_lib.initial_latent),
                                      g_tx, d_tx))
  g_def, g_params = nnx.split(nnx.eval_shape(
      lambda: LinearGenerator(config, rngs=nnx.Rngs(0))))
  g_tx, d_tx = adam(config.g_lr), adam(config.d_lr)
  return Networks(g_def, d_def, functools.partial(generator_fold, g_def),
                  functools.partial(generator_fold_grads, g_def),
                  g_tx, d_tx, trees(g_params, g_tx, d_tx))


def prior_kernel(prior: "prior_lib.Prior", z: Float[Array, "latent"]
                 ) -> Float[Array, "13 13"]:
  """The prior's 11x11 kernel of z on G's 13x13 canvas, padded so that its
  centre of mass, (k - sf) / 2 = 4.5 in FKP's convention, lands on
  KernelGAN's 6.5 (`kernel.center_of_mass_target`)."""
  from kernelgan_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top
  return jnp.pad(prior_lib.kernel_from_latent(prior, z), ((2, 0), (2, 0)))


def _initial_generator(key: jax.Array, config: Config) -> nnx.State | Array:
  """G's initial weights, or the prior generator's z: FKP's fixed start
  (`prior.initial_latent`), the same for every image and seed."""
  if config.generator == "prior":
    from kernelgan_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top
    return prior_lib.initial_latent()
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from kernelgan_jax.models import LinearGenerator  # pylint: disable=g-import-not-at-top
  _, g_params = nnx.split(LinearGenerator(config, rngs=nnx.Rngs(key)))
  return g_params


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(data key, init key) of a seed: the crops and noise, the weights."""
  if not 0 <= seed < 2**31:  # Beyond int32: JAX's own handling.
    data_key, init_key = jax.random.split(jax.random.key(seed))
    return data_key, init_key
  return programs.stored("seed_keys", _split_seed, "")(np.int32(seed))


@jax.jit
def _split_seed(seed: Int[Array, ""]) -> tuple[jax.Array, jax.Array]:
  data_key, init_key = jax.random.split(jax.random.key(seed))
  return data_key, init_key


def init_state(key: jax.Array, config: Config) -> GanState:
  """Fresh networks, optimisers and schedule from one key.

  Compiled: built op by op, the state costs a dispatch per weight and
  optimiser slot; as one program it comes from the compilation cache, or
  once `programs.use_folder` is set from there without tracing. There the
  state of a key met before is read instead (`programs.stored_result`):
  the program's executable takes longer to load.
  """
  config = init_config(config)
  return kept("init_state", _jitted_init(config), config, results=True)(key)


def kept(name: str, jitted: Callable, config: Config, key: str = "", *,
         donate_argnums: tuple[int, ...] = (),
         results: bool = False) -> Callable:
  """`programs.stored` keyed by `config` (and `key`), with `results` its
  results kept too (`programs.stored_result`, as '<name>_values'); or
  `jitted` itself for the prior generator, whose weights file the program
  embeds."""
  if config.generator == "prior":
    return jitted
  program = programs.stored(name, jitted, f"{config!r}{key}",
                            donate_argnums=donate_argnums)
  if results:
    return programs.stored_result(f"{name}_values", program,
                                  f"{config!r}{key}")
  return program


# What the initial state (and G's kernel fold) depends on: the networks'
# shapes and initialisers, the schedule's first weight, the precision.
_INIT_FIELDS = ("generator", "prior_path", "g_chan", "g_structure",
                "g_init_gain", "d_chan", "d_n_layers", "d_kernel_size",
                "bn_epsilon", "sn_epsilon", "lambda_bicubic",
                "matmul_precision")


def init_config(config: Config) -> Config:
  """`config` with every other field at its default, so that configs that
  differ only in training settings (iterations, rates, loss weights) share
  one compiled initial state and fold."""
  return Config(**{name: getattr(config, name) for name in _INIT_FIELDS})


@functools.lru_cache(maxsize=None)
def _jitted_init(config: Config) -> Callable[[jax.Array], GanState]:
  return jax.jit(functools.partial(_build_state, config=config))


def _build_state(key: jax.Array, config: Config) -> GanState:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from kernelgan_jax.models import PatchDiscriminator  # pylint: disable=g-import-not-at-top
  nets = networks(config)
  g_key, d_key, run_key = jax.random.split(key, 3)
  g_params = _initial_generator(g_key, config)
  _, d_params, d_stats = nnx.split(
      PatchDiscriminator(config, rngs=nnx.Rngs(d_key)), nnx.Param, ...)
  return pack(GanState(
      g_params=g_params, d_params=d_params, d_stats=d_stats,
      g_opt=nets.g_tx.init(g_params), d_opt=nets.d_tx.init(d_params),
      schedule=schedule_lib.init_schedule(config),
      step=jnp.int32(0), key=run_key))


def generator_kernel(g_def: nnx.GraphDef, g_params: nnx.State
                     ) -> Float[Array, "k k"]:
  """The 13x13 kernel G's current weights represent."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  return kernel_lib.extract_kernel(nnx.merge(g_def, g_params).conv_kernels())


def generator_fold(g_def: nnx.GraphDef, g_params: nnx.State
                   ) -> kernel_lib.Fold:
  """`generator_kernel` with what its gradient needs (`kernel.fold`)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  return kernel_lib.fold(nnx.merge(g_def, g_params).conv_kernels())


def generator_fold_grads(g_def: nnx.GraphDef, g_params: nnx.State,
                         folded: kernel_lib.Fold,
                         kernel_grad: Float[Array, "k k"]) -> nnx.State:
  """A loss's gradient with respect to G's weights, from its gradient with
  respect to G's kernel (`kernel.fold_gradients`)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  convs, to_state = jax.vjp(
      lambda p: nnx.merge(g_def, p).conv_kernels(), g_params)
  return to_state(kernel_lib.fold_gradients(convs, folded, kernel_grad))[0]


def final_kernel(state: GanState, config: Config) -> np.ndarray:
  """The 13x13 kernel of a state's generator (or of a stack of states), on
  the host, folded at `config.matmul_precision`."""
  batch_dims = np.ndim(state.step)
  config = init_config(config)
  name = f"fold_over_{batch_dims}_axes" if batch_dims else "fold"
  fold = kept(name, _jitted_fold(config, batch_dims), config)
  return np.asarray(fold(state.g_params))


@functools.lru_cache(maxsize=None)
def _jitted_fold(config: Config, batch_dims: int) -> Callable:
  """G's kernel fold, vmapped over `batch_dims` leading axes, jitted.

  The networks are built only when it is traced: with the program kept on
  disk (`kept`), never in that process.
  """
  def folded(g_params):
    nets = networks(config)
    fold = lambda p: nets.fold_of(
        jax.tree.unflatten(nets.trees["g_params"], p)).kernel
    for _ in range(batch_dims):
      fold = jax.vmap(fold)
    with jax.default_matmul_precision(config.matmul_precision):
      return fold(g_params)
  return jax.jit(folded)


def _discriminate(d_def, d_params, d_stats, patches):
  """D's score maps and its updated spectral-norm state."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  model = nnx.merge(d_def, d_params, d_stats, copy=True)
  scores = model(patches)
  return scores, nnx.state(model, nnx.Not(nnx.Param))


class StepNoise(NamedTuple):
  """One iteration's standard normal noise for D's real and fake inputs."""
  real: Float[Array, "s s c"]
  fake: Float[Array, "s s c"]


def draw_noise(key: jax.Array, step: Int[Array, ""], shape: tuple[int, ...]
               ) -> StepNoise:
  """The noise of iteration `step`: a function of the run key alone.

  Materialised with a barrier: otherwise XLA:CPU fuses the random-number
  generator into each of the 49 window slices of D's first conv and
  recomputes it in every one.
  """
  real_key, fake_key = jax.random.split(jax.random.fold_in(key, step))
  return lax.optimization_barrier(StepNoise(
      jax.random.normal(real_key, shape), jax.random.normal(fake_key, shape)))


def _noise_shape(config: Config) -> tuple[int, ...]:
  return (config.g_output_size, config.g_output_size, 3)


def _generator_loss(kernel, state, g_input, config, nets, mask):
  """L_G = L_adv + weighted regularisers (spec 5.4), with its parts, as a
  function of G's kernel."""
  fake = degradation.downscale(g_input, kernel, padding="valid")
  d_fake, d_stats = _discriminate(nets.d_def, state.d_params, state.d_stats,
                                  fake[None])
  sched = state.schedule
  parts = {
      "loss_adversarial": losses.gan_loss(d_fake, is_real=True),
      "loss_bicubic": losses.bicubic_loss(g_input, fake),
      "loss_sum2one": losses.sum_to_one_loss(kernel),
      "loss_boundaries": losses.boundaries_loss(kernel, mask),
      "loss_centralized": losses.centralized_loss(
          kernel, kernel_lib.center_of_mass_target(kernel.shape[0], 2)),
      "loss_sparse": losses.sparsity_loss(kernel, config.sparsity_power),
  }
  total = (parts["loss_adversarial"]
           + sched.lambda_bicubic * parts["loss_bicubic"]
           + config.lambda_sum2one * parts["loss_sum2one"]
           + config.lambda_boundaries * parts["loss_boundaries"]
           + sched.lambda_centralized * parts["loss_centralized"]
           + sched.lambda_sparse * parts["loss_sparse"])
  return total, (d_stats, parts)


def _discriminator_loss(d_params, d_stats, real, fake, d_def):
  """L_D = (L1(D(fake), 0) + L1(D(real), 1)) / 2 (spec 5.1).

  D sees the real patch, then the fake, as the original's two calls. Kept
  as two calls (not one batch of two): the real one does not depend on the
  G step, so XLA runs it on another core meanwhile (benchmarks/README.md,
  "Where the CPU time goes").
  """
  d_real, d_stats = _discriminate(d_def, d_params, d_stats, real[None])
  d_fake, d_stats = _discriminate(d_def, d_params, d_stats, fake[None])
  loss = 0.5 * (losses.gan_loss(d_fake, is_real=False)
                + losses.gan_loss(d_real, is_real=True))
  return loss, d_stats


def train_step(state: GanState, crops: Crops,
               noise: StepNoise | None = None, *, config: Config
               ) -> tuple[GanState, Metrics]:
  """One KernelGAN iteration: G step, D step, schedule update (spec 6.1).

  Pure: the same (state, crops) always gives the same result. Bind `config`
  with `functools.partial` before jitting. `noise`, when given, must be
  `draw_noise(state.key, state.step, ...)`: scanned chunks draw a whole
  chunk's noise at once (XLA:CPU runs threefry as a loop of small kernels).
  Matrix products run at `config.matmul_precision`.
  """
  state, _, metrics = folded_step(state, first_fold(state, config), crops,
                                 noise, config=config)
  return state, metrics


def folded_step(state: GanState, folded: kernel_lib.Fold, crops: Crops,
                noise: StepNoise | None, *, config: Config
                ) -> tuple[GanState, kernel_lib.Fold, Metrics]:
  """`train_step` given G's fold (`first_fold`, then the previous step's),
  returning the updated G's fold with the new state: the D step folds the
  updated G anyway, so a scan of steps folds G once per iteration instead
  of twice."""
  with jax.default_matmul_precision(config.matmul_precision):
    state, folded, metrics = _train_step(unpack(state, config), folded,
                                         crops, noise, config)
  return pack(state), folded, metrics


def first_fold(state: GanState, config: Config) -> kernel_lib.Fold:
  """G's fold for the first `folded_step` of a chunk."""
  with jax.default_matmul_precision(config.matmul_precision):
    return networks(config).fold_of(unpack(state, config).g_params)


def _train_step(state, folded, crops, noise, config):
  import optax  # pylint: disable=g-import-not-at-top
  nets = networks(config)
  mask = losses.boundary_mask(config.g_kernel_size,
                              config.boundary_mask_scale)
  i = state.step
  if noise is None:
    noise = draw_noise(state.key, i, _noise_shape(config))
  g_input = crops.g_input
  # Noise std is in [0, 1] units; the image is in [-1, 1], hence 2x.
  real = crops.d_real + 2.0 * config.real_noise_std * noise.real

  (g_total, (d_stats, parts)), kernel_grad = jax.value_and_grad(
      _generator_loss, has_aux=True)(
          folded.kernel, state, g_input, config, nets, mask)
  g_grads = nets.fold_grads(state.g_params, folded, kernel_grad)
  g_updates, g_opt = nets.g_tx.update(g_grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  if config.generator == "prior":
    from kernelgan_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top
    g_params = prior_lib.project_latent(g_params)

  new_fold = nets.fold_of(g_params)
  fake = degradation.downscale(g_input, new_fold.kernel, padding="valid")
  fake = lax.stop_gradient(fake) + config.fake_noise_std * noise.fake
  (d_loss, d_stats), d_grads = jax.value_and_grad(
      _discriminator_loss, has_aux=True)(
          state.d_params, d_stats, real, fake, nets.d_def)
  d_updates, d_opt = nets.d_tx.update(d_grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  sched = schedule_lib.update_schedule(state.schedule, i,
                                       parts["loss_bicubic"], config)
  metrics = dict(parts, loss_generator=g_total, loss_discriminator=d_loss,
                 lambda_bicubic=state.schedule.lambda_bicubic)
  new_state = GanState(g_params, d_params, d_stats, g_opt, d_opt, sched,
                       i + 1, state.key)
  return new_state, new_fold, metrics


StepFn = Callable[[GanState, Crops], tuple[GanState, Metrics]]


# Config fields the step never reads: the loops' length and the crop draws
# (max_iters), the host's data preparation and the kernel's post-processing.
_HOST_FIELDS = ("max_iters", "shave_edges", "real_image", "n_filtering", "x4")


def step_config(config: Config) -> Config:
  """`config` with the fields the step does not read at their defaults, so
  that runs of any length, at x2 or x4, share one compiled step."""
  return config.replace(**{name: getattr(Config, name)
                           for name in _HOST_FIELDS})


def jitted_step(config: Config) -> StepFn:
  """`train_step` jitted once per config (`step_config`), state donated."""
  return _jitted_step(step_config(config))


@functools.lru_cache(maxsize=None)
def _jitted_step(config: Config) -> StepFn:
  return jax.jit(functools.partial(train_step, config=config),
                 donate_argnums=0)


def chunk_noise(state: GanState, config: Config, length: int) -> StepNoise:
  """`draw_noise` for the next `length` iterations, stacked."""
  shape = _noise_shape(config)
  return jax.vmap(lambda j: draw_noise(state.key, state.step + j, shape))(
      jnp.arange(length))


def scan_steps(step: Callable, state, folded: kernel_lib.Fold, crops: Crops,
               noise: StepNoise):
  """`step` (a `folded_step`) over the leading axis of `crops` and `noise`
  in one `lax.scan`, from G's fold `folded`; the final state and the
  metrics."""
  def body(carry, xs):
    state, folded, metrics = step(*carry, *xs)
    return (state, folded), metrics
  (state, _), metrics = lax.scan(body, (state, folded), (crops, noise))
  return state, metrics


def jitted_chunk(config: Config, length: int) -> StepFn:
  """`length` train steps in one on-device `lax.scan` over stacked crops
  (one program per `step_config`)."""
  return _jitted_chunk(step_config(config), length)


@functools.lru_cache(maxsize=None)
def _jitted_chunk(config: Config, length: int) -> StepFn:
  step = functools.partial(folded_step, config=config)
  def chunk(state, crops):
    return scan_steps(step, state, first_fold(state, config), crops,
                      chunk_noise(state, config, length))
  return jax.jit(chunk, donate_argnums=0)


def chunk_program(config: Config, length: int) -> StepFn:
  """`jitted_chunk`, or once `programs.use_folder` is set its executable
  kept there, so a later process skips tracing it (not for the prior
  generator, whose weights file the program embeds)."""
  config = step_config(config)
  return kept(f"train_chunk_{length}", _jitted_chunk(config, length), config,
              donate_argnums=(0,))


CropSource = Callable[[int, int], Crops]


def drive(state, crops_of: CropSource, total: int, step: StepFn,
          chunk_of: Callable[[int], StepFn], *, loop: str = "scan",
          chunk: int = 50, progress: ProgressFn | None = None):
  """Runs `total` iterations of a jitted step (or of its scanned chunks).

  Shared by `train` and the batched trainer. 'scan' is the default on
  every backend: even on CPU a host loop's per-step cost is mostly Python
  (flattening the state pytree), see `benchmarks/loops.py`; 'python' is
  for debugging. Training continues from
  `state.step`. The crops of the next chunk are gathered on the host while
  the device runs the current one; metrics come back once per chunk, and
  `progress` sees their last values (averaged over any leading batch axis).

  Args:
    state: the (possibly stacked) training state.
    crops_of: crops_of(start, length) -> the crops of iterations start ..
      start + length - 1, iterations on the leading axis (then any batch
      axis).
    total: iterations to run.
    step: the jitted step, (state, crops) -> (state, metrics).
    chunk_of: length -> a jitted `lax.scan` of that many steps.
    loop: one of `LOOPS`.
    chunk: iterations between host syncs.
    progress: progress(done, total, last_metrics) after each chunk.

  Returns:
    The final state and the per-iteration metrics as numpy arrays.
  """
  if loop not in LOOPS:
    raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
  lengths = [min(chunk, total - start) for start in range(0, total, chunk)]
  first = int(np.max(jax.device_get(state.step)))
  done, history = 0, []
  crops = crops_of(first, lengths[0])
  for index, length in enumerate(lengths):
    if loop == "scan":
      state, metrics = chunk_of(length)(state, crops)
    else:
      per_step = []
      for j in range(length):
        state, m = step(state, jax.tree.map(lambda x, j=j: x[j], crops))
        per_step.append(m)
      metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)
    done += length
    if index + 1 < len(lengths):  # Gathered while the device works.
      crops = crops_of(first + done, lengths[index + 1])
    history.append(jax.device_get(metrics))
    if progress is not None:
      progress(done, total, {k: float(np.mean(v[-1]))
                             for k, v in history[-1].items()})
  return state, {k: np.concatenate([h[k] for h in history])
                 for k in history[0]}


def train(state: GanState, data: TrainData, config: Config, *,
          loop: str = "scan", chunk: int = 50,
          progress: ProgressFn | None = None
          ) -> tuple[GanState, dict[str, np.ndarray]]:
  """Runs `config.max_iters` iterations and returns the loss history.

  Args:
    state: from `init_state`.
    data: from `data.prepare` (host arrays; any image size).
    config: the run's settings.
    loop: 'scan' (chunks of `chunk` iterations on device) or 'python' (a
      host loop over the jitted step); see `drive`.
    chunk: iterations between host syncs (progress reports).
    progress: called as progress(done, total, last_metrics) after each chunk.

  Returns:
    The final state and the per-iteration metrics as numpy arrays.
  """
  return drive(state, lambda start, length: data_lib.crops(
      data, config, start, length), config.max_iters, jitted_step(config),
               lambda length: chunk_program(config, length), loop=loop,
               chunk=chunk, progress=progress)
