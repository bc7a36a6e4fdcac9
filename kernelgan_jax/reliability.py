"""How far to trust an estimated SR kernel, from the LR image alone.

KernelGAN can return a confidently wrong kernel (seeds agreeing on it), so
each estimate gets numbers computed from the LR image, the estimated x2
kernel and, optionally, the estimation's loss history, FKP's prior or a
second estimator's kernel; none needs the HR image or the true kernel.
`benchmarks/reliability.py` measures how well each ranks estimates by
their true kernel error (Spearman) on DIV2KRK-protocol sets. KernelGAN's
premise is that the LR image downscaled by the right x2 kernel looks like
the LR image itself (its patches recur across scales); the image-based
candidates test that:

* `recurrence_error`: the mean distance of the LR image's textured patches
  to their nearest neighbours among the patches of the LR image
  downscaled by the kernel, relative to their contrast. Too wide a kernel
  leaves the LR's sharp patches unmatched, too narrow a one makes the
  downscaled patches sharper than any in the LR. Its level depends on the
  image, so `score` divides it by the same error for MATLAB's bicubic
  kernel: the headline 'recurrence_vs_bicubic' (`HEADLINE`).
* `sharpness_mismatch`: log ratio of `edge_sharpness` (|Laplacian| over
  |gradient| on the strongest edges, about the inverse edge width) of the
  downscaled image to the LR's; about 0 for a consistent kernel, negative
  when the kernel is too wide. `spectral_mismatch` is the same with the
  power in the top frequency octave over the next one
  (`band_power_ratios`), optionally per orientation. Both are cheap and
  signed, but image noise pushes them towards "too wide".
* `width_scan`: whether `recurrence_error` is least at the estimate along
  wider and narrower copies of it (`stretch_kernel`).
* `prior_nll`: the negative log-likelihood under FKP's normalising-flow
  prior (trained on Gaussian kernels).
* `kernel_moments`: width, anisotropy and far mass of the estimate itself.
* `history_features`: the last losses of the estimation.
* `agreement`: `metrics.kernel_error` between two estimators' kernels (a
  second estimation's cost).

`score` gathers the useful and cheap ones into the dict logged per image
(`image_side`, its part that needs only the image, can be computed while
the kernel trains), and `sr_kernel` turns its headline into the kernel
`--sr` gives ZSSR.
"""

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
import numpy as np

from kernelgan_jax import data as data_lib
from kernelgan_jax import degradation
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics

SCALE = 2
EDGE_QUANTILE = 0.7  # `edge_sharpness` keeps the strongest 30 % gradients.
EDGE_BORDER = 4  # Pixels dropped at each side (reflection artefacts).
PATCH = 5
RECURRENCE_CROP = 192  # Side of the LR tile `recurrence_error` uses.
RECURRENCE_QUERIES = 1024
TEXTURED_FRACTION = 0.25
WIDTH_FACTORS = (0.7, 0.85, 1.0, 1.2, 1.4)
FAR_RADIUS = 5.0  # `kernel_moments`: mass beyond this many px of the COM.
NLL_SAMPLES = 16
HISTORY_TAIL = 100
# The headline signal of `score` and its warning threshold, chosen on two
# 8-image DIV2KRK-protocol sets and checked on two held-out ones
# (benchmarks/results/reliability-*.md; about 1 in 6 true kernels is
# flagged too: narrow ones that the image cannot tell from bicubic).
HEADLINE = 'recurrence_vs_bicubic'
WARN_ABOVE = -0.07
# `sr_kernel`: between these headline scores ZSSR gets a narrower copy of
# the kernel, the width factor falling linearly from 1 to NARROWEST (chosen
# on three 8-image DIV2KRK-protocol sets, checked on two held-out ones:
# benchmarks/README.md, "Narrowing the kernel for SR").
NARROW_FROM = -0.2
NARROWEST = 0.7


# What `estimate_kernel(..., estimator='select')` chooses between.
SELECT_FROM = ('kernelgan', 'fkp_lite')


def select(lr_image: np.ndarray, estimates: Sequence[Any]) -> Any:
  """The estimate whose kernel explains the image's cross-scale patch
  recurrence best: the lowest `HEADLINE` score (no threshold to tune).

  The prior's kernels win where the truth is a Gaussian and lose badly
  where it is not; the score tells the two apart well enough that the
  choice beats both estimators on both kinds of DIV2KRK-protocol sets
  (README, "Estimators"). The headline's bicubic term is the same for
  every candidate, so only their `recurrence_error`s are computed.
  """
  return estimates[_best(lr_image, estimates)]


def select_name(lr_image: np.ndarray, named: Mapping[str, Any]) -> str:
  """The name of the estimate (or kernel) `select` keeps of `named`."""
  names = list(named)
  return names[_best(lr_image, [named[name] for name in names])]


def sr_width_factor(headline: float) -> float:
  """The width factor `sr_kernel` applies for a headline score.

  1 at or below `NARROW_FROM`, falling linearly to `NARROWEST` at
  `WARN_ABOVE` and staying there above it.
  """
  share = np.clip((headline - NARROW_FROM) / (WARN_ABOVE - NARROW_FROM),
                  0.0, 1.0)
  return float(1.0 - (1.0 - NARROWEST) * share)


def sr_kernel(kernel_x2: np.ndarray, scores: Mapping[str, float], *,
              fallback: bool = True, narrow: bool = True
              ) -> tuple[Optional[np.ndarray], str, float]:
  """The x2 kernel to give ZSSR for an estimate with these `score`s.

  ZSSR with a kernel wider than the truth over-sharpens and can end far
  below bicubic interpolation, while one narrower than the truth costs
  little, and the less an estimate beats bicubic downscaling the likelier
  it is wrong. So where the headline is above `WARN_ABOVE` (with
  `fallback`) ZSSR gets MATLAB's bicubic kernel (plain ZSSR, Shocher et
  al., CVPR 2018), and where it is above `NARROW_FROM` (with `narrow`) a
  copy narrowed by `sr_width_factor` (`stretch_kernel`).

  Args:
    kernel_x2: the estimated x2 kernel.
    scores: its `score` (the headline is read).
    fallback: use the bicubic kernel where the kernel looks unreliable.
    narrow: narrow the kernel where it beats bicubic only narrowly.

  Returns:
    (kernel, how, width factor): the kernel (None: the bicubic kernel),
    how it was chosen ('estimate', 'narrowed' or 'bicubic') and the factor
    (1 unless narrowed).
  """
  how, factor = sr_choice(float(scores[HEADLINE]), fallback=fallback,
                          narrow=narrow)
  if how == 'bicubic':
    return None, how, factor
  if how == 'estimate':
    return np.asarray(kernel_x2), how, factor
  return stretch_kernel(kernel_x2, factor), how, factor


def sr_choice(headline: float, *, fallback: bool = True,
              narrow: bool = True) -> tuple[str, float]:
  """`sr_kernel`'s choice for a headline score, without the kernel.

  Returns:
    ('bicubic', 1.0), ('estimate', 1.0) or ('narrowed', the width factor).
  """
  if fallback and headline > WARN_ABOVE:
    return 'bicubic', 1.0
  factor = sr_width_factor(headline) if narrow else 1.0
  return ('estimate', 1.0) if factor == 1.0 else ('narrowed', factor)


def _best(lr_image: np.ndarray, estimates: Sequence[Any]) -> int:
  """The index of the lowest `recurrence_error` (see `select`)."""
  errors = recurrence_errors(_as_gray(lr_image),
                             [_kernel_of(estimate) for estimate in estimates])
  return int(np.argmin(errors))


def _kernel_of(estimate: Any) -> Float[np.ndarray, 'k k']:
  """A `KernelEstimate`'s x2 kernel, or the kernel itself, float64."""
  return np.asarray(getattr(estimate, 'kernel_x2', estimate), np.float64)


def warning(name: str, scores: dict[str, float]) -> Optional[str]:
  """The command line's one-line warning for an unreliable kernel, or None."""
  if not scores.get('unreliable'):
    return None
  return (f'warning: {name}: the kernel explains the image no better than '
          f'bicubic downscaling (reliability {scores[HEADLINE]:+.3f} > '
          f'{WARN_ABOVE}); check it before relying on it')


def _as_gray(image: np.ndarray) -> Float[np.ndarray, 'h w']:
  """A 2-D float image as is, anything else (uint or float, gray or RGB)
  as its luma (`data.luma`), float64."""
  image = np.asarray(image)
  if image.ndim == 2 and np.issubdtype(image.dtype, np.floating):
    return image.astype(np.float64)
  return data_lib.luma(images.as_float_rgb(image))


def _downscaled(gray: Float[np.ndarray, 'h w'], kernel: np.ndarray,
                scale: int) -> Float[np.ndarray, 'h2 w2']:
  """The image degraded by the kernel normalised to sum 1."""
  return degradation.downscale_np(
      gray, np.asarray(kernel, np.float64) / np.sum(kernel), scale, fft=True)


def edge_sharpness(gray: Float[np.ndarray, 'h w'],
                   quantile: float = EDGE_QUANTILE,
                   border: int = EDGE_BORDER) -> float:
  """Mean |Laplacian| over mean |gradient| on the strongest edges.

  For a step edge blurred to width w both are taken at the same pixels,
  the gradient scales as 1 / w and the Laplacian as 1 / w^2, so the ratio
  is about proportional to 1 / w: a scale-free sharpness.

  Args:
    gray: (h, w) image, larger than 2 border + 2 on both sides.
    quantile: pixels whose gradient magnitude is above this quantile count.
    border: pixels dropped on every side first.

  Returns:
    The ratio (per pixel), positive; nan for an image without gradients.
  """
  gray = np.asarray(gray, np.float64)
  if min(gray.shape) <= 2 * border + 2:
    raise ValueError(f'image {gray.shape} too small for border {border}')
  d_row, d_col = np.gradient(gray)
  inner = (slice(border, -border or None),) * 2
  magnitude = np.hypot(d_row, d_col)[inner]
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  # Slow.
  laplacian = np.abs(ndimage.laplace(gray))[inner]
  strong = magnitude >= np.quantile(magnitude, quantile)
  total = magnitude[strong].sum()
  if not total > 0:
    return float('nan')
  return float(laplacian[strong].sum() / total)


def sharpness_mismatch(lr_image: np.ndarray, kernel: np.ndarray,
                       scale: int = SCALE,
                       lr_sharpness: Optional[float] = None) -> float:
  """log(sharpness of the LR image downscaled by `kernel` / the LR's).

  About 0 when the kernel is consistent with the image (scale
  invariance); negative: the kernel is too wide, positive: too narrow.

  Args:
    lr_image: (h, w[, c]) LR image (uint or float in [0, 1]).
    kernel: (k, k) estimated kernel for a x`scale` downscale.
    scale: the kernel's downscaling factor.
    lr_sharpness: the LR image's `edge_sharpness`, if known.

  Returns:
    The log ratio.
  """
  gray = _as_gray(lr_image)
  if lr_sharpness is None:
    lr_sharpness = edge_sharpness(gray)
  down = _downscaled(gray, kernel, scale)
  return float(np.log(edge_sharpness(down) / lr_sharpness))


def band_power_ratios(gray: Float[np.ndarray, 'h w'],
                      sectors: int = 1) -> Float[np.ndarray, 'sectors']:
  """Power in the top frequency octave over the octave below it.

  The periodogram of the Hann-windowed, mean-removed image is summed over
  radial frequencies in [1/4, 1/2) and in [1/8, 1/4) cycles per pixel,
  in `sectors` equal orientation sectors (1: all of them), centred on
  the frequency angles i pi / sectors from the column-frequency axis
  (with 2: horizontal, then vertical frequencies).
  Blur lowers the ratio; for a scale-invariant image it is the same at
  every scale.

  Args:
    gray: (h, w) image, at least 8 x 8.
    sectors: orientation sectors.

  Returns:
    (sectors,) ratios, positive (nan where a band holds no power).
  """
  gray = np.asarray(gray, np.float64)
  if min(gray.shape) < 8:
    raise ValueError(f'image {gray.shape} smaller than 8 x 8')
  window = np.outer(np.hanning(gray.shape[0]), np.hanning(gray.shape[1]))
  power = np.abs(np.fft.fft2((gray - gray.mean()) * window))**2
  f_row = np.fft.fftfreq(gray.shape[0])[:, None]
  f_col = np.fft.fftfreq(gray.shape[1])[None, :]
  radius = np.hypot(f_row, f_col)
  angle = np.mod(np.arctan2(f_row, f_col) + np.pi / (2 * sectors), np.pi)
  sector = np.floor(angle / np.pi * sectors).astype(int) % sectors
  high = (radius >= 0.25) & (radius < 0.5)
  mid = (radius >= 0.125) & (radius < 0.25)
  ratios = np.full(sectors, np.nan)
  for index in range(sectors):
    here = sector == index
    below = power[mid & here].sum()
    if below > 0:
      ratios[index] = power[high & here].sum() / below
  return ratios


def spectral_mismatch(lr_image: np.ndarray, kernel: np.ndarray,
                      scale: int = SCALE, sectors: int = 1
                      ) -> Float[np.ndarray, 'sectors']:
  """log(`band_power_ratios` of the LR image downscaled by `kernel` / the
  LR image's own), per orientation sector.

  About 0 for a kernel consistent with the image (scale invariance: the
  spectrum falls off alike between the top two octaves at both scales);
  negative: the kernel looks too wide, positive: too narrow. Over the 16
  images of two DIV2KRK-protocol sets, the true kernels gave -0.08 +- 0.27
  (one sector); 1.3 x wider copies of them moved it by -0.74 on average,
  1.3 x narrower ones by +0.44. Image noise lowers it (the downscaled
  image is cleaner than the LR image).

  Args:
    lr_image: (h, w[, c]) LR image (uint or float in [0, 1]).
    kernel: (k, k) kernel for a x`scale` downscale.
    scale: the kernel's downscaling factor.
    sectors: orientation sectors (see `band_power_ratios`).

  Returns:
    (sectors,) log ratios.
  """
  gray = _as_gray(lr_image)
  down = _downscaled(gray, kernel, scale)
  return np.log(band_power_ratios(down, sectors)
                / band_power_ratios(gray, sectors))


def stretch_kernel(kernel: np.ndarray, factor: float
                   ) -> Float[np.ndarray, 's s']:
  """The kernel widened (factor > 1) or narrowed about its centre of mass.

  k_f(x) is proportional to k(com + (x - com) / f) (cubic spline,
  clipped at 0, sum 1), on a canvas grown to hold it.

  Args:
    kernel: (k, k) kernel with a positive sum.
    factor: the width factor, positive.

  Returns:
    (s, s) float64 kernel, s = k or the odd size above k * factor.
  """
  if not factor > 0:
    raise ValueError(f'factor must be positive, got {factor}')
  kernel = np.clip(np.asarray(kernel, np.float64), 0.0, None)
  size = kernel.shape[0]
  grown = max(size, int(np.ceil(size * factor)) | 1)
  pad = (grown - size) // 2
  canvas = np.pad(kernel, ((pad, grown - size - pad),) * 2)
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  # Slow.
  com = np.array(ndimage.center_of_mass(canvas))
  out = ndimage.affine_transform(canvas, np.eye(2) / factor,
                                 offset=com - com / factor, order=3)
  out = np.clip(out, 0.0, None)
  return out / out.sum()


def _patches(gray: Float[np.ndarray, 'h w'], size: int
             ) -> Float[np.ndarray, 'n p']:
  """All size x size windows, flattened, mean removed."""
  windows = np.lib.stride_tricks.sliding_window_view(gray, (size, size))
  flat = windows.reshape(-1, size * size)
  return flat - flat.mean(axis=1, keepdims=True)


def _nearest_distances(queries: Float[np.ndarray, 'q p'],
                       base: Float[np.ndarray, 'n p'],
                       chunk: int = 8192) -> Float[np.ndarray, 'q']:
  """Euclidean distance of every query to its nearest row of `base`."""
  queries = queries.astype(np.float32)
  base = base.astype(np.float32)
  norms = np.sum(base**2, axis=1)
  best = np.full(len(queries), np.inf, np.float32)
  for start in range(0, len(base), chunk):
    part = slice(start, start + chunk)
    best = np.minimum(best, np.min(norms[part] - 2 * queries @ base[part].T,
                                   axis=1))
  return np.sqrt(np.maximum(best + np.sum(queries**2, axis=1), 0.0))


def textured_crop(gray: Float[np.ndarray, 'h w'], size: int
                  ) -> Float[np.ndarray, 'a b']:
  """The size x size tile (of a grid of them, plus the central one) with
  the largest mean gradient magnitude; the whole image if smaller."""
  height, width = gray.shape
  if height <= size and width <= size:
    return gray
  magnitude = np.hypot(*np.gradient(gray))
  corners = {(max(0, (height - size) // 2), max(0, (width - size) // 2))}
  for top in range(0, max(1, height - size + 1), size):
    for left in range(0, max(1, width - size + 1), size):
      corners.add((top, left))
  top, left = max(sorted(corners), key=lambda c: magnitude[
      c[0]:c[0] + size, c[1]:c[1] + size].mean())
  return gray[top:top + size, left:left + size]


def recurrence_error(lr_image: np.ndarray, kernel: np.ndarray,
                     scale: int = SCALE, patch: int = PATCH,
                     crop: int = RECURRENCE_CROP,
                     queries: int = RECURRENCE_QUERIES,
                     textured_fraction: float = TEXTURED_FRACTION,
                     seed: int = 0) -> float:
  """How badly the LR image's patches recur in its downscaled version.

  On the most textured `crop` x `crop` tile of the LR luma
  (`textured_crop`), downscaled by
  `kernel`: `queries` of the LR patches (patch x patch, mean removed,
  drawn among the `textured_fraction` of highest contrast) are matched
  to all the downscaled image's patches; the result is the mean nearest
  distance over the mean query norm (0: every patch recurs exactly). A too
  wide kernel leaves the LR image's sharp patches without a match, a too
  narrow one makes the downscaled patches sharper than any in the LR.

  Args:
    lr_image: (h, w[, c]) LR image.
    kernel: (k, k) kernel for a x`scale` downscale.
    scale: the kernel's factor.
    patch: patch side.
    crop: side of the tile used (bounds the cost).
    queries: how many LR patches are matched.
    textured_fraction: share of highest-contrast patches they come from.
    seed: which patches (numpy generator seed).

  Returns:
    The relative mean nearest-neighbour distance, in [0, ~1.5].
  """
  return recurrence_errors(lr_image, [kernel], scale, patch, crop, queries,
                           textured_fraction, seed)[0]


def recurrence_errors(lr_image: np.ndarray, kernels: Sequence[np.ndarray],
                      scale: int = SCALE, patch: int = PATCH,
                      crop: int = RECURRENCE_CROP,
                      queries: int = RECURRENCE_QUERIES,
                      textured_fraction: float = TEXTURED_FRACTION,
                      seed: int = 0) -> list[float]:
  """`recurrence_error` of each kernel, the LR side (tile, query patches)
  computed once."""
  return _recurrence_errors(
      _recurrence_queries(_as_gray(lr_image), crop, patch, queries,
                          textured_fraction, seed), kernels, scale, patch)


def _recurrence_queries(gray: Float[np.ndarray, 'h w'], crop: int,
                        patch: int, queries: int, textured_fraction: float,
                        seed: int
                        ) -> tuple[np.ndarray, np.ndarray, float]:
  """`recurrence_error`'s LR side: (the tile, its chosen query patches,
  their mean norm)."""
  tile = textured_crop(gray, crop)
  candidates = _patches(tile, patch)
  contrast = np.linalg.norm(candidates, axis=1)
  count = max(1, int(len(candidates) * textured_fraction))
  textured = np.argsort(contrast)[-count:]
  chosen = np.random.default_rng(seed).choice(
      textured, min(queries, count), replace=False)
  return tile, candidates[chosen], float(contrast[chosen].mean())


def _recurrence_errors(lr_side: tuple[np.ndarray, np.ndarray, float],
                       kernels: Sequence[np.ndarray], scale: int = SCALE,
                       patch: int = PATCH) -> list[float]:
  """`recurrence_errors` from `_recurrence_queries`' LR side."""
  tile, chosen, norm = lr_side
  downs = [_downscaled(tile, kernel, scale) for kernel in kernels]
  if any(min(down.shape) < patch for down in downs):
    raise ValueError(f'image {tile.shape} too small for {patch}px patches '
                     f'at x{scale}')
  if not norm > 0:
    return [float('nan')] * len(kernels)
  return [float(_nearest_distances(chosen, _patches(down, patch)).mean())
          / norm for down in downs]


def width_scan(lr_image: np.ndarray, kernel: np.ndarray,
               measure: Callable[[np.ndarray, np.ndarray],
                                 float] = recurrence_error,
               factors: tuple[float, ...] = WIDTH_FACTORS
               ) -> dict[str, float]:
  """Is the estimate at the minimum of `measure` along a width scale?

  Args:
    lr_image: (h, w[, c]) LR image.
    kernel: (k, k) estimated x2 kernel.
    measure: measure(lr_image, kernel) -> a float to minimise.
    factors: width factors tried (`stretch_kernel`), 1.0 among them.

  Returns:
    'excess': log(measure at factor 1 / the least over the factors), >= 0;
    'best_width': log of the best factor, refined by a parabola through
    the best point and its neighbours (in log factor), > 0 meaning the
    data prefer a wider kernel.
  """
  if 1.0 not in factors:
    raise ValueError(f'factors must include 1.0, got {factors}')
  gray = _as_gray(lr_image)
  values = np.array([measure(gray, stretch_kernel(kernel, f))
                     for f in factors])
  logs = np.log(np.asarray(factors, np.float64))
  best = int(np.argmin(values))
  best_log = logs[best]
  if 0 < best < len(factors) - 1:
    x, y = logs[best - 1:best + 2], values[best - 1:best + 2]
    curve = np.polyfit(x, y, 2)
    if curve[0] > 0:
      best_log = float(np.clip(-curve[1] / (2 * curve[0]), x[0], x[2]))
  here = values[list(factors).index(1.0)]
  return {'excess': float(np.log(here / values[best])),
          'best_width': float(best_log)}


@functools.cache
def default_prior() -> "prior_lib.Prior":
  """The shipped x2 prior, read once."""
  from kernelgan_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top  # Slow.
  return prior_lib.load_prior()


@jax.jit
def _mean_nll(prior: "prior_lib.Prior", kernel: Float[Array, 'k k'],
              key: jax.Array, samples: jax.Array) -> Float[Array, '']:
  from kernelgan_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top
  keys = jax.random.split(key, samples.shape[0])
  batch = jnp.broadcast_to(kernel, samples.shape + kernel.shape)
  log_probs = jax.vmap(lambda k, key: prior_lib.log_prob(prior, k, key))(
      batch, keys)
  return -jnp.mean(log_probs)


def prior_nll(kernel: np.ndarray, prior: Optional["prior_lib.Prior"] = None,
              samples: int = NLL_SAMPLES, seed: int = 0) -> float:
  """FKP's prior's negative log-likelihood of a kernel, in nats.

  The kernel is brought to the prior's 11x11 grid (`to_prior_grid`) and
  its NLL averaged over `samples` draws of the training's dequantisation
  noise (single draws scatter by hundreds of nats).

  Args:
    kernel: (k, k) x2 kernel.
    prior: the prior; the shipped one when None.
    samples: noise draws averaged.
    seed: the draws' key.

  Returns:
    The mean NLL; lower is more plausible.
  """
  from kernelgan_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top
  prior = default_prior() if prior is None else prior
  grid = jnp.asarray(prior_lib.to_prior_grid(np.asarray(kernel)),
                     jnp.float32)
  return float(_mean_nll(prior, grid, jax.random.key(seed),
                         jnp.zeros((samples,))))


def kernel_moments(kernel: np.ndarray, far_radius: float = FAR_RADIUS
                   ) -> dict[str, float]:
  """Shape numbers of the kernel itself (clipped at 0, normalised).

  Args:
    kernel: (k, k) kernel with a positive sum.
    far_radius: distance from the centre of mass beyond which mass is
      'far' (the DIV2KRK kernels live on an 11x11 canvas).

  Returns:
    'variance': the mean of the covariance's eigenvalues (px^2);
    'anisotropy': sqrt(largest / smallest eigenvalue) (>= 1);
    'far_mass': the share of mass farther than `far_radius` px.
  """
  kernel = np.clip(np.asarray(kernel, np.float64), 0.0, None)
  kernel = kernel / kernel.sum()
  com, covariance = kernel_lib.second_moments(kernel)
  small, large = np.linalg.eigvalsh(covariance)
  rows, cols = np.indices(kernel.shape, np.float64)
  d_row, d_col = rows - com[0], cols - com[1]
  return {'variance': float((small + large) / 2),
          'anisotropy': float(np.sqrt((max(large, 0.0) + 1e-12)
                                      / (max(small, 0.0) + 1e-12))),
          'far_mass': float(np.sum(kernel[np.hypot(d_row, d_col)
                                          > far_radius]))}


def history_features(history: dict[str, np.ndarray], tail: int = HISTORY_TAIL
                     ) -> dict[str, float]:
  """Summaries of an estimation's loss history (`KernelEstimate.history`).

  Args:
    history: per-iteration metrics; those present among
      'loss_discriminator', 'loss_adversarial' and 'loss_bicubic' are
      used.
    tail: how many last iterations are averaged.

  Returns:
    '<metric>_final': the metric's mean over the last `tail` iterations,
    for each metric present.
  """
  found = {}
  for name in ('loss_discriminator', 'loss_adversarial', 'loss_bicubic'):
    if name in history and len(history[name]):
      values = np.asarray(history[name], np.float64).reshape(-1)
      found[f'{name}_final'] = float(np.mean(values[-tail:]))
  return found


def agreement(kernel: np.ndarray, other: np.ndarray) -> float:
  """`metrics.kernel_error` between two estimates (0: they agree)."""
  return metrics.kernel_error(kernel, other)


@dataclasses.dataclass(frozen=True)
class ImageSide:
  """What `score` needs of the LR image alone, whatever the kernel: made by
  `image_side` while the kernel trains, so that little is left after."""
  gray: Float[np.ndarray, 'h w']
  recurrence: tuple[np.ndarray, np.ndarray, float]  # `_recurrence_queries`.
  recurrence_bicubic: float
  sharpness: float  # `edge_sharpness` of `gray`.


def image_side(lr_image: np.ndarray) -> ImageSide:
  """The LR image's part of `score` (its luma, tile and query patches, the
  bicubic kernel's `recurrence_error`, its `edge_sharpness`)."""
  gray = _as_gray(lr_image)
  recurrence = _recurrence_queries(gray, RECURRENCE_CROP, PATCH,
                                   RECURRENCE_QUERIES, TEXTURED_FRACTION, 0)
  [bicubic] = _recurrence_errors(recurrence, [metrics.bicubic_kernel_x2()])
  return ImageSide(gray, recurrence, bicubic, edge_sharpness(gray))


def score(lr_image: np.ndarray, estimate: Any,
          other_kernel: Optional[np.ndarray] = None,
          prior: Optional["prior_lib.Prior"] = None,
          side: Optional[ImageSide] = None) -> dict[str, float]:
  """Reliability numbers of one x2 estimate, for the JSON log.

  The headline, `HEADLINE` = 'recurrence_vs_bicubic', is
  log(`recurrence_error` with the estimate / with MATLAB's bicubic kernel):
  how much better the estimate explains the LR image's recurrence of
  patches across scales than plain bicubic downscaling does. Larger means
  trust less; above `WARN_ABOVE` (the estimate is not at least about 7 %
  better than bicubic) the kernel looks unreliable.

  Args:
    lr_image: (h, w[, c]) the LR image the kernel was estimated from
      (uint, or float in [0, 1]).
    estimate: a `KernelEstimate` (its `kernel_x2`, and its `history` when
      not empty), or an x2 kernel array.
    other_kernel: optionally another estimator's x2 kernel of the image
      ('agreement').
    prior: FKP's prior for 'prior_nll'; None skips it.
    side: `image_side(lr_image)` if computed already (the same result).

  Returns:
    Floats: 'recurrence_vs_bicubic' (the headline), 'recurrence',
    'recurrence_bicubic', 'sharpness_log_ratio' (< 0: the kernel looks too
    wide, > 0: too narrow; a diagnostic, lowered by image noise), the
    `kernel_moments`, the `history_features` when there is a history,
    'prior_nll' and 'agreement' when asked for, and 'unreliable' (1.0 when
    the headline is above `WARN_ABOVE`, else 0.0).
  """
  kernel = _kernel_of(estimate)
  side = image_side(lr_image) if side is None else side
  [recurrence] = _recurrence_errors(side.recurrence, [kernel])
  bicubic = side.recurrence_bicubic
  result = {'recurrence_vs_bicubic': float(np.log(recurrence / bicubic)),
            'recurrence': recurrence, 'recurrence_bicubic': bicubic,
            'sharpness_log_ratio': sharpness_mismatch(
                side.gray, kernel, lr_sharpness=side.sharpness)}
  result.update(kernel_moments(kernel))
  result.update(history_features(getattr(estimate, 'history', None) or {}))
  if prior is not None:
    result['prior_nll'] = prior_nll(kernel, prior)
  if other_kernel is not None:
    result['agreement'] = agreement(kernel, other_kernel)
  result['unreliable'] = float(result[HEADLINE] > WARN_ABOVE)
  return result
