"""The PyTorch reference of the original KernelGAN matches the spec.

Checks `benchmarks/torch_kernelgan.py` against the numbers of
`shared/spec/kernelgan.md` section 11. Skipped where torch is not installed.
"""

import pathlib
import sys

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

torch = pytest.importorskip("torch")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks import torch_kernelgan as tk  # noqa: E402


@pytest.fixture(scope="module")
def image():
  return tk.synthetic_image(96, seed=1)


def _random_generator(seed: int) -> "tk.Generator":
  """A float64 G with O(1) random weights (Xavier's ~1e-7 kernel is tiny)."""
  torch.manual_seed(seed)
  generator = tk.Generator().double()
  with torch.no_grad():
    for conv in generator.convs:
      fan_in = conv.weight[0].numel()
      conv.weight.normal_(0.0, fan_in**-0.5)
  return generator


def test_parameter_counts():
  gan = tk.KernelGAN(seed=0)
  assert tk.count_parameters(gan.generator) == 150_656
  assert tk.count_parameters(gan.discriminator) == 30_977
  state = gan.get_state()
  assert state["G/conv0/weight"].shape == (64, 1, 7, 7)
  assert state["G/conv5/weight"].shape == (1, 64, 1, 1)
  assert state["D/conv0/weight_orig"].shape == (64, 3, 7, 7)
  assert state["D/conv6/u"].shape == (1,)
  assert state["D/bn4/weight"].shape == (64,)


def test_initialisation_matches_spec():
  gan = tk.KernelGAN(seed=0)
  stds = [conv.weight.std().item() for conv in gan.generator.convs[:5]]
  expected = [0.0025059, 0.0025, 0.0041667, 0.0125, 0.0125]
  np.testing.assert_allclose(stds, expected, rtol=0.15)
  kernel = tk.calc_curr_k(gan.generator).detach().numpy()
  assert kernel.shape == (13, 13)
  assert np.abs(kernel).max() < 1e-5
  for conv in gan.discriminator.convs:
    bound = conv.weight_orig[0].numel()**-0.5
    assert conv.weight_orig.abs().max().item() <= bound
    assert conv.weight_orig.abs().max().item() > 0.9 * bound
    assert conv.bias.abs().max().item() == 0.0
    np.testing.assert_allclose(conv.weight_u.norm().item(), 1.0, rtol=1e-6)
  for norm in gan.discriminator.norms:
    assert abs(norm.weight.mean().item() - 1.0) < 0.02
    assert norm.bias.abs().max().item() == 0.0


def test_generator_is_one_kernel_then_subsampling():
  generator = _random_generator(seed=3)
  kernel = tk.calc_curr_k(generator).detach().numpy()
  rng = np.random.RandomState(0)
  crop = rng.uniform(-1, 1, (1, 3, 64, 64))
  out = generator(torch.from_numpy(crop)).detach().numpy()
  assert out.shape == (1, 3, 26, 26)
  for c in range(3):
    expected = scipy.signal.correlate2d(crop[0, c], kernel, "valid")[::2, ::2]
    np.testing.assert_allclose(out[0, c], expected, atol=1e-10)


def test_discriminator_output_shape_and_range():
  gan = tk.KernelGAN(seed=0)
  out = gan.discriminator(torch.rand(1, 3, 26, 26) * 2 - 1)
  assert out.shape == (1, 1, 20, 20)
  assert 0.0 < out.min().item() and out.max().item() < 1.0


def test_penalty_mask_numbers():
  mask = tk.penalty_mask()
  np.testing.assert_allclose(mask.sum(), 303.53, atol=5e-3)
  np.testing.assert_allclose(mask[0, 0], 5.756, atol=5e-4)
  np.testing.assert_allclose(mask[0, 6], 3.031, atol=5e-4)
  np.testing.assert_allclose(mask[1, 6], 2.139, atol=5e-4)
  np.testing.assert_allclose(mask[1, 1], 4.125, atol=5e-4)
  assert np.count_nonzero(mask) == 88
  assert not mask[2:11, 2:11].any()


def test_bicubic_kernel_constants():
  kernel = tk.bicubic_kernel_2d()
  np.testing.assert_allclose(kernel.sum(), 1.0)
  np.testing.assert_allclose(kernel[3, 3], 0.18800354, atol=1e-8)


def test_downscale_loss_sums_colour_channels():
  rng = np.random.RandomState(0)
  crop = rng.uniform(-1, 1, (1, 3, 64, 64))
  bicubic = tk.bicubic_kernel_2d()
  weight = torch.from_numpy(bicubic).expand(3, 3, 8, 8).contiguous()
  zeros = torch.zeros(1, 3, 26, 26, dtype=torch.float64)
  loss = tk.downscale_loss(torch.from_numpy(crop), zeros, weight).item()
  padded = np.pad(crop[0], ((0, 0), (3, 3), (3, 3)))
  per_channel = [scipy.signal.correlate2d(p, bicubic, "valid")[::2, ::2]
                 for p in padded]
  summed = np.sum(per_channel, axis=0)[3:29, 3:29]
  np.testing.assert_allclose(loss, np.mean(summed**2), rtol=1e-10)


def test_regularisers_on_a_centred_delta():
  kernel = torch.zeros(13, 13, dtype=torch.float64)
  kernel[6:8, 6:8] = 0.25  # Centre of mass (6.5, 6.5), sum 1.
  mask = torch.from_numpy(tk.penalty_mask())
  assert tk.sum2one_loss(kernel).item() == 0.0
  assert tk.boundaries_loss(kernel, mask).item() == 0.0
  assert tk.centralized_loss(kernel).item() == 0.0
  np.testing.assert_allclose(tk.sparsity_loss(kernel).item(),
                             4 * 0.25**0.2 / 169)
  kernel = torch.roll(kernel, shifts=(1, -2), dims=(0, 1))
  np.testing.assert_allclose(tk.centralized_loss(kernel).item(),
                             0.5 * (1.0 + 4.0))
  kernel[0, 0] = 0.5
  np.testing.assert_allclose(tk.sum2one_loss(kernel).item(), 0.5)
  np.testing.assert_allclose(tk.boundaries_loss(kernel, mask).item(),
                             0.5 * mask[0, 0].item() / 169)


def _learner_trace(flag_iteration: int, iters: int = 3000):
  learner = tk.Learner()
  trace = []
  for i in range(iters):
    below = flag_iteration - 2 <= i
    learner.update(i, 0.1 if below else 1.0)
    trace.append((learner.lambda_bicubic, learner.lambda_centralized,
                  learner.lambda_sparse, learner.lr_scale,
                  learner.similar_to_bicubic))
  return trace


def test_learner_schedule():
  trace = _learner_trace(flag_iteration=50)
  assert not trace[49][4] and trace[50][4]
  changes = [i for i in range(1, len(trace))
             if trace[i][0] != trace[i - 1][0]]
  assert changes == [200, 400, 600]
  np.testing.assert_allclose([trace[i][0] for i in changes],
                             [0.05, 5e-4, 5e-6])
  assert trace[399][1:3] == (0.0, 0.0)
  assert trace[400][1:3] == (1.0, 5.0)
  assert trace[2999][0] == 5e-6
  lr_changes = [i for i in range(1, len(trace))
                if trace[i][3] != trace[i - 1][3]]
  assert lr_changes == [750, 1500, 2250]
  np.testing.assert_allclose(trace[2999][3], 1e-3)


def test_learner_streak_resets_and_ignores_iteration_zero():
  learner = tk.Learner()
  for i, loss in enumerate([0.1, 0.1, 0.1, 0.5, 0.1, 0.1]):
    learner.update(i, loss)
  assert not learner.similar_to_bicubic and learner.bic_loss_counter == 2
  learner.update(6, 0.1)
  assert learner.similar_to_bicubic
  never = _learner_trace(flag_iteration=10**6, iters=1000)
  assert never[-1][:3] == (5.0, 0.0, 0.0)


def test_crop_corners_are_even_and_inside(image):
  g_corners, d_corners = tk.draw_crop_corners(image, 200, seed=0)
  assert g_corners.shape == d_corners.shape == (200, 2)
  for corners, size in ((g_corners, 64), (d_corners, 26)):
    assert (corners % 2 == 0).all() and (corners >= 0).all()
    assert (corners + size <= np.array(image.shape[:2])).all()
  g_map, d_map = tk.crop_probability_maps(image)
  np.testing.assert_allclose([g_map.sum(), d_map.sum()], [1.0, 1.0])
  d_map = d_map.reshape(image.shape[:2])
  assert not d_map[:13].any() and not d_map[:, -13:].any()


def test_imresize_half_preserves_constants_and_shape(image):
  small = tk.imresize_half(image)
  assert small.shape == (48, 48, 3)
  np.testing.assert_allclose(tk.imresize_half(np.full((10, 12, 3), 0.3)),
                             0.3)


def test_post_processing_and_x4():
  kernel = np.zeros((13, 13), np.float32)
  kernel[5:8, 4:9] = np.outer([1, 2, 1], [1, 2, 3, 2, 1])
  kernel += np.random.RandomState(0).normal(0, 1e-3, kernel.shape)
  k2 = tk.post_process_kernel(kernel)
  assert k2.dtype == np.float32 and k2.shape[0] % 2 == 1
  centre = k2.shape[0] // 2 + 0.5
  np.testing.assert_allclose(scipy.ndimage.center_of_mass(k2),
                             [centre, centre], atol=0.05)
  np.testing.assert_allclose(k2.sum(), 1.0, atol=1e-2)
  k4 = tk.analytic_kernel(k2)
  assert k4.shape == (2 * k2.shape[0] - 1,) * 2
  np.testing.assert_allclose(k4.sum(), 1.0)
  centre4 = k4.shape[0] // 2 + 1.5
  np.testing.assert_allclose(scipy.ndimage.center_of_mass(k4),
                             [centre4, centre4], atol=0.1)


def test_state_round_trip_reproduces_outputs():
  source, target = tk.KernelGAN(seed=0), tk.KernelGAN(seed=1)
  target.set_state(source.get_state())
  for key, value in source.get_state().items():
    np.testing.assert_array_equal(target.get_state()[key], value, key)
  x = torch.rand(1, 3, 64, 64) * 2 - 1
  np.testing.assert_array_equal(
      source.discriminator(source.generator(x)).detach().numpy(),
      target.discriminator(target.generator(x)).detach().numpy())
  with pytest.raises(KeyError):
    target.set_state({})


def test_short_run_gives_finite_losses(image):
  g_corners, d_corners = tk.draw_crop_corners(image, 5, seed=0)
  result = tk.run(image, g_corners, d_corners, iters=5, seed=0)
  for name in tk.LOSS_NAMES:
    assert result[name].shape == (5,)
    assert np.isfinite(result[name]).all(), name
  assert result["raw_kernel"].shape == (13, 13)
  assert np.isfinite(result["kernel_x2"]).all()
  np.testing.assert_allclose(result["lr"], 2e-4)
  np.testing.assert_allclose(result["lambda_bicubic"], 5.0)
  np.testing.assert_allclose(result["d_total"],
                             0.5 * (result["d_real"] + result["d_fake"]),
                             rtol=1e-6)


def test_noise_free_runs_are_deterministic(image):
  g_corners, d_corners = tk.draw_crop_corners(image, 2, seed=0)
  runs = [tk.run(image, g_corners, d_corners, seed=seed, real_noise_std=0,
                 fake_noise_std=0) for seed in (0, 0)]
  np.testing.assert_array_equal(runs[0]["raw_kernel"], runs[1]["raw_kernel"])
  np.testing.assert_array_equal(runs[0]["g_total"], runs[1]["g_total"])
