"""How much memory a ZSSR run needs, and whether this machine has it.

ZSSR's last step runs the network once on the whole upscaled image
(`pipeline.final_output`), so its peak grows with the output's pixels;
training works on crops and costs a fixed amount:

  needed = FIXED_BYTES + output pixels * 4 bytes * (3 * width + 10 * C)

about three float32 activations of `width` channels alive at once, and some
ten C-channel images (the bicubic upscale, the output, back-projection's
terms). Calibrated against peak RSS of real runs on CPU, an upper bound
(benchmarks/results/zssr-memory-cpu2-2026-11-30.md).
"""

import os
from typing import Optional

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
  pixels = scale * height * scale * width
  return FIXED_BYTES + pixels * 4 * (3 * config.width + 10 * channels)


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
  (MemAvailable on Linux); None when unknown."""
  if os.environ.get(LIMIT_ENV):
    return int(os.environ[LIMIT_ENV])
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
      f"image needs about {needed / GIB:.1f} GiB of memory (its "
      f"{scale * width}x{scale * height} output goes through the network "
      f"at once), {max(available, 0) / GIB:.1f} GiB is free: {advice}"
      "super-resolve a smaller or cropped image, or run without --sr "
      "(--sr_config=fast does not lower it)")
