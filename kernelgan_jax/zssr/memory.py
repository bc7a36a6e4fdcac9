"""How much memory a ZSSR run needs, and whether this machine has it.

Training works on crops and costs a fixed amount. The reconstruction
tests run the network on the whole input; the last step
(`pipeline.final_output`) runs it on the whole upscaled image tile by tile
(`network.apply_tiled`), around some ten C-channel images of the output's
size (the bicubic upscale, the output, back-projection's terms). The two
never hold their buffers at the same time:

  needed = FIXED_BYTES + one batch of tiles' share
           + max(input pixels * 4 bytes * 3 * width,
                 output pixels * 4 bytes * 10 * C)

about three float32 activations of `width` channels alive at once per
pixel the network sees at a time. Calibrated against peak RSS of real runs
on CPU, an upper bound (benchmarks/results/zssr-memory-cpu2-2026-11-30.md
for the whole-image pass the last step was before its tiles,
benchmarks/results/zssr_memory-tiles-cpu2-2026-12-01.md since).
"""

import os
from typing import Optional

from kernelgan_jax.zssr import network
from kernelgan_jax.zssr.config import ZSSRConfig

# Above a started process (JAX imported): compiling and training the
# KernelGAN and ZSSR steps, and the reliability score.
FIXED_BYTES = 700 * 2**20
# Tests (and users) may state the memory to plan for, in bytes.
LIMIT_ENV = "KERNELGAN_JAX_MEMORY_LIMIT_BYTES"
GIB = 2**30


class NotEnoughMemory(ValueError):
  """The run would need more memory than the machine has free."""


def memory_needed(height: int, width: int, channels: int = 3,
                  x4: bool = False,
                  config: Optional[ZSSRConfig] = None) -> int:
  """Bytes a ZSSR run on an H x W x C image needs, peak, above a started
  process.

  Args:
    height: input rows.
    width: input columns.
    channels: input channels (colour; alpha is upscaled outside the net).
    x4: whether the output is x4 (else x2).
    config: ZSSR's settings (its `width` is the network's channels).

  Returns:
    Bytes.
  """
  config = config or ZSSRConfig()
  scale = 4 if x4 else 2
  activations = 4 * 3 * config.width  # Bytes per pixel the network sees.
  window = network.TILE + 2 * config.depth
  return (FIXED_BYTES + network.TILE_BATCH * window * window * activations
          + max(height * width * activations,
                scale * height * scale * width * 4 * 10 * channels))


def _host_available() -> Optional[int]:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (AttributeError, OSError, ValueError):
    return None


def memory_available() -> Optional[int]:
  """Bytes free for this run: `KERNELGAN_JAX_MEMORY_LIMIT_BYTES` if set,
  else the first local device's free memory (GPU, TPU), else the host's
  (MemAvailable on Linux); None when unknown.

  Raises:
    ValueError: for a limit that is not a number of bytes ('4e9' is one).
  """
  if os.environ.get(LIMIT_ENV):
    value = os.environ[LIMIT_ENV]
    try:
      limit = float(value)
    except ValueError:
      limit = -1.0
    if not 0 <= limit < float("inf"):
      raise ValueError(f"{LIMIT_ENV} must be a number of bytes, not {value!r}")
    return int(limit)
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.local_devices()[0].memory_stats()  # None on CPU.
  if stats and "bytes_limit" in stats:
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
  return _host_available()


def image_memory_needed(shape: tuple[int, ...], x4: bool = False,
                        config: Optional[ZSSRConfig] = None) -> int:
  """`memory_needed` for an image of this (H, W) or (H, W, C) shape; alpha
  (C 2 or 4) is not learned."""
  channels = shape[2] if len(shape) > 2 else 1
  channels -= channels in (2, 4)
  return memory_needed(shape[0], shape[1], channels, x4, config)


def check_memory(shape: tuple[int, ...], x4: bool = False,
                 config: Optional[ZSSRConfig] = None) -> None:
  """Refuses an image whose ZSSR run would not fit in memory.

  Args:
    shape: the image's (H, W) or (H, W, C); alpha (C 2 or 4) is not
      learned.
    x4: whether the output is x4.
    config: ZSSR's settings.

  Raises:
    NotEnoughMemory: saying how much it needs and what to do.
  """
  height, width = shape[:2]
  needed = image_memory_needed(shape, x4, config)
  available = memory_available()
  if available is None or needed <= available:
    return
  scale = 4 if x4 else 2
  advice = "drop --x4, " if x4 else ""
  raise NotEnoughMemory(
      f"ZSSR x{scale} of this {width}x{height} "
      f"image needs about {needed / GIB:.1f} GiB of memory (the network "
      f"on the whole input, the {scale * width}x{scale * height} output), "
      f"{max(available, 0) / GIB:.1f} GiB is free: {advice}"
      "super-resolve a smaller or cropped image, or run without --sr "
      "(--sr_config=fast does not lower it)")
