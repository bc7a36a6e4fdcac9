r"""JAX vs the PyTorch reference: speed and accuracy on the same images.

  pip install '.[bench]'
  python -m benchmarks.run --num_images=3 [--iters=3000] [--torch_threads=2]

Both implementations estimate the x2 kernel of the same DIV2KRK-protocol LR
images (built from scikit-image photographs if `--set_dir` holds no set) in
one process. Per image it records:
- JAX: the wall time of `estimate_kernel` at `--iters` (data preparation
  and post-processing included) run cold (compiling) and then warm three
  times (compiled, as the CLI's persistent cache makes later runs): the
  median warm time, cold minus it as the compile time, and median warm time
  / iterations as ms per iteration;
- PyTorch (`benchmarks/torch_kernelgan.py`, the original's algorithm): ms
  per iteration and the wall time of a full run at `--iters`;
- both: the kernel error against the ground truth and the re-synthesis PSNR
  (`kernelgan_jax.metrics`), with the bicubic and true kernels as floor and
  ceiling;
and the process's peak resident memory after each side. Writes
benchmarks/results/<device>-<date>.json and .md.
"""

import json
import resource
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import div2krk
from kernelgan_jax import metrics
from kernelgan_jax.config import get_config
from kernelgan_jax.estimate import as_float_rgb, estimate_kernel

_SET_DIR = flags.DEFINE_string("set_dir", "/tmp/div2krk_sk", "Set folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 3, "Images to compare.")
_ITERS = flags.DEFINE_integer("iters", 3000, "Iterations of a full run.")
_TIMED = flags.DEFINE_integer("timed_iters", 100,
                              "PyTorch iterations timed per iteration.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2,
                                      "torch.set_num_threads for PyTorch.")
_SKIP_TORCH = flags.DEFINE_bool("skip_torch", False, "JAX only.")
_RESULTS = flags.DEFINE_string("run_results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scores(example, kernel) -> dict:
  return {"kernel_error": metrics.kernel_error(kernel, example.kernel_x2),
          "resynthesis_psnr": metrics.resynthesis_psnr(example.hr,
                                                       example.lr, kernel)}


def time_jax(example, config, seed=0, warm_runs=3) -> dict:
  """A cold `estimate_kernel` (compiles), then the median of warm ones.

  The median, since one run's time varies by up to 10% between processes on
  a shared 2-core machine.
  """
  start = time.perf_counter()
  estimate_kernel(example.lr, config, seed=seed)
  cold = time.perf_counter() - start
  warm = []
  for _ in range(warm_runs):
    start = time.perf_counter()
    result = estimate_kernel(example.lr, config, seed=seed)
    warm.append(time.perf_counter() - start)
  median = float(np.median(warm))
  return {"compile_s": cold - median, "cold_run_s": cold,
          "full_run_s": median, "full_run_s_each": warm,
          "ms_per_iter": median / config.max_iters * 1e3,
          "kernel_x2": result.kernel_x2}


def time_torch(example, config, seed=0) -> dict:
  """Per-iteration time and a full run of the PyTorch reference."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_kernelgan as ref  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(_TORCH_THREADS.value)
  image = ref.prepare_image(as_float_rgb(example.lr))
  timing = ref.time_iterations(image, iters=_TIMED.value,
                               warmup=5, seed=seed)
  start = time.perf_counter()
  g_corners, d_corners = ref.draw_crop_corners(image, config.max_iters, seed)
  result = ref.run(image, g_corners, d_corners, seed=seed)
  return {"ms_per_iter": timing["ms_per_iter_p10"],
          "ms_per_iter_median": timing["ms_per_iter_median"],
          "full_run_s": time.perf_counter() - start,
          "kernel_x2": result["kernel_x2"]}


def markdown(rows: list[dict], meta: dict) -> str:
  lines = [
      f"{meta['device']} ({meta['processor']}, {meta['cores']} cores), "
      f"jax {meta['jax']}, torch {meta.get('torch', '-')} "
      f"({meta['torch_threads']} threads), {meta['iters']} iterations, "
      f"{meta['date']}.",
      "",
      "| image | LR | JAX s/image cold (compiling) | JAX s/image | JAX ms/it "
      "| torch ms/it | torch s/image | speed-up | kernel error JAX / torch "
      "/ bicubic | PSNR JAX / torch / bicubic / truth |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    j, t = r["jax"], r.get("torch")
    speed = (f"{t['ms_per_iter']:.1f} | {t['full_run_s']:.0f} | "
             f"{t['full_run_s'] / j['full_run_s']:.1f}x" if t else "- | - | -")
    err = lambda k: f"{r[k]['kernel_error']:.3f}" if k in r else "-"
    psnr = lambda k: f"{r[k]['resynthesis_psnr']:.1f}" if k in r else "-"
    lines.append(
        f"| {r['name']} | {r['lr_shape'][1]}x{r['lr_shape'][0]} "
        f"| {j['cold_run_s']:.1f} | {j['full_run_s']:.1f} "
        f"| {j['ms_per_iter']:.2f} | {speed} "
        f"| {err('jax_scores')} / {err('torch_scores')} / "
        f"{err('bicubic_scores')} | {psnr('jax_scores')} / "
        f"{psnr('torch_scores')} / {psnr('bicubic_scores')} / "
        f"{psnr('truth_scores')} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  examples = div2krk.load_or_make_set(_SET_DIR.value, _NUM_IMAGES.value)
  config = get_config(max_iters=_ITERS.value)
  meta = dict(machine.describe(), iters=_ITERS.value,
              torch_threads=_TORCH_THREADS.value, set=_SET_DIR.value)
  rows = []
  for example in examples:
    row = {"name": example.name, "lr_shape": list(example.lr.shape)}
    jax_run = time_jax(example, config)
    row["jax_scores"] = scores(example, jax_run.pop("kernel_x2"))
    row["jax"] = jax_run
    row["peak_rss_mib_after_jax"] = peak_rss_mib()
    if not _SKIP_TORCH.value:
      import torch  # pylint: disable=g-import-not-at-top
      meta["torch"] = torch.__version__
      torch_run = time_torch(example, config)
      row["torch_scores"] = scores(example, torch_run.pop("kernel_x2"))
      row["torch"] = torch_run
      row["peak_rss_mib_after_torch"] = peak_rss_mib()
    row["bicubic_scores"] = scores(example, metrics.bicubic_kernel_x2())
    row["truth_scores"] = scores(example, example.kernel_x2)
    rows.append(row)
    print(json.dumps(row), flush=True)
  machine.save_results(
      _RESULTS.value, f"{meta['device']}-{meta['date']}",
      meta, rows, markdown(rows, meta))


if __name__ == "__main__":
  app.run(main)
