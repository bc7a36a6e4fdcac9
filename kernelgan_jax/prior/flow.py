"""FKP's kernel prior: a RealNVP-style normalising flow over k x k kernels.

Liang et al., "Flow-based Kernel Prior with Application to Blind
Super-Resolution", CVPR 2021; the public code is described in
`shared/spec/fkp.md`. A kernel, flattened row-major (spec 1.2), goes to
logit space (`pre_process`, spec 1.3); the flow maps it to a latent u with
log N(u; 0, I) + log|det| = log p (spec 2.4); `post_process` is the way
back (spec 1.4). Five blocks of an affine coupling followed by a flow batch
norm (spec 2); "forward" is data -> latent, "inverse" latent -> data.

The Flax Linen modules are used functionally: their parameters, the batch
norms' running statistics and the masks are explicit arrays in `Prior`, a
pytree whose static sizes all come from array shapes, so a `Prior` passes
through `jax.jit` and `jax.vmap` as an ordinary argument.
"""

import os
from typing import Any, Callable, NamedTuple
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
import numpy as np

from kernelgan_jax.prior import kernels as kernels_lib

KERNEL_SIZE = 11
LATENT_SIZE = KERNEL_SIZE**2
LATENT_RADIUS = KERNEL_SIZE - 1.0  # KernelGAN-FKP's sphere (spec 4.7).
SCALE = 2
N_BLOCKS = 5
N_HIDDEN = 1
ALPHA = 1e-6  # Logit margin (spec 1.3d).
DEQUANTIZATION = 1.0 / 720.0  # Noise U(0, 1) / 720 (spec 1.3c).
BN_MOMENTUM = 0.9  # running = 0.9 old + 0.1 batch (spec 2.3).
BN_EPS = 1e-5
DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "fkp_x2.npz")
_STATIC_KEYS = ("running_mean", "running_var", "masks", "normalization",
                "alpha")

Params = Any  # A nested dict of float32 arrays (Flax Linen parameters).


def hidden_size(scale: int) -> int:
  """h = min(5 sf + 5, 25): 15 for x2 (spec 1.1)."""
  return min(5 * scale + 5, 25)


class Prior(NamedTuple):
  """A kernel prior: Linen parameters, batch-norm statistics, constants.

  Every field is an array; the kernel size, width and number of blocks are
  read off the shapes, so this is a plain pytree for jit and vmap.
  """
  params: Params
  running_mean: Float[Array, "blocks d"]
  running_var: Float[Array, "blocks d"]
  masks: Float[Array, "blocks d"]  # 1 = conditioning input, kept.
  normalization: Float[Array, ""]  # c_sf, 0.2335 for x2 (spec 1.3b).
  alpha: Float[Array, ""]


def coupling_masks(size: int, n_blocks: int = N_BLOCKS
                   ) -> Float[Array, "blocks d"]:
  """m1[i] = i mod 2, then alternately 1 - m (spec 2.1): a checkerboard."""
  first = np.arange(size) % 2
  return jnp.asarray(np.stack([first if j % 2 == 0 else 1 - first
                               for j in range(n_blocks)]), jnp.float32)


def _torch_linear_init(fan_in: int) -> Callable[..., Array]:
  """PyTorch's default `nn.Linear` init: U(+-1/sqrt(fan_in)) (spec 8.4)."""
  bound = 1.0 / np.sqrt(fan_in)
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class Linear(nn.Module):
  """Dense with bias and PyTorch's init for both (weights are (in, out))."""
  features: int

  @nn.compact
  def __call__(self, x: Float[Array, "*b i"]) -> Float[Array, "*b o"]:
    init = _torch_linear_init(x.shape[-1])
    kernel = self.param("kernel", init, (x.shape[-1], self.features))
    bias = self.param("bias", init, (self.features,))
    return x @ kernel + bias


class ConditionerNet(nn.Module):
  """S or T of a coupling: Linear(d, h), act, [Linear(h, h), act] x
  n_hidden, Linear(h, d) (spec 2.2)."""
  hidden: int
  n_hidden: int
  activation: Callable[[Array], Array]

  @nn.compact
  def __call__(self, x: Float[Array, "*b d"]) -> Float[Array, "*b d"]:
    out = x.shape[-1]
    for i in range(self.n_hidden + 1):
      x = self.activation(Linear(self.hidden, name=f"linear_{i}")(x))
    return Linear(out, name=f"linear_{self.n_hidden + 1}")(x)


class Coupling(nn.Module):
  """Affine masked coupling, RealNVP/MAF style (spec 2.2).

  S (tanh) gives the log scale s, unbounded; T (ReLU) the shift t.
  """
  hidden: int
  n_hidden: int

  def setup(self):
    self.s_net = ConditionerNet(self.hidden, self.n_hidden, jnp.tanh)
    self.t_net = ConditionerNet(self.hidden, self.n_hidden, jax.nn.relu)

  def __call__(self, x: Float[Array, "*b d"], mask: Float[Array, "d"]
               ) -> tuple[Float[Array, "*b d"], Float[Array, "*b"]]:
    """u = m x + (1 - m)(x - t) e^-s, log|det| = -sum (1 - m) s."""
    kept = x * mask
    s, t = self.s_net(kept), self.t_net(kept)
    u = kept + (1 - mask) * (x - t) * jnp.exp(-s)
    return u, -jnp.sum((1 - mask) * s, axis=-1)

  def inverse(self, u: Float[Array, "*b d"], mask: Float[Array, "d"]
              ) -> tuple[Float[Array, "*b d"], Float[Array, "*b"]]:
    """x = m u + (1 - m)(u e^s + t), log|det| = +sum (1 - m) s."""
    kept = u * mask
    s, t = self.s_net(kept), self.t_net(kept)
    x = kept + (1 - mask) * (u * jnp.exp(s) + t)
    return x, jnp.sum((1 - mask) * s, axis=-1)


def batch_statistics(x: Float[Array, "b d"]
                     ) -> tuple[Float[Array, "d"], Float[Array, "d"]]:
  """The batch mean and *unbiased* (N - 1) variance (spec 2.3, 8.2)."""
  return jnp.mean(x, axis=0), jnp.var(x, axis=0, ddof=1)


def update_running(running: Float[Array, "d"], batch: Float[Array, "d"]
                   ) -> Float[Array, "d"]:
  """running = 0.9 running + 0.1 batch (spec 2.3)."""
  return BN_MOMENTUM * running + (1 - BN_MOMENTUM) * batch


class FlowBatchNorm(nn.Module):
  """The flow's batch norm (spec 2.3): log gamma and beta start at 0.

  The statistics (batch or running) are arguments; the log-det is one
  scalar for the whole batch.
  """
  features: int

  def setup(self):
    self.log_gamma = self.param("log_gamma", nn.initializers.zeros,
                                (self.features,))
    self.beta = self.param("beta", nn.initializers.zeros, (self.features,))

  def __call__(self, x: Float[Array, "*b d"], mean: Float[Array, "d"],
               var: Float[Array, "d"]
               ) -> tuple[Float[Array, "*b d"], Float[Array, ""]]:
    """y = e^logg (x - mu) / sqrt(var + eps) + beta."""
    y = jnp.exp(self.log_gamma) * (x - mean) / jnp.sqrt(var + BN_EPS)
    return y + self.beta, jnp.sum(self.log_gamma
                                  - 0.5 * jnp.log(var + BN_EPS))

  def inverse(self, y: Float[Array, "*b d"], mean: Float[Array, "d"],
              var: Float[Array, "d"]
              ) -> tuple[Float[Array, "*b d"], Float[Array, ""]]:
    """x = (y - beta) e^-logg sqrt(var + eps) + mu."""
    x = (y - self.beta) * jnp.exp(-self.log_gamma) * jnp.sqrt(var + BN_EPS)
    return x + mean, jnp.sum(0.5 * jnp.log(var + BN_EPS) - self.log_gamma)


class KernelFlow(nn.Module):
  """[C1, BN1, ..., C5, BN5] (spec 2): data -> latent is `__call__`."""
  size: int
  hidden: int
  n_hidden: int = N_HIDDEN
  n_blocks: int = N_BLOCKS

  def setup(self):
    self.couplings = [Coupling(self.hidden, self.n_hidden)
                      for _ in range(self.n_blocks)]
    self.norms = [FlowBatchNorm(self.size) for _ in range(self.n_blocks)]

  def __call__(self, x, masks, running_mean, running_var, train=False):
    """Forward; train mode normalises with, and returns, batch statistics.

    Returns:
      (u, log|det du/dx| per sample, (batch means, batch variances)); the
      statistics are the running ones in eval mode.
    """
    logdet = jnp.zeros(x.shape[:-1])
    means, variances = [], []
    for j in range(self.n_blocks):
      x, ld = self.couplings[j](x, masks[j])
      logdet = logdet + ld
      if train:
        mean, var = batch_statistics(x)
      else:
        mean, var = running_mean[j], running_var[j]
      x, ld = self.norms[j](x, mean, var)
      logdet = logdet + ld
      means.append(mean)
      variances.append(var)
    return x, logdet, (jnp.stack(means), jnp.stack(variances))

  def inverse(self, u, masks, running_mean, running_var):
    """Latent -> data with the given (running) statistics, and log|det|."""
    logdet = jnp.zeros(u.shape[:-1])
    for j in reversed(range(self.n_blocks)):
      u, ld = self.norms[j].inverse(u, running_mean[j], running_var[j])
      logdet = logdet + ld
      u, ld = self.couplings[j].inverse(u, masks[j])
      logdet = logdet + ld
    return u, logdet


def _module(prior: Prior) -> KernelFlow:
  """The flow's module, sized from the prior's array shapes."""
  n_blocks, size = prior.masks.shape
  s_net = prior.params["couplings_0"]["s_net"]
  return KernelFlow(size=size, hidden=s_net["linear_0"]["kernel"].shape[1],
                    n_hidden=len(s_net) - 2, n_blocks=n_blocks)


def kernel_size_of(prior: Prior) -> int:
  """k, from the latent size d = k^2."""
  return int(round(np.sqrt(prior.masks.shape[-1])))


def init_prior(key: jax.Array, scale: int = SCALE) -> Prior:
  """An untrained prior: PyTorch's Linear init, T an exact copy of S.

  The original builds T as a deep copy of S (spec 2.2, 8.4); batch norms
  start at log gamma = beta = 0, running mean 0 and variance 1 (spec 2.3).
  """
  size = kernels_lib.kernel_size(scale)**2
  masks = coupling_masks(size)
  stats = jnp.zeros((N_BLOCKS, size)), jnp.ones((N_BLOCKS, size))
  module = KernelFlow(size=size, hidden=hidden_size(scale))
  params = module.init(key, jnp.zeros((2, size)), masks, *stats)["params"]
  params = {name: ({"s_net": block["s_net"], "t_net": block["s_net"]}
                   if name.startswith("couplings") else block)
            for name, block in params.items()}
  return Prior(params=params, running_mean=stats[0], running_var=stats[1],
               masks=masks,
               normalization=jnp.float32(
                   kernels_lib.normalization_constant(scale)),
               alpha=jnp.float32(ALPHA))


def parameter_count(prior: Prior) -> int:
  """Trainable floats: 5 [2 (2dh + h^2 + 2h + d) + 2d] (spec 2.5)."""
  return sum(a.size for a in jax.tree.leaves(prior.params))


def forward(prior: Prior, y: Float[Array, "*b d"]
            ) -> tuple[Float[Array, "*b d"], Float[Array, "*b"]]:
  """Eval-mode forward (running statistics): logits -> latent, log|det|."""
  u, logdet, _ = _module(prior).apply(
      {"params": prior.params}, y, prior.masks, prior.running_mean,
      prior.running_var)
  return u, logdet


def forward_train(prior: Prior, y: Float[Array, "b d"]
                  ) -> tuple[Float[Array, "b d"], Float[Array, "b"], Prior]:
  """Train-mode forward: batch statistics, and the prior with its running
  statistics updated once (0.9 old + 0.1 batch, spec 2.3)."""
  u, logdet, (means, variances) = _module(prior).apply(
      {"params": prior.params}, y, prior.masks, prior.running_mean,
      prior.running_var, train=True)
  updated = prior._replace(
      running_mean=update_running(prior.running_mean, means),
      running_var=update_running(prior.running_var, variances))
  return u, logdet, updated


def inverse(prior: Prior, u: Float[Array, "*b d"]
            ) -> tuple[Float[Array, "*b d"], Float[Array, "*b"]]:
  """Eval-mode inverse: latent -> logits, log|det dy/du|."""
  return _module(prior).apply(
      {"params": prior.params}, u, prior.masks, prior.running_mean,
      prior.running_var, method=KernelFlow.inverse)


def base_log_prob(u: Float[Array, "*b d"]) -> Float[Array, "*b"]:
  """sum_i log N(u_i; 0, 1), the base density (spec 2.4)."""
  return -0.5 * jnp.sum(u**2 + jnp.log(2 * jnp.pi), axis=-1)


def log_prob_logits(prior: Prior, y: Float[Array, "*b d"]
                    ) -> Float[Array, "*b"]:
  """Eval-mode log p(y) in nats, logit space (no logit Jacobian, 2.4)."""
  u, logdet = forward(prior, y)
  return base_log_prob(u) + logdet


def pre_process(kernels, normalization, alpha, noise=0.0):
  """Kernel -> flow space (spec 1.3): clamp at 0, divide by c, add the
  dequantisation noise, y = logit(alpha + (1 - 2 alpha) x).

  NumPy in float64 when every argument is NumPy or a Python number (as the
  original, for training data), else jax.numpy (differentiable). Returns
  the flattened (row-major, spec 1.2) d-vectors.
  """
  uses_jax = any(isinstance(a, jax.Array)
                 for a in (kernels, normalization, alpha, noise))
  xp = jnp if uses_jax else np
  kernels = xp.asarray(kernels) if uses_jax else np.asarray(kernels,
                                                            np.float64)
  size = kernels.shape[-1]
  x = xp.maximum(kernels, 0.0) / normalization
  x = x.reshape(*x.shape[:-2], size * size) + noise
  p = alpha + (1 - 2 * alpha) * x
  return xp.log(p) - xp.log1p(-p)


def post_process(prior: Prior, y: Float[Array, "*b d"]
                 ) -> Float[Array, "*b k k"]:
  """Flow space -> kernel (spec 1.4): c (sigmoid(y) - alpha) / (1 - 2 alpha).

  No clamp and no renormalisation, as the original: tail taps come out as
  about +-1e-7 and sums scatter around 1 (spec 1.4, 8.1).
  """
  size = kernel_size_of(prior)
  kernel = (prior.normalization * (jax.nn.sigmoid(y) - prior.alpha)
            / (1 - 2 * prior.alpha))
  return kernel.reshape(*y.shape[:-1], size, size)


def kernel_from_latent(prior: Prior, z: Float[Array, "*b d"]
                       ) -> Float[Array, "*b k k"]:
  """k = post_process(flow^-1(z)) in eval mode (spec 4.3).

  Pure and differentiable in z; z is (121,) or a batch (..., 121).
  """
  return post_process(prior, inverse(prior, z)[0])


def latent_from_kernel(prior: Prior, kernel: Float[Array, "*b k k"]
                       ) -> Float[Array, "*b d"]:
  """z = flow(pre_process(kernel)), eval mode, without dequantisation
  noise (spec 1.3 a, b, d)."""
  y = pre_process(jnp.asarray(kernel, jnp.float32), prior.normalization,
                  prior.alpha)
  return forward(prior, y)[0]


def log_prob(prior: Prior, kernel: Float[Array, "*b k k"],
             key: jax.Array | None = None) -> Float[Array, "*b"]:
  """log p of k x k kernels in nats, eval mode, logit space (spec 2.4).

  Without a key there is no dequantisation noise: exact zeros then map to
  logit(alpha), about -13.8, far below where the training noise puts them
  (about -7.3), which lowers log p by several nats per such tap. With a
  key, U(0, 1)/720 is added as in training (spec 1.3c), which is the
  setting of the original's NLL (spec 3.4).
  """
  kernel = jnp.asarray(kernel, jnp.float32)
  noise = 0.0
  if key is not None:
    noise = DEQUANTIZATION * jax.random.uniform(
        key, kernel.shape[:-2] + (kernel.shape[-1]**2,))
  y = pre_process(kernel, prior.normalization, prior.alpha, noise)
  return log_prob_logits(prior, y)


def sample(prior: Prior, key: jax.Array, count: int
           ) -> Float[Array, "count k k"]:
  """Kernels from z ~ N(0, I), eval mode."""
  z = jax.random.normal(key, (count, prior.masks.shape[-1]))
  return kernel_from_latent(prior, z)


def project_latent(z: Float[Array, "*b d"], radius: float = LATENT_RADIUS,
                   eps: float = 1e-9) -> Float[Array, "*b d"]:
  """FKP's `SphericalOptimizer` projection, applied after every update of
  z (spec 4.7): z <- r z / sqrt(|z|^2 + eps)."""
  return radius * z / jnp.sqrt(jnp.sum(jnp.square(z), axis=-1,
                                       keepdims=True) + eps)


def initial_latent(seed: int = 1) -> Float[Array, "121"]:
  """A fixed z ~ N(0, I): KernelGAN-FKP starts every image from one z
  (drawn after a re-seed to 1 in the original, spec 4.3); not projected."""
  return jax.random.normal(jax.random.key(seed), (LATENT_SIZE,))


def _flatten(tree: Params, prefix: str) -> dict[str, np.ndarray]:
  flat = {}
  for name, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{name}/"))
    else:
      flat[f"{prefix}{name}"] = np.asarray(value)
  return flat


def prior_arrays(prior: Prior) -> dict[str, np.ndarray]:
  """The prior as flat named host arrays (`save_prior`'s file content)."""
  arrays = _flatten(prior.params, "params/")
  for name in _STATIC_KEYS:
    arrays[name] = np.asarray(getattr(prior, name))
  arrays["kernel_size"] = np.int64(kernel_size_of(prior))
  return arrays


def save_prior(path: str, prior: Prior, **metadata: Any) -> None:
  """Writes the prior and metadata (numbers, strings) to a .npz atomically:
  a temporary file in the same folder, then `os.replace`."""
  arrays = prior_arrays(prior)
  for name, value in metadata.items():
    arrays[f"meta/{name}"] = np.asarray(value)
  folder = os.path.dirname(os.path.abspath(path))
  temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}"
                           ".tmp")
  try:
    with open(temporary, "wb") as stream:
      np.savez_compressed(stream, **arrays)
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def _unflatten(flat: dict[str, np.ndarray]) -> Params:
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = np.asarray(value, np.float32)
  return tree


def _check(prior: Prior) -> None:
  """Raises ValueError unless the arrays form one consistent flow."""
  n_blocks, size = prior.masks.shape
  side = kernel_size_of(prior)
  if side * side != size or n_blocks < 1:
    raise ValueError(f"masks of shape {prior.masks.shape}")
  for name in ("running_mean", "running_var"):
    if getattr(prior, name).shape != (n_blocks, size):
      raise ValueError(f"{name} of shape {getattr(prior, name).shape}")
  expected = jax.eval_shape(
      lambda: _module(prior).init(jax.random.key(0), jnp.zeros((2, size)),
                                  prior.masks, prior.running_mean,
                                  prior.running_var)["params"])
  if (jax.tree.structure(expected) != jax.tree.structure(prior.params)
      or any(a.shape != b.shape for a, b in zip(
          jax.tree.leaves(expected), jax.tree.leaves(prior.params)))):
    raise ValueError("parameters do not match the flow's layout")


def load_metadata(path: str | None = None) -> dict[str, Any]:
  """The training metadata stored with a prior (steps, seed, NLLs...)."""
  path = DEFAULT_PATH if path is None else path
  with np.load(path, allow_pickle=False) as data:
    return {name[len("meta/"):]: data[name].item()
            for name in data.files if name.startswith("meta/")}


def load_prior(path: str | None = None) -> Prior:
  """Reads a prior written by `save_prior` (default: the shipped x2 one).

  The arrays are numpy's, so the prior can be loaded (and cached) while a
  function is being traced and then closed over as constants.

  Raises:
    ValueError: one line naming the path, if the file is missing, is not a
      readable .npz, or does not hold a consistent flow.
  """
  path = DEFAULT_PATH if path is None else path
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {name: data[name] for name in data.files}
    params = _unflatten({name[len("params/"):]: value
                         for name, value in flat.items()
                         if name.startswith("params/")})
    missing = [name for name in _STATIC_KEYS if name not in flat]
    if missing or not params:
      raise ValueError(f"missing {', '.join(missing) or 'params'}")
    prior = Prior(params=params,
                  **{name: np.asarray(flat[name], np.float32)
                     for name in _STATIC_KEYS})
    _check(prior)
  except FileNotFoundError:
    raise ValueError(f"cannot read the kernel prior {path}: no such file"
                     ) from None
  except (OSError, ValueError, KeyError, TypeError, EOFError,
          zipfile.BadZipFile) as error:
    reason = " ".join(str(error).split()) or type(error).__name__
    raise ValueError(f"cannot read the kernel prior {path}: {reason}"
                     ) from None
  return prior
