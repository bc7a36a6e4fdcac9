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

_NHWC = ("NHWC", "HWIO", "NHWC")


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
  """Spectral norm's power-iteration vector u: state, not a parameter."""


def _normalize(x: Array, eps: float) -> Array:
  """`torch.nn.functional.normalize` for a vector."""
  return x / jnp.maximum(jnp.linalg.norm(x), eps)


class SpectralConv(nnx.Module):
  """A conv with PyTorch's `spectral_norm` semantics (Miyato et al., 2018).

  The raw kernel (`weight_orig`) is the trained parameter; every call runs
  one power iteration, stores the new u and divides the kernel by
  sigma = u^T W v, with u and v held constant for the gradient. W is the
  kernel viewed as [out, in * kh * kw] in PyTorch's order, so u matches a
  PyTorch model's `weight_u` exactly.
  """

  def __init__(self, in_features: int, out_features: int, size: int, *,
               eps: float, rngs: nnx.Rngs):
    # PyTorch's default conv init (kaiming-uniform, a=sqrt(5)); see spec 4.
    init = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
    self.kernel = nnx.Param(
        init(rngs.params(), (size, size, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,)))
    self.u = SpectralVector(
        _normalize(jax.random.normal(rngs.params(), (out_features,)), eps))
    self.eps = eps

  def __call__(self, x_nhwc: Float[Array, "n h w cin"]
               ) -> Float[Array, "n h2 w2 cout"]:
    kernel = self.kernel[...]
    w = jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)
    w_const = lax.stop_gradient(w)
    v = _normalize(w_const.T @ self.u[...], self.eps)
    u = _normalize(w_const @ v, self.eps)
    self.u[...] = u
    sigma = u @ (w @ v)
    y = lax.conv_general_dilated(
        x_nhwc, kernel / sigma, (1, 1), "VALID", dimension_numbers=_NHWC)
    return y + self.bias[...]


def _bn_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm gamma ~ N(1, 0.02), as the original's `weights_init_D`."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class PatchDiscriminator(nnx.Module):
  """D: SN conv 7x7 3->64, five [SN conv 1x1, BatchNorm, ReLU], SN conv 1x1
  to one channel and a sigmoid. Always in training mode (batch statistics,
  one power iteration per call), as the original.
  """

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    width, eps = config.d_chan, config.sn_epsilon
    self.first = SpectralConv(3, width, config.d_kernel_size, eps=eps,
                              rngs=rngs)
    self.convs = nnx.List([
        SpectralConv(width, width, 1, eps=eps, rngs=rngs)
        for _ in range(config.d_n_layers - 2)
    ])
    self.norms = nnx.List([
        nnx.BatchNorm(width, use_running_average=False, momentum=0.9,
                      epsilon=config.bn_epsilon, scale_init=_bn_scale_init,
                      rngs=rngs)
        for _ in range(config.d_n_layers - 2)
    ])
    self.last = SpectralConv(width, 1, 1, eps=eps, rngs=rngs)

  def __call__(self, patch_hwc: Float[Array, "h w 3"]
               ) -> Float[Array, "h2 w2"]:
    """Scores every 7x7 window of one patch: 1 = real, 0 = fake."""
    x = self.first(patch_hwc[None])
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.relu(norm(conv(x), use_running_average=False))
    return jax.nn.sigmoid(self.last(x))[0, ..., 0]
