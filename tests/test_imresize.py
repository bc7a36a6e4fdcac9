"""Tests for the MATLAB-compatible imresize."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from kernelgan_jax import imresize as imresize_lib
from kernelgan_jax.imresize import imresize

# Antialiased x0.5 bicubic taps (KernelGAN spec 11).
_HALF_TAPS = imresize_lib.BICUBIC_X2_TAPS
# Bicubic x2 taps for the two output phases.
_DOUBLE_TAPS_EVEN = np.array([-3, 29, 111, -9]) / 128.0
_DOUBLE_TAPS_ODD = np.array([-9, 111, 29, -3]) / 128.0


def _loop_reference(line: np.ndarray, out_length: int,
                    scale: float) -> np.ndarray:
  """Direct transcription of MATLAB's contributions() for one 1-D signal."""
  width = 4.0 / scale if scale < 1 else 4.0
  out = np.zeros(out_length)
  n = len(line)
  for i in range(1, out_length + 1):
    center = i / scale + 0.5 * (1 - 1 / scale)
    left = int(np.floor(center - width / 2))
    acc, total = 0.0, 0.0
    for j in range(left, left + int(np.ceil(width)) + 2):
      dist = center - j
      w = imresize_lib.cubic(np.array(dist * min(scale, 1.0)))
      w = float(w) * min(scale, 1.0)
      src = (j - 1) % (2 * n)
      src = src if src < n else 2 * n - 1 - src
      acc += w * line[src]
      total += w
    out[i - 1] = acc / total
  return out


class ImresizeTest(parameterized.TestCase):

  def test_half_scale_taps_of_an_impulse(self):
    image = np.zeros((32, 32), np.float32)
    image[15, 15] = 1.0
    out = np.asarray(imresize(image, 0.5))
    # Output pixel i covers inputs 2i-3 .. 2i+4; the impulse at 15 is tap
    # 18 - 2i of rows i = 6..9 (and tap 4 of column 7).
    np.testing.assert_allclose(out[6:10, 7],
                               _HALF_TAPS[[6, 4, 2, 0]] * _HALF_TAPS[4],
                               atol=1e-6)
    np.testing.assert_allclose(out.sum(), 0.25, atol=1e-6)  # Area / 4.
    np.testing.assert_allclose(out[7, 7], (111 / 256) ** 2, atol=1e-6)

  def test_matrix_rows_hold_the_taps(self):
    half = imresize_lib.resize_matrix(40, 20, 0.5)
    np.testing.assert_allclose(half[10, 17:25], _HALF_TAPS, atol=1e-12)
    double = imresize_lib.resize_matrix(10, 20, 2.0)
    np.testing.assert_allclose(double[8, 2:6], _DOUBLE_TAPS_EVEN, atol=1e-12)
    np.testing.assert_allclose(double[9, 3:7], _DOUBLE_TAPS_ODD, atol=1e-12)

  def test_half_scale_of_a_ramp_is_the_ramp_at_centres(self):
    ramp = np.tile(np.arange(32, dtype=np.float32), (8, 1))
    out = np.asarray(imresize(ramp, 0.5))
    # Symmetric taps: interior output i sits at input position 2i + 0.5.
    np.testing.assert_allclose(out[:, 2:-2], np.tile(2 * np.arange(2, 14)
                                                     + 0.5, (4, 1)), atol=1e-4)

  @parameterized.parameters(2.0, 4.0, 0.5, 0.25)
  def test_constant_stays_constant(self, scale):
    image = np.full((13, 17, 3), 0.7, np.float32)
    out = np.asarray(imresize(image, scale))
    np.testing.assert_allclose(out, 0.7, atol=1e-6)

  @parameterized.parameters(
      ((7, 9), 0.5, (4, 5)),
      ((7, 9), 2.0, (14, 18)),
      ((13, 11), 0.25, (4, 3)),
      ((5, 5), 1.5, (8, 8)),
  )
  def test_output_shape_uses_ceil(self, shape, scale, expected):
    out = imresize(np.zeros(shape + (3,), np.float32), scale)
    self.assertEqual(out.shape, expected + (3,))
    self.assertEqual(out.dtype, np.float32)

  def test_output_shape_argument(self):
    out = imresize(np.zeros((10, 12), np.float32), output_shape=(5, 24))
    self.assertEqual(out.shape, (5, 24))

  @parameterized.parameters((23, 11, 0.5), (23, 46, 2.0), (9, 36, 4.0),
                            (30, 10, 1 / 3))
  def test_matches_loop_reference_1d(self, n_in, n_out, scale):
    line = np.random.default_rng(0).random(n_in)
    matrix = imresize_lib.resize_matrix(n_in, n_out, scale)
    np.testing.assert_allclose(matrix @ line,
                               _loop_reference(line, n_out, scale), atol=1e-12)

  def test_rgb_is_per_channel_gray(self):
    rgb = np.random.default_rng(1).random((15, 21, 3)).astype(np.float32)
    out = np.asarray(imresize(rgb, 2.0))
    for c in range(3):
      np.testing.assert_allclose(out[..., c],
                                 np.asarray(imresize(rgb[..., c], 2.0)),
                                 atol=1e-6)

  def test_separable_matches_matrices(self):
    image = np.random.default_rng(2).random((12, 20))
    out = np.asarray(imresize(image.astype(np.float32), 0.5))
    rows = imresize_lib.resize_matrix(12, 6, 0.5)
    cols = imresize_lib.resize_matrix(20, 10, 0.5)
    np.testing.assert_allclose(out, rows @ image @ cols.T, atol=1e-5)

  def test_jit_and_vmap(self):
    batch = np.random.default_rng(3).random((2, 10, 8, 3)).astype(np.float32)
    resize = jax.jit(jax.vmap(lambda x: imresize(x, 2.0)))
    out = np.asarray(resize(batch))
    self.assertEqual(out.shape, (2, 20, 16, 3))
    np.testing.assert_allclose(out[1], np.asarray(imresize(batch[1], 2.0)),
                               atol=1e-6)


if __name__ == "__main__":
  absltest.main()
