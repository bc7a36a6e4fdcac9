"""DIV2KRK-style synthetic blind-SR sets ("DIV2K with random kernels").

Follows the public generator (assafshocher/BlindSR_dataset_generator) used
for the KernelGAN paper, see `shared/spec/div2krk-protocol.md`:

* x2 kernels: 11x11 anisotropic Gaussians with variances (eigenvalues) drawn
  uniformly in [0.175 sf, 2.5 sf] = [0.35, 5.0], angle uniform in [0, pi),
  mean at k // 2 + 0.5 (sf - k % 2), multiplicative noise (1 + u),
  u ~ U[-0.4, 0.4] per tap, then a cubic-spline sub-pixel shift of the centre
  of mass to k / 2 + 0.5 (sf - k % 2) (true division) and normalisation to
  sum 1.
* LR images: per channel `scipy.ndimage.correlate(hr, kernel,
  mode='reflect')[::sf, ::sf]` on the float [0, 1] HR image (cropped to a
  multiple of the scale), quantised to 8 bits (`degradation.downscale_np`).
* x4 LR images: the x2 kernel applied twice (float in between), then
  quantised. The matching analytic x4 kernel is not computed here.

Since the photographs of DIV2K cannot be fetched, sets are built from the
sample images bundled with scikit-image.

Non-Gaussian kernel families (`KERNEL_FAMILIES`, not part of DIV2KRK). The
Gaussian family above is also the training distribution of learned kernel
priors such as FKP (a normalising flow fitted to anisotropic Gaussians), so
a set made only of it flatters such priors. The families 'motion', 'disk'
and 'nongaussian' (motion and disk taking turns, image by image) are not
the prior's training distribution; they follow the non-Gaussian kernels of
later blind-SR work, on the same 11x11 canvas, centre-of-mass target and
LR pipeline, so everything downstream is unchanged:

* motion: a straight line segment (camera motion during the exposure) of
  length L and angle theta (same convention as the Gaussian's theta), whose
  intensity varies linearly along it from 1 - ramp to 1 + ramp (speed
  changing during the exposure; ramp = 0 is uniform motion), convolved with
  an isotropic Gaussian of std sigma (optics, a slightly thick path).
  L^2 / 12, the variance along the line, lies in [1.0, 4.7], inside the
  Gaussian family's variance range [0.35, 5.0]; across the line the
  variance is only about sigma^2 + 1/12, sigma in [0.2, 0.4].
* disk: a uniform disk of radius R (defocus) convolved with an isotropic
  Gaussian of std sigma; per-axis variance R^2 / 4 in [1.0, 2.25] (R up
  to 3.0 on the 11x11 canvas), flat-topped where a Gaussian peaks.

Both are rendered anti-aliased (each tap is the exact integral over its
pixel of the Gaussian-smoothed shape, the shape being sampled finely), with
the centre of mass on `target_center_of_mass` (rendered there, then set
exactly by `kernel.shift_center_of_mass`), clipped at 0 and normalised to sum 1.
Their support is kept inside the canvas minus its outer ring (mass there
below 1e-4): the spline shift zeroes the taps on one side of the canvas, so
a kernel touching the border would lose mass and miss its target. The
length and radius bounds therefore depend on sigma, ramp and theta (a
diagonal line may be longer); see `motion_max_length`, `disk_max_radius`.
"""

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Optional

import imageio.v3 as iio
import numpy as np
import scipy.io
from scipy import ndimage
from scipy import special

from kernelgan_jax import degradation
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib

X2_SCALE = 2
X2_KERNEL_SIZE = 11
NOISE_LEVEL = 0.4
MIN_VARIANCE_PER_SCALE = 0.175
MAX_VARIANCE_PER_SCALE = 2.5

# Non-Gaussian families (see the module docstring).
SMOOTHING_SIGMA_RANGE = (0.2, 0.4)  # Std of the Gaussian smoothing, pixels.
MOTION_LENGTH_RANGE = (3.5, 7.5)  # Upper bound also limited by the canvas.
MOTION_MAX_RAMP = 0.5
DISK_RADIUS_RANGE = (2.0, 4.0)  # Upper bound also limited by the canvas.
FIT_SIGMAS = 2.5  # Support margin, in smoothing stds, from the border ring.
LINE_SAMPLES = 512  # Points along a motion line.
DISK_SAMPLES_PER_PIXEL = 16  # Points per pixel side inside a disk.

# Bundled scikit-image samples (no network), most photographic first.
SAMPLE_IMAGE_NAMES = (
    'astronaut', 'coffee', 'chelsea', 'rocket', 'camera',
    'immunohistochemistry', 'hubble_deep_field', 'retina', 'brick', 'grass',
    'gravel', 'moon', 'coins', 'clock', 'cell', 'colorwheel', 'page', 'text',
)


def target_center_of_mass(size: int, scale: int = X2_SCALE) -> float:
  """The generator's centre of mass after its shift: k / 2 + 0.5 (sf - k % 2).

  For k = 11, sf = 2 this is 6.0: KernelGAN's own convention
  (`kernel.center_of_mass_target`, 5.5, where the generator puts the
  Gaussian's mean) plus half a pixel for odd k. The public generator does
  this, so it is kept. Score kernels shift-invariantly.
  """
  return kernel_lib.center_of_mass_target(size, scale) + 0.5 * (size % 2)


def anisotropic_gaussian(size: int, lambda_1: float, lambda_2: float,
                         theta: float, mean: float) -> np.ndarray:
  """Unnormalised Gaussian exp(-0.5 z^T Sigma^-1 z) on a size x size grid.

  Args:
    size: Kernel side length.
    lambda_1: First eigenvalue (a variance) of the covariance.
    lambda_2: Second eigenvalue (a variance).
    theta: Rotation angle: Sigma = R(theta) diag(lambda_1, lambda_2) R^T.
      As in the public generator, z = (x, y) = (column - mean, row - mean).
    mean: Index of the mean on both axes.

  Returns:
    (size, size) float64 array indexed [row, column].
  """
  rotation = np.array([[np.cos(theta), -np.sin(theta)],
                       [np.sin(theta), np.cos(theta)]])
  sigma = rotation @ np.diag([lambda_1, lambda_2]) @ rotation.T
  inv_sigma = np.linalg.inv(sigma)
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  z = np.stack([cols - mean, rows - mean], axis=-1)
  quadratic = np.einsum('...i,ij,...j->...', z, inv_sigma, z)
  return np.exp(-0.5 * quadratic)


def random_kernel_x2_with_params(
    rng: np.random.Generator,
    size: int = X2_KERNEL_SIZE) -> tuple[np.ndarray, dict[str, Any]]:
  """Draws one DIV2KRK x2 kernel and returns it with its parameters.

  Draw order (as in the public generator): lambda_1, lambda_2, theta, then
  the size x size noise field.

  Args:
    rng: numpy random Generator.
    size: Kernel side length (11 in DIV2KRK).

  Returns:
    (kernel, params): the (size, size) float64 kernel, summing to 1, with
    its centre of mass at index `target_center_of_mass(size)` (6.0 for
    k = 11) on both axes, i.e. in the `scipy.ndimage.correlate` convention
    (origin k // 2) LR pixel i is centred on HR position 2 i + 1.0 for odd k;
    and a JSON-able dict of the drawn parameters.
  """
  scale = X2_SCALE
  min_var = MIN_VARIANCE_PER_SCALE * scale
  max_var = MAX_VARIANCE_PER_SCALE * scale
  lambda_1 = min_var + rng.random() * (max_var - min_var)
  lambda_2 = min_var + rng.random() * (max_var - min_var)
  theta = rng.random() * np.pi
  noise = -NOISE_LEVEL + rng.random((size, size)) * 2 * NOISE_LEVEL
  mean = kernel_lib.center_of_mass_target(size, scale)
  raw = anisotropic_gaussian(size, lambda_1, lambda_2, theta, mean)
  raw = raw * (1.0 + noise)
  target = target_center_of_mass(size, scale)
  centred = kernel_lib.shift_center_of_mass(raw, target)
  kernel = centred / centred.sum()
  params = {
      'size': size, 'scale': scale, 'lambda_1': float(lambda_1),
      'lambda_2': float(lambda_2), 'theta': float(theta),
      'noise_level': NOISE_LEVEL, 'gaussian_mean': mean,
      'target_center_of_mass': target,
  }
  return kernel, params


def random_kernel_x2(rng: np.random.Generator,
                     size: int = X2_KERNEL_SIZE) -> np.ndarray:
  """Draws one DIV2KRK x2 kernel; see `random_kernel_x2_with_params`.

  Args:
    rng: numpy random Generator.
    size: Kernel side length (11 in DIV2KRK).

  Returns:
    (size, size) float64 kernel summing to 1 with centre of mass at
    k / 2 + 0.5 (2 - k % 2) (6.0 for k = 11) on both axes.
  """
  return random_kernel_x2_with_params(rng, size)[0]


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
  return low + rng.random() * (high - low)


def render_points(points_xy: np.ndarray, weights: np.ndarray, sigma: float,
                  size: int) -> np.ndarray:
  """Anti-aliased rendering of weighted points blurred by a Gaussian.

  Each point adds weight x (the integral over each pixel of an isotropic
  Gaussian of std sigma centred on it), computed exactly with erf (pixel c
  covers [c - 0.5, c + 0.5]); mass falling outside the canvas is lost.

  Args:
    points_xy: (n, 2) positions (x = column, y = row), in pixels.
    weights: (n,) weights.
    sigma: Std of the Gaussian, in pixels (> 0).
    size: Canvas side.

  Returns:
    (size, size) float64 array indexed [row, column].
  """
  edges = np.arange(size + 1) - 0.5
  scale = np.sqrt(2.0) * sigma

  def pixel_fractions(coords: np.ndarray) -> np.ndarray:  # (n, size)
    cdf = special.erf((edges[None, :] - coords[:, None]) / scale)
    return 0.5 * np.diff(cdf, axis=1)

  points_xy = np.asarray(points_xy, np.float64)
  along_x = pixel_fractions(points_xy[:, 0])
  along_y = pixel_fractions(points_xy[:, 1])
  return (along_y * np.asarray(weights, np.float64)[:, None]).T @ along_x


def _centred_kernel(points_xy: np.ndarray, weights: np.ndarray,
                    sigma: float, size: int, scale: int) -> np.ndarray:
  """Renders a shape with its centre of mass at the target, sum 1, >= 0.

  The points are first moved so their weighted mean is the target; pixel
  integration moves the rendered centre of mass by up to a few hundredths
  of a pixel, which two re-renders remove; `kernel.shift_center_of_mass`
  then sets it exactly (a tiny shift, so no visible spline ringing), and
  the tiny negative taps the spline leaves are clipped.
  """
  target = target_center_of_mass(size, scale)
  points = points_xy - np.average(points_xy, axis=0, weights=weights)
  points = points + target
  for _ in range(2):
    raw = render_points(points, weights, sigma, size)
    center_xy = np.array(ndimage.center_of_mass(raw))[::-1]
    points = points + (target - center_xy)
  raw = render_points(points, weights, sigma, size)
  centred = np.maximum(
      kernel_lib.shift_center_of_mass(raw / raw.sum(), target), 0.0)
  return centred / centred.sum()


def _reach(size: int, scale: int) -> float:
  """Room from the target to the border ring: the support must stay inside.

  The distance from `target_center_of_mass` to the outer edge of the
  nearest pixel next to the outer ring of taps (3.5 for k = 11, sf = 2).
  """
  target = target_center_of_mass(size, scale)
  return min(target - 0.5, size - 1.5 - target)


def motion_max_length(theta: float, sigma: float, ramp: float,
                      size: int = X2_KERNEL_SIZE,
                      scale: int = X2_SCALE) -> float:
  """Longest motion line that stays inside the canvas minus its border ring.

  The line's far end lies L (1/2 + |ramp| / 6) from its centre of mass
  along (cos theta, sin theta); that end's projections on the axes plus a
  margin of `FIT_SIGMAS` sigma must fit in `_reach`. Capped at
  `MOTION_LENGTH_RANGE[1]`.

  Args:
    theta: Line angle.
    sigma: Smoothing std.
    ramp: Intensity ramp along the line, in [-1, 1].
    size: Kernel side.
    scale: Scale factor.

  Returns:
    The maximum length, in pixels.
  """
  room = _reach(size, scale) - FIT_SIGMAS * sigma
  extent = max(abs(np.cos(theta)), abs(np.sin(theta)))
  return float(min(MOTION_LENGTH_RANGE[1],
                   room / ((0.5 + abs(ramp) / 6.0) * extent)))


def disk_max_radius(sigma: float, size: int = X2_KERNEL_SIZE,
                    scale: int = X2_SCALE) -> float:
  """Largest disk radius that stays inside the canvas minus its border ring.

  Args:
    sigma: Smoothing std.
    size: Kernel side.
    scale: Scale factor.

  Returns:
    min(`_reach` - `FIT_SIGMAS` sigma, `DISK_RADIUS_RANGE[1]`), in pixels.
  """
  return float(min(DISK_RADIUS_RANGE[1],
                   _reach(size, scale) - FIT_SIGMAS * sigma))


def motion_kernel(length: float, theta: float, sigma: float,
                  ramp: float = 0.0, size: int = X2_KERNEL_SIZE,
                  scale: int = X2_SCALE) -> np.ndarray:
  """A smoothed, anti-aliased motion-blur line kernel.

  Args:
    length: Line length L, in pixels.
    theta: Angle of the line: direction (cos theta, sin theta) in
      (x, y) = (column, row), as the Gaussian's theta.
    sigma: Std of the isotropic Gaussian smoothing, in pixels.
    ramp: Intensity along the line goes linearly from 1 - ramp to 1 + ramp
      (at the end in direction +theta); in [-1, 1].
    size: Kernel side.
    scale: Scale factor (sets the centre-of-mass target).

  Returns:
    (size, size) float64 kernel, sum 1, non-negative, with its centre of
    mass at `target_center_of_mass(size, scale)` on both axes.
  """
  u = (2 * np.arange(LINE_SAMPLES) + 1) / LINE_SAMPLES - 1.0  # In (-1, 1).
  direction = np.array([np.cos(theta), np.sin(theta)])
  points = (0.5 * length * u)[:, None] * direction
  return _centred_kernel(points, 1.0 + ramp * u, sigma, size, scale)


def disk_kernel(radius: float, sigma: float, size: int = X2_KERNEL_SIZE,
                scale: int = X2_SCALE) -> np.ndarray:
  """A smoothed, anti-aliased uniform disk (defocus) kernel.

  Args:
    radius: Disk radius R, in pixels.
    sigma: Std of the isotropic Gaussian smoothing, in pixels.
    size: Kernel side.
    scale: Scale factor (sets the centre-of-mass target).

  Returns:
    (size, size) float64 kernel, sum 1, non-negative, with its centre of
    mass at `target_center_of_mass(size, scale)` on both axes.
  """
  step = 1.0 / DISK_SAMPLES_PER_PIXEL
  half = int(np.ceil(radius / step))
  grid = (np.arange(-half, half) + 0.5) * step
  x, y = np.meshgrid(grid, grid)
  inside = x**2 + y**2 <= radius**2
  points = np.stack([x[inside], y[inside]], axis=-1)
  return _centred_kernel(points, np.ones(len(points)), sigma, size, scale)


def random_motion_kernel_x2_with_params(
    rng: np.random.Generator,
    size: int = X2_KERNEL_SIZE) -> tuple[np.ndarray, dict[str, Any]]:
  """Draws one motion-blur x2 kernel (see the module docstring).

  Draw order: theta ~ U[0, pi), sigma ~ U(`SMOOTHING_SIGMA_RANGE`),
  ramp ~ U[-`MOTION_MAX_RAMP`, `MOTION_MAX_RAMP`], then the length
  uniform in [`MOTION_LENGTH_RANGE[0]`, `motion_max_length`].

  Args:
    rng: numpy random Generator.
    size: Kernel side length.

  Returns:
    (kernel, params): the (size, size) float64 kernel (sum 1, non-negative,
    centre of mass at `target_center_of_mass(size)`) and a JSON-able dict
    of its parameters, with 'family': 'motion'.

  Raises:
    ValueError: if the canvas is too small for the shortest line.
  """
  scale = X2_SCALE
  theta = rng.random() * np.pi
  sigma = _uniform(rng, *SMOOTHING_SIGMA_RANGE)
  ramp = _uniform(rng, -MOTION_MAX_RAMP, MOTION_MAX_RAMP)
  max_length = motion_max_length(theta, sigma, ramp, size, scale)
  if max_length < MOTION_LENGTH_RANGE[0]:
    raise ValueError(f'size {size} is too small for motion kernels')
  length = _uniform(rng, MOTION_LENGTH_RANGE[0], max_length)
  kernel = motion_kernel(length, theta, sigma, ramp, size, scale)
  params = {
      'family': 'motion', 'size': size, 'scale': scale,
      'length': float(length), 'theta': float(theta), 'sigma': float(sigma),
      'ramp': float(ramp), 'max_length': max_length,
      'target_center_of_mass': target_center_of_mass(size, scale),
  }
  return kernel, params


def random_disk_kernel_x2_with_params(
    rng: np.random.Generator,
    size: int = X2_KERNEL_SIZE) -> tuple[np.ndarray, dict[str, Any]]:
  """Draws one defocus (disk) x2 kernel (see the module docstring).

  Draw order: sigma ~ U(`SMOOTHING_SIGMA_RANGE`), then the radius uniform
  in [`DISK_RADIUS_RANGE[0]`, `disk_max_radius`].

  Args:
    rng: numpy random Generator.
    size: Kernel side length.

  Returns:
    (kernel, params): the (size, size) float64 kernel (sum 1, non-negative,
    centre of mass at `target_center_of_mass(size)`) and a JSON-able dict
    of its parameters, with 'family': 'disk'.

  Raises:
    ValueError: if the canvas is too small for the smallest disk.
  """
  scale = X2_SCALE
  sigma = _uniform(rng, *SMOOTHING_SIGMA_RANGE)
  max_radius = disk_max_radius(sigma, size, scale)
  if max_radius < DISK_RADIUS_RANGE[0]:
    raise ValueError(f'size {size} is too small for disk kernels')
  radius = _uniform(rng, DISK_RADIUS_RANGE[0], max_radius)
  kernel = disk_kernel(radius, sigma, size, scale)
  params = {
      'family': 'disk', 'size': size, 'scale': scale,
      'radius': float(radius), 'sigma': float(sigma),
      'max_radius': max_radius,
      'target_center_of_mass': target_center_of_mass(size, scale),
  }
  return kernel, params


KernelSampler = Callable[[np.random.Generator, int],
                         tuple[np.ndarray, dict[str, Any]]]

# Family name -> the samplers that take turns, image by image, in a set.
KERNEL_FAMILIES: dict[str, tuple[KernelSampler, ...]] = {
    'gaussian': (random_kernel_x2_with_params,),
    'motion': (random_motion_kernel_x2_with_params,),
    'disk': (random_disk_kernel_x2_with_params,),
    'nongaussian': (random_motion_kernel_x2_with_params,
                    random_disk_kernel_x2_with_params),
}


def check_family(family: str) -> None:
  """Raises ValueError unless `family` is a key of `KERNEL_FAMILIES`."""
  if family not in KERNEL_FAMILIES:
    raise ValueError(
        f'unknown kernel family {family!r}, want one of '
        f'{sorted(KERNEL_FAMILIES)}')


def random_family_kernel_x2_with_params(
    rng: np.random.Generator, family: str = 'gaussian', index: int = 0,
    size: int = X2_KERNEL_SIZE) -> tuple[np.ndarray, dict[str, Any]]:
  """Draws the kernel of image `index` of a set of the given family.

  A family's samplers take turns: in 'nongaussian', even indices get a
  motion kernel and odd ones a disk kernel. 'gaussian' is exactly
  `random_kernel_x2_with_params` (same draws, same params, no 'family').

  Args:
    rng: numpy random Generator.
    family: A key of `KERNEL_FAMILIES`.
    index: Position of the image in its set.
    size: Kernel side length.

  Returns:
    (kernel, params) as the family's sampler returns them.
  """
  check_family(family)
  samplers = KERNEL_FAMILIES[family]
  return samplers[index % len(samplers)](rng, size)


def crop_to_multiple(image_hwc: np.ndarray, multiple: int) -> np.ndarray:
  """Crops bottom/right so that H and W are multiples of `multiple`."""
  height = image_hwc.shape[0] - image_hwc.shape[0] % multiple
  width = image_hwc.shape[1] - image_hwc.shape[1] % multiple
  return image_hwc[:height, :width]


def center_crop(image_hwc: np.ndarray, size: int) -> np.ndarray:
  """Centre crop to at most size x size (smaller sides are kept)."""
  height, width = image_hwc.shape[:2]
  new_h, new_w = min(size, height), min(size, width)
  top, left = (height - new_h) // 2, (width - new_w) // 2
  return image_hwc[top:top + new_h, left:left + new_w]


def quantize(image_01: np.ndarray) -> np.ndarray:
  """[0, 1] float -> uint8 with rounding and clipping."""
  return np.clip(np.round(np.asarray(image_01) * 255.0), 0, 255).astype(
      np.uint8)


def degrade_image(hr_01: np.ndarray, kernel: np.ndarray,
                  scale: int = X2_SCALE) -> np.ndarray:
  """Makes an 8-bit LR image by the DIV2KRK protocol.

  Args:
    hr_01: (H, W, C) or (H, W) float HR image in [0, 1]; cropped
      (bottom/right) to a multiple of `scale` first.
    kernel: (k, k) x2 kernel. With scale = 4 it is applied twice (the
      DIV2KRK x4 protocol); scale must be 2 or 4.
    scale: 2 or 4.

  Returns:
    uint8 LR image of shape (H // scale, W // scale[, C]).
  """
  if scale not in (2, 4):
    raise ValueError(f'scale must be 2 or 4, got {scale}')
  image = crop_to_multiple(np.asarray(hr_01, np.float64), scale)
  for _ in range(scale // 2):
    image = degradation.downscale_np(image, kernel, X2_SCALE)
  return quantize(image)


def sample_photographs(
    names: Optional[tuple[str, ...]] = None,
    hr_size: Optional[int] = None) -> dict[str, np.ndarray]:
  """HR test photographs from scikit-image's bundled samples (no network).

  Args:
    names: skimage.data function names; default `SAMPLE_IMAGE_NAMES`.
    hr_size: If given, centre-crop each image to at most hr_size x hr_size.

  Returns:
    Ordered dict name -> (H, W, 3) float32 RGB image in [0, 1] (gray samples
    replicated to 3 channels, alpha dropped).

  Raises:
    ImportError: if scikit-image is not installed.
  """
  try:
    from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        'sample_photographs needs scikit-image: pip install scikit-image'
    ) from e
  photos = {}
  for name in names or SAMPLE_IMAGE_NAMES:
    image = images.as_float_rgb(getattr(skdata, name)()).astype(np.float32)
    photos[name] = center_crop(image, hr_size) if hr_size else image
  return photos


def _write_png(path: str, image_u8: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  iio.imwrite(path, image_u8)


def _write_kernel(kernels_dir: str, stem: str, kernel: np.ndarray) -> None:
  os.makedirs(kernels_dir, exist_ok=True)
  np.save(os.path.join(kernels_dir, stem + '.npy'), kernel)
  scipy.io.savemat(os.path.join(kernels_dir, stem + '.mat'),
                   {'Kernel': kernel})


def write_example(out_dir: str, name: str, hr_01: np.ndarray,
                  rng: np.random.Generator, x4: bool = False,
                  kernel_size: int = X2_KERNEL_SIZE,
                  family: str = 'gaussian',
                  index: int = 0) -> dict[str, Any]:
  """Draws a kernel, degrades one HR image and writes its files.

  Args:
    out_dir: Set directory.
    name: File stem.
    hr_01: (H, W, 3) float HR image in [0, 1].
    rng: Generator the kernel is drawn from.
    x4: Also write the x4 LR image (x2 kernel applied twice).
    kernel_size: x2 kernel size.
    family: Kernel family, a key of `KERNEL_FAMILIES`.
    index: Position of the image in its set (picks the family's sampler).

  Returns:
    The image's manifest entry.
  """
  hr = crop_to_multiple(np.asarray(hr_01), 4 if x4 else 2)
  hr_u8 = quantize(hr)
  hr = hr_u8.astype(np.float64) / 255.0  # The HR as it will be read back.
  kernel, params = random_family_kernel_x2_with_params(
      rng, family, index, kernel_size)
  lr_u8 = degrade_image(hr, kernel, 2)
  _write_png(os.path.join(out_dir, 'HR', name + '.png'), hr_u8)
  _write_png(os.path.join(out_dir, 'LR', name + '.png'), lr_u8)
  _write_kernel(os.path.join(out_dir, 'kernels'), name + '_kernel_x2', kernel)
  entry = {'name': name, 'hr_shape': list(hr_u8.shape),
           'lr_shape': list(lr_u8.shape), 'kernel_x2': params}
  if x4:
    lr_x4_u8 = degrade_image(hr, kernel, 4)
    _write_png(os.path.join(out_dir, 'LR_x4', name + '.png'), lr_x4_u8)
    entry['lr_x4_shape'] = list(lr_x4_u8.shape)
  return entry


def write_set(out_dir: str, photos: Mapping[str, np.ndarray], seed: int,
              x4: bool = False, kernel_size: int = X2_KERNEL_SIZE,
              family: str = 'gaussian') -> dict[str, Any]:
  """Writes a DIV2KRK-style set.

  Layout: `<out>/HR/<name>.png`, `<out>/LR/<name>.png` (x2),
  `<out>/LR_x4/<name>.png` (if x4), `<out>/kernels/<name>_kernel_x2.npy` and
  `.mat` (variable `Kernel`), and `<out>/manifest.json`.

  Kernels are drawn in the order of `photos` from one
  `np.random.default_rng(seed)`, so the first n images of a longer set get
  the same kernels as a set of those n images. The default family,
  'gaussian', is the DIV2KRK protocol; the others (see the module
  docstring) change only the kernels.

  Args:
    out_dir: Output directory (created).
    photos: Ordered mapping name -> (H, W, 3) float HR image in [0, 1].
    seed: Seed of the kernel generator.
    x4: Also write x4 LR images.
    kernel_size: x2 kernel size (11 in DIV2KRK).
    family: Kernel family, a key of `KERNEL_FAMILIES`.

  Returns:
    The manifest (also written as manifest.json); its 'family' is the
    set's family, each image's 'kernel_x2' its kernel's parameters.
  """
  check_family(family)
  rng = np.random.default_rng(seed)
  entries = [
      write_example(out_dir, name, hr, rng, x4, kernel_size, family, index)
      for index, (name, hr) in enumerate(photos.items())]
  manifest = {'protocol': 'DIV2KRK', 'seed': seed, 'scale': X2_SCALE,
              'x4': x4, 'kernel_size': kernel_size, 'family': family,
              'images': entries}
  with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=1)
  return manifest


@dataclasses.dataclass
class Example:
  """One image of a set, as read back by `load_set`.

  Attributes:
    name: File stem.
    hr: (H, W, 3) float64 HR image in [0, 1].
    lr: (H/2, W/2, 3) float64 x2 LR image in [0, 1], as the command line
      reads it.
    kernel_x2: (k, k) float64 ground-truth x2 kernel.
    params: The manifest entry (kernel parameters, shapes).
    lr_x4: (H/4, W/4, 3) float64 x4 LR image, or None.
    family: This kernel's family: 'gaussian', 'motion' or 'disk'.
  """
  name: str
  hr: np.ndarray
  lr: np.ndarray
  kernel_x2: np.ndarray
  params: dict[str, Any]
  lr_x4: Optional[np.ndarray] = None
  family: str = 'gaussian'


def _read_png_01(path: str) -> np.ndarray:
  # float64, as the command line reads it: float32 pixels round differently
  # and move a run's crops and kernel as much as another seed would.
  return images.read_image(path)


def read_manifest(set_dir: str) -> dict[str, Any]:
  """Reads a set's manifest.json.

  Args:
    set_dir: The set directory.

  Returns:
    The manifest; sets written before kernel families existed (no 'family'
    key) get 'family': 'gaussian'.
  """
  with open(os.path.join(set_dir, 'manifest.json')) as f:
    manifest = json.load(f)
  manifest.setdefault('family', 'gaussian')
  return manifest


def load_set(set_dir: str) -> dict[str, Example]:
  """Reads a set written by `write_set` (any family).

  Args:
    set_dir: The set directory.

  Returns:
    Ordered dict name -> Example, in manifest order.
  """
  manifest = read_manifest(set_dir)
  examples = {}
  for entry in manifest['images']:
    name = entry['name']
    lr_x4 = None
    if 'lr_x4_shape' in entry:
      lr_x4 = _read_png_01(os.path.join(set_dir, 'LR_x4', name + '.png'))
    examples[name] = Example(
        name=name,
        hr=_read_png_01(os.path.join(set_dir, 'HR', name + '.png')),
        lr=_read_png_01(os.path.join(set_dir, 'LR', name + '.png')),
        kernel_x2=np.load(
            os.path.join(set_dir, 'kernels', name + '_kernel_x2.npy')),
        params=entry, lr_x4=lr_x4,
        family=entry['kernel_x2'].get('family', 'gaussian'))
  return examples


def load_or_make_set(set_dir: str, num_images: int,
                     hr_size: Optional[int] = None, x4: bool = False,
                     seed: int = 0,
                     family: Optional[str] = None) -> list[Example]:
  """The first `num_images` examples of the set in `set_dir`, writing it
  first from scikit-image's photographs when the folder holds no set.

  Args:
    family: the kernel family the set must have; None accepts the set's
      own, and makes a 'gaussian' one when there is none.

  Raises:
    ValueError: if the set found in `set_dir` is of another kernel family.
  """
  if family is not None:
    check_family(family)
  if not os.path.exists(os.path.join(set_dir, 'manifest.json')):
    names = SAMPLE_IMAGE_NAMES[:num_images]
    write_set(set_dir, sample_photographs(names, hr_size=hr_size), seed=seed,
              x4=x4, family=family or 'gaussian')
  found = read_manifest(set_dir)['family']
  if family is not None and found != family:
    raise ValueError(
        f'{set_dir} holds a {found!r} set, not {family!r}')
  return list(load_set(set_dir).values())[:num_images]
