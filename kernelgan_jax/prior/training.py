"""Training FKP's kernel prior: the pure step, data and schedule (spec 3).

As FKP's `FKP/main.py`: a fresh batch of 100 random kernels each step, loss
-mean log p in train mode (batch statistics), Adam at 1e-4 with coupled L2
weight decay 1e-6, the learning rate halved at 40%, 50%, ..., 90% of the
steps (20k, 25k, ..., 45k of the default 50k, the original's epochs 40-90 of
500 steps). The held-out NLL is measured on FKP's validation grid (spec
3.2), in eval mode. `kernelgan_jax.prior.train` is the command.
"""

import functools
from typing import Callable, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
from jaxtyping import Array, Float
import numpy as np
import optax

from kernelgan_jax.prior import flow
from kernelgan_jax.prior import kernels as kernels_lib

LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-6
MILESTONES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # Fractions of the run.
DECAY = 0.5
CHUNK = 500  # Steps per scanned chunk (one of the original's epochs).
VALIDATION_SEED = 2021  # Fixed dequantisation noise of the evaluations.
FRESH_KERNELS = 10_000  # Fresh training kernels for a second NLL.

class TrainState(NamedTuple):
  """Everything training changes: parameters, Adam, running statistics."""
  params: flow.Params
  opt_state: optax.OptState
  running_mean: Float[Array, "blocks d"]
  running_var: Float[Array, "blocks d"]


def learning_rate(steps: int) -> Callable[[Array], Array]:
  """1e-4, halved at each milestone fraction of `steps` (spec 3.3)."""
  milestones = jnp.asarray([round(f * steps) for f in MILESTONES])
  def schedule(count):
    return LEARNING_RATE * DECAY**jnp.sum(count >= milestones)
  return schedule


def optimizer(steps: int) -> optax.GradientTransformation:
  """Adam with torch's coupled L2 `weight_decay` on every parameter (8.6)."""
  return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                     optax.adam(learning_rate(steps)))


def init_state(prior: flow.Prior, tx: optax.GradientTransformation
               ) -> TrainState:
  return TrainState(prior.params, tx.init(prior.params), prior.running_mean,
                    prior.running_var)


def as_prior(state: TrainState, like: flow.Prior) -> flow.Prior:
  """The state's flow with the constants (masks, c, alpha) of `like`."""
  return like._replace(params=state.params, running_mean=state.running_mean,
                       running_var=state.running_var)


def train_step(state: TrainState, y: Float[Array, "b d"], *,
               constants: flow.Prior, tx: optax.GradientTransformation
               ) -> tuple[TrainState, Float[Array, ""]]:
  """One step on a batch of logits: loss = -mean log p, train mode (3.4)."""
  def loss_fn(params):
    prior = as_prior(state._replace(params=params), constants)
    u, logdet, updated = flow.forward_train(prior, y)
    loss = -jnp.mean(flow.base_log_prob(u) + logdet)
    return loss, updated
  (loss, updated), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates), opt_state,
                    updated.running_mean, updated.running_var), loss


@functools.partial(jax.jit, static_argnames="tx")
def train_chunk(state: TrainState, ys: Float[Array, "n b d"],
                constants: flow.Prior, tx: optax.GradientTransformation
                ) -> tuple[TrainState, Float[Array, "n"]]:
  """`train_step` scanned over a chunk of batches; the per-step losses."""
  step = functools.partial(train_step, constants=constants, tx=tx)
  return lax.scan(step, state, ys)


def training_logits(rng: np.random.Generator, count: int,
                    normalization: float, scale: int = flow.SCALE
                    ) -> np.ndarray:
  """`count` fresh kernels in flow space, noise included (spec 1.3, 3.1):
  float64 on the host, then float32."""
  kernels = kernels_lib.random_kernels(rng, count, scale)
  noise = rng.random((count, kernels.shape[-1]**2)) * flow.DEQUANTIZATION
  return flow.pre_process(kernels, normalization, flow.ALPHA,
                          noise).astype(np.float32)


def validation_logits(normalization: float, scale: int = flow.SCALE,
                      seed: int = VALIDATION_SEED) -> np.ndarray:
  """FKP's validation grid (4,624 kernels for x2) with a fixed noise."""
  kernels = kernels_lib.validation_kernels(scale)
  noise = (np.random.default_rng(seed).random(
      (len(kernels), kernels.shape[-1]**2)) * flow.DEQUANTIZATION)
  return flow.pre_process(kernels, normalization, flow.ALPHA,
                          noise).astype(np.float32)


def negative_log_likelihood(prior: flow.Prior, *ys: np.ndarray
                            ) -> list[tuple[float, float]]:
  """Eval-mode -log p in nats per kernel of each set of logits: the mean
  and 2 std / sqrt(N), as the original prints (spec 3.5)."""
  nll = -np.asarray(jax.jit(flow.log_prob_logits)(
      prior, np.concatenate(ys)), np.float64)
  ends = np.cumsum([len(y) for y in ys])[:-1]
  return [(float(part.mean()), float(2 * part.std() / np.sqrt(len(part))))
          for part in np.split(nll, ends)]


def train(steps: int, seed: int, batch_size: int = 100,
          progress: Callable[[int, int, dict], None] | None = None
          ) -> flow.Prior:
  """Trains a fresh x2 prior; kernels and initialisation from `seed`.

  The host draws the next chunk's kernels while the device runs the
  current chunk (JAX dispatches asynchronously).
  """
  rng = np.random.default_rng(seed)
  prior = flow.init_prior(jax.random.key(seed))
  normalization = float(prior.normalization)
  tx = optimizer(steps)
  state = init_state(prior, tx)
  sizes = [CHUNK] * (steps // CHUNK) + ([steps % CHUNK] if steps % CHUNK
                                        else [])
  def draw(n):
    return training_logits(rng, n * batch_size, normalization).reshape(
        n, batch_size, -1)
  ys, done = draw(sizes[0]), 0
  for i, size in enumerate(sizes):
    state, losses = train_chunk(state, ys, prior, tx)
    if i + 1 < len(sizes):
      ys = draw(sizes[i + 1])
    done += size
    loss = float(jnp.mean(losses))
    if not np.isfinite(loss):
      raise FloatingPointError(f"the loss is {loss} after {done} steps")
    if progress is not None:
      progress(done, steps, {"loss": loss})
  return as_prior(state, prior)
