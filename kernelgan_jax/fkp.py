"""KernelGAN-FKP: KernelGAN with a flow-based kernel prior (spec fkp.md, 4).

Liang, Zhang, Wang, Van Gool & Timofte, "Flow-based Kernel Prior with
Application to Blind Super-Resolution", CVPR 2021. G is no longer a deep
linear network: it is one latent vector z in R^121, mapped by the trained
x2 prior (`kernelgan_jax.prior`) to an 11x11 kernel that blurs and
subsamples 64x64 crops to 27x27. D is a small 3x3 WGAN critic, trained with
a gradient penalty; KernelGAN's regularisers, Learner and post-processing
are gone (spec 4.10).

One outer iteration (spec 4.6) is 3 D steps on one batch of 64 (G-crop,
D-crop) pairs, then 3 G steps that apply the same (stale) gradient of
L_G = -mean D(G(z)), each an Adam update followed by the projection of z
onto the radius-10 sphere. Everything mutable lives in `FkpState`, so
`train_step` is pure, `jax.vmap`-able over images and seeds as it stands,
and scanned in chunks of iterations (`run_chunk`). The compiled chunk sees
only fixed-size crops, gathered on the host a chunk at a time (`FkpData`,
`chunk_crops`), so one program serves every image size.

Deviations from the original, all documented where they occur:
* `kernel_x2` is the flow kernel clipped at 0, normalised and moved to this
  package's centre convention (`kernel.kernel_shift(., 2)`, centre of mass
  5.5 for 11x11), not FKP's (k - sf) / 2 = 4.5, so that every estimator of
  the package feeds ZSSR and the metrics alike. `raw_kernel` is FKP's own
  output.
* The returned kernel is the one of the final z; the original returns the
  kernel of its last D step, i.e. of z before the last 3 G steps.
* The crop centres and GP epsilons come from explicit JAX keys (spec 8.12),
  so runs are reproducible per seed but do not replay torch's streams. The
  starting z is `prior.initial_latent()` for every image and seed, as the
  original's re-seeded draw is (spec 4.3).
"""

import dataclasses
import functools
from typing import Callable, NamedTuple, Optional

import jax
from jax import lax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int
import numpy as np
import optax
from flax import nnx

from kernelgan_jax import data as data_lib
from kernelgan_jax import degradation
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import models
from kernelgan_jax import prior as prior_lib
from kernelgan_jax.config import Config
from kernelgan_jax.kernel import KernelEstimate
from kernelgan_jax import train as train_lib
from kernelgan_jax.progress import ProgressFn

Metrics = dict[str, Float[Array, ""]]


@dataclasses.dataclass(frozen=True)
class FkpConfig:
  """Settings of one KernelGAN-FKP estimation (spec 4; `configs_FKP.py`).

  Frozen and hashable: jitted programs are cached per config. The data
  fields share their names with `config.Config`, so the host-side data
  helpers of `data` (`shave`, `check_size`, `crop_probability_maps`) serve
  both estimators.
  """

  # Data (spec 4.2).
  input_crop_size: int = 64  # G's crop; D's crop is G's output, 27.
  batch_size: int = 64  # (G-crop, D-crop) pairs per outer iteration.
  shave_edges: int = 10
  real_image: bool = False  # Real-image mode: no 10-px shave.
  grad_map_window: int = 5
  grad_map_percentile: float = 0.97

  # Discriminator (spec 4.4).
  d_chan: int = 32
  d_n_layers: int = 5  # Head, 3 body blocks, tail.
  d_kernel_size: int = 3
  bn_epsilon: float = 1e-5
  leaky_slope: float = 0.2
  d_weight_std: float = 0.02  # Conv weights ~ N(0, std), BN scale N(1, std).

  # Optimisation (spec 4.5 - 4.8).
  iters_x2: int = 1000  # Outer iterations for an x2 LR image.
  iters_x4: int = 4000  # ... for an x4 LR image ("needs more iterations").
  x4: bool = False  # The input is an x4 LR image: run iters_x4.
  d_steps: int = 3
  g_steps: int = 3
  z_lr: float = 5e-4
  d_lr: float = 5e-4
  beta1: float = 0.5
  beta2: float = 0.999
  gp_weight: float = 0.1
  projection_eps: float = 1e-9  # z <- r z / sqrt(|z|^2 + eps).

  # Execution.
  chunk: int = 10  # Outer iterations per scanned, compiled chunk.
  matmul_precision: str = "highest"  # Full float32 on GPU/TPU too.
  # D's convolutions: "patches" (window patches times the kernel, `patch_conv`)
  # or "xla" (`lax.conv_general_dilated`; on CPU about 20x slower in scans).
  d_conv: str = "patches"
  prior_path: Optional[str] = None  # None: the shipped x2 prior.

  @property
  def max_iters(self) -> int:
    """Outer iterations of a run: 1000 at x2, 4000 at x4 (spec 4.8)."""
    return self.iters_x4 if self.x4 else self.iters_x2

  @property
  def kernel_size(self) -> int:
    """Side of G's kernel: the x2 prior's, 11, at x2 and x4 (spec 1.1)."""
    return prior_lib.KERNEL_SIZE

  @property
  def g_output_size(self) -> int:
    """Side of G's output and of D's real crop: 27 for 64."""
    return (self.input_crop_size - self.kernel_size) // 2 + 1

  @property
  def d_output_size(self) -> int:
    """Side of D's score map: 17 for 27 and four 3x3 valid convs."""
    return self.g_output_size - self.d_n_layers * (self.d_kernel_size - 1)

  @property
  def min_image_size(self) -> int:
    """Smallest input side: the G crop plus the shaved border."""
    border = 0 if self.real_image else 2 * self.shave_edges
    return self.input_crop_size + border

  def replace(self, **changes) -> "FkpConfig":
    """A copy with some fields changed (validated)."""
    return validate(dataclasses.replace(self, **changes))


def validate(config: FkpConfig) -> FkpConfig:
  """Checks the fields that would otherwise fail deep inside training.

  Raises:
    ValueError: naming the offending field.
  """
  for name in ("iters_x2", "iters_x4", "batch_size", "d_steps", "g_steps",
               "chunk"):
    if getattr(config, name) < 1:
      raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
  if config.input_crop_size % 2:
    raise ValueError("input_crop_size must be even")
  if config.d_conv not in _CONVS:
    raise ValueError(
        f"d_conv must be one of {sorted(_CONVS)}, got {config.d_conv!r}")
  if config.d_output_size < 1:
    raise ValueError(
        f"input_crop_size {config.input_crop_size} leaves D no output")
  return config


# -----------------------------------------------------------------------------
# The discriminator (spec 4.4).


def _torch_bias_init(fan_in: int) -> nnx.Initializer:
  """PyTorch's default conv bias, U(+-1/sqrt(fan_in)); kept by FKP."""
  return lambda key, shape, dtype=jnp.float32: models._uniform_fan_in(
      key, shape, fan_in)


def _conv(in_features: int, out_features: int, config: FkpConfig,
          rngs: nnx.Rngs) -> nnx.Conv:
  """A 3x3 valid conv with bias, FKP's init: weights N(0, 0.02)."""
  size = config.d_kernel_size
  return nnx.Conv(
      in_features, out_features, (size, size), padding="VALID",
      kernel_init=jax.nn.initializers.normal(config.d_weight_std),
      bias_init=_torch_bias_init(in_features * size * size),
      conv_general_dilated=_CONVS[config.d_conv], rngs=rngs)


def patch_conv(lhs: Float[Array, "n h w ci"], rhs: Float[Array, "k k ci co"],
               window_strides=(1, 1), padding="VALID", *, precision=None,
               **unused) -> Float[Array, "n h2 w2 co"]:
  """A stride-1 valid NHWC/HWIO convolution as one matrix product.

  Takes `lax.conv_general_dilated`'s arguments (as `nnx.Conv` passes them)
  for D's plain convs only. XLA:CPU runs D's 3x3 convolutions and their
  first and second derivatives slowly, and over an order of magnitude
  slower inside a `lax.scan` (the scanned train step); as window patches
  (`models._patches`) times the kernel they are fast in and out of loops.
  """
  del unused
  if tuple(window_strides) != (1, 1) or padding != "VALID":
    raise ValueError("patch_conv supports stride 1, VALID padding only")
  size = rhs.shape[0]
  return jnp.matmul(models._patches(lhs, size),
                    rhs.reshape(-1, rhs.shape[-1]), precision=precision)


_CONVS = {"patches": patch_conv, "xla": lax.conv_general_dilated}


class BatchStatNorm(nnx.Module):
  """`BatchNorm2d` in training mode: statistics over (batch, H, W).

  FKP's D never leaves training mode (spec 4.4), so the running averages are
  never read and not kept. Biased variance, as PyTorch normalises with.
  Scale ~ N(1, 0.02), bias 0 (`weights_init_D_KP`).
  """

  def __init__(self, features: int, *, config: FkpConfig, rngs: nnx.Rngs):
    self.scale = nnx.Param(1.0 + config.d_weight_std * jax.random.normal(
        rngs.params(), (features,)))
    self.bias = nnx.Param(jnp.zeros((features,)))
    self.eps = config.bn_epsilon

  def __call__(self, x_nhwc: Float[Array, "n h w c"]
               ) -> Float[Array, "n h w c"]:
    centred = x_nhwc - jnp.mean(x_nhwc, axis=(0, 1, 2))
    variance = jnp.mean(jnp.square(centred), axis=(0, 1, 2))
    return centred * (lax.rsqrt(variance + self.eps) * self.scale[...]) + (
        self.bias[...])


class ConvBlock(nnx.Module):
  """Conv 3x3 -> BatchNorm (batch statistics) -> LeakyReLU(0.2)."""

  def __init__(self, in_features: int, out_features: int, *,
               config: FkpConfig, rngs: nnx.Rngs):
    self.conv = _conv(in_features, out_features, config, rngs)
    self.norm = BatchStatNorm(out_features, config=config, rngs=rngs)
    self.slope = config.leaky_slope

  def __call__(self, x_nhwc: Float[Array, "n h w ci"]
               ) -> Float[Array, "n h2 w2 co"]:
    return jax.nn.leaky_relu(self.norm(self.conv(x_nhwc)), self.slope)


class FkpDiscriminator(nnx.Module):
  """D of KernelGAN-FKP (`Discriminator_KP`, spec 4.4): 29,185 parameters.

  2x - 1, head ConvBlock 3 -> 32, 3 body ConvBlocks 32 -> 32, tail conv
  32 -> 1; all 3x3 valid, no sigmoid, no spectral norm. A 27x27 crop gets a
  17x17 score map. Batch statistics are taken over the whole batch it is
  called on, so real, fake and interpolated batches must be separate calls.

  As in the original, the conv biases in front of a batch norm cancel out:
  their gradient is zero up to rounding, which Adam turns into steps of
  about +-lr that change nothing.
  """

  def __init__(self, config: FkpConfig, *, rngs: nnx.Rngs):
    width = config.d_chan
    self.head = ConvBlock(3, width, config=config, rngs=rngs)
    self.body = nnx.List([
        ConvBlock(width, width, config=config, rngs=rngs)
        for _ in range(config.d_n_layers - 2)])
    self.tail = _conv(width, 1, config, rngs)

  def __call__(self, crops_nhwc: Float[Array, "n s s 3"]
               ) -> Float[Array, "n m m"]:
    """WGAN critic scores of crops in [0, 1]: larger means more real."""
    x = self.head(2.0 * crops_nhwc - 1.0)
    for block in self.body:
      x = block(x)
    return self.tail(x)[..., 0]


# -----------------------------------------------------------------------------
# G, the losses and the pure train step (spec 4.3, 4.5, 4.6).


class FkpState(NamedTuple):
  """Everything that changes during training, for one image and seed.

  Attributes:
    z: G's only variable, the prior's latent (spec 4.3).
    d_params: D's parameters (D keeps no other state).
    z_opt: Adam's state for z.
    d_opt: Adam's state for D.
    step: outer iterations done.
    key: the GP epsilons' key; iteration i uses fold_in(key, i).
  """
  z: Float[Array, "latent"]
  d_params: nnx.State
  z_opt: optax.OptState
  d_opt: optax.OptState
  step: Int[Array, ""]
  key: jax.Array


class Networks(NamedTuple):
  """D's static graph definition and the two optimisers."""
  d_def: nnx.GraphDef
  z_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation


@functools.lru_cache(maxsize=None)
def networks(config: FkpConfig) -> Networks:
  """D's graph definition and the Adam optimisers (cached per config).

  Both Adams: lr 5e-4, betas (0.5, 0.999), eps 1e-8, no decay (spec 4.7).
  """
  d_def, _ = nnx.split(nnx.eval_shape(
      lambda: FkpDiscriminator(config, rngs=nnx.Rngs(0))))
  def adam(lr):
    return optax.adam(lr, b1=config.beta1, b2=config.beta2, eps=1e-8)
  return Networks(d_def, adam(config.z_lr), adam(config.d_lr))


def init_discriminator(key: jax.Array, config: FkpConfig) -> nnx.State:
  """D's initial parameters (spec 4.4) from one key."""
  _, params = nnx.split(FkpDiscriminator(config, rngs=nnx.Rngs(key)))
  return params


def init_state(init_key: jax.Array, gp_key: jax.Array,
               z: Float[Array, "latent"], config: FkpConfig) -> FkpState:
  """A fresh state: D from `init_key`, the given starting z (not projected,
  as the original's, spec 8.7), GP epsilons from `gp_key`.
  """
  nets = networks(config)
  z = jnp.asarray(z, jnp.float32)
  d_params = init_discriminator(init_key, config)
  return FkpState(z=z, d_params=d_params, z_opt=nets.z_tx.init(z),
                  d_opt=nets.d_tx.init(d_params), step=jnp.int32(0),
                  key=gp_key)


def discriminate(d_def: nnx.GraphDef, d_params: nnx.State,
                 crops: Float[Array, "n s s 3"]) -> Float[Array, "n m m"]:
  """D's score maps of a batch of crops (one batch-statistics call)."""
  return nnx.merge(d_def, d_params)(crops)


def downscale_crops(crops: Float[Array, "n g g c"], kernel: Float[Array, "k k"]
                    ) -> Float[Array, "n s s c"]:
  """G's forward (spec 4.3): per-channel valid cross-correlation with the
  kernel, no flip, keeping [::2, ::2] from 0 (64 -> 27).

  `degradation.downscale(..., padding='valid')` on each crop: on CPU it and
  its gradient run faster than the grouped strided `lax.conv`
  (`feature_group_count=3`) that computes the same.
  """
  return jax.vmap(lambda crop: degradation.downscale(
      crop, kernel, padding="valid"))(crops)


def _safe_norm(x: Array, axis: int) -> Array:
  """||x||_2 along `axis`, with gradient 0 (not NaN) where x = 0, as
  PyTorch's `norm` backward.
  """
  squared = jnp.sum(jnp.square(x), axis=axis)
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)),
                   0.0)


def gradient_penalty(critic: Callable[[Array], Array],
                     real: Float[Array, "n s s c"],
                     fake: Float[Array, "n s s c"],
                     epsilon: Float[Array, ""]) -> Float[Array, ""]:
  """WGAN-GP's penalty as FKP computes it (`calc_gradient_penalty`, 4.5).

  One epsilon for the whole batch; x = eps real + (1 - eps) fake, detached
  (so the penalty does not reach z); g = d sum critic(x) / dx; the result is
  the mean over (batch, H, W) of (||g||_2 - 1)^2, the norm taken over the
  channel axis only. Not yet weighted by lambda.

  Args:
    critic: crops -> score maps, differentiable (D with its parameters).
    real: D's real batch.
    fake: G's output batch.
    epsilon: the interpolation weight, U(0, 1).

  Returns:
    The penalty, a scalar.
  """
  mixed = lax.stop_gradient(epsilon * real + (1.0 - epsilon) * fake)
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(mixed)
  return jnp.mean(jnp.square(_safe_norm(grads, axis=-1) - 1.0))


def discriminator_loss(d_params: nnx.State, d_def: nnx.GraphDef,
                       real: Float[Array, "n s s c"],
                       fake: Float[Array, "n s s c"],
                       epsilon: Float[Array, ""], gp_weight: float
                       ) -> tuple[Float[Array, ""], Metrics]:
  """L_D = -mean D(real) + mean D(fake) + lambda GP (spec 4.5).

  Real, fake and the interpolation are three separate D calls, each with
  its own batch statistics, as the original's. `fake` must not carry a
  gradient path to z (the caller stops it).
  """
  critic = functools.partial(discriminate, d_def, d_params)
  wasserstein = jnp.mean(critic(real)) - jnp.mean(critic(fake))
  penalty = gradient_penalty(critic, real, fake, epsilon)
  loss = -wasserstein + gp_weight * penalty
  return loss, {"gradient_penalty": penalty,
                "wasserstein_estimate": wasserstein}


def train_step(state: FkpState, prior: "prior_lib.Prior",
               g_crops: Float[Array, "b g g 3"],
               d_crops: Float[Array, "b s s 3"], *, config: FkpConfig
               ) -> tuple[FkpState, Metrics]:
  """One outer iteration of KernelGAN-FKP (spec 4.6), pure.

  3 D steps on this batch, then 3 G steps that all apply the one gradient
  of L_G = -mean D(G(z)) taken at the z of the D steps, through their fake
  batch and the D left by the last of them (the original reuses that graph,
  spec 8.8); each G step is Adam then the projection onto the sphere of
  radius `prior.LATENT_RADIUS` (spec 4.7). z does not move during the D
  steps, so their fake batch G(z) is computed once; its VJP then gives the
  G gradient, as the original's retained graph does.

  Bind `config` with `functools.partial` before jitting; `jax.vmap` it over
  (state, crops) with the prior broadcast for several images or seeds.

  Args:
    state: the current state.
    prior: the frozen flow (`prior.load_prior()`).
    g_crops: the iteration's G crops in [0, 1].
    d_crops: the matching D (real) crops in [0, 1].
    config: the run's settings.

  Returns:
    The next state, and this iteration's metrics: the last D step's
    `loss_discriminator`, `gradient_penalty` and `wasserstein_estimate`
    (mean D(real) - mean D(fake)), and the G steps' `loss_generator`.
  """
  with jax.default_matmul_precision(config.matmul_precision):
    nets = networks(config)

    def generate(z):
      return downscale_crops(g_crops, prior_lib.kernel_from_latent(prior, z))

    fake, generator_vjp = jax.vjp(generate, state.z)
    epsilons = jax.random.uniform(jax.random.fold_in(state.key, state.step),
                                  (config.d_steps,))

    def d_step(carry, epsilon):
      d_params, d_opt = carry
      (loss, parts), grads = jax.value_and_grad(
          discriminator_loss, has_aux=True)(
              d_params, nets.d_def, d_crops, lax.stop_gradient(fake),
              epsilon, config.gp_weight)
      updates, d_opt = nets.d_tx.update(grads, d_opt, d_params)
      return (optax.apply_updates(d_params, updates), d_opt), dict(
          parts, loss_discriminator=loss)

    (d_params, d_opt), d_metrics = lax.scan(
        d_step, (state.d_params, state.d_opt), epsilons)

    # The stale G gradient: -mean D(fake) through the D steps' fake batch.
    g_loss, fake_grad = jax.value_and_grad(
        lambda f: -jnp.mean(discriminate(nets.d_def, d_params, f)))(fake)
    (z_grad,) = generator_vjp(fake_grad)
    z, z_opt = state.z, state.z_opt
    for _ in range(config.g_steps):
      updates, z_opt = nets.z_tx.update(z_grad, z_opt, z)
      z = prior_lib.project_latent(optax.apply_updates(z, updates),
                                   prior_lib.LATENT_RADIUS,
                                   config.projection_eps)

  metrics = {name: values[-1] for name, values in d_metrics.items()}
  metrics["loss_generator"] = g_loss
  new_state = FkpState(z=z, d_params=d_params, z_opt=z_opt, d_opt=d_opt,
                       step=state.step + 1, key=state.key)
  return new_state, metrics


def run_chunk(state: FkpState, prior: "prior_lib.Prior",
              g_crops: Float[Array, "l b g g 3"],
              d_crops: Float[Array, "l b s s 3"], *, config: FkpConfig
              ) -> tuple[FkpState, Metrics]:
  """`train_step` over the leading (iteration) axis of the crops, scanned.

  Returns the final state and the per-iteration metrics, stacked.
  """
  step = functools.partial(train_step, config=config)
  return lax.scan(lambda s, crops: step(s, prior, *crops), state,
                  (g_crops, d_crops))


ChunkFn = Callable[..., tuple[FkpState, Metrics]]


@functools.lru_cache(maxsize=None)
def jitted_chunk(config: FkpConfig) -> ChunkFn:
  """`run_chunk` jitted once per config (and chunk length), state donated."""
  return jax.jit(functools.partial(run_chunk, config=config),
                 donate_argnums=0)


# -----------------------------------------------------------------------------
# Host-side data (spec 4.2) and the driver.


class FkpData(NamedTuple):
  """One image's crops for a whole run, as corners on the host.

  Attributes:
    image: the shaved image in [0, 1], float32 (FKP's networks see [0, 1]).
    g_corners: top-left (row, col) of each 64x64 G crop, [iters, batch, 2].
    d_corners: top-left of each 27x27 D crop, [iters, batch, 2].
  """
  image: Float[np.ndarray, "h w 3"]
  g_corners: Int[np.ndarray, "iters batch 2"]
  d_corners: Int[np.ndarray, "iters batch 2"]


def prepare(image_hwc: np.ndarray, config: FkpConfig, key: jax.Array
            ) -> FkpData:
  """Shaves the image and draws every crop corner of the run up front.

  As `DataGenerator_FKP` (spec 4.2): 10-px shave (not in real mode), even
  size; corners drawn from KernelGAN's probability maps, D's from the
  image's gradient map (box and margin 13), G's from that of the x0.5
  bicubic image upsampled by nearest neighbour (box and margin 32); even
  top-left corners; no noise. The original's 280,000 pre-drawn, shuffled
  i.i.d. centres are replaced by exactly as many as the run uses.

  Args:
    image_hwc: float RGB image in [0, 1].
    config: the run's settings.
    key: the data key (the G and D corners use two keys split from it).

  Returns:
    The image's `FkpData`.

  Raises:
    ImageError: if the image is too small or constant.
  """
  data_lib.check_size(image_hwc, config)
  image = data_lib.shave(np.asarray(image_hwc, np.float64), config)
  g_map, d_map = data_lib.crop_probability_maps(image, config)
  g_key, d_key = jax.random.split(key)
  shape = (config.max_iters, config.batch_size, 2)
  count = shape[0] * shape[1]
  return FkpData(
      image=image.astype(np.float32),
      g_corners=data_lib.sample_corners(
          g_key, g_map, config.input_crop_size, count).reshape(shape),
      d_corners=data_lib.sample_corners(
          d_key, d_map, config.g_output_size, count).reshape(shape))


def chunk_crops(data: FkpData, config: FkpConfig, start: int, length: int
                ) -> tuple[Float[np.ndarray, "l b g g 3"],
                           Float[np.ndarray, "l b s s 3"]]:
  """The G and D crops of iterations start .. start + length - 1 (host)."""
  def gather(corners, size):
    window = corners[start:start + length]
    crops = data_lib.gather_crops(data.image, window.reshape(-1, 2), size)
    return crops.reshape(window.shape[:2] + crops.shape[1:])
  return (gather(data.g_corners, config.input_crop_size),
          gather(data.d_corners, config.g_output_size))


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(data key, init key, GP key) of a seed.

  The data and init keys are `train.seed_keys`'s; the GP epsilons use a
  key folded out of the data key (the crops use two keys split from it).
  """
  data_key, init_key = train_lib.seed_keys(seed)
  return data_key, init_key, jax.random.fold_in(data_key, 1)


def train(state: FkpState, prior: "prior_lib.Prior", data: FkpData,
          config: FkpConfig, *, progress: Optional[ProgressFn] = None
          ) -> tuple[FkpState, dict[str, np.ndarray]]:
  """Runs `config.max_iters` outer iterations in scanned chunks.

  The host gathers chunk i + 1's crops while the device runs chunk i (JAX
  dispatches asynchronously), then fetches chunk i's metrics.

  Args:
    state: from `init_state`.
    prior: the frozen flow.
    data: from `prepare`.
    config: the run's settings.
    progress: called as progress(done, total, last_metrics) after each
      chunk.

  Returns:
    The final state and the per-iteration metrics as numpy arrays.
  """
  compiled = jitted_chunk(config)
  def chunk_of(_):
    return lambda state, crops: compiled(state, prior, *crops)
  def step(state, crops):  # One iteration, for `loop='python'`.
    return jax.tree.map(lambda x: x[0], compiled(
        state, prior, *jax.tree.map(lambda x: x[None], crops)))
  return train_lib.drive(
      state, lambda start, length: chunk_crops(data, config, start, length),
      config.max_iters, step, chunk_of, chunk=config.chunk,
      progress=progress)


def estimate_from_kernel(raw_kernel: np.ndarray,
                         history: dict[str, np.ndarray], seed: int
                         ) -> KernelEstimate:
  """The package's x2 and x4 kernels of FKP's 11x11 flow kernel.

  The flow kernel (centre of mass near 4.5, sum near 1, tiny negative
  tails) is clipped at 0, normalised and moved to this package's x2 centre
  (5.5; `kernel.centred_kernel`): a documented deviation from FKP, whose
  x2 output is the raw kernel. x4 is the package's analytic kernel.
  """
  kernel_x2 = kernel_lib.centred_kernel(raw_kernel, 2)
  return KernelEstimate(
      kernel_x2=kernel_x2,
      kernel_x4=kernel_lib.analytic_kernel_x4(kernel_x2.astype(np.float64)),
      raw_kernel=np.asarray(raw_kernel), history=history, seed=seed,
      estimator="fkp")


def from_config(config: Optional[Config | FkpConfig]) -> FkpConfig:
  """The FKP settings of a KernelGAN `Config` (x4, real-image mode,
  precision), with FKP's own iteration counts; an `FkpConfig` as is."""
  if config is None or isinstance(config, FkpConfig):
    return validate(config or FkpConfig())
  return FkpConfig(x4=config.x4, real_image=config.real_image,
                   matmul_precision=config.matmul_precision,
                   prior_path=config.prior_path)


def estimate_kernel_fkp(image: np.ndarray,
                        config: Optional[FkpConfig] = None, seed: int = 0, *,
                        progress: Optional[ProgressFn] = None,
                        prior: Optional["prior_lib.Prior"] = None
                        ) -> KernelEstimate:
  """Estimates an LR image's x2 (and analytic x4) kernel with KernelGAN-FKP.

  Args:
    image: H x W [x C] array; uint8/uint16, or float in [0, 1]. For x4,
      pass the x4 LR image with `config.x4` (the x2 estimation is run on
      it for 4000 iterations, spec 4.9).
    config: settings; the original's defaults when None.
    seed: makes the crop corners, GP epsilons and D's weights reproducible.
      The starting z is the same for every image and seed.
    progress: optional callback progress(done, total, metrics).
    prior: the flow; `prior.load_prior(config.prior_path)` when None.

  Returns:
    A `KernelEstimate`: `raw_kernel` the 11x11 flow kernel, `kernel_x2`
    it in the package's x2 convention, `kernel_x4` the analytic x4 kernel,
    `history` the per-iteration losses.

  Raises:
    ImageError: for an image too small or without texture.
  """
  config = validate(config or FkpConfig())
  if prior is None:
    prior = prior_lib.load_prior(config.prior_path)
  data_key, init_key, gp_key = seed_keys(seed)
  data = prepare(images.as_float_rgb(image), config, data_key)
  state = init_state(init_key, gp_key, prior_lib.initial_latent(), config)
  state, history = train(state, prior, data, config, progress=progress)
  raw_kernel = np.asarray(prior_lib.kernel_from_latent(prior, state.z))
  return estimate_from_kernel(raw_kernel, history, seed)
