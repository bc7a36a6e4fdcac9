r"""ZSSR on crops of one image at several sizes, in one process.

  python -m benchmarks.zssr_sizes [--image=...] [--sizes=256x256,250x240]
      [--preset=fast] [--iters=200]

Super-resolves (bicubic kernel) a top-left crop of `--image` at each size
in turn and prints `TIME (rows, cols) seconds` per size: the first size
compiles everything, a later one only what still depends on the image's
size. Run it under `JAX_LOG_COMPILES=1` to see XLA's seconds per program
(`benchmarks.machine.compile_seconds`), and with PYTHONPATH at another
checkout to time that checkout's ZSSR the same way (`farm-bench --vs`).
"""

import dataclasses
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from kernelgan_jax import images
from kernelgan_jax.zssr import fast_cpu_config
from kernelgan_jax.zssr import super_resolve
from kernelgan_jax.zssr import ZSSRConfig

_IMAGE = flags.DEFINE_string("image", "tests/data/example_lr.png",
                             "The image whose crops are super-resolved.")
_SIZES = flags.DEFINE_list("sizes", ["256x256", "250x240", "200x230"],
                           "Crop sizes, ROWSxCOLS, in order.")
_PRESET = flags.DEFINE_enum("preset", "fast", ["fast", "paper"],
                            "ZSSR settings (as benchmarks/zssr_eval.py).")
_ITERS = flags.DEFINE_integer("iters", 200, "ZSSR iterations per size.")


def main(argv: Sequence[str]) -> None:
  del argv
  image = images.as_float_rgb(images.read_image(_IMAGE.value)).astype(
      np.float32)
  config = fast_cpu_config() if _PRESET.value == "fast" else ZSSRConfig()
  config = dataclasses.replace(config, max_iters=_ITERS.value)
  for size in _SIZES.value:
    rows, cols = (int(n) for n in size.split("x"))
    if rows > image.shape[0] or cols > image.shape[1]:
      raise app.UsageError(f"{size} is larger than the image "
                           f"{image.shape[0]}x{image.shape[1]}")
    start = time.perf_counter()
    super_resolve(image[:rows, :cols], None, config=config)
    print(f"TIME ({rows}, {cols}) {time.perf_counter() - start:.2f}",
          flush=True)


if __name__ == "__main__":
  app.run(main)
