"""Tests for kernelgan_jax.reliability."""

import os

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage

from kernelgan_jax import data as data_lib
from kernelgan_jax import div2krk
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics
from kernelgan_jax import prior as prior_lib
from kernelgan_jax import reliability
from kernelgan_jax.kernel import KernelEstimate

DATA_DIR = os.path.join(os.path.dirname(__file__), 'data')


@pytest.fixture(scope='module')
def example():
  """The shipped astronaut LR image (192x192, uint8) and its true kernel."""
  lr = iio.imread(os.path.join(DATA_DIR, 'example_lr.png'))
  kernel = np.load(os.path.join(DATA_DIR, 'example_kernel_x2.npy'))
  return lr, kernel


def _gaussian(size, sigma_r, sigma_c):
  rows, cols = np.mgrid[:size, :size] - size // 2
  kernel = np.exp(-0.5 * ((rows / sigma_r)**2 + (cols / sigma_c)**2))
  return kernel / kernel.sum()


# ------------------------------------------------- the image-based signals


@pytest.mark.parametrize('signal', [reliability.sharpness_mismatch,
                                    lambda *a: reliability.spectral_mismatch(
                                        *a)[0]])
def test_log_ratios_favour_the_true_width_and_give_its_direction(
    example, signal):
  lr, kernel = example
  truth = signal(lr, kernel)
  wider = signal(lr, reliability.stretch_kernel(kernel, 2.0))
  narrower = signal(lr, reliability.stretch_kernel(kernel, 0.5))
  assert abs(truth) < 0.15
  assert wider < -3 * abs(truth)  # Too wide: the down image is too soft.
  assert narrower > 3 * abs(truth)  # Too narrow: too sharp.


def test_log_ratios_are_monotone_in_the_width(example):
  lr, kernel = example
  factors = (0.6, 0.8, 1.0, 1.25, 1.6)
  for signal in (reliability.sharpness_mismatch,
                 lambda *a: reliability.spectral_mismatch(*a)[0]):
    values = [signal(lr, reliability.stretch_kernel(kernel, f))
              for f in factors]
    assert np.all(np.diff(values) < 0), values


def test_recurrence_error_is_least_near_the_true_kernel(example):
  lr, kernel = example
  truth = reliability.recurrence_error(lr, kernel)
  for factor in (0.5, 2.0):
    assert truth < 0.95 * reliability.recurrence_error(
        lr, reliability.stretch_kernel(kernel, factor))
  assert truth < reliability.recurrence_error(lr,
                                              metrics.bicubic_kernel_x2())
  assert 0.0 < truth < 1.0


def test_recurrence_errors_of_several_kernels_are_each_ones(example):
  lr, kernel = example
  kernels = [kernel, metrics.bicubic_kernel_x2(),
             reliability.stretch_kernel(kernel, 1.5)]
  assert reliability.recurrence_errors(lr, kernels) == [
      reliability.recurrence_error(lr, k) for k in kernels]


def test_recurrence_error_is_deterministic_and_scale_free(example):
  lr, kernel = example
  first = reliability.recurrence_error(lr, kernel)
  assert reliability.recurrence_error(lr, kernel) == first
  # Contrast-normalised; 3 x the kernel is the same kernel.
  gray = data_lib.luma(images.as_float_rgb(lr))
  np.testing.assert_allclose(
      reliability.recurrence_error(0.5 * gray, 3.0 * kernel), first,
      rtol=1e-4)


def test_width_scan_points_back_to_the_true_width(example):
  lr, kernel = example
  factors = (0.5, 0.7, 1.0, 1.4, 2.0)
  at_truth = reliability.width_scan(lr, kernel, factors=factors)
  too_wide = reliability.width_scan(
      lr, reliability.stretch_kernel(kernel, 2.0), factors=factors)
  assert at_truth['excess'] < too_wide['excess']
  assert abs(at_truth['best_width']) < 0.35
  assert too_wide['best_width'] < -0.35  # Asks for a narrower kernel.
  assert at_truth['excess'] >= 0.0


def test_width_scan_needs_factor_one(example):
  lr, kernel = example
  with pytest.raises(ValueError, match='1.0'):
    reliability.width_scan(lr, kernel, factors=(0.5, 2.0))


def test_band_power_ratios_fall_with_blur_per_direction():
  rng = np.random.default_rng(0)
  image = ndimage.gaussian_filter(rng.random((96, 128)), 0.7)
  sharp = reliability.band_power_ratios(image, sectors=2)
  # Blur along the columns only (horizontal frequencies) -> sector 0.
  blurred = reliability.band_power_ratios(
      ndimage.gaussian_filter1d(image, 1.5, axis=1), sectors=2)
  assert sharp.shape == (2,)
  assert blurred[0] < 0.3 * sharp[0]
  assert blurred[1] > 0.6 * sharp[1]
  assert reliability.band_power_ratios(image).shape == (1,)


def test_edge_sharpness_falls_with_blur():
  rng = np.random.default_rng(1)
  image = rng.random((64, 64))
  values = [reliability.edge_sharpness(ndimage.gaussian_filter(image, s))
            for s in (0.8, 1.5, 3.0)]
  assert values[0] > values[1] > values[2] > 0


def test_flat_and_tiny_images():
  flat = np.full((40, 40), 0.5)
  assert np.isnan(reliability.edge_sharpness(flat))
  assert np.isnan(reliability.band_power_ratios(flat)).all()
  assert np.isnan(reliability.recurrence_error(flat,
                                               metrics.bicubic_kernel_x2()))
  with pytest.raises(ValueError, match='too small'):
    reliability.edge_sharpness(np.zeros((9, 9)))
  with pytest.raises(ValueError, match='8 x 8'):
    reliability.band_power_ratios(np.zeros((6, 30)))
  with pytest.raises(ValueError, match='too small'):
    reliability.recurrence_error(np.random.default_rng(0).random((8, 8)),
                                 metrics.bicubic_kernel_x2())


def test_image_formats_agree(example):
  lr, kernel = example
  as_float = lr / 255.0
  gray = data_lib.luma(images.as_float_rgb(lr))
  assert gray.shape == lr.shape[:2] and gray.dtype == np.float64
  assert 0.0 <= gray.min() and gray.max() <= 1.0
  values = [reliability.sharpness_mismatch(image, kernel)
            for image in (lr, as_float, gray)]
  np.testing.assert_allclose(values, values[0], rtol=1e-4)
  gray_u8 = np.round(gray * 255).astype(np.uint8)
  assert data_lib.luma(images.as_float_rgb(gray_u8)).shape == gray.shape


# ---------------------------------------------------------------- kernels


def test_stretch_kernel_scales_the_width_about_the_centre():
  kernel = np.pad(_gaussian(15, 1.5, 2.0), ((0, 2), (1, 1)))  # Off-centre.
  moments = reliability.kernel_moments(kernel)
  for factor in (0.7, 1.0, 1.6):
    stretched = reliability.stretch_kernel(kernel, factor)
    assert stretched.shape[0] % 2 == 1 and stretched.shape[0] >= 15
    np.testing.assert_allclose(stretched.sum(), 1.0)
    assert stretched.min() >= 0.0
    # Same shape, only wider: the kernel error after alignment of the
    # stretched-back kernel is small.
    back = reliability.stretch_kernel(stretched, 1.0 / factor)
    assert metrics.kernel_error(back, kernel, relative=True) < 0.02
    np.testing.assert_allclose(
        reliability.kernel_moments(stretched)['variance'],
        factor**2 * moments['variance'], rtol=0.01)
  with pytest.raises(ValueError, match='positive'):
    reliability.stretch_kernel(kernel, 0.0)


def test_kernel_moments():
  moments = reliability.kernel_moments(_gaussian(21, 1.0, 2.0))
  np.testing.assert_allclose(moments['variance'], (1.0 + 4.0) / 2,
                             rtol=0.02)
  np.testing.assert_allclose(moments['anisotropy'], 2.0, rtol=0.02)
  assert 0.01 < moments['far_mass'] < 0.03  # Beyond 2.5 sigma.
  delta = np.zeros((13, 13))
  delta[6, 6] = 1.0
  assert reliability.kernel_moments(delta) == {
      'variance': 0.0, 'anisotropy': 1.0, 'far_mass': 0.0}
  split = np.zeros((17, 17))
  split[8, 8] = split[8, 16] = 1.0  # COM at column 12: both 4 px away.
  assert reliability.kernel_moments(split, far_radius=3.0)['far_mass'] == 1.0


def test_prior_nll_prefers_a_plausible_gaussian():
  prior = reliability.default_prior()
  assert reliability.default_prior() is prior  # Read once.
  gaussian = prior_lib.to_prior_grid(
      div2krk.anisotropic_gaussian(11, 2.0, 1.0, 0.5, 5.5))
  noise = np.random.default_rng(0).random((13, 13))
  plausible = reliability.prior_nll(gaussian, prior)
  assert plausible < reliability.prior_nll(noise, prior) - 100.0
  assert reliability.prior_nll(gaussian, prior) == plausible  # Seeded.
  assert np.isfinite(reliability.prior_nll(np.pad(gaussian, 3), prior))


def test_agreement_is_the_kernel_error():
  first, second = _gaussian(13, 1.0, 1.5), _gaussian(17, 2.0, 1.0)
  assert reliability.agreement(first, np.pad(first, 2)) < 1e-8
  assert reliability.agreement(first, second) == metrics.kernel_error(
      first, second)


def test_history_features_average_the_tail():
  history = {'loss_discriminator': np.arange(300.0),
             'loss_bicubic': np.ones(50), 'lambda_bicubic': np.zeros(300)}
  found = reliability.history_features(history, tail=100)
  assert found == {'loss_discriminator_final': 249.5,
                   'loss_bicubic_final': 1.0}
  assert reliability.history_features({}) == {}


# ------------------------------------------------------------------ score


def test_score_flags_far_too_wide_or_narrow_kernels_only(example):
  lr, kernel = example
  estimate = KernelEstimate(
      kernel_x2=kernel.astype(np.float32), kernel_x4=np.ones((21, 21)),
      raw_kernel=np.zeros((13, 13)),
      history={'loss_discriminator': np.full(200, 0.25)}, seed=0)
  good = reliability.score(lr, estimate)
  headline = reliability.HEADLINE
  assert good[headline] < reliability.WARN_ABOVE
  assert good['unreliable'] == 0.0
  for factor in (0.4, 2.5):
    bad = reliability.score(lr, reliability.stretch_kernel(kernel, factor))
    assert bad[headline] > reliability.WARN_ABOVE, factor
    assert bad['unreliable'] == 1.0
  too_wide = reliability.score(lr, reliability.stretch_kernel(kernel, 2.5))
  assert too_wide['sharpness_log_ratio'] < -0.5  # Says which way.
  np.testing.assert_allclose(
      good[headline],
      np.log(good['recurrence'] / good['recurrence_bicubic']))
  assert good['loss_discriminator_final'] == 0.25
  assert all(isinstance(v, float) for v in good.values())
  assert 'prior_nll' not in good and 'agreement' not in good


def test_score_from_the_image_side_computed_beforehand_is_the_same(example):
  lr, kernel = example
  side = reliability.image_side(lr)
  for k in (kernel, reliability.stretch_kernel(kernel, 1.5)):
    assert reliability.score(lr, k, side=side) == reliability.score(lr, k)
  assert side.recurrence_bicubic == reliability.recurrence_error(
      lr, metrics.bicubic_kernel_x2())
  # The image side is the image's: another image's gives another score.
  other = reliability.image_side(np.ascontiguousarray(lr[::-1, ::2]))
  assert (reliability.score(lr, kernel, side=other)
          != reliability.score(lr, kernel))


def test_score_optional_parts(example):
  lr, kernel = example
  found = reliability.score(lr, kernel, other_kernel=np.pad(kernel, 1),
                            prior=reliability.default_prior())
  assert found['agreement'] < 1e-8
  assert np.isfinite(found['prior_nll'])


def test_select_keeps_the_kernel_that_explains_the_image(example):
  lr, kernel = example
  make = lambda k: KernelEstimate(
      kernel_x2=np.asarray(k, np.float32), kernel_x4=np.ones((21, 21)),
      raw_kernel=np.zeros((13, 13)), history={}, seed=0)
  candidates = [make(reliability.stretch_kernel(kernel, 2.5)), make(kernel),
                make(reliability.stretch_kernel(kernel, 0.4))]
  assert reliability.select(lr, candidates) is candidates[1]
  assert reliability.select(lr, candidates[::-1]) is candidates[1]
  named = dict(zip(("wide", "true", "narrow"), candidates))
  assert reliability.select_name(lr, named) == "true"
  assert reliability.select_name(
      lr, {name: named[name] for name in reversed(named)}) == "true"


# ------------------------------------------------ the kernel ZSSR is given


def test_sr_width_factor_falls_from_one_to_the_narrowest_between_the_bounds():
  low, high = reliability.NARROW_FROM, reliability.WARN_ABOVE
  assert reliability.sr_width_factor(low - 0.1) == 1.0
  assert reliability.sr_width_factor(low) == 1.0
  assert reliability.sr_width_factor(high) == pytest.approx(
      reliability.NARROWEST)
  assert reliability.sr_width_factor(high + 0.5) == pytest.approx(
      reliability.NARROWEST)
  middle = np.linspace(low, high, 7)
  factors = [reliability.sr_width_factor(h) for h in middle]
  assert np.all(np.diff(factors) < 0)
  assert factors[3] == pytest.approx((1.0 + reliability.NARROWEST) / 2)


@pytest.mark.parametrize('headline,fallback,narrow,how', [
    (-0.3, True, True, 'estimate'),
    (-0.12, True, True, 'narrowed'),
    (-0.12, True, False, 'estimate'),
    (0.0, True, True, 'bicubic'),
    (0.0, False, True, 'narrowed'),
    (0.0, False, False, 'estimate'),
])
def test_sr_kernel_falls_back_narrows_or_keeps_the_estimate(
    headline, fallback, narrow, how):
  kernel = _gaussian(17, 1.6, 1.1)
  chosen, got, factor = reliability.sr_kernel(
      kernel, {reliability.HEADLINE: headline}, fallback=fallback,
      narrow=narrow)
  assert got == how
  assert reliability.sr_choice(headline, fallback=fallback,
                               narrow=narrow) == (how, factor)
  if how == 'bicubic':
    assert chosen is None and factor == 1.0
  elif how == 'estimate':
    np.testing.assert_array_equal(chosen, kernel)
    assert factor == 1.0
  else:
    assert factor == pytest.approx(reliability.sr_width_factor(headline))
    assert chosen.shape == kernel.shape and chosen.sum() == pytest.approx(1)
    assert chosen.min() >= 0
    com, covariance = kernel_lib.second_moments(chosen)
    com_before, covariance_before = kernel_lib.second_moments(kernel)
    np.testing.assert_allclose(com, com_before, atol=1e-6)
    # Narrowed along both axes by about the factor (the kernel's pixel
    # grid keeps it from exactly the factor).
    ratio = np.sqrt(np.diag(covariance) / np.diag(covariance_before))
    np.testing.assert_allclose(ratio, factor, atol=0.03)
