"""benchmarks/zssr_eval.py: its tables, cache names and true-kernel run."""

import numpy as np
import pytest

from benchmarks import zssr_eval
from kernelgan_jax.config import Config


def test_markdown_shows_plain_and_aligned_tables():
  def scores(psnr, **extra):
    return dict(psnr=psnr, ssim=0.5, **extra)
  row = {"name": "cat", "lr_shape": [10, 12, 3], "kernelgan_kernel_error": 0.1,
         "bicubic": dict(scores(20.0), seconds=1.0, aligned=scores(
             21.0, shift_row=0.5, shift_col=-0.25))}
  meta = {"methods": ["bicubic"], "scale": 2, "max_shift": 2.0,
          "skipped": [], "set": "s", "preset": "fast", "zssr_max_iters": 9,
          "zssr_crop": 64, "kernelgan_iters": 3, "seed": 0, "device": "cpu",
          "date": "today"}
  text = zssr_eval.markdown([row], meta)
  assert "| cat | 12x10 | 20.00 / 0.5000 | 0.100 | 1 |" in text
  assert "| cat | 12x10 | 21.00 / 0.5000 | 0.100 | 1 |" in text
  assert "border shaved 4 px" in text
  assert "cat: bicubic (+0.50, -0.25)" in text
  assert "KernelGAN 3 iterations" in text
  chosen = zssr_eval.markdown(
      [dict(row, selected="fkp_lite")],
      dict(meta, kernels="k.npz", estimator="select"))
  assert "| cat (fkp_lite) | 12x10 | 20.00 / 0.5000 |" in chosen
  assert "select's kernel from k.npz" in chosen
  assert "KernelGAN 3 iterations" not in chosen  # The file's, not a run's.


def test_markdown_has_a_gap_column_with_all_three_zssr_rows():
  psnrs = {"bicubic": 29.0, "zssr_bicubic": 30.0, "zssr_kernelgan": 31.0,
           "zssr_true": 34.0}
  scores = lambda p: dict(psnr=p, ssim=0.5, shift_row=0.0, shift_col=0.0)
  rows = [{"name": "cat", "lr_shape": [10, 12, 3],
           **{m: dict(scores(p), seconds=1.0, aligned=scores(p + 1.0))
              for m, p in psnrs.items()}}]
  meta = {"methods": list(psnrs), "scale": 2, "max_shift": 2.0,
          "skipped": [], "set": "s", "preset": "fast", "zssr_max_iters": 9,
          "zssr_crop": 64, "kernelgan_iters": 3, "seed": 0, "device": "cpu",
          "date": "today"}
  text = zssr_eval.markdown(rows, meta)
  assert "seed 0, cpu," in text
  assert "| KernelGAN closes |" in text
  assert "| 31.00 / 0.5000 | 34.00 / 0.5000 | 25% | nan | 4 |" in text
  assert "| **mean** | | 29.00 / 0.5000 | 30.00 / 0.5000 | 31.00 / 0.5000 " \
         "| 34.00 / 0.5000 | 25% | | |" in text
  ensemble_text = zssr_eval.markdown(
      rows, dict(meta, kernelgan_seeds=3, ensemble_method="median"))
  assert "seed 0 (KernelGAN: median of the x2 kernels of seeds 0..2)" \
      in ensemble_text


def test_a_seed_ensemble_caches_apart_from_the_single_seed():
  single = zssr_eval.kernelgan_suffix(1, "median")
  ensemble = zssr_eval.kernelgan_suffix(3, "median")
  assert single == ""
  assert len({zssr_eval.kernelgan_kernel_path("d/cat", s)
              for s in (single, ensemble,
                        zssr_eval.kernelgan_suffix(3, "mean"))}) == 3


def _second_moment(kernel: np.ndarray) -> float:
  kernel = kernel / kernel.sum()
  rows, cols = np.mgrid[:kernel.shape[0], :kernel.shape[1]]
  centre_row, centre_col = (kernel * rows).sum(), (kernel * cols).sum()
  return float((kernel * ((rows - centre_row)**2
                          + (cols - centre_col)**2)).sum())


def test_post_processing_a_true_kernel_narrows_a_wide_one():
  rows, cols = np.mgrid[-5:6, -5:6]
  wide = np.exp(-(rows**2 + cols**2) / 8.0)  # sigma 2, cut at 11x11
  wide /= wide.sum()
  processed = zssr_eval.post_processed_as_raw(wide, Config())
  # Padded to the raw 13x13, shifted half a pixel (pad 2): 17x17.
  assert processed.shape == (17, 17)
  assert processed.sum() == pytest.approx(1.0, abs=1e-3)
  # The soft threshold (0.75 x the 41st largest tap, subtracted) cuts the
  # tails: the second moment falls to about 0.55 of the truth's.
  ratio = _second_moment(processed) / _second_moment(wide)
  assert 0.5 < ratio < 0.6


def test_a_baseline_row_is_reused_only_for_the_same_lr_image():
  rng = np.random.default_rng(0)
  hr = rng.random((24, 28, 3))
  lr = hr[::2, ::2]
  other = np.clip(lr + 0.01, 0, 1)  # Another set's LR: same name and size.
  row = {"lr_shape": list(lr.shape), "lr_digest": zssr_eval.lr_digest(lr)}
  assert zssr_eval.same_lr(row, lr, hr, 2)
  assert not zssr_eval.same_lr(row, other, hr, 2)
  # Rows written when sets were read as float32 match the float64 reading.
  assert zssr_eval.same_lr({"lr_shape": list(lr.shape),
                            "lr_digest": zssr_eval.lr_digest(
                                lr.astype(np.float32))}, lr, hr, 2)
  bicubic = zssr_eval.sr_metrics.y_psnr_ssim(
      hr, np.asarray(zssr_eval.imresize(lr, 2.0)), 2)
  legacy = {"lr_shape": list(lr.shape), "bicubic": bicubic}  # No digest.
  assert zssr_eval.same_lr(legacy, lr, hr, 2)
  assert not zssr_eval.same_lr(legacy, other, hr, 2)
  assert not zssr_eval.same_lr({"lr_shape": list(lr.shape)}, lr, hr, 2)


def test_an_image_without_a_kernel_in_the_file_is_missing(tmp_path):
  path = tmp_path / "k.npz"
  np.savez(path, **{"kernelgan/cat/0/kernel_x2": np.ones((3, 3)),
                    "fkp_lite/dog/0/kernel_x2": np.ones((3, 3))})
  assert not zssr_eval.missing_kernel(path, "cat", 0, "kernelgan")
  assert zssr_eval.missing_kernel(path, "cat", 1, "kernelgan")
  assert zssr_eval.missing_kernel(path, "dog", 0, "kernelgan")
  assert zssr_eval.missing_kernel(path, "cat", 0, "select")  # Needs both.
