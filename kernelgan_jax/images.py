"""Input images: reading a file, and any array as float RGB in [0, 1]."""

import os

import imageio.v3 as iio
import numpy as np


class ImageError(ValueError):
  """The input cannot be used: unreadable, too small, or featureless."""


def as_float_rgb(image: np.ndarray) -> np.ndarray:
  """uint8/uint16 or float [0, 1] images, gray or RGB(A), as float64 RGB."""
  image = np.asarray(image)
  if np.issubdtype(image.dtype, np.integer):
    image = image / float(np.iinfo(image.dtype).max)
  image = image.astype(np.float64)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
    raise ImageError(
        f"expected an H x W (x 1-4 channels) image, got shape {image.shape}")
  if image.shape[-1] in (1, 2):  # Gray, or gray + alpha.
    image = np.repeat(image[..., :1], 3, axis=-1)
  return image[..., :3]


def read_image(path: str) -> np.ndarray:
  """Reads an image file as float64 in [0, 1], channels as stored.

  8- and 16-bit integers are scaled by 255 / 65535; the shape is (H, W) for
  gray, (H, W, C) otherwise. `as_float_rgb` makes it RGB.

  Raises:
    ImageError: for a missing path, a directory, or an unreadable file.
  """
  if not os.path.exists(path):
    raise ImageError(f"no such file: {path}")
  if os.path.isdir(path):
    raise ImageError(f"{path} is a directory, not an image file")
  try:
    image = iio.imread(path)
  except Exception as error:  # imageio raises many types for bad files.
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ImageError(f"cannot read {path} as an image ({reason})") from None
  as_float_rgb(image)  # Validates the shape.
  if np.issubdtype(image.dtype, np.integer):
    return image / float(np.iinfo(image.dtype).max)
  return image.astype(np.float64)
