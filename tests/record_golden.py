"""Re-records tests/data/golden_kernels_seed0.npz from today's code.

  python tests/record_golden.py [--check]

The kernels, crop corners and generator losses of `test_shape_free`'s two
400-iteration runs. Only for a deliberate change of the arithmetic (say
the initial state's rounding); `--check` prints how far today's kernels
are from the stored ones and writes nothing.
"""

import os
import sys

import imageio.v3 as iio
import numpy as np

from kernelgan_jax import config as config_lib
from kernelgan_jax import data as data_lib
from kernelgan_jax import images
from kernelgan_jax import train

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GOLDEN = os.path.join(DATA, "golden_kernels_seed0.npz")


def record() -> dict[str, np.ndarray]:
  """The arrays `test_shape_free` compares, from today's code."""
  config = config_lib.get_config(max_iters=400)
  image = images.as_float_rgb(iio.imread(os.path.join(DATA,
                                                      "example_lr.png")))
  arrays = {}
  for name, part in {"full": image, "crop": image[5:175, 12:162]}.items():
    data_key, init_key = train.seed_keys(0)
    data = data_lib.prepare(part, config, data_key)
    state, history = train.train(train.init_state(init_key, config), data,
                                 config)
    arrays.update({f"{name}_g_corners": data.g_corners,
                   f"{name}_d_corners": data.d_corners,
                   f"{name}_raw_kernel": train.final_kernel(state, config),
                   f"{name}_loss_generator": history["loss_generator"]})
  return arrays


def main() -> None:
  arrays = record()
  stored = np.load(GOLDEN)
  for key, value in arrays.items():
    print(f"{key}: max |today - stored| = "
          f"{np.abs(value - stored[key]).max():.3g}")
  if "--check" not in sys.argv:
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
  main()
