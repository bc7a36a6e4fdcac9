"""The ZSSR network: a plain residual CNN over the bicubic upscale.

ZSSR (Shocher et al., "Zero-Shot" Super-Resolution using Deep Internal
Learning, CVPR 2018) as used by KernelGAN (Bell-Kligler et al., NeurIPS
2019): `depth` bias-free 3x3 'SAME' convolutions, ReLU after all but the
last, and the output added to the network's input. Parameters are a plain
list of HWIO kernels so the model is a pure function (jit/vmap/grad).
`apply_tiled` runs it on a whole image tile by tile: the same output, its
memory bounded by the tile, one compiled program for every image size.
"""

import jax
import jax.numpy as jnp
import numpy as np

Params = list[jax.Array]

_NHWC = ("NHWC", "HWIO", "NHWC")
# Output side of `apply_tiled`'s tiles, and how many go through at once.
TILE = 256
TILE_BATCH = 1


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
  return _residual(params, upscaled_hwc[None])[0] + upscaled_hwc


def _residual(params: Params, images: jax.Array,
              masks: jax.Array | None = None) -> jax.Array:
  """The layers on (n, H, W, C) images: 'SAME' convolutions, ReLU after
  all but the last, each ReLU's output times `masks` (n, H, W, 1) when
  given."""
  features = images
  for index, kernel in enumerate(params):
    features = jax.lax.conv_general_dilated(
        features, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)
    if index < len(params) - 1:
      features = jax.nn.relu(features)
      if masks is not None:
        features = features * masks
  return features


def apply_tiled(params: Params, upscaled_hwc: np.ndarray, tile: int = TILE,
                batch: int = TILE_BATCH) -> np.ndarray:
  """`apply` on a whole image, `batch` tiles of tile x tile at a time.

  Each tile's window carries a margin of one pixel per layer (what a
  layer's 'SAME' padding gets wrong at the window's edge moves one pixel
  inwards a layer, so the tile itself is exact), and after every layer the
  positions outside the image are zeroed, as the whole image's 'SAME'
  padding leaves them for the next layer: the result is `apply`'s to
  float rounding. The program sees only fixed shapes, so it compiles once
  for every image size, and its memory does not grow with the image: only
  the image's few channels do (the whole-image pass held 3 x 64 channels
  per output pixel).

  Args:
    params: kernels from `init_params`.
    upscaled_hwc: (H, W, C) bicubically upscaled image.
    tile: output side of a tile.
    batch: tiles per call of the program.

  Returns:
    (H, W, C) float32 super-resolved image (no clipping), on the host.
  """
  image = np.asarray(upscaled_hwc, np.float32)
  height, width, channels = image.shape
  margin = len(params)
  side = tile + 2 * margin
  rows, cols = -(-height // tile), -(-width // tile)
  padded = np.zeros((rows * tile + 2 * margin, cols * tile + 2 * margin,
                     channels), np.float32)
  padded[margin:margin + height, margin:margin + width] = image
  offsets = np.arange(side) - margin  # Window pixel -> image pixel.
  corners = [(r * tile, c * tile) for r in range(rows) for c in range(cols)]
  output = np.empty((rows * tile, cols * tile, channels), np.float32)
  for start in range(0, len(corners), batch):
    group = corners[start:start + batch]
    windows = np.zeros((batch, side, side, channels), np.float32)
    masks = np.zeros((batch, side, side, 1), np.float32)
    for k, (row, col) in enumerate(group):
      windows[k] = padded[row:row + side, col:col + side]
      rows_in = (row + offsets >= 0) & (row + offsets < height)
      cols_in = (col + offsets >= 0) & (col + offsets < width)
      masks[k, ..., 0] = np.outer(rows_in, cols_in)
    result = np.asarray(_windows(params, windows, masks))
    for k, (row, col) in enumerate(group):
      output[row:row + tile, col:col + tile] = result[k]
  return output[:height, :width]


@jax.jit
def _windows(params: Params, windows: jax.Array, masks: jax.Array
             ) -> jax.Array:
  """`apply` on (n, tile + 2 depth, ...) windows of the zero-padded image,
  `masks` 1 inside the image: each layer's positions outside it zeroed,
  the tiles (the windows less their margins) returned. 'SAME' rather than
  shrinking 'VALID' convolutions: XLA:CPU's are several times faster."""
  margin, side = len(params), windows.shape[1]
  return (_residual(params, windows, masks)
          + windows)[:, margin:side - margin, margin:side - margin]
