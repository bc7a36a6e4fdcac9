"""KernelGAN's two networks as Flax NNX modules (spec sections 3 and 4).

The generator is a deep *linear* network: six bias-free convolutions with no
activations, the last one strided, so that it is exactly one 13x13 kernel
followed by 2x subsampling (Bell-Kligler et al., NeurIPS 2019, Sec. 3). The
discriminator is a fully convolutional patch discriminator with one 7x7
receptive field, spectral norm on every conv and batch norm on the 1x1 blocks.

Both are used functionally: `nnx.split` once, `nnx.merge` inside the pure
train step (see `train.py`).
"""

import jax
from jax import lax
import jax.numpy as jnp
from jaxtyping import Array, Float
from flax import nnx

from kernelgan_jax.config import Config


def _xavier_normal(gain: float) -> nnx.Initializer:
  """PyTorch's `xavier_normal_`: std = gain * sqrt(2 / (fan_in + fan_out))."""
  return jax.nn.initializers.variance_scaling(gain**2, "fan_avg", "normal")


class LinearGenerator(nnx.Module):
  """G: convs 7, 5, 3, 1, 1, 1 (64 channels, no bias), stride 2 at the end.

  Colour channels are processed as a batch of gray images, so one kernel is
  shared by R, G and B.
  """

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    sizes = config.g_structure
    chans = [1] + [config.g_chan] * (len(sizes) - 1) + [1]
    last = len(sizes) - 1
    self.layers = nnx.List([
        nnx.Conv(
            chans[i], chans[i + 1], (k, k),
            strides=2 if i == last else 1,
            padding="VALID", use_bias=False,
            kernel_init=_xavier_normal(config.g_init_gain), rngs=rngs)
        for i, k in enumerate(sizes)
    ])

  def __call__(self, image_hwc: Float[Array, "h w c"]
               ) -> Float[Array, "h2 w2 c"]:
    """The layered forward: the definition of G (the fast path must match)."""
    x = jnp.moveaxis(image_hwc, -1, 0)[..., None]  # Channels as batch.
    for layer in self.layers:
      x = layer(x)
    return jnp.moveaxis(x[..., 0], 0, -1)

  def conv_kernels(self) -> list[Float[Array, "kh kw cin cout"]]:
    """The six HWIO conv kernels, first layer first."""
    return [layer.kernel[...] for layer in self.layers]


class SpectralVector(nnx.Variable):
  """Spectral norm's power-iteration vectors u: state, not parameters."""


def _normalize(x: Array, eps: float) -> Array:
  """`torch.nn.functional.normalize` along the last axis."""
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.maximum(norm, eps)


def power_iteration(w_noi: Float[Array, "n o i"], u_no: Float[Array, "n o"],
                    eps: float
                    ) -> tuple[Float[Array, "n"], Float[Array, "n o"]]:
  """One step of PyTorch's `spectral_norm` for n matrices at once.

  Returns sigma = u^T W v (differentiable in W; u and v are constants, as in
  PyTorch) and the updated u (Miyato et al., ICLR 2018).
  """
  w_const = lax.stop_gradient(w_noi)
  v = _normalize(jnp.einsum("noi,no->ni", w_const, u_no), eps)
  u = _normalize(jnp.einsum("noi,ni->no", w_const, v), eps)
  sigma = jnp.einsum("no,noi,ni->n", u, w_noi, v)
  return sigma, u


def successive_power_iterations(w_noi: Float[Array, "n o i"],
                                u_no: Float[Array, "n o"], count: int,
                                eps: float
                                ) -> tuple[Float[Array, "count n"],
                                           Float[Array, "n o"]]:
  """`count` power iterations in a row, as `count` successive PyTorch
  forwards run them: each step's sigmas, and the last u.
  """
  sigmas = []
  for _ in range(count):
    sigma, u_no = power_iteration(w_noi, u_no, eps)
    sigmas.append(sigma)
  return jnp.stack(sigmas), u_no


def _patches(x_nhwc: Float[Array, "n h w c"], size: int
             ) -> Float[Array, "n h2 w2 k"]:
  """Every size x size window of x as one vector, in HWIO kernel order.

  A valid conv is then one matrix product; on XLA:CPU this (and its
  gradients) runs several times faster than the convolution itself for
  D's few input channels.
  """
  rows, cols = x_nhwc.shape[1] - size + 1, x_nhwc.shape[2] - size + 1
  return jnp.concatenate([x_nhwc[:, i:i + rows, j:j + cols]
                          for i in range(size) for j in range(size)], -1)


@jax.custom_vjp
def dense(x: Float[Array, "... i"], w: Float[Array, "i o"]
          ) -> Float[Array, "... o"]:
  """x @ w, whose weight gradient XLA:CPU runs as a fast matrix product.

  Autodiff's own weight gradient contracts x and the output gradient over
  their leading axes, which XLA:CPU runs through a generic dot several
  times slower than the forward; materialising x^T first (the barrier keeps
  XLA from folding the transpose back in) makes it an ordinary product.
  Same values, less time per iteration (benchmarks/README.md, "Where the
  CPU time goes").
  """
  return x @ w


def _dense_forward(x, w):
  return x @ w, (x, w)


def _dense_backward(residuals, grad_y):
  x, w = residuals
  x_t = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
  return grad_y @ w.T, x_t @ grad_y.reshape(-1, grad_y.shape[-1])


dense.defvjp(_dense_forward, _dense_backward)


def _uniform_fan_in(key, shape, fan_in):
  """PyTorch's default conv init (kaiming-uniform, a=sqrt(5)), spec 4."""
  bound = 1.0 / fan_in**0.5
  return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


class SpectralConv(nnx.Module):
  """A conv with PyTorch's `spectral_norm` semantics (Miyato et al., 2018).

  The raw kernel (`weight_orig`) is the trained parameter; every call runs
  one power iteration, stores the new u and divides the kernel by sigma.
  W is the kernel viewed as [out, in * kh * kw] in PyTorch's order, so u
  matches a PyTorch model's `weight_u` exactly.
  """

  def __init__(self, in_features: int, out_features: int, size: int, *,
               eps: float, rngs: nnx.Rngs):
    self.kernel = nnx.Param(_uniform_fan_in(
        rngs.params(), (size, size, in_features, out_features),
        in_features * size * size))
    self.bias = nnx.Param(jnp.zeros((out_features,)))
    self.u = SpectralVector(
        _normalize(jax.random.normal(rngs.params(), (out_features,)), eps))
    self.eps = eps

  def sigmas(self, count: int) -> Float[Array, "count"]:
    """Runs `count` power iterations in a row, as `count` successive
    PyTorch forwards would, stores the last u, returns each step's sigma.
    """
    kernel = self.kernel[...]
    w = jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)
    sigmas, u = successive_power_iterations(w[None], self.u[...][None],
                                            count, self.eps)
    self.u[...] = u[0]
    return sigmas[:, 0]

  def __call__(self, x_nhwc: Float[Array, "n h w cin"]
               ) -> Float[Array, "n h2 w2 cout"]:
    """Sample b of the batch is what the b-th of n successive calls on
    single samples gives: conv(x, W / sigma_b) = conv(x, W) / sigma_b.
    """
    sigmas = self.sigmas(x_nhwc.shape[0])
    kernel = self.kernel[...]
    size = kernel.shape[0]
    y = dense(_patches(x_nhwc, size), kernel.reshape(-1, kernel.shape[-1]))
    return y / sigmas[:, None, None, None] + self.bias[...]


class SpectralPointwiseStack(nnx.Module):
  """n spectral-norm 1x1 convs of equal width, normalised together.

  Layer l is `x @ kernel[l] / sigma[l] + bias[l]` (applied by the
  discriminator), exactly as n separate `SpectralConv`s; keeping them
  stacked lets one batched power iteration serve all of them, which matters
  on CPU where each small op costs a kernel launch.
  """

  def __init__(self, n: int, features: int, *, eps: float, rngs: nnx.Rngs):
    self.kernel = nnx.Param(_uniform_fan_in(
        rngs.params(), (n, features, features), features))  # [n, in, out]
    self.bias = nnx.Param(jnp.zeros((n, features)))
    self.u = SpectralVector(
        _normalize(jax.random.normal(rngs.params(), (n, features)), eps))
    self.eps = eps

  def sigmas(self, count: int) -> Float[Array, "count n"]:
    """`count` successive power iterations of every layer (see
    `SpectralConv.sigmas`).
    """
    sigmas, u = successive_power_iterations(
        jnp.swapaxes(self.kernel[...], 1, 2), self.u[...], count, self.eps)
    self.u[...] = u
    return sigmas


class BatchNorm(nnx.Module):
  """BatchNorm2d in training mode on a batch of one: statistics over the
  spatial positions of each sample, biased variance.

  The original never leaves training mode, so running averages are never
  read; they are not kept. gamma ~ N(1, 0.02), beta = 0 (`weights_init_D`).
  """

  def __init__(self, features: int, *, eps: float, rngs: nnx.Rngs):
    self.scale = nnx.Param(
        1.0 + 0.02 * jax.random.normal(rngs.params(), (features,)))
    self.bias = nnx.Param(jnp.zeros((features,)))
    self.eps = eps

  def __call__(self, x_nhwc: Float[Array, "n h w c"],
               divisor_n: Float[Array, "n"] | None = None
               ) -> Float[Array, "n h w c"]:
    """Normalises x, or x / divisor per sample when a divisor is given.

    BN(x / d) = (x - mean) * rsqrt(var + eps * d^2) exactly, which spares
    dividing the whole activation by a spectral norm's sigma.
    """
    axes = (1, 2)  # Per sample: each sample is its own batch of one.
    centred = x_nhwc - jnp.mean(x_nhwc, axis=axes, keepdims=True)
    variance = jnp.mean(jnp.square(centred), axis=axes, keepdims=True)
    eps = self.eps if divisor_n is None else (
        self.eps * jnp.square(divisor_n)[:, None, None, None])
    return centred * (lax.rsqrt(variance + eps) * self.scale[...]) + (
        self.bias[...])


class PatchDiscriminator(nnx.Module):
  """D: SN conv 7x7 3->64, five [SN conv 1x1, BatchNorm, ReLU], SN conv 1x1
  to one channel and a sigmoid. Always in training mode (batch statistics,
  one power iteration per call), as the original.
  """

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    width, eps = config.d_chan, config.sn_epsilon
    self.first = SpectralConv(3, width, config.d_kernel_size, eps=eps,
                              rngs=rngs)
    self.pointwise = SpectralPointwiseStack(config.d_n_layers - 2, width,
                                            eps=eps, rngs=rngs)
    self.norms = nnx.List([
        BatchNorm(width, eps=config.bn_epsilon, rngs=rngs)
        for _ in range(config.d_n_layers - 2)
    ])
    self.last = SpectralConv(width, 1, 1, eps=eps, rngs=rngs)

  def __call__(self, patches_bhwc: Float[Array, "b h w 3"]
               ) -> Float[Array, "b h2 w2"]:
    """Scores every 7x7 window: 1 = real, 0 = fake.

    Patch b gets exactly what the b-th of b successive calls of the
    original on that single patch gets (its own batch statistics and
    spectral-norm step); batching them only saves work.
    """
    count = patches_bhwc.shape[0]
    x = self.first(patches_bhwc)
    sigmas = self.pointwise.sigmas(count)  # [b, layers]
    # Each 1x1 conv is followed by BatchNorm, which removes its bias exactly
    # (in the original too: its gradient is 0) and absorbs its 1 / sigma.
    kernels = self.pointwise.kernel[...]
    for layer, norm in enumerate(self.norms):
      x = jax.nn.relu(norm(dense(x, kernels[layer]), sigmas[:, layer]))
    return jax.nn.sigmoid(self.last(x))[..., 0]
