"""Input images: reading a file, and any array as float RGB in [0, 1].

A file is read as a viewer shows it: turned by its EXIF orientation, CMYK
(and YCbCr, LAB, HSV) converted to RGB by Pillow (no ICC colour
management), 16-bit PNGs at 16 bits (Pillow keeps 8 of a 16-bit colour PNG,
so those are decoded here), and float images refused unless in [0, 1].
"""

import os
import struct
import zlib

import imageio.v3 as iio
import numpy as np


class ImageError(ValueError):
  """The input cannot be used: unreadable, too small, or featureless."""


# EXIF orientation: what a viewer does to the stored pixels (exiftool's
# names), as numpy on an (H, W, ...) array.
_ORIENTATIONS = {
    2: ("mirror horizontal", lambda a: a[:, ::-1]),
    3: ("rotate 180", lambda a: a[::-1, ::-1]),
    4: ("mirror vertical", lambda a: a[::-1]),
    5: ("mirror horizontal and rotate 270 CW", lambda a: a.swapaxes(0, 1)),
    6: ("rotate 90 CW", lambda a: np.rot90(a, -1)),
    7: ("mirror horizontal and rotate 90 CW",
        lambda a: a[::-1, ::-1].swapaxes(0, 1)),
    8: ("rotate 270 CW", lambda a: np.rot90(a)),
}
# Pillow modes of other colour spaces, converted to RGB by Pillow.
_CONVERT_TO_RGB = ("CMYK", "YCbCr", "LAB", "HSV")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Channels of the 16-bit PNG colour types decoded here: gray + alpha, RGB,
# RGBA (Pillow reads 16-bit gray at 16 bits itself).
_DEEP_PNG_CHANNELS = {4: 2, 2: 3, 6: 4}
# Adam7 passes: first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
          (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _check_shape(image: np.ndarray) -> None:
  """Raises ImageError unless `image` is H x W (x 1-4 channels)."""
  if not (image.ndim == 2 or (image.ndim == 3
                              and image.shape[-1] in (1, 2, 3, 4))):
    raise ImageError(
        f"expected an H x W (x 1-4 channels) image, got shape {image.shape}")


def as_float_rgb(image: np.ndarray) -> np.ndarray:
  """uint8/uint16 or float [0, 1] images, gray or RGB(A), as float64 RGB."""
  image = np.asarray(image)
  _check_shape(image)
  if np.issubdtype(image.dtype, np.integer):
    image = image / float(np.iinfo(image.dtype).max)
  image = image.astype(np.float64)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] in (1, 2):  # Gray, or gray + alpha.
    image = np.repeat(image[..., :1], 3, axis=-1)
  return image[..., :3]


def files_in(folder: str) -> list[str]:
  """The paths of a folder's files (not hidden, not sub-folders), sorted:
  what a command reads when given a folder of images."""
  return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
          if not name.startswith(".")
          and os.path.isfile(os.path.join(folder, name))]


def read_image(path: str) -> np.ndarray:
  """Reads an image file as float64 in [0, 1], as a viewer shows it.

  `read_image_info` without the info.
  """
  return read_image_info(path)[0]


def read_image_info(path: str) -> tuple[np.ndarray, dict]:
  """Reads an image file as float64 in [0, 1], and what reading changed.

  The pixels are turned by the file's EXIF orientation; CMYK, YCbCr, LAB
  and HSV are converted to RGB; other channels are kept as stored: the
  shape is (H, W) for gray, (H, W, C) otherwise (`as_float_rgb` makes it
  RGB). 8- and 16-bit integers are scaled by 255 / 65535.

  Returns:
    The image, and a dict for the log: `exif_orientation` (when the file
    has one) and `orientation_applied` (e.g. 'rotate 90 CW', when not 1),
    `converted_from` (e.g. 'CMYK').

  Raises:
    ImageError: for a missing path, a directory, an unreadable file, or a
      float image outside [0, 1].
  """
  if not os.path.exists(path):
    raise ImageError(f"no such file: {path}")
  if os.path.isdir(path):
    raise ImageError(f"{path} is a directory, not an image file")
  info = {}
  try:
    with open(path, "rb") as f:
      head = f.read(29)
    if (head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR"
        and head[24] == 16 and head[25] in _DEEP_PNG_CHANNELS):
      meta = _pillow_metadata(path)
      with open(path, "rb") as f:
        image = _decode_deep_png(f.read())
    else:
      image, meta = _read_pixels(path)
      if meta.get("mode") in _CONVERT_TO_RGB:
        info["converted_from"] = meta["mode"]
  except Exception as error:  # imageio raises many types for bad files.
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ImageError(f"cannot read {path} as an image ({reason})") from None
  _check_shape(image)
  try:
    orientation = int(meta["Orientation"])
  except (KeyError, TypeError, ValueError):
    orientation = None
  if orientation is not None:
    info["exif_orientation"] = orientation
  if orientation in _ORIENTATIONS:
    info["orientation_applied"], turn = _ORIENTATIONS[orientation]
    image = np.ascontiguousarray(turn(image))
  if np.issubdtype(image.dtype, np.integer):
    return image / float(np.iinfo(image.dtype).max), info
  image = image.astype(np.float64)
  if not np.isfinite(image).all():
    raise ImageError(f"{path} has NaN or infinite values")
  low, high = float(image.min()), float(image.max())
  if low < 0 or high > 1:
    raise ImageError(
        f"{path} is a float image with values in [{low:.6g}, {high:.6g}], "
        "not in [0, 1]: rescale it (e.g. divide 0-255 data by 255)")
  return image, info


def _read_pixels(path: str) -> tuple[np.ndarray, dict]:
  """The pixels, read by the plugin imageio picks (as `iio.imread`), with
  other colour spaces as RGB, and Pillow's view of the file (mode, EXIF
  tags). Reading a PNG's EXIF decodes it (the tags may follow the pixels),
  so where imageio picks Pillow both come from one open file."""
  with iio.imopen(path, "r", legacy_mode=False) as file:
    if type(file).__name__ == "PillowPlugin":
      meta = file.metadata(exclude_applied=False)
      if meta.get("mode") in _CONVERT_TO_RGB:
        return file.read(mode="RGB"), meta
      return file.read(), meta
    meta = _pillow_metadata(path)
    if meta.get("mode") in _CONVERT_TO_RGB:
      return iio.imread(path, plugin="pillow", mode="RGB"), meta
    return file.read(), meta


def _pillow_metadata(path: str) -> dict:
  """Pillow's view of the file (mode, EXIF tags), or {} if it cannot."""
  try:
    return iio.immeta(path, plugin="pillow", exclude_applied=False)
  except Exception:  # Not a format Pillow reads: no orientation to apply.
    return {}


def _decode_deep_png(data: bytes) -> np.ndarray:
  """A 16-bit gray + alpha, RGB or RGBA PNG as uint16 (H, W, C)."""
  width, height, _, colour, _, _, interlaced = struct.unpack(
      ">IIBBBBB", data[16:29])
  channels = _DEEP_PNG_CHANNELS[colour]
  chunks, pos = [], 8
  while pos + 8 <= len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT":
      chunks.append(data[pos + 8:pos + 8 + length])
    elif kind == b"IEND":
      break
    pos += 12 + length
  raw = np.frombuffer(zlib.decompress(b"".join(chunks)), np.uint8)
  pixel = 2 * channels  # Bytes per pixel.
  if not interlaced:
    image = _unfilter(raw, height, width, pixel)
  else:
    image, offset = np.zeros((height, width, pixel), np.uint8), 0
    for x0, y0, dx, dy in _ADAM7:
      w, h = -((x0 - width) // dx), -((y0 - height) // dy)  # Ceilings.
      if w > 0 and h > 0:
        size = h * (1 + w * pixel)
        image[y0::dy, x0::dx] = _unfilter(raw[offset:offset + size], h, w,
                                          pixel)
        offset += size
  return image.view(">u2").astype(np.uint16)


def _unfilter(raw: np.ndarray, height: int, width: int,
              pixel: int) -> np.ndarray:
  """Undoes PNG's per-row filters: `raw` rows of a filter byte and bytes.

  A byte depends on the decoded bytes to its left, above and above-left,
  so each anti-diagonal of pixels is decoded at once, in order.
  """
  if raw.size < height * (1 + width * pixel):
    raise ValueError("PNG image data is truncated")
  rows = raw[:height * (1 + width * pixel)].reshape(height, -1)
  kinds = rows[:, 0]
  if kinds.max(initial=0) > 4:
    raise ValueError(f"bad PNG filter type {kinds.max()}")
  filtered = rows[:, 1:].reshape(height * width, pixel).astype(np.int16)
  # A zero row above and a zero column to the left of the image, flat.
  out = np.zeros(((height + 1) * (width + 1), pixel), np.int16)
  for diagonal in range(height + width - 1):
    r = np.arange(max(0, diagonal - width + 1), min(height, diagonal + 1))
    at = (r + 1) * (width + 1) + diagonal - r + 1  # Pixel (r, diagonal - r).
    left, up = out.take(at - 1, axis=0), out.take(at - width - 1, axis=0)
    up_left = out.take(at - width - 2, axis=0)
    pa, pb = np.abs(up - up_left), np.abs(left - up_left)  # The spec's names.
    pc = np.abs(left + up - 2 * up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left,
                     np.where(pb <= pc, up, up_left))
    guesses = np.stack([0 * left, left, up, (left + up) >> 1, paeth])
    out[at] = (filtered.take(r * width + diagonal - r, axis=0)
               + guesses[kinds[r], np.arange(r.size)]) & 255
  out = out.reshape(height + 1, width + 1, pixel)
  return out[1:, 1:].astype(np.uint8)
