"""Combining the kernels of several seeds of one image (a seed ensemble).

KernelGAN (Bell-Kligler et al., NeurIPS 2019) is a GAN: runs from different
seeds end at somewhat different kernels. With N seeds per image (cheap under
`jax.vmap`, see `batch`) the x2 kernels can be combined. A kernel's position
is arbitrary up to the centre-of-mass convention, so every kernel is first
padded to a common odd size and spline-shifted so that its centre of mass
sits where `kernel.post_process` puts it; then

* 'median': the tap-wise median (robust to one bad seed),
* 'mean': the tap-wise mean,
* 'medoid': the member kernel with the least summed distance
  (`metrics.kernel_error`) to the others, i.e. the consensus seed,

each renormalised to sum 1 and re-centred.
"""

import dataclasses
from typing import Sequence

import numpy as np

from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics
from kernelgan_jax.kernel import KernelEstimate

METHODS = ("median", "mean", "medoid")
SCALE = 2


def pad_to(kernel: np.ndarray, size: int) -> np.ndarray:
  """Zero-pads a kernel to size x size (odd) keeping its origin.

  The origin (index k // 2 on each axis, `degradation`'s convention) lands
  on the canvas centre, so the padded kernel degrades an image exactly as
  the kernel does; an odd square kernel is padded symmetrically.
  """
  kernel = np.asarray(kernel, np.float64)
  widths = [(size // 2 - k // 2, size - k - (size // 2 - k // 2))
            for k in kernel.shape]
  if min(min(w) for w in widths) < 0:
    raise ValueError(f"kernel {kernel.shape} larger than {size}x{size}")
  return np.pad(kernel, widths)


def recentre(kernel: np.ndarray) -> np.ndarray:
  """Shifts the centre of mass to its target, then normalises to sum 1."""
  shifted = kernel_lib.shift_center_of_mass(
      kernel, kernel_lib.center_of_mass_target(kernel.shape[0], SCALE))
  return shifted / shifted.sum()


def aligned(kernels: Sequence[np.ndarray]) -> np.ndarray:
  """(n, s, s): the kernels on one canvas, centres of mass at the target."""
  size = max(k.shape[0] for k in kernels)
  return np.stack([recentre(pad_to(k, size)) for k in kernels])


def medoid_index(kernels: Sequence[np.ndarray]) -> int:
  """Index of the kernel with the least summed `kernel_error` to the rest."""
  n = len(kernels)
  distances = np.zeros((n, n))
  for i in range(n):
    for j in range(i + 1, n):
      distances[i, j] = distances[j, i] = metrics.kernel_error(kernels[i],
                                                               kernels[j])
  return int(np.argmin(distances.sum(axis=1)))


def combine(kernels: Sequence[np.ndarray], method: str = "median"
            ) -> np.ndarray:
  """One x2 kernel from several seeds' x2 kernels.

  Args:
    kernels: post-processed x2 kernels (odd squares, any sizes).
    method: 'median', 'mean' or 'medoid'.

  Returns:
    float32 (s, s) kernel summing to 1, s the largest input size, its
    centre of mass at `kernel.center_of_mass_target(s, 2)`.
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if not kernels:
    raise ValueError("no kernels to combine")
  stack = aligned(kernels)
  if method == "medoid":
    combined = stack[medoid_index(kernels)]
  elif method == "median":
    combined = np.median(stack, axis=0)
  else:
    combined = stack.mean(axis=0)
  return recentre(combined).astype(np.float32)


def combine_estimates(estimates: Sequence[KernelEstimate],
                      method: str = "median") -> KernelEstimate:
  """The ensemble's `KernelEstimate`: combined x2 and x4 kernels.

  The raw kernel, history and seed are those of the medoid seed; with one
  estimate it is returned unchanged.

  Args:
    estimates: one image's estimates, one per seed.
    method: see `combine`.

  Returns:
    A `KernelEstimate`.
  """
  if len(estimates) == 1:
    return estimates[0]
  kernels = [e.kernel_x2 for e in estimates]
  kernel_x2 = combine(kernels, method)
  representative = estimates[medoid_index(kernels)]
  return dataclasses.replace(
      representative, kernel_x2=kernel_x2,
      kernel_x4=kernel_lib.analytic_kernel_x4(kernel_x2.astype(np.float64)))


def ensemble_log(estimates: Sequence[KernelEstimate], method: str) -> dict:
  """JSON-able record of an ensemble: method, seeds, every seed's kernel."""
  return {"ensemble_method": method,
          "ensemble_seeds": [e.seed for e in estimates],
          "ensemble_kernels_x2": [e.kernel_x2.tolist() for e in estimates]}
