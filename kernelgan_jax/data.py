"""Training data: the shaved image, crop-probability maps, crop corners.

KernelGAN trains on crops of the single input image (spec section 2): G sees
64x64 crops, D sees 26x26 crops of the same image at its own resolution,
both drawn where the image has strong gradients. Everything here runs on the
host with numpy: the maps, the crop corners (all drawn up front, as the
original draws them), and the crops themselves, gathered a chunk of
iterations at a time (`crops`). The compiled train step sees only those
fixed-size crops, so one compiled program serves every image size.
"""

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int
import numpy as np

from kernelgan_jax import programs
from kernelgan_jax.config import Config
from kernelgan_jax.images import ImageError
from kernelgan_jax.imresize import imresize


LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601.


class TrainData(NamedTuple):
  """One image's training inputs, on the host.

  Attributes:
    image: the shaved image in network units, [-1, 1], float32.
    g_corners: top-left (row, col) of G's 64x64 crop at each iteration.
    d_corners: top-left of D's real 26x26 crop at each iteration.
  """
  image: Float[np.ndarray, "h w 3"]
  g_corners: Int[np.ndarray, "iters 2"]
  d_corners: Int[np.ndarray, "iters 2"]


class Crops(NamedTuple):
  """What the train step reads: one iteration's crops, of fixed sizes.

  Stacked along leading axes for a chunk of iterations (and a batch of
  images); the image's own size never reaches the compiled step.

  Attributes:
    g_input: G's input crop, [-1, 1].
    d_real: D's real crop (no noise yet), [-1, 1].
  """
  g_input: Float[Array, "... g g 3"]
  d_real: Float[Array, "... d d 3"]


def shave(image_hwc: np.ndarray, config: Config) -> np.ndarray:
  """Drops the 10-px border (not in real mode), then odd last rows/cols."""
  if not config.real_image:
    edge = config.shave_edges
    image_hwc = image_hwc[edge:-edge, edge:-edge]
  rows, cols = image_hwc.shape[:2]
  return image_hwc[:rows - rows % 2, :cols - cols % 2]


def box_filter(image: np.ndarray, size: int) -> np.ndarray:
  """scipy's convolve2d(image, ones((size, size)), 'same') / size^2.

  Output pixel i averages inputs i - size//2 .. i - size//2 + size - 1,
  zeros outside; computed with an integral image.
  """
  before, after = size // 2, size - 1 - size // 2
  padded = np.pad(image, ((before + 1, after), (before + 1, after)))
  table = padded.cumsum(0).cumsum(1)
  sums = (table[size:, size:] - table[:-size, size:] - table[size:, :-size]
          + table[:-size, :-size])
  return sums / size**2


def zero_frame(image: np.ndarray, width: int) -> np.ndarray:
  """A copy with a `width`-pixel border set to 0."""
  framed = np.zeros_like(image)
  framed[width:-width, width:-width] = image[width:-width, width:-width]
  return framed


def _clip_extreme(values: np.ndarray, percentile: float) -> np.ndarray:
  """An indicator of the top (1 - percentile) values, as the original's
  `clip_extreme`: clip to [lo, next larger value] and subtract lo. (Its
  final division by the maximum cancels in `_unit_sum`.)
  """
  pivot = int(percentile * values.size)
  ordered = np.partition(values.ravel(), (pivot, pivot + 1))  # O(n).
  low = ordered[pivot]
  high = ordered[pivot + 1] if ordered[pivot + 1] > low else low + 1e-5
  return np.clip(values, low, high) - low


def _unit_sum(values: np.ndarray) -> np.ndarray:
  """`values / values.sum()`, or zeros when there is nothing."""
  total = values.sum()
  return values / total if total > 0 else np.zeros_like(values)


def luma(image_hwc: Float[np.ndarray, "h w c"] | Float[Array, "h w c"]
         ) -> Float[np.ndarray, "h w"] | Float[Array, "h w"]:
  """BT.601 luma of the first three channels, numpy or JAX.

  A JAX image gets float32 weights (64-bit JAX disabled).
  """
  return image_hwc[..., :3] @ LUMA_WEIGHTS


def gradient_map(image: np.ndarray, window: int = 5,
                 percentile: float = 0.97) -> np.ndarray:
  """Where the image (H x W x C, or its H x W luma) has texture, normalised
  to mean 1 (spec 2.2).

  Raises:
    ImageError: when the image has no gradients at all.
  """
  gray = image if image.ndim == 2 else luma(image)
  d_row, d_col = np.gradient(gray)
  magnitude = zero_frame(np.sqrt(d_row**2 + d_col**2), window)
  if not magnitude.any():
    raise ImageError("image is constant (no gradients): nothing to learn")
  d_row = _clip_extreme(zero_frame(np.abs(d_row), window), percentile)
  d_col = _clip_extreme(zero_frame(np.abs(d_col), window), percentile)
  # The third term is the unclipped magnitude: the original's quirk.
  combined = _unit_sum(d_row) + _unit_sum(d_col) + _unit_sum(magnitude)
  blurred = box_filter(combined, window)
  return blurred / blurred.mean()


def probability_map(loss_map: np.ndarray, crop: int) -> np.ndarray:
  """Crop-centre probabilities: box-blur, zero frame, normalise (spec 2.2).

  Falls back to uniform when nothing survives the frame (small images).
  """
  half = crop // 2
  probs = zero_frame(box_filter(loss_map, half), half)
  total = probs.sum()
  if total <= 0:
    return np.full(probs.shape, 1.0 / probs.size)
  return probs / total


def crop_probability_maps(image_hwc: np.ndarray, config: Config
                          ) -> tuple[np.ndarray, np.ndarray]:
  """(G's map, D's map), both H x W.

  D's map is the gradient map of the image itself (crop 26). G's is the
  gradient map of the image bicubically downscaled x2, upsampled back by
  nearest neighbour (crop 64).
  """
  window, pct = config.grad_map_window, config.grad_map_percentile
  gray = luma(np.asarray(image_hwc, np.float64))
  d_map = probability_map(gradient_map(gray, window, pct),
                          config.g_output_size)
  # Luma and resizing are both linear: resizing the luma is the original's
  # luma of the resized image (to rounding), at a third of the cost.
  small_map = gradient_map(imresize(gray, 0.5), window, pct)
  g_map = probability_map(small_map.repeat(2, 0).repeat(2, 1),
                          config.input_crop_size)
  return g_map, d_map


def sample_corners(key: jax.Array, probs_hw: np.ndarray, crop: int,
                   count: int) -> Int[np.ndarray, "n 2"]:
  """Draws `count` crop centres from `probs_hw` and returns top-left corners.

  Inverse-CDF sampling on the host (float64), with the uniforms
  `jax.random.choice` would use for the same key, so the draws match it
  except where its float32 cumulative sum rounds across a boundary. The
  corner is clamped inside the image and rounded down to even, keeping the
  2x grid aligned (the original's `get_top_left`).
  """
  return corners_from_uniforms(
      np.asarray(jax.random.uniform(key, (count,), jnp.float32)), probs_hw,
      crop)


def corners_from_uniforms(uniform: Float[np.ndarray, "n"],
                          probs_hw: np.ndarray, crop: int
                          ) -> Int[np.ndarray, "n 2"]:
  """`sample_corners` given its uniforms."""
  uniform = np.asarray(uniform, np.float64)
  rows, cols = probs_hw.shape
  cdf = np.cumsum(np.asarray(probs_hw, np.float64).ravel())
  flat = np.minimum(np.searchsorted(cdf, cdf[-1] * (1.0 - uniform)),
                    rows * cols - 1)
  centre = np.stack([flat // cols, flat % cols], axis=-1)
  corner = np.clip(centre - crop // 2, 0, [rows - crop, cols - crop])
  return (corner - corner % 2).astype(np.int32)


def gather_crops(image_hwc: np.ndarray, corners: np.ndarray, size: int
                 ) -> Float[np.ndarray, "n size size c"]:
  """The size x size crops at the given top-left corners, stacked."""
  return np.stack([image_hwc[r:r + size, c:c + size] for r, c in corners])


def crops(data: TrainData, config: Config, start: int, length: int
          ) -> Crops:
  """The crops of iterations start .. start + length - 1, stacked (host)."""
  window = slice(start, start + length)
  return Crops(
      g_input=gather_crops(data.image, data.g_corners[window],
                           config.input_crop_size),
      d_real=gather_crops(data.image, data.d_corners[window],
                          config.g_output_size))


def check_size(image_hwc: np.ndarray, config: Config) -> None:
  """Raises ImageError unless the image fits G's crop after shaving."""
  rows, cols = image_hwc.shape[:2]
  if min(rows, cols) < config.min_image_size:
    raise ImageError(
        f"image is {cols}x{rows} pixels; KernelGAN needs at least "
        f"{config.min_image_size}x{config.min_image_size} (a "
        f"{config.input_crop_size}-pixel crop"
        + ("" if config.real_image else
           f" plus the {config.shave_edges}-pixel shaved border") + ")")


def prepare_seeds(image_hwc: np.ndarray, config: Config,
                  keys: Sequence[jax.Array]) -> list[TrainData]:
  """One image's `TrainData` for several keys (seeds), maps built once.

  Args:
    image_hwc: float RGB image in [0, 1].
    config: the run's settings.
    keys: one data key per run; each draws its own crop corners.

  Raises:
    ImageError: if the image is too small or constant.
  """
  check_size(image_hwc, config)
  image = shave(np.asarray(image_hwc, np.float64), config)
  g_map, d_map = crop_probability_maps(image, config)
  network_image = (2.0 * image - 1.0).astype(np.float32)
  runs = []
  draw = programs.stored("corner_uniforms", _corner_uniforms(
      config.max_iters), str(config.max_iters))
  for key in keys:
    g_uniform, d_uniform = draw(key)
    runs.append(TrainData(
        image=network_image,
        g_corners=corners_from_uniforms(np.asarray(g_uniform), g_map,
                                        config.input_crop_size),
        d_corners=corners_from_uniforms(np.asarray(d_uniform), d_map,
                                        config.g_output_size)))
  return runs


@functools.lru_cache(maxsize=None)
def _corner_uniforms(count: int) -> Callable:
  """key -> the uniforms `sample_corners` draws for G's and D's corners
  (from the key's two halves), jitted."""
  def draw(key):
    g_key, d_key = jax.random.split(key)
    return (jax.random.uniform(g_key, (count,), jnp.float32),
            jax.random.uniform(d_key, (count,), jnp.float32))
  return jax.jit(draw)


def prepare(image_hwc: np.ndarray, config: Config, key: jax.Array
            ) -> TrainData:
  """Builds one image's `TrainData` from a float RGB image in [0, 1].

  Raises:
    ImageError: if the image is too small or constant.
  """
  return prepare_seeds(image_hwc, config, [key])[0]
