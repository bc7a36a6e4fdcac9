"""Pictures of kernels a person can read, drawn with Pillow.

`kernel_picture` draws one image's kernels, each with its title, a colour
bar with its range and its shape in numbers (`kernel.principal_axes`);
`contact_sheet` draws many images' x2 kernels in a grid with their names,
to check a folder of results at a glance. Both return RGB uint8 arrays.
"""

import functools
import math
from typing import Sequence

from jaxtyping import Float, UInt8
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from kernelgan_jax.kernel import principal_axes

PANEL = 264  # Side of a kernel's square in `kernel_picture`, in pixels.
CELL = 96  # Side of a kernel's square in `contact_sheet`.
MAX_COLUMNS = 12  # `contact_sheet`: more images add rows, not columns.
BAR_WIDTH = 16
MARGIN = 10
TEXT = (0, 0, 0)
FLAG = (200, 0, 0)  # `contact_sheet`: frame and name of a doubtful kernel.


@functools.lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.load_default(size=size)


def hot(t: Float[np.ndarray, "..."]) -> Float[np.ndarray, "... 3"]:
  """The 'hot' colour map (black, red, yellow, white) of values in [0, 1]."""
  t = np.clip(np.asarray(t, np.float64), 0.0, 1.0)
  return np.stack([np.clip(3 * t - c, 0, 1) for c in range(3)], axis=-1)


def _enlarged(kernel: np.ndarray, side: int, low: float, high: float
              ) -> Image.Image:
  """The kernel in the 'hot' map from `low` to `high`, each entry a square
  of side // size pixels."""
  t = (np.asarray(kernel, np.float64) - low) / max(high - low, 1e-12)
  rgb = np.round(255 * hot(t)).astype(np.uint8)
  zoom = max(1, side // max(kernel.shape))
  return Image.fromarray(rgb).resize(
      (kernel.shape[1] * zoom, kernel.shape[0] * zoom), Image.NEAREST)


def _number(value: float) -> str:
  return "0" if value == 0 else f"{value:.3g}"


def shape_lines(kernel: np.ndarray) -> list[str]:
  """The kernel's shape in words: principal standard deviations and the
  major axis' angle (`kernel.principal_axes`)."""
  major, minor, angle = principal_axes(kernel)
  return [f"std dev {major:.2f} px (major), {minor:.2f} px (minor)",
          f"major axis at {angle:.1f}° (counter-clockwise)"]


def kernel_lines(scale: str, kernel: np.ndarray) -> list[str]:
  """The title and shape lines `kernel_picture` writes for one kernel."""
  return [f"{scale} kernel, {kernel.shape[0]}x{kernel.shape[1]}",
          *shape_lines(kernel)]


def _panel(scale: str, kernel: np.ndarray) -> Image.Image:
  """One kernel: title, the kernel with a colour bar, the numbers."""
  font = _font(14)
  title, *numbers = kernel_lines(scale, kernel)
  low, high = float(np.min(kernel)), float(np.max(kernel))
  square = _enlarged(kernel, PANEL, low, high)
  bar = np.round(255 * hot(np.linspace(1, 0, PANEL))).astype(np.uint8)
  bar = Image.fromarray(np.repeat(bar[:, None], BAR_WIDTH, axis=1))
  top = MARGIN + 22
  bar_x = MARGIN + PANEL + 8
  labels = (_number(high), _number(low))
  width = max(bar_x + BAR_WIDTH + 6 + max(font.getlength(t) for t in labels),
              *(2 * MARGIN + font.getlength(t) for t in numbers))
  height = top + PANEL + 8 + 20 * len(numbers) + MARGIN
  panel = Image.new("RGB", (math.ceil(width) + MARGIN, height), "white")
  draw = ImageDraw.Draw(panel)
  draw.text((MARGIN, MARGIN), title, fill=TEXT, font=_font(16))
  panel.paste(square, (MARGIN + (PANEL - square.width) // 2,
                      top + (PANEL - square.height) // 2))
  panel.paste(bar, (bar_x, top))
  draw.rectangle((bar_x - 1, top - 1, bar_x + BAR_WIDTH, top + bar.height),
                 outline=TEXT)
  draw.text((bar_x + BAR_WIDTH + 6, top), labels[0], fill=TEXT, font=font)
  draw.text((bar_x + BAR_WIDTH + 6, top + PANEL), labels[1], fill=TEXT,
            font=font, anchor="ls")
  for i, line in enumerate(numbers):
    draw.text((MARGIN, top + PANEL + 8 + 20 * i), line, fill=TEXT, font=font)
  return panel


def kernel_picture(kernels: dict[str, np.ndarray]
                   ) -> UInt8[np.ndarray, "h w 3"]:
  """One image's kernels side by side, each with its title ('x2 kernel,
  17x17'), a colour bar from its minimum to its maximum (the 'hot' map)
  and its principal standard deviations and angle (`shape_lines`).

  Args:
    kernels: the kernels by scale name ('x2', 'x4'), in drawing order.

  Returns:
    The picture, RGB uint8.
  """
  panels = [_panel(scale, k) for scale, k in kernels.items()]
  picture = Image.new("RGB", (sum(p.width for p in panels),
                              max(p.height for p in panels)), "white")
  x = 0
  for panel in panels:
    picture.paste(panel, (x, 0))
    x += panel.width
  return np.asarray(picture)


def _fit(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
  """`text`, its middle replaced by an ellipsis to fit `width` pixels (names
  often differ only at the end)."""
  if font.getlength(text) <= width:
    return text
  head, tail = text[:len(text) // 2], text[len(text) // 2:]
  while (head or tail) and font.getlength(f"{head}…{tail}") > width:
    if len(head) >= len(tail):
      head = head[:-1]
    else:
      tail = tail[1:]
  return f"{head}…{tail}"


def contact_sheet(entries: Sequence[tuple[str, np.ndarray, bool]],
                  title: str = "x2 kernels") -> UInt8[np.ndarray, "h w 3"]:
  """Many images' kernels in a grid, to check a folder at a glance.

  Each cell holds a kernel in the 'hot' map scaled to its own maximum
  (its shape, not its height, is compared), the image's name and its
  principal standard deviations and angle. Up to `MAX_COLUMNS` cells a
  row, as many rows as it takes.

  Args:
    entries: (name, kernel, doubtful) per image; a doubtful kernel
      (`reliability`'s warning) gets a red frame and name.
    title: the sheet's heading.

  Returns:
    The sheet, RGB uint8.
  """
  font, small = _font(12), _font(11)
  columns = min(max(math.ceil(math.sqrt(len(entries))), 1), MAX_COLUMNS)
  rows = max(math.ceil(len(entries) / columns), 1)
  cell_w, cell_h = CELL + 2 * MARGIN, CELL + 2 * MARGIN + 30
  head = 2 * MARGIN + 16
  sheet = Image.new("RGB", (max(columns * cell_w, 4 * cell_w),
                            head + rows * cell_h), "white")
  draw = ImageDraw.Draw(sheet)
  heading = (f"{title}: {len(entries)} images, each scaled to its maximum; "
             "red: reliability doubtful")
  draw.text((MARGIN, MARGIN), _fit(heading, font, sheet.width - 2 * MARGIN),
            fill=TEXT, font=font)
  for i, (name, kernel, doubtful) in enumerate(entries):
    x = (i % columns) * cell_w + MARGIN
    y = head + (i // columns) * cell_h
    square = _enlarged(kernel, CELL, 0.0, float(np.max(kernel)))
    sx, sy = x + (CELL - square.width) // 2, y + (CELL - square.height) // 2
    sheet.paste(square, (sx, sy))
    if doubtful:
      draw.rectangle((sx - 3, sy - 3, sx + square.width + 2,
                      sy + square.height + 2), outline=FLAG, width=2)
    major, minor, angle = principal_axes(kernel)
    draw.text((x, y + CELL + 4), _fit(name, font, CELL + MARGIN),
              fill=FLAG if doubtful else TEXT, font=font)
    draw.text((x, y + CELL + 18), f"{major:.2f}/{minor:.2f} px {angle:.0f}°",
              fill=TEXT, font=small)
  return np.asarray(sheet)
