"""Combining seeds' kernels: alignment, robustness, the estimate wrapper."""

import numpy as np
import pytest
from scipy import ndimage

from kernelgan_jax import ensemble
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics
from kernelgan_jax.kernel import KernelEstimate


def gaussian(size, sigma_r, sigma_c, centre):
  rows, cols = np.mgrid[:size, :size]
  k = np.exp(-0.5 * (((rows - centre[0]) / sigma_r) ** 2
                     + ((cols - centre[1]) / sigma_c) ** 2))
  return k / k.sum()


def estimate(kernel, seed):
  return KernelEstimate(kernel_x2=kernel.astype(np.float32),
                        kernel_x4=kernel_lib.analytic_kernel_x4(kernel),
                        raw_kernel=np.zeros((13, 13)), history={}, seed=seed)


@pytest.mark.parametrize("method", ensemble.METHODS)
def test_identical_kernels_shifted_combine_to_the_kernel(method):
  base = gaussian(17, 1.5, 2.5, (8.5, 8.5))
  shifted = [ndimage.shift(base, (dr, dc), order=3)
             for dr, dc in ((0, 0), (0.7, -0.4), (-1.0, 0.3))]
  combined = ensemble.combine(shifted, method)
  assert combined.shape == (17, 17) and combined.dtype == np.float32
  assert combined.sum() == pytest.approx(1.0, abs=1e-6)
  target = kernel_lib.center_of_mass_target(17, 2)
  np.testing.assert_allclose(ndimage.center_of_mass(combined),
                             (target, target), atol=1e-3)
  assert metrics.kernel_error(combined, base) < 1e-2


def test_median_and_medoid_resist_one_outlier_seed():
  truth = gaussian(17, 1.2, 2.0, (8.5, 8.5))
  rng = np.random.default_rng(0)
  good = [truth * (1 + 0.05 * rng.standard_normal(truth.shape))
          for _ in range(3)]
  outlier = gaussian(17, 3.5, 0.6, (8.5, 8.5))
  kernels = good + [outlier]
  errors = {m: metrics.kernel_error(ensemble.combine(kernels, m), truth)
            for m in ensemble.METHODS}
  assert ensemble.medoid_index(kernels) in (0, 1, 2)
  assert errors["median"] < errors["mean"]
  assert errors["medoid"] < errors["mean"]
  assert errors["median"] < metrics.kernel_error(outlier, truth) / 3


def test_different_sizes_are_padded_to_the_largest():
  small = gaussian(15, 1.0, 1.0, (7.5, 7.5))
  large = gaussian(19, 1.0, 1.0, (9.5, 9.5))
  assert ensemble.combine([small, large], "mean").shape == (19, 19)


def test_combine_estimates_and_bad_method():
  kernels = [gaussian(17, s, s, (8.5, 8.5)) for s in (1.0, 1.2, 1.4)]
  estimates = [estimate(k, seed) for seed, k in enumerate(kernels)]
  combined = ensemble.combine_estimates(estimates, "median")
  assert combined.seed == 1  # The medoid represents the ensemble.
  np.testing.assert_array_equal(
      combined.kernel_x2,
      ensemble.combine([e.kernel_x2 for e in estimates], "median"))
  assert combined.kernel_x4.shape == (33, 33)
  assert ensemble.combine_estimates(estimates[:1]) is estimates[0]
  log = ensemble.ensemble_log(estimates, "median")
  assert log["ensemble_seeds"] == [0, 1, 2]
  with pytest.raises(ValueError, match="method"):
    ensemble.combine(kernels, "vote")
