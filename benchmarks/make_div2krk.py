r"""Writes a DIV2KRK-style x2 (optionally x4) set from scikit-image photos.

Usage:
  python -m benchmarks.make_div2krk --out_dir=/tmp/div2krk_sk --seed=0 \
      --num_images=8 --hr_size=384

The shipped example (tests/data/example_lr.png, example_kernel_x2.npy) is
LR/astronaut.png and kernels/astronaut_kernel_x2.npy of
  python -m benchmarks.make_div2krk --out_dir=OUT --seed=0 --num_images=1 \
      --hr_size=384
(astronaut centre-cropped to 384x384 HR -> 192x192 LR, the first kernel of
np.random.default_rng(0)).

--family picks the kernels (div2krk.KERNEL_FAMILIES): 'gaussian' (default,
the DIV2KRK protocol), or the non-Gaussian 'motion', 'disk', 'nongaussian'
(motion and disk taking turns), e.g.
  python -m benchmarks.make_div2krk --out_dir=/tmp/div2krk_ng --seed=1 \
      --num_images=8 --x4 --family=nongaussian
"""

from typing import Any, Mapping, Sequence

from absl import app
from absl import flags

from kernelgan_jax import div2krk

_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Output set directory.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the kernel generator.')
_NUM_IMAGES = flags.DEFINE_integer(
    'num_images', 8, 'How many photos (in SAMPLE_IMAGE_NAMES order).')
_HR_SIZE = flags.DEFINE_integer(
    'hr_size', None, 'Centre-crop HR photos to at most this size.')
_NAMES = flags.DEFINE_list(
    'names', None, 'skimage.data names to use instead of the default list.')
_X4 = flags.DEFINE_bool('x4', False, 'Also write x4 LR images (LR_x4/).')
_FAMILY = flags.DEFINE_enum(
    'family', 'gaussian', list(div2krk.KERNEL_FAMILIES),
    'Kernel family; gaussian is the DIV2KRK protocol.')

flags.mark_flag_as_required('out_dir')


def describe_kernel(params: Mapping[str, Any]) -> str:
  """One line of a kernel's parameters, as the manifest holds them."""
  family = params.get('family', 'gaussian')
  if family == 'motion':
    return (f"motion length {params['length']:.2f} "
            f"theta {params['theta']:.2f} sigma {params['sigma']:.2f} "
            f"ramp {params['ramp']:+.2f}")
  if family == 'disk':
    return (f"disk radius {params['radius']:.2f} "
            f"sigma {params['sigma']:.2f}")
  return (f"lambdas ({params['lambda_1']:.2f}, {params['lambda_2']:.2f}) "
          f"theta {params['theta']:.2f}")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  names = tuple(_NAMES.value or div2krk.SAMPLE_IMAGE_NAMES)
  names = names[:_NUM_IMAGES.value]
  photos = div2krk.sample_photographs(names, hr_size=_HR_SIZE.value)
  manifest = div2krk.write_set(_OUT_DIR.value, photos, _SEED.value,
                               x4=_X4.value, family=_FAMILY.value)
  for entry in manifest['images']:
    print(f"{entry['name']}: HR {entry['hr_shape']} LR {entry['lr_shape']} "
          f"{describe_kernel(entry['kernel_x2'])}")
  print(f'Wrote {len(manifest["images"])} images to {_OUT_DIR.value}')


if __name__ == '__main__':
  app.run(main)
