"""ZSSR training: a pure per-iteration update and its host-side drivers.

ZSSR (Shocher et al., CVPR 2018) trained as in KernelGAN's ZSSR stage
(Bell-Kligler et al., NeurIPS 2019): per iteration, one HR-father crop, its
LR son, a gradient-weighted L1 loss, one Adam step; every `run_test_every`
iterations a reconstruction test of the whole input feeds the learning-rate
policy (`policy.py`). `train_step` is pure (state in, state out), so it
can be `jax.vmap`-ed over images; `train_stage` either loops over it in
Python (loop 'python', fast on CPU) or `lax.scan`s over chunks of it
('scan', one dispatch per chunk).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from kernelgan_jax.progress import LOOPS, ProgressFn
from kernelgan_jax.zssr import network
from kernelgan_jax.zssr import pairs
from kernelgan_jax.zssr import policy as policy_lib
from kernelgan_jax.zssr.config import ZSSRConfig

# Adam with the TF / PyTorch defaults; the learning rate is applied by hand
# so that it can live in the (traced) policy state.
_ADAM = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)


class StageInputs(NamedTuple):
  """Per-image arrays of one scale (a vmap axis can be added to all)."""
  image: jax.Array  # (H, W, C) the input, the source of HR fathers
  loss_map: jax.Array  # (H, W, 1) loss weights of the input
  kernel: jax.Array | None  # (k, k) degradation kernel; None = bicubic
  key: jax.Array  # PRNG key of the scale


class TrainState(NamedTuple):
  """Everything that changes during training."""
  params: network.Params
  adam: optax.OptState
  policy: policy_lib.PolicyState
  step: jax.Array  # () int32, iterations done in this scale
  stopped: jax.Array  # () bool, learning rate below minimum or cap reached
  loss: jax.Array  # () float32, last training loss
  test_error: jax.Array  # () float32, last reconstruction MSE


def init_state(params: network.Params, adam_state: optax.OptState | None,
               config: ZSSRConfig) -> TrainState:
  """State at the start of a scale; weights (and Adam) may carry over."""
  return TrainState(
      params=params,
      adam=_ADAM.init(params) if adam_state is None else adam_state,
      policy=policy_lib.init_policy(config),
      step=jnp.zeros((), jnp.int32),
      stopped=jnp.zeros((), bool),
      loss=jnp.full((), jnp.nan, jnp.float32),
      test_error=jnp.full((), jnp.nan, jnp.float32))


def predict(params: network.Params, lr_hwc: jax.Array, scale: int,
            output_hw: tuple[int, int]) -> jax.Array:
  """Network output for an LR image: bicubic upscale plus residual."""
  return network.apply(params, pairs.upscale(lr_hwc, scale, output_hw))


def weighted_l1(params: network.Params, son_hwc: jax.Array,
                father_hwc: jax.Array, weights_hw1: jax.Array,
                scale: int) -> jax.Array:
  """Mean over pixels and channels of weights * |prediction - father|."""
  prediction = predict(params, son_hwc, scale, father_hwc.shape[:2])
  return jnp.mean(weights_hw1 * jnp.abs(prediction - father_hwc))


def reconstruction_error(params: network.Params, inputs: StageInputs,
                         key: jax.Array, scale: int,
                         noise_std: float) -> jax.Array:
  """MSE between the input and the network's output on its own son."""
  son = pairs.father_to_son(key, inputs.image, inputs.kernel, scale,
                            noise_std)
  output = predict(params, son, scale, inputs.image.shape[:2])
  return jnp.mean((jnp.clip(output, 0.0, 1.0) - inputs.image)**2)


def _adam_step(state: TrainState, inputs: StageInputs, key: jax.Array,
               config: ZSSRConfig, scale: int,
               noise_std: float) -> tuple[network.Params, optax.OptState,
                                          jax.Array]:
  """Crop a father, make its son, take one Adam step on the L1 loss."""
  crop_key, noise_key = jax.random.split(key)
  crop_hw = pairs.crop_shape(inputs.image.shape[:2], config.crop_size)
  father, weights = pairs.random_crop(crop_key, inputs.image,
                                      inputs.loss_map, crop_hw)
  son = pairs.father_to_son(noise_key, father, inputs.kernel, scale,
                            noise_std)
  loss, grads = jax.value_and_grad(weighted_l1)(state.params, son, father,
                                                weights, scale)
  directions, adam = _ADAM.update(grads, state.adam, state.params)
  rate = state.policy.learning_rate
  params = jax.tree.map(lambda p, d: p - rate * d, state.params, directions)
  return params, adam, loss


def train_step(state: TrainState, inputs: StageInputs, *,
                    config: ZSSRConfig, scale: int, noise_std: float,
                    run_test: bool | None = None) -> TrainState:
  """One ZSSR iteration: Adam step, test every run_test_every, policy.

  Args:
    state: current state (not stopped).
    inputs: the scale's image, loss map, kernel and key.
    config: static settings.
    scale: static integer scale factor of this stage (2 or 4).
    noise_std: static std of the son noise (0 for synthetic images).
    run_test: whether this iteration runs the reconstruction test. None
      decides on device from `state.step` (`lax.cond`, for scan/vmap); a
      host loop that knows the step passes it statically, which keeps the
      convolutions out of a conditional (much faster on XLA:CPU).

  Returns:
    The next state.
  """
  step_key, test_key = jax.random.split(
      jax.random.fold_in(inputs.key, state.step))
  params, adam, loss = _adam_step(state, inputs, step_key, config, scale,
                                  noise_std)
  test = lambda: reconstruction_error(params, inputs, test_key, scale,
                                      noise_std)
  if run_test is None:
    is_test = state.step % config.run_test_every == 0
    error = jax.lax.cond(is_test, test,
                         lambda: jnp.full((), jnp.nan, jnp.float32))
  else:
    is_test = jnp.asarray(run_test)
    error = test() if run_test else jnp.full((), jnp.nan, jnp.float32)
  policy = jax.tree.map(
      functools.partial(jnp.where, is_test),
      policy_lib.record_test(state.policy, state.step, error), state.policy)
  policy = policy_lib.update_learning_rate(policy, state.step, config)
  step = state.step + 1
  stopped = (policy.learning_rate < config.min_learning_rate) | (
      step >= config.max_iters)
  return TrainState(params, adam, policy, step, stopped, loss,
                    jnp.where(is_test, error, state.test_error))


def _scan_iterations(state: TrainState, inputs: StageInputs, *,
                     config: ZSSRConfig, scale: int, noise_std: float,
                     length: int) -> TrainState:
  """`length` iterations in one `lax.scan`, no-ops once stopped."""

  def body(state, _):
    active = lambda s: train_step(s, inputs, config=config, scale=scale,
                                       noise_std=noise_std)
    return jax.lax.cond(state.stopped, lambda s: s, active, state), None

  return jax.lax.scan(body, state, None, length=length)[0]


_STATIC = ("config", "scale", "noise_std")
jitted_step = jax.jit(train_step, static_argnames=_STATIC + ("run_test",),
                     donate_argnums=0)
jitted_chunk = jax.jit(_scan_iterations, static_argnames=_STATIC + ("length",),
                      donate_argnums=0)


def use_scan(config: ZSSRConfig) -> bool:
  """Resolves `config.loop`; None scans except on CPU.

  XLA:CPU runs convolutions inside a while loop or a conditional far slower
  than at top level (`benchmarks/results/zssr-*`), hence a Python loop over
  a jitted, conditional-free step there.
  """
  loop = config.loop or ("python" if jax.default_backend() == "cpu"
                         else "scan")
  if loop not in LOOPS:
    raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
  return loop == "scan"


def train_stage(state: TrainState, inputs: StageInputs, *,
                config: ZSSRConfig, scale: int, noise_std: float,
                progress: ProgressFn | None = None) -> TrainState:
  """Trains one scale until the policy stops it or max_iters is reached.

  Args:
    state: initial state of the scale (`init_state`).
    inputs: the scale's arrays.
    config: settings (loop, chunk size, limits).
    scale: integer scale factor.
    noise_std: son noise std.
    progress: optional callback(done, total, metrics), once per chunk.

  Returns:
    The final state; `int(state.step)` iterations were run.
  """
  static = dict(config=config, scale=scale, noise_std=noise_std)
  scan = use_scan(config)
  done = int(state.step)
  while not bool(state.stopped):
    if scan:
      state = jitted_chunk(state, inputs, length=config.chunk_size, **static)
      done = int(state.step)
    else:
      # The state can only stop at a policy check or at max_iters, so the
      # host reads it back only there.
      while True:
        state = jitted_step(state, inputs,
                           run_test=done % config.run_test_every == 0,
                           **static)
        done += 1
        if done % config.lr_check_every == 0 or done >= config.max_iters:
          break
    if progress is not None:
      progress(done, config.max_iters, {
          "loss": float(state.loss),
          "reconstruction_mse": float(state.test_error),
          "learning_rate": float(state.policy.learning_rate)})
  return state
