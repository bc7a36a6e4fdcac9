"""ZSSR's adaptive learning-rate policy as a pure state update.

ZSSR (Shocher et al., CVPR 2018; the KernelGAN variant, Bell-Kligler et al.,
NeurIPS 2019) records the reconstruction error of the input every
`run_test_every` iterations. At iterations with (i + 1) % lr_check_every == 0
that lie more than `min_iters` after the last change, it fits a line to the
last few recorded errors (`np.polyfit(..., 1, cov=True)`) and divides the
learning rate by 10 when -ratio * slope < the slope's standard error, i.e.
when the error no longer falls clearly. Training stops once the rate drops
below `min_learning_rate`. Everything here is `jnp.where` on arrays, so it
runs inside jit, scan and vmap.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from kernelgan_jax.zssr.config import ZSSRConfig


class PolicyState(NamedTuple):
  """Learning rate and the ring buffer of recent test errors."""
  learning_rate: jax.Array  # () float32
  last_change: jax.Array  # () int32, iteration of the last decay (0 first)
  num_tests: jax.Array  # () int32, tests recorded so far
  test_steps: jax.Array  # (n,) float32, iterations of the last n tests
  test_errors: jax.Array  # (n,) float32, their reconstruction MSEs


def init_policy(config: ZSSRConfig) -> PolicyState:
  """Fresh policy state (also at the start of every scale)."""
  n = config.num_fit_points
  return PolicyState(
      learning_rate=jnp.asarray(config.learning_rate, jnp.float32),
      last_change=jnp.zeros((), jnp.int32),
      num_tests=jnp.zeros((), jnp.int32),
      test_steps=jnp.zeros((n,), jnp.float32),
      test_errors=jnp.zeros((n,), jnp.float32))


def slope_and_std_error(steps_n: jax.Array, errors_n: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
  """Least-squares line fit: slope and its standard error.

  Matches `np.polyfit(steps, errors, 1, cov=True)` with NumPy >= 1.16
  scaling (residual variance over n - 2 degrees of freedom). Point order
  does not matter, so a ring buffer can be passed as is.

  Args:
    steps_n: (n,) iterations, n >= 3.
    errors_n: (n,) recorded errors.

  Returns:
    (slope, sqrt of the slope's variance), float32 scalars.
  """
  n = steps_n.shape[0]
  centred_steps = steps_n - jnp.mean(steps_n)
  centred_errors = errors_n - jnp.mean(errors_n)
  spread = jnp.sum(centred_steps**2)
  slope = jnp.sum(centred_steps * centred_errors) / spread
  residuals = centred_errors - slope * centred_steps
  variance = jnp.sum(residuals**2) / (n - 2) / spread
  return slope, jnp.sqrt(variance)


def should_decay(steps_n: jax.Array, errors_n: jax.Array,
                 ratio: float = 1.5) -> jax.Array:
  """True when the error's downward trend is within its fitting noise."""
  slope, std_error = slope_and_std_error(steps_n, errors_n)
  return -ratio * slope < std_error


def record_test(policy: PolicyState, step: jax.Array,
                error: jax.Array) -> PolicyState:
  """Stores one test error at slot num_tests % n of the ring buffer."""
  slot = policy.num_tests % policy.test_steps.shape[0]
  return policy._replace(
      num_tests=policy.num_tests + 1,
      test_steps=policy.test_steps.at[slot].set(step.astype(jnp.float32)),
      test_errors=policy.test_errors.at[slot].set(error))


def update_learning_rate(policy: PolicyState, step: jax.Array,
                         config: ZSSRConfig) -> PolicyState:
  """Divides the learning rate by 10 when the policy says so at `step`.

  Args:
    policy: state after this iteration's (possible) test.
    step: the 0-based iteration just finished.
    config: policy settings.

  Returns:
    The updated state.
  """
  due = ((step + 1) % config.lr_check_every == 0) & (
      step - policy.last_change > config.min_iters) & (
          policy.num_tests >= config.num_fit_points)
  decay = due & should_decay(policy.test_steps, policy.test_errors,
                             config.lr_change_ratio)
  return policy._replace(
      learning_rate=jnp.where(decay, policy.learning_rate / 10,
                              policy.learning_rate),
      last_change=jnp.where(decay, step, policy.last_change))
