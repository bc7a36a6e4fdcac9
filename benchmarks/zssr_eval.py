r"""SR quality on a DIV2KRK-protocol set: bicubic vs ZSSR with three kernels.

  python -m benchmarks.zssr_eval --set_dir=/tmp/div2krk --num_images=8 \
      --preset=paper

Builds the set first if `--set_dir` holds none (scikit-image photographs,
`kernelgan_jax.div2krk`; with --x4 it also writes the x4 LR images). For every
image it reports PSNR and SSIM on the Y channel (ITU-R BT.601, as MATLAB's
rgb2ycbcr; `kernelgan_jax.sr_metrics`), the border shaved by the scale
factor, of
  - bicubic interpolation (MATLAB imresize),
  - ZSSR with the bicubic degradation (plain ZSSR, Shocher et al., CVPR 2018),
  - ZSSR with the kernel KernelGAN estimates (Bell-Kligler et al., NeurIPS
    2019), the paper's "KernelGAN + ZSSR",
  - ZSSR with the ground-truth kernel (the ceiling).
With --x4 the x4 LR images are used, the x4 kernels being the analytic x4 of
the x2 kernels (the DIV2KRK x4 images apply the x2 kernel twice). With
--kernelgan_seeds=N, KernelGAN's kernel is the seed ensemble's
(`kernelgan_jax.ensemble`; pass --reuse_sr to keep the other columns).
--only evaluates the named images alone (parallel processes, one each).
With --kernels (a file of `benchmarks/estimators.py`) and --estimator, the
estimated column uses that estimator's kernel of seed --seed instead of
running KernelGAN (--estimator=select: per image, the candidate
`reliability.select` keeps, reusing that candidate's runs); with --baseline
(an earlier run's JSON on the same set and settings), columns this run does not compute are taken from it, so one
estimator's column costs one ZSSR run per image; only for an image whose LR
image is the one the baseline saw (`same_lr`: a set made with other kernels
has the same names and sizes). Writes
benchmarks/results/zssr-<preset>-x<scale>[-<tag>]-<device>-<date>.{json,md}.
"""

import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax import commands
from kernelgan_jax import div2krk
from kernelgan_jax import ensemble
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics
from kernelgan_jax import reliability
from kernelgan_jax import sr_metrics
from kernelgan_jax.config import Config
from kernelgan_jax.config import get_config
from kernelgan_jax.images import ImageError
from kernelgan_jax.estimate import estimate_kernel
from kernelgan_jax.imresize import imresize
from kernelgan_jax.zssr import fast_cpu_config
from kernelgan_jax.zssr import super_resolve
from kernelgan_jax.zssr import ZSSRConfig

_SET_DIR = flags.DEFINE_string("set_dir", "/tmp/div2krk_sk", "Set folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Images to evaluate.")
_ONLY = flags.DEFINE_list(
    "only", [], "Evaluate only these images of the set (names), e.g. to "
    "run a set's images in parallel processes.")
_HR_SIZE = flags.DEFINE_integer("hr_size", None,
                                "Centre-crop HR photos when building a set.")
_X4 = flags.DEFINE_bool("x4", False, "Evaluate x4 (gradual ZSSR) instead.")
_PRESET = flags.DEFINE_enum("preset", "paper", ["paper", "fast"],
                            "ZSSR settings: the original's, or the CPU "
                            "preset (64 crops, 1000 iterations).")
_ZSSR_ITERS = flags.DEFINE_integer("zssr_iters", None,
                                   "Overrides the preset's max iterations.")
_KERNELGAN_ITERS = flags.DEFINE_integer("kernelgan_iters", 3000,
                                        "KernelGAN training iterations.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of KernelGAN and ZSSR.")
_KERNELGAN_SEEDS = flags.DEFINE_integer(
    "kernelgan_seeds", 1, "KernelGAN runs per image (seeds seed, seed+1, "
    "...), trained together; several are combined with --ensemble_method.",
    lower_bound=1)
_ENSEMBLE_METHOD = flags.DEFINE_enum(
    "ensemble_method", "median", list(ensemble.METHODS),
    "How several seeds' x2 kernels are combined (kernelgan_jax.ensemble).")
_METHODS = flags.DEFINE_list(
    "methods", ["bicubic", "zssr_bicubic", "zssr_kernelgan", "zssr_true"],
    "Which columns to compute; also zssr_true_post_processed: ZSSR with the "
    "true kernel put through the original's post-processing as if it were "
    "KernelGAN's raw kernel: what a perfect raw estimate would give.")
METHODS = ("bicubic", "zssr_bicubic", "zssr_kernelgan", "zssr_true",
           "zssr_true_post_processed")
flags.register_validator(
    "methods", lambda methods: set(methods) <= set(METHODS),
    f"--methods must be among {', '.join(METHODS)}.")
_OUT = flags.DEFINE_string("results_dir", "benchmarks/results",
                           "Where the JSON and markdown go.")
_REUSE = flags.DEFINE_bool(
    "reuse_sr", False, "Score the SR images a previous run saved in "
    "<set_dir>/SR/ instead of computing them again, and compute only the "
    "missing ones: this also resumes an interrupted run.")
_MAX_SHIFT = flags.DEFINE_float(
    "max_shift", 2.0, "Largest global shift (HR px) the aligned scores "
    "search, in steps of 1/4 px.", lower_bound=0.0)
_KERNELS = flags.DEFINE_string(
    "kernels", None, "Take the estimated kernels from this .npz "
    "(benchmarks/estimators.py) instead of running KernelGAN.")
_ESTIMATOR = flags.DEFINE_string(
    "estimator", "kernelgan", "With --kernels: whose kernels to use; "
    "'select' takes, per image, the candidate `reliability.select` keeps "
    "(the file must hold both of reliability.SELECT_FROM), and its SR files "
    "are that candidate's, so --reuse_sr reuses their runs.")
_BASELINE = flags.DEFINE_string(
    "baseline", None, "An earlier run's JSON on the same set and settings: "
    "the columns of --methods other than zssr_kernelgan come from it, for "
    "the images whose LR image is the same (`same_lr`).")
_TAG = flags.DEFINE_string(
    "tag", "", "Appended to the results' file names (e.g. the set's name), "
    "so runs on different sets on one day do not overwrite each other.")


def lr_digest(lr: np.ndarray) -> str:
  """A fingerprint of an LR image's pixels (rows keep it), of their float32
  values as sets were read before 2026-12-01, so older rows still match."""
  return hashlib.sha256(np.ascontiguousarray(lr, np.float32).tobytes()
                        ).hexdigest()[:16]


def same_lr(old: dict, lr: np.ndarray, hr: np.ndarray, scale: int) -> bool:
  """Whether a baseline row was computed on this LR image: by its
  `lr_digest`, or for a row from before digests, by its bicubic column
  (bicubic interpolation of this LR must score the same PSNR)."""
  if "lr_digest" in old:
    return old["lr_digest"] == lr_digest(lr)
  if "bicubic" not in old or old.get("lr_shape") != list(lr.shape):
    return False
  psnr = sr_metrics.y_psnr_ssim(hr, np.asarray(imresize(lr, float(scale))),
                                scale)["psnr"]
  return abs(psnr - old["bicubic"]["psnr"]) < 1e-6


def zssr_config() -> ZSSRConfig:
  config = fast_cpu_config() if _PRESET.value == "fast" else ZSSRConfig()
  if _ZSSR_ITERS.value:
    config = dataclasses.replace(config, max_iters=_ZSSR_ITERS.value)
  return config


def run_or_load(path: str, compute) -> tuple[np.ndarray, float]:
  """compute()'s image and run time (s), saved to `path` (.npz, in an
  existing folder); with --reuse_sr, what an earlier run saved there.
  """
  if _REUSE.value and os.path.exists(path):
    saved = np.load(path)
    return saved["image"], float(saved["seconds"])
  start = time.perf_counter()
  image = np.asarray(compute(), np.float32)
  seconds = time.perf_counter() - start
  machine.write_atomically(  # No half-written cache.
      path, lambda f: np.savez(f, image=image, seconds=seconds), binary=True)
  return image, seconds


def kernelgan_config() -> Config:
  """The settings KernelGAN runs with here."""
  return get_config(max_iters=_KERNELGAN_ITERS.value)


def post_processed_as_raw(kernel: np.ndarray, config: Config) -> np.ndarray:
  """`kernel.post_process` of an odd kernel, zero-padded to the raw kernel's
  size (`config.g_kernel_size`) first if smaller: what becomes of it in
  KernelGAN's output, as `estimate` post-processes.
  """
  pad = max(0, (config.g_kernel_size - kernel.shape[0]) // 2)
  return kernel_lib.post_process(np.pad(kernel, pad), config.n_filtering)


def kernelgan_suffix(seeds: int, method: str) -> str:
  """Tells a seed ensemble's cached files from the single seed's."""
  return "" if seeds == 1 else f"-seeds{seeds}-{method}"


def kernelgan_kernel_path(save_prefix: str, suffix: str = "") -> str:
  """Where `super_resolve_all` keeps KernelGAN's x2 kernel."""
  return f"{save_prefix}_kernelgan_x2{suffix}.npy"


def missing_kernel(path: str, name: str, seed: int, estimator: str) -> bool:
  """Whether the kernels file lacks what `estimator` needs for image `name`
  (benchmarks/estimators.py skips images too small to estimate)."""
  needed = reliability.SELECT_FROM if estimator == "select" else (estimator,)
  with np.load(path) as kernels:
    return any(f"{e}/{name}/{seed}/kernel_x2" not in kernels.files
               for e in needed)


def selected_estimator(lr: np.ndarray, name: str, seed: int) -> str:
  """Which of `reliability.SELECT_FROM` `estimator='select'` keeps for image
  `name`, of the --kernels file's kernels of `seed`."""
  with np.load(_KERNELS.value) as kernels:
    candidates = {e: kernels[f"{e}/{name}/{seed}/kernel_x2"]
                  for e in reliability.SELECT_FROM}
  return reliability.select_name(lr, candidates)


def kernelgan_x2(lr: np.ndarray, seed: int, seeds: int, method: str,
                 name: str, estimator: str) -> np.ndarray:
  """KernelGAN's x2 kernel of `lr`: one seed's, or `seeds` seeds (trained
  together under vmap) combined with `method` (`ensemble.combine`); with
  --kernels, `estimator`'s kernel of image `name` in that file.
  """
  if _KERNELS.value:
    with np.load(_KERNELS.value) as kernels:
      return kernels[f"{estimator}/{name}/{seed}/kernel_x2"]
  config = kernelgan_config()
  if seeds == 1:
    return estimate_kernel(lr, config, seed=seed).kernel_x2
  [estimates] = batch.estimate_kernels([lr], config,
                                       range(seed, seed + seeds))
  return ensemble.combine_estimates(estimates, method).kernel_x2


def super_resolve_all(lr: np.ndarray, true_x2: np.ndarray, scale: int,
                      config: ZSSRConfig, save_prefix: str, suffix: str,
                      methods: Sequence[str], estimator: str = "kernelgan"
                      ) -> dict[str, tuple[np.ndarray, float]]:
  """Each requested method's SR image of `lr` and its run time (s), saved
  as `<save_prefix>_<method>.npz` (and KernelGAN's x2 kernel at
  `kernelgan_kernel_path`); KernelGAN's files carry `suffix`
  (`kernelgan_suffix`); with --kernels, the estimated column is
  `estimator`'s kernel.
  """
  x4 = scale == 4
  seed = _SEED.value

  def zssr(kernel_x2):
    kernel_x4 = None
    if x4 and kernel_x2 is not None:
      kernel_x4 = kernel_lib.analytic_kernel_x4(np.asarray(kernel_x2,
                                                           np.float64))
    return super_resolve(lr, kernel_x2, x4=x4, kernel_x4=kernel_x4,
                         config=config, seed=seed)

  def zssr_kernelgan():
    kernel_x2 = kernelgan_x2(lr, seed, _KERNELGAN_SEEDS.value,
                             _ENSEMBLE_METHOD.value,
                             os.path.basename(save_prefix), estimator)
    np.save(kernelgan_kernel_path(save_prefix, suffix), kernel_x2)
    return zssr(kernel_x2)

  runs = {
      "bicubic": lambda: np.asarray(imresize(lr, float(scale))),
      "zssr_bicubic": lambda: zssr(None),
      "zssr_kernelgan": zssr_kernelgan,
      "zssr_true": lambda: zssr(true_x2),
      "zssr_true_post_processed": lambda: zssr(
          post_processed_as_raw(true_x2, kernelgan_config())),
  }
  file_suffix = lambda m: suffix if m == "zssr_kernelgan" else ""
  return {method: run_or_load(f"{save_prefix}_{method}{file_suffix(method)}"
                              ".npz", runs[method])
          for method in methods}


def _table(rows: list[dict], methods: list[str], scores) -> list[str]:
  """Rows of PSNR / SSIM cells, `scores(row[method])` giving the dict; with
  all of `sr_metrics.GAP_METHODS`, a column of `sr_metrics.gap_closed`.
  """
  with_gap = all(m in methods for m in sr_metrics.GAP_METHODS)
  def gap(psnr: dict[str, float]) -> str:
    if not with_gap:
      return ""
    closed = sr_metrics.gap_closed(psnr)
    return " | no gap" if math.isnan(closed) else f" | {closed:.0%}"
  lines = ["| image | LR size | " + " | ".join(methods)
           + (" | KernelGAN closes" if with_gap else "")
           + " | KernelGAN kernel error | seconds |",
           "|---|---|" + "---|" * (len(methods) + with_gap) + "---|---|"]
  cell = lambda m: f"{m['psnr']:.2f} / {m['ssim']:.4f}"
  for r in rows:
    seconds = sum(r[m]["seconds"] for m in methods)
    kept = f" ({r['selected']})" if "selected" in r else ""
    lines.append(
        f"| {r['name']}{kept} | {r['lr_shape'][1]}x{r['lr_shape'][0]} | "
        + " | ".join(cell(scores(r[m])) for m in methods)
        + gap({m: scores(r[m])["psnr"] for m in methods})
        + f" | {r.get('kernelgan_kernel_error', float('nan')):.3f}"
        + f" | {seconds:.0f} |")
  mean = {m: {k: float(np.mean([scores(r[m])[k] for r in rows]))
              for k in ("psnr", "ssim")} for m in methods}
  lines.append("| **mean** | | " + " | ".join(cell(mean[m]) for m in methods)
               + gap({m: mean[m]["psnr"] for m in methods}) + " | | |")
  return lines


def _ensemble_words(meta: dict) -> str:
  seeds = meta.get("kernelgan_seeds", 1)
  if seeds == 1:
    return ""
  return (f" (KernelGAN: {meta['ensemble_method']} of the x2 kernels of "
          f"seeds {meta['seed']}..{meta['seed'] + seeds - 1})")


def _source_words(meta: dict) -> str:
  words = ""
  if meta.get("kernels"):
    words += (f"; the estimated column is {meta['estimator']}'s kernel from "
              f"{meta['kernels']}, not KernelGAN's")
    if meta["estimator"] == "select":
      words += " (per image, the candidate it kept in brackets)"
  if meta.get("baseline"):
    words += f"; columns not run here are from {meta['baseline']}"
  return words


def markdown(rows: list[dict], meta: dict) -> str:
  """Two PSNR / SSIM tables (as scored, and at each result's best global
  shift), one row per image plus the mean.
  """
  methods = meta["methods"]
  shifts = lambda r: ", ".join(
      f"{m} ({r[m]['aligned']['shift_row']:+.2f}, "
      f"{r[m]['aligned']['shift_col']:+.2f})" for m in methods)
  lines = [
      f"x{meta['scale']} SR on a DIV2KRK-protocol set ({meta['set']}), ZSSR "
      f"preset {meta['preset']} ({meta['zssr_max_iters']} max iterations, "
      f"crop {meta['zssr_crop']}), "
      + ("" if meta.get("kernels") else
         f"KernelGAN {meta['kernelgan_iters']} iterations, ")
      + f"seed {meta['seed']}{_ensemble_words(meta)}"
      f"{_source_words(meta)}, "
      f"{meta['device']}, {meta['date']}. "
      f"Y-channel PSNR (dB) / SSIM, {meta['scale']}-px border shaved.",
      "", *_table(rows, methods, lambda m: m), "",
      f"At each result's best global shift (1/4-px grid within "
      f"+-{meta['max_shift']} px; border shaved "
      f"{sr_metrics.aligned_shave(meta['scale'], meta['max_shift'])} "
      "px):", "",
      *_table(rows, methods, lambda m: m["aligned"]), "",
      "Best shifts (row, col), HR px: "
      + "; ".join(f"{r['name']}: {shifts(r)}" for r in rows) + ".",
  ]
  lines += [f"\nSkipped {s}." for s in meta["skipped"]]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  commands.keep_freed_memory()  # As `--sr` runs ZSSR (its seconds too).
  scale = 4 if _X4.value else 2
  examples = div2krk.load_or_make_set(
      _SET_DIR.value, _NUM_IMAGES.value, hr_size=_HR_SIZE.value, x4=_X4.value)
  unknown = set(_ONLY.value) - {e.name for e in examples}
  if unknown:
    raise app.UsageError(f"--only: no image {', '.join(sorted(unknown))} "
                         f"in {_SET_DIR.value}.")
  if _ONLY.value:
    examples = [e for e in examples if e.name in _ONLY.value]
  config = zssr_config()
  sr_dir = os.path.join(
      _SET_DIR.value, "SR",
      f"{_PRESET.value}-x{scale}-it{config.max_iters}-seed{_SEED.value}")
  os.makedirs(sr_dir, exist_ok=True)
  suffix = kernelgan_suffix(_KERNELGAN_SEEDS.value, _ENSEMBLE_METHOD.value)
  if not _KERNELS.value and _KERNELGAN_ITERS.value != 3000:
    suffix += f"-it{_KERNELGAN_ITERS.value}"
  baseline = {}
  if _BASELINE.value:
    with open(_BASELINE.value) as f:
      baseline = {row["name"]: row for row in json.load(f)["rows"]}
  rows, skipped = [], []
  for example in examples:
    lr = example.lr_x4 if _X4.value else example.lr
    if lr is None:
      raise app.UsageError(f"{_SET_DIR.value} has no x4 LR images; build "
                           "the set with --x4.")
    row = {"name": example.name, "lr_shape": list(lr.shape),
           "lr_digest": lr_digest(lr)}
    save_prefix = os.path.join(sr_dir, example.name)
    estimator, image_suffix = _ESTIMATOR.value, suffix
    if _KERNELS.value and missing_kernel(_KERNELS.value, example.name,
                                         _SEED.value, estimator):
      skipped.append(f"{example.name}: no {estimator} kernel in "
                     f"{_KERNELS.value}")
      print(f"skipped {skipped[-1]}", flush=True)
      continue
    if _KERNELS.value:
      if estimator == "select":
        estimator = row["selected"] = selected_estimator(lr, example.name,
                                                         _SEED.value)
      image_suffix += f"-{estimator}-" + os.path.splitext(
          os.path.basename(_KERNELS.value))[0]
    old = baseline.get(example.name, {})
    if old and not same_lr(old, lr, example.hr, scale):
      print(f"{example.name}: not the baseline's LR image, all columns run "
            "here", flush=True)
      old = {}
    # The estimated column is always this run's own.
    row.update({m: old[m] for m in _METHODS.value
                if m in old and m != "zssr_kernelgan"})
    try:
      results = super_resolve_all(lr, example.kernel_x2, scale, config,
                                  save_prefix, image_suffix,
                                  [m for m in _METHODS.value if m not in row],
                                  estimator)
    except ImageError as error:  # E.g. an x4 LR image too small for G.
      skipped.append(f"{example.name}: {error}")
      print(f"skipped {skipped[-1]}", flush=True)
      continue
    for method, (image, seconds) in results.items():
      aligned = sr_metrics.aligned_y_psnr_ssim(example.hr, image, scale,
                                               _MAX_SHIFT.value)
      row[method] = dict(sr_metrics.y_psnr_ssim(example.hr, image, scale),
                         aligned=aligned, seconds=seconds)
    kernel_path = kernelgan_kernel_path(save_prefix, image_suffix)
    if "zssr_kernelgan" in results and os.path.exists(kernel_path):
      row["kernelgan_kernel_error"] = metrics.kernel_error(
          np.load(kernel_path), example.kernel_x2)
    rows.append(row)
    print(json.dumps(row), flush=True)
  meta = dict(machine.describe(), set=_SET_DIR.value, scale=scale,
              preset=_PRESET.value, zssr_max_iters=config.max_iters,
              zssr_crop=config.crop_size,
              kernelgan_iters=_KERNELGAN_ITERS.value, seed=_SEED.value,
              kernelgan_seeds=_KERNELGAN_SEEDS.value,
              ensemble_method=_ENSEMBLE_METHOD.value,
              methods=_METHODS.value, max_shift=_MAX_SHIFT.value,
              kernels=_KERNELS.value, estimator=_ESTIMATOR.value,
              baseline=_BASELINE.value, only=_ONLY.value, skipped=skipped)
  save(meta, rows)


def save(meta: dict, rows: list[dict]) -> None:
  """Writes <--results_dir>/zssr-<preset>-x<scale>[-<--tag>]-<device>-<date>
  .{json,md}."""
  tag = f"-{_TAG.value}" if _TAG.value else ""
  machine.save_results(
      _OUT.value, f"zssr-{meta['preset']}-x{meta['scale']}{tag}-"
      f"{meta['device']}-{meta['date']}", meta, rows, markdown(rows, meta))


if __name__ == "__main__":
  app.run(main)
