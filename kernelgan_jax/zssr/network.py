"""The ZSSR network: a plain residual CNN over the bicubic upscale.

ZSSR (Shocher et al., "Zero-Shot" Super-Resolution using Deep Internal
Learning, CVPR 2018) as used by KernelGAN (Bell-Kligler et al., NeurIPS
2019): `depth` bias-free 3x3 'SAME' convolutions, ReLU after all but the
last, and the output added to the network's input. Parameters are a plain
list of HWIO kernels so the model is a pure function (jit/vmap/grad).
"""

import jax
import jax.numpy as jnp
import numpy as np

Params = list[jax.Array]

_NHWC = ("NHWC", "HWIO", "NHWC")


@jax.jit(static_argnames=("channels", "width", "depth", "init_variance"))
def init_params(key: jax.Array, channels: int, width: int = 64,
                depth: int = 8, init_variance: float = 0.1) -> Params:
  """Normal weights with variance init_variance / (3 * 3 * C_in).

  Args:
    key: PRNG key.
    channels: image channels C (input and output).
    width: hidden feature channels.
    depth: number of conv layers (>= 2).
    init_variance: variance times fan-in.

  Returns:
    `depth` kernels of shape (3, 3, C_in, C_out), float32.
  """
  ins = [channels] + [width] * (depth - 1)
  outs = [width] * (depth - 1) + [channels]
  shapes = [(3, 3, c_in, c_out) for c_in, c_out in zip(ins, outs)]
  # One flat draw: XLA:CPU compiles a 1-D normal several times faster.
  sizes = [int(np.prod(shape)) for shape in shapes]
  flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
  pieces = jnp.split(flat, np.cumsum(sizes)[:-1])
  return [piece.reshape(shape) * np.sqrt(init_variance / (9 * shape[2]))
          for piece, shape in zip(pieces, shapes)]


def apply(params: Params, upscaled_hwc: jax.Array) -> jax.Array:
  """Residual prediction added to the bicubic upscale (no clipping).

  Args:
    params: kernels from `init_params`.
    upscaled_hwc: (H, W, C) bicubically upscaled image.

  Returns:
    (H, W, C) super-resolved image.
  """
  features = upscaled_hwc[None]
  for index, kernel in enumerate(params):
    features = jax.lax.conv_general_dilated(
        features, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)
    if index < len(params) - 1:
      features = jax.nn.relu(features)
  return features[0] + upscaled_hwc
