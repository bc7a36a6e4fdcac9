"""Reading image files as a viewer shows them: orientation, colour spaces,
bit depths, and float ranges."""

import struct
import zlib

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageOps
import pytest

from kernelgan_jax import images

ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _chunk(kind, data):
  return (struct.pack(">I", len(data)) + kind + data
          + struct.pack(">I", zlib.crc32(kind + data)))


def _filtered(pixels):
  """PNG rows of (h, w, bytes per pixel) uint8, filter types 0-4 in turn."""
  x = pixels.astype(np.int16)
  a = np.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # Left.
  b = np.pad(x, ((1, 0), (0, 0), (0, 0)))[:-1]  # Up.
  c = np.pad(x, ((1, 0), (1, 0), (0, 0)))[:-1, :-1]  # Up left.
  pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
  paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
  kinds = np.arange(len(x)) % 5
  guess = np.stack([0 * x, a, b, (a + b) // 2, paeth])[kinds,
                                                         np.arange(len(x))]
  rows = ((x - guess) & 255).astype(np.uint8).reshape(len(x), -1)
  return np.concatenate([kinds[:, None].astype(np.uint8), rows], 1).tobytes()


def write_png(path, image, interlaced=False, exif=b""):
  """Writes uint8 or uint16 gray(+alpha)/RGB(A) as a PNG; Pillow cannot
  write 16-bit colour."""
  image = image if image.ndim == 3 else image[..., None]
  h, w, channels = image.shape
  depth = 16 if image.dtype == np.uint16 else 8
  pixels = image.astype(">u2" if depth == 16 else np.uint8).view(np.uint8)
  pixels = pixels.reshape(h, w, -1)
  passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
  data = b"".join(_filtered(pixels[y0::dy, x0::dx])
                  for x0, y0, dx, dy in passes if pixels[y0::dy, x0::dx].size)
  header = struct.pack(">IIBBBBB", w, h, depth, {1: 0, 2: 4, 3: 2, 4: 6}[
      channels], 0, 0, int(interlaced))
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + (_chunk(b"eXIf", exif) if exif else b"")
            + _chunk(b"IDAT", zlib.compress(data)) + _chunk(b"IEND", b""))


def _exif(orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation
  return exif


def _noise(shape, dtype=np.uint8, seed=0):
  top = np.iinfo(dtype).max + 1
  return np.random.default_rng(seed).integers(0, top, shape).astype(dtype)


@pytest.mark.parametrize("interlaced", [False, True])
def test_the_png_writer_agrees_with_pillow(tmp_path, interlaced):
  """The 16-bit tests' writer is right where Pillow can check it."""
  for shape in ((9, 13, 3), (1, 1, 4), (10, 12, 2), (5, 7)):
    image = _noise(shape)
    write_png(tmp_path / "a.png", image, interlaced)
    np.testing.assert_array_equal(iio.imread(tmp_path / "a.png"), image)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_a_viewer_shows(tmp_path,
                                                       orientation):
  path = tmp_path / "photo.jpg"
  Image.fromarray(_noise((10, 12, 3))).save(path, exif=_exif(orientation),
                                            quality=95)
  shown = np.asarray(ImageOps.exif_transpose(Image.open(path))) / 255
  np.testing.assert_array_equal(images.read_image(str(path)), shown)
  image, info = images.read_image_info(str(path))
  np.testing.assert_array_equal(image, shown)
  assert info["exif_orientation"] == orientation
  assert ("orientation_applied" in info) == (orientation != 1)
  if orientation == 6:
    assert image.shape == (12, 10, 3)
    assert info["orientation_applied"] == "rotate 90 CW"


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
  path = tmp_path / "print.jpg"
  Image.fromarray(_noise((10, 12, 4)), "CMYK").save(path, quality=95)
  cmyk = np.asarray(Image.open(path)) / 255  # As decoded.
  rgb = (1 - cmyk[..., :3]) * (1 - cmyk[..., 3:])
  np.testing.assert_allclose(images.read_image(str(path)), rgb, atol=1 / 255)
  assert images.read_image_info(str(path))[1] == {"converted_from": "CMYK"}


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("interlaced", [False, True])
def test_16_bit_png_keeps_16_bits(tmp_path, channels, interlaced):
  stored = _noise((11, 13, channels), np.uint16)
  write_png(tmp_path / "deep.png", stored, interlaced)
  image = images.read_image(str(tmp_path / "deep.png"))
  assert image.shape == stored.shape
  np.testing.assert_array_equal(np.round(image * 65535), stored)


def test_16_bit_png_is_turned_by_its_exif_orientation(tmp_path):
  stored = _noise((11, 13, 3), np.uint16)
  write_png(tmp_path / "deep.png", stored, exif=_exif(8).tobytes()[6:])
  image, info = images.read_image_info(str(tmp_path / "deep.png"))
  np.testing.assert_array_equal(np.round(image * 65535), np.rot90(stored))
  assert info == {"exif_orientation": 8,
                  "orientation_applied": "rotate 270 CW"}


def test_a_truncated_16_bit_png_is_refused(tmp_path):
  write_png(tmp_path / "deep.png", _noise((40, 40, 3), np.uint16, seed=1))
  data = (tmp_path / "deep.png").read_bytes()
  (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
  with pytest.raises(images.ImageError, match="cannot read"):
    images.read_image(str(tmp_path / "cut.png"))


def test_float_tiff_outside_0_1_is_refused(tmp_path):
  pytest.importorskip("tifffile")
  image = np.linspace(0, 255, 10 * 12 * 3, dtype=np.float32).reshape(10, 12,
                                                                      3)
  iio.imwrite(tmp_path / "bright.tif", image)
  with pytest.raises(images.ImageError, match=r"values in \[0, 255\]"):
    images.read_image(str(tmp_path / "bright.tif"))
  image[0, 0, 0] = np.nan
  iio.imwrite(tmp_path / "nan.tif", image / 255)
  with pytest.raises(images.ImageError, match="NaN"):
    images.read_image(str(tmp_path / "nan.tif"))
  image[0, 0, 0] = 0
  iio.imwrite(tmp_path / "fine.tif", image / 255)
  np.testing.assert_allclose(images.read_image(str(tmp_path / "fine.tif")),
                             image / 255)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16"])
def test_gray_alpha_palette_and_rgba_still_read(tmp_path, mode):
  path = tmp_path / "image.png"
  if mode == "I;16":
    stored = _noise((10, 12), np.uint16)
    iio.imwrite(path, stored)
    expected = stored / 65535
  else:
    picture = Image.fromarray(_noise((10, 12, 3))).convert(mode)
    picture.save(path)
    expected = np.asarray(picture.convert("RGB" if mode == "P" else mode))
    expected = expected / 255
  image, info = images.read_image_info(str(path))
  np.testing.assert_array_equal(image, expected)
  assert info == {}
  assert images.as_float_rgb(image).shape == (10, 12, 3)
