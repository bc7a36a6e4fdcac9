"""Pictures of kernels: titles, colour bars, numbers; the contact sheet."""

import numpy as np

from kernelgan_jax import div2krk
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import pictures


def _kernel(size=17):
  gaussian = div2krk.anisotropic_gaussian(size, 4.0, 1.0, 0.5, size // 2)
  return (gaussian / gaussian.sum()).astype(np.float32)


def _dark(region):
  return np.count_nonzero(region.max(axis=-1) < 100)


def test_kernel_picture_is_labelled():
  k2 = _kernel()
  k4 = kernel_lib.analytic_kernel_x4(k2)
  assert pictures.kernel_lines("x2", k2) == [
      "x2 kernel, 17x17", "std dev 2.00 px (major), 1.00 px (minor)",
      "major axis at 151.4° (counter-clockwise)"]  # -0.5 rad, mod 180°.
  one = pictures.kernel_picture({"x2": k2})
  two = pictures.kernel_picture({"x2": k2, "x4": k4})
  for picture in (one, two):
    assert picture.dtype == np.uint8 and picture.ndim == 3
    assert picture.shape[2] == 3
  # The kernel fills a PANEL square; the title above it, the numbers below
  # and the colour bar's labels beside it are black text on white.
  top = pictures.MARGIN + 22
  assert one.shape[0] > top + pictures.PANEL + 30
  assert one.shape[1] > pictures.PANEL + pictures.BAR_WIDTH + 40
  assert _dark(one[:top]) > 50
  assert _dark(one[top + pictures.PANEL + 4:]) > 200
  bar_x = pictures.MARGIN + pictures.PANEL + 8
  bar = one[top:top + pictures.PANEL, bar_x + 4]
  assert tuple(bar[0]) == (255, 255, 255) and tuple(bar[-1]) == (0, 0, 0)
  labels = one[top:top + pictures.PANEL, bar_x + pictures.BAR_WIDTH + 2:]
  assert _dark(labels[:20]) > 10 and _dark(labels[-20:]) > 5
  assert two.shape[0] == one.shape[0] and two.shape[1] > 1.8 * one.shape[1]


def test_contact_sheet_is_a_grid_for_many_images():
  rng = np.random.default_rng(0)
  entries = [(f"photo_{i:04d}", div2krk.random_kernel_x2(rng), i == 3)
             for i in range(130)]
  sheet = pictures.contact_sheet(entries)
  assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
  columns = pictures.MAX_COLUMNS
  cell = pictures.CELL + 2 * pictures.MARGIN
  assert sheet.shape[1] == columns * cell
  assert sheet.shape[0] > 11 * pictures.CELL  # 11 rows of 12.
  # The names of the first row of cells: only the doubtful one's is red.
  head = 2 * pictures.MARGIN + 16
  names = sheet[head + pictures.CELL + 2:head + pictures.CELL + 18]
  red = (names[..., 0] > 150) & (names[..., 1] < 50) & (names[..., 2] < 50)
  in_red = np.nonzero(red.any(axis=0))[0]
  assert 3 * cell <= in_red.min() and in_red.max() < 4 * cell
  small = pictures.contact_sheet(entries[:2])
  assert small.shape[0] < 300
  assert pictures._fit("a_long_name_that_ends_in_0042",
                       pictures._font(12), 80).endswith("0042")
