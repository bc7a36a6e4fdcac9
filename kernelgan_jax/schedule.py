"""The original `Learner` as array state (spec 6.2), and the LR schedule.

Loss weights change with the training history: the bicubic term starts at
5 and, once G is "similar to bicubic" (three consecutive iterations with
L_bic < 0.4), is divided by 100 every 200 iterations down to 5e-6; when it
first drops below 5e-3 the centralisation and sparsity terms switch on.
Everything is `jnp.where` on arrays, so the jitted step never branches in
Python and the schedule vmaps over images.
"""

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from kernelgan_jax.config import Config


class ScheduleState(NamedTuple):
  """The learner's mutable state, one array per field."""
  lambda_bicubic: Float[Array, ""]
  lambda_centralized: Float[Array, ""]
  lambda_sparse: Float[Array, ""]
  similar_to_bicubic: Bool[Array, ""]
  bic_loss_counter: Int[Array, ""]
  insert_constraints: Bool[Array, ""]


def init_schedule(config: Config) -> ScheduleState:
  """Initial weights: bicubic on, centralisation and sparsity off."""
  return ScheduleState(
      lambda_bicubic=jnp.float32(config.lambda_bicubic),
      lambda_centralized=jnp.float32(0.0),
      lambda_sparse=jnp.float32(0.0),
      similar_to_bicubic=jnp.bool_(False),
      bic_loss_counter=jnp.int32(0),
      insert_constraints=jnp.bool_(True))


def update_schedule(state: ScheduleState, iteration: Int[Array, ""],
                    loss_bicubic: Float[Array, ""], config: Config
                    ) -> ScheduleState:
  """One call of the original `Learner.update` after iteration `iteration`."""
  active = iteration > 0
  # Phase 1: wait for `bic_loss_streak` consecutive low bicubic losses.
  waiting = active & ~state.similar_to_bicubic
  below = loss_bicubic < config.bic_loss_to_start_change
  streak_done = state.bic_loss_counter >= config.bic_loss_streak - 1
  counter = jnp.where(
      waiting,
      jnp.where(below, jnp.where(streak_done, state.bic_loss_counter,
                                 state.bic_loss_counter + 1), 0),
      state.bic_loss_counter)
  # Phase 2 (from the call after the flag is set): decay the bicubic weight.
  decay = (active & state.similar_to_bicubic
           & (iteration % config.lambda_update_every == 0)
           & (state.lambda_bicubic > config.lambda_bicubic_min))
  lambda_bicubic = jnp.where(
      decay,
      jnp.maximum(state.lambda_bicubic / config.lambda_bicubic_decay,
                  config.lambda_bicubic_min),
      state.lambda_bicubic)
  switch_on = (decay & state.insert_constraints
               & (lambda_bicubic < config.constraints_at_lambda_bicubic))
  return ScheduleState(
      lambda_bicubic=lambda_bicubic,
      lambda_centralized=jnp.where(
          switch_on, config.lambda_centralized_end, state.lambda_centralized),
      lambda_sparse=jnp.where(
          switch_on, config.lambda_sparse_end, state.lambda_sparse),
      similar_to_bicubic=state.similar_to_bicubic | (
          waiting & below & streak_done),
      bic_loss_counter=counter,
      insert_constraints=state.insert_constraints & ~switch_on)


def learning_rate(base: float, config: Config):
  """optax schedule: `base`, divided by 10 after updates 750, 1500, 2250.

  The original divides after iteration i % 750 == 0 (i > 0), so update
  number `count` (0-based) uses base / 10^((count - 1) // 750).
  """
  def schedule(count: Int[Array, ""]) -> Float[Array, ""]:
    drops = jnp.maximum(count - 1, 0) // config.lr_decay_every
    return base * (1.0 / config.lr_decay_factor) ** drops
  return schedule
