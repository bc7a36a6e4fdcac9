"""ZSSR training: pure per-iteration updates and their host-side drivers.

ZSSR (Shocher et al., CVPR 2018) trained as in KernelGAN's ZSSR stage
(Bell-Kligler et al., NeurIPS 2019): per iteration, one HR-father crop, its
LR son, a gradient-weighted L1 loss, one Adam step; every `run_test_every`
iterations a reconstruction test of the whole input feeds the learning-rate
policy (`policy.py`).

The training programs never see the whole image: the fathers are cut from
it by a small program of their own (`fathers`), so the step, and a scanned
run of steps, compile once for every image at least `crop_size` pixels on
each side. Only the reconstruction test (`test_error`), the fathers' cut,
the loss map and the final output are compiled per image size. Every
update is pure (state in, state out), so it can be `jax.vmap`-ed over
images. `train_stage` either loops over a jitted step in Python (loop
'python', fast on CPU) or `lax.scan`s over the steps between two tests
('scan', one dispatch per run of steps).
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


class Fathers(NamedTuple):
  """HR-father crops and their loss weights (a leading axis for several
  iterations)."""
  image: jax.Array  # (..., h, w, C)
  weights: jax.Array  # (..., h, w, 1)


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


def _iteration_keys(key: jax.Array, step: jax.Array
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(crop, son noise, test) keys of iteration `step` of a scale."""
  step_key, test_key = jax.random.split(jax.random.fold_in(key, step))
  crop_key, noise_key = jax.random.split(step_key)
  return crop_key, noise_key, test_key


def father_corners(key: jax.Array, start: jax.Array, length: int,
                   slack_hw: jax.Array) -> jax.Array:
  """The fathers' corners of iterations start, ..., start + length - 1.

  Args:
    key: the scale's PRNG key (`StageInputs.key`).
    start: first iteration.
    length: static number of iterations.
    slack_hw: (2,) image size minus crop size (`pairs.crop_corner`).

  Returns:
    (length, 2) int32 corners.
  """
  def one(step):
    crop_key, _, _ = _iteration_keys(key, step)
    return pairs.crop_corner(crop_key, slack_hw)

  return jax.vmap(one)(start + jnp.arange(length, dtype=jnp.int32))


def cut_fathers(inputs: StageInputs, corners: jax.Array,
                crop_hw: tuple[int, int]) -> Fathers:
  """The fathers at `corners` ((n, 2), `father_corners`), a leading axis of
  n: only slicing, the one part of a father that knows the image's size."""
  return Fathers(*jax.vmap(
      lambda corner: pairs.crop(inputs.image, inputs.loss_map, corner,
                                crop_hw))(corners))


def fathers(inputs: StageInputs, start: int, length: int,
            crop_size: int) -> Fathers:
  """The fathers of iterations start, ..., start + length - 1, leading
  axis `length` (two programs: the corners' draw, compiled once, and the
  cut, compiled per image size)."""
  crop_hw = pairs.crop_shape(inputs.image.shape[:2], crop_size)
  slack = jnp.array([inputs.image.shape[0] - crop_hw[0],
                     inputs.image.shape[1] - crop_hw[1]], jnp.int32)
  corners = jitted_father_corners(inputs.key, jnp.int32(start), length,
                                  slack)
  return jitted_cut_fathers(inputs, corners, crop_hw)


def adam_step(state: TrainState, father: Fathers, kernel: jax.Array | None,
              key: jax.Array, *, config: ZSSRConfig, scale: int,
              noise_std: float) -> TrainState:
  """Iteration `state.step`'s Adam step: its father's son, the L1 loss.

  Args:
    state: current state (not stopped).
    father: this iteration's father (`fathers`, one of them).
    kernel: the scale's degradation kernel, or None for bicubic.
    key: the scale's PRNG key (`StageInputs.key`).
    config: static settings.
    scale: static integer scale factor of this stage (2 or 4).
    noise_std: static std of the son noise (0 for synthetic images).

  Returns:
    The state with new weights, Adam moments and loss; the iteration is
    counted by `end_iteration`.
  """
  del config  # The rate is the policy's.
  _, noise_key, _ = _iteration_keys(key, state.step)
  son = pairs.father_to_son(noise_key, father.image, kernel, scale,
                            noise_std)
  loss, grads = jax.value_and_grad(weighted_l1)(state.params, son,
                                                father.image, father.weights,
                                                scale)
  directions, adam = _ADAM.update(grads, state.adam, state.params)
  rate = state.policy.learning_rate
  params = jax.tree.map(lambda p, d: p - rate * d, state.params, directions)
  return state._replace(params=params, adam=adam, loss=loss)


def test_error(params: network.Params, inputs: StageInputs,
               step: jax.Array, *, scale: int,
               noise_std: float) -> jax.Array:
  """Iteration `step`'s reconstruction test of the whole input."""
  _, _, test_key = _iteration_keys(inputs.key, step)
  return reconstruction_error(params, inputs, test_key, scale, noise_std)


def end_iteration(state: TrainState, error: jax.Array, is_test: jax.Array,
                  *, config: ZSSRConfig) -> TrainState:
  """Closes iteration `state.step`: records its test error (if `is_test`),
  runs the learning-rate policy, counts the iteration, decides stopping."""
  policy = jax.tree.map(
      functools.partial(jnp.where, is_test),
      policy_lib.record_test(state.policy, state.step, error), state.policy)
  policy = policy_lib.update_learning_rate(policy, state.step, config)
  step = state.step + 1
  stopped = (policy.learning_rate < config.min_learning_rate) | (
      step >= config.max_iters)
  return state._replace(
      policy=policy, step=step, stopped=stopped,
      test_error=jnp.where(is_test, error, state.test_error))


def train_step(state: TrainState, father: Fathers, kernel: jax.Array | None,
               key: jax.Array, *, config: ZSSRConfig, scale: int,
               noise_std: float) -> TrainState:
  """One ZSSR iteration without a test (`adam_step`, `end_iteration`)."""
  state = adam_step(state, father, kernel, key, config=config, scale=scale,
                    noise_std=noise_std)
  return end_iteration(state, jnp.full((), jnp.nan, jnp.float32),
                       jnp.zeros((), bool), config=config)


def _scan_steps(state: TrainState, fathers_: Fathers,
                kernel: jax.Array | None, key: jax.Array, *,
                config: ZSSRConfig, scale: int,
                noise_std: float) -> TrainState:
  """`train_step` over each father in one `lax.scan`, no-ops once stopped."""

  def body(state, father):
    active = lambda s: train_step(s, father, kernel, key, config=config,
                                  scale=scale, noise_std=noise_std)
    return jax.lax.cond(state.stopped, lambda s: s, active, state), None

  return jax.lax.scan(body, state, fathers_)[0]


_STATIC = ("config", "scale", "noise_std")
jitted_father_corners = jax.jit(father_corners, static_argnames="length")
jitted_cut_fathers = jax.jit(cut_fathers, static_argnames="crop_hw")
jitted_adam_step = jax.jit(adam_step, static_argnames=_STATIC,
                           donate_argnums=0)
jitted_test_error = jax.jit(test_error, static_argnames=("scale",
                                                         "noise_std"))
jitted_end_iteration = jax.jit(end_iteration, static_argnames="config",
                               donate_argnums=0)
jitted_steps = jax.jit(_scan_steps, static_argnames=_STATIC,
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


def _iteration(state: TrainState, father: Fathers, inputs: StageInputs,
               step: int, static: dict) -> TrainState:
  """Iteration `step` (`state.step`, known to the host) as two programs,
  three with the reconstruction test, the one compiled per image size."""
  state = jitted_adam_step(state, father, inputs.kernel, inputs.key,
                           **static)
  tested = step % static["config"].run_test_every == 0
  if tested:
    error = jitted_test_error(state.params, inputs, jnp.int32(step),
                              scale=static["scale"],
                              noise_std=static["noise_std"])
  else:
    error = jnp.full((), jnp.nan, jnp.float32)
  return jitted_end_iteration(state, error, jnp.asarray(tested),
                              config=static["config"])


def _first(fathers_: Fathers) -> Fathers:
  return Fathers(fathers_.image[0], fathers_.weights[0])


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
    progress: optional callback(done, total, metrics), once per policy
      check (loop 'python') or per run of steps between tests ('scan').

  Returns:
    The final state; `int(state.step)` iterations were run.
  """
  static = dict(config=config, scale=scale, noise_std=noise_std)
  every = config.run_test_every
  cut = lambda start, length: fathers(inputs, start, length,
                                     config.crop_size)
  scan = use_scan(config)
  done = int(state.step)
  while not bool(state.stopped):
    if scan:
      # The iterations from here to the next test, the first of them tested
      # when due, the others scanned in pieces of at most chunk_size.
      start = done
      if done % every == 0:
        state = _iteration(state, _first(cut(done, 1)), inputs, done,
                           static)
        start += 1
      end = (done // every + 1) * every
      while start < end:
        length = min(config.chunk_size, end - start)
        state = jitted_steps(state, cut(start, length), inputs.kernel,
                             inputs.key, **static)
        start += length
      done = int(state.step)
    else:
      # The state can only stop at a policy check or at max_iters, so the
      # host reads it back only there.
      while True:
        state = _iteration(state, _first(cut(done, 1)), inputs, done,
                           static)
        done += 1
        if done % config.lr_check_every == 0 or done >= config.max_iters:
          break
    if progress is not None:
      progress(done, config.max_iters, {
          "loss": float(state.loss),
          "reconstruction_mse": float(state.test_error),
          "learning_rate": float(state.policy.learning_rate)})
  return state
