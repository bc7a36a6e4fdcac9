r"""JAX vs the PyTorch reference, end to end: speed, start-up and accuracy.

  pip install '.[bench]'
  python -m benchmarks.run --num_images=3 [--jax_iters=3000,default] \
      [--torch_iters=3000] [--torch_threads=2]

Both implementations estimate the x2 kernel of the same DIV2KRK-protocol LR
images (built from scikit-image photographs if `--set_dir` holds no set),
each as a user runs it: one process per image, from process start to the
kernel file written. Per image and JAX setting (`--jax_iters`: iteration
counts, 'default' for the command line's own) it records three command-line
runs of `python -m kernelgan_jax.main --image=...`:
- cold: a fresh process with an empty compilation cache (it compiles);
- new size, warm cache: a fresh process whose cache was filled by another
  image of another size (tests/data/example_lr.png);
- warm repeat: the same command again.
PyTorch (`benchmarks/torch_kernelgan.py --image`, the original's algorithm,
`--torch_iters`) runs once per image the same way. Both kernels are scored
against the ground truth (`kernelgan_jax.metrics`: kernel error,
re-synthesis PSNR), with the bicubic and true kernels as floor and ceiling.

Then a folder: `--folder_images` LR crops of the set's images, each of
another size, go through one `--input_dir` command-line run (warm cache
from the other image); it is compared with the same images' warm repeats
run one per process, and with the sum of their estimation times in one warm
process (`estimate_kernel`, no start-up). Writes
benchmarks/results/<device>-<date>[-<tag>].{json,md}.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

from absl import app
from absl import flags
import imageio.v3 as iio
import numpy as np

from benchmarks import machine
from kernelgan_jax import div2krk
from kernelgan_jax import metrics
from kernelgan_jax.config import get_config
from kernelgan_jax.estimate import estimate_kernel

_SET_DIR = flags.DEFINE_string("set_dir", "/tmp/div2krk_sk", "Set folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 3, "Images to compare.")
_JAX_ITERS = flags.DEFINE_list(
    "jax_iters", ["3000", "default"],
    "JAX iteration counts to time; 'default' is the CLI's own.")
_TORCH_ITERS = flags.DEFINE_integer("torch_iters", 3000,
                                    "PyTorch iterations.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2,
                                      "torch.set_num_threads for PyTorch.")
_SKIP_TORCH = flags.DEFINE_bool("skip_torch", False, "JAX only.")
_FOLDER_IMAGES = flags.DEFINE_integer(
    "folder_images", 12, "Images (each of another size) in the folder run; "
    "0 skips it.")
_RESULTS = flags.DEFINE_string("run_results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string("tag", "", "Appended to the results' file names.")

WARMUP_IMAGE = os.path.join("tests", "data", "example_lr.png")


def timed(command: list[str]) -> float:
  """Seconds from process start to exit; raises on a failed run."""
  start = time.perf_counter()
  done = subprocess.run(command, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if done.returncode:
    raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
  return seconds


def jax_cli(image: str, out_dir: str, cache: str, iters: Optional[str],
            many: bool = False) -> float:
  """One `kernelgan_jax.main` process over an image (or a folder)."""
  command = [sys.executable, "-m", "kernelgan_jax.main",
             f"--{'input_dir' if many else 'image'}={image}",
             f"--output_dir={out_dir}", f"--compile_cache={cache}",
             "--quiet", "--overwrite"]
  if iters != "default":
    command.append(f"--iters={iters}")
  return timed(command)


def torch_cli(image: str, output: str) -> float:
  return timed([sys.executable, "-m", "benchmarks.torch_kernelgan",
                f"--threads={_TORCH_THREADS.value}", f"--image={image}",
                f"--output={output}", f"--iters={_TORCH_ITERS.value}"])


def warm_cache(work: str, iters: str) -> str:
  """A cache filled by one run on the warm-up image (another size).

  Used in place by every later run: JAX's cache keys depend on the cache's
  path, so a copy of the folder elsewhere would be a cold cache. Since the
  compiled programs do not depend on the image size, the images run with it
  add nothing to it, and it stays "warm from another image" for each.
  """
  cache = os.path.join(work, f"cache-warm-{iters}")
  jax_cli(WARMUP_IMAGE, os.path.join(work, "warmup"), cache, iters)
  return cache


def time_image(example: div2krk.Example, path: str, work: str, iters: str,
               warm: str) -> dict:
  """The three command-line runs of one image at one iteration setting."""
  out = os.path.join(work, f"out-{iters}")
  cold = jax_cli(path, out, os.path.join(work, f"cache-cold-{example.name}"
                                         f"-{iters}"), iters)
  new_size = jax_cli(path, out, warm, iters)
  repeat = jax_cli(path, out, warm, iters)
  kernel = np.load(os.path.join(out, example.name,
                                f"{example.name}_kernel_x2.npy"))
  return {"cold_s": cold, "new_size_warm_cache_s": new_size,
          "warm_repeat_s": repeat,
          "scores": metrics.score_kernel(kernel, example)}


def folder_images(examples: list[div2krk.Example], count: int, folder: str
                  ) -> list[str]:
  """`count` LR crops, each of another size, from the largest LR image."""
  source = max(examples, key=lambda e: e.lr.size).lr
  os.makedirs(folder, exist_ok=True)
  rows, cols = source.shape[:2]
  paths = []
  for i in range(count):
    height = min(rows, 96 + 8 * i)
    width = min(cols, 120 + 12 * i)
    top, left = (rows - height) // 2, (cols - width) // 2
    crop = source[top:top + height, left:left + width]
    paths.append(os.path.join(folder, f"crop{i:02d}_{width}x{height}.png"))
    iio.imwrite(paths[-1], np.round(crop * 255).astype(np.uint8))
  return paths


def time_folder(paths: list[str], work: str, iters: str, warm: str) -> dict:
  """The folder in one run against its images one per process, and in one
  warm process without start-up."""
  folder = os.path.dirname(paths[0])
  out = os.path.join(work, f"out-folder-{iters}")
  one_run = jax_cli(folder, out, warm, iters, many=True)
  per_process = [jax_cli(p, out, warm, iters) for p in paths]
  config = get_config() if iters == "default" else get_config(
      max_iters=int(iters))
  images = [iio.imread(p) for p in paths]
  estimate_kernel(images[0], config)  # Compiles once for every size.
  in_process = []
  for image in images:
    start = time.perf_counter()
    estimate_kernel(image, config)
    in_process.append(time.perf_counter() - start)
  return {"images": len(paths),
          "sizes": [list(iio.improps(p).shape[:2]) for p in paths],
          "one_run_s": one_run, "one_process_each_s": sum(per_process),
          "estimation_only_s": sum(in_process)}


def markdown(rows: list[dict], folder: dict, meta: dict) -> str:
  lines = [
      f"End to end, one process per image: {meta['device']} "
      f"({meta['processor']}, {meta['cores']} cores), jax {meta['jax']}, "
      f"torch {meta.get('torch', '-')} ({meta['torch_threads']} threads, "
      f"{meta['torch_iters']} iterations), {meta['date']}. Seconds from "
      "process start to the kernel file written.",
      "",
      "| image | LR | JAX iterations | cold (compiling) | new size, warm "
      "cache | warm repeat | new size / repeat | torch | torch / JAX "
      "(new size) | kernel error JAX / torch / bicubic | PSNR JAX / torch "
      "/ bicubic / truth |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  err = lambda s: f"{s['kernel_error']:.3f}" if s else "-"
  psnr = lambda s: f"{s['resynthesis_psnr']:.1f}" if s else "-"
  for r in rows:
    t = r.get("torch")
    for iters, j in r["jax"].items():
      new_size = j["new_size_warm_cache_s"]
      torch_cols = (f"{t['seconds']:.0f} | {t['seconds'] / new_size:.1f}x"
                    if t else "- | -")
      lines.append(
          f"| {r['name']} | {r['lr_shape'][1]}x{r['lr_shape'][0]} "
          f"| {iters} | {j['cold_s']:.1f} | {new_size:.1f} "
          f"| {j['warm_repeat_s']:.1f} | {new_size / j['warm_repeat_s']:.2f} "
          f"| {torch_cols} "
          f"| {err(j['scores'])} / {err(t and t['scores'])} / "
          f"{err(r['bicubic'])} | {psnr(j['scores'])} / "
          f"{psnr(t and t['scores'])} / {psnr(r['bicubic'])} / "
          f"{psnr(r['truth'])} |")
  if folder:
    lines += ["", f"A folder of {next(iter(folder.values()))['images']} "
              "LR images of as many sizes:", "",
              "| JAX iterations | one `--input_dir` run | one process per "
              "image | estimation only, one warm process | one run / "
              "estimation only |", "|---|---|---|---|---|"]
    for iters, f in folder.items():
      lines.append(f"| {iters} | {f['one_run_s']:.1f} "
                   f"| {f['one_process_each_s']:.1f} "
                   f"| {f['estimation_only_s']:.1f} "
                   f"| {f['one_run_s'] / f['estimation_only_s']:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  examples = div2krk.load_or_make_set(_SET_DIR.value, _NUM_IMAGES.value)
  meta = dict(machine.describe(), torch_threads=_TORCH_THREADS.value,
              torch_iters=_TORCH_ITERS.value, jax_iters=_JAX_ITERS.value,
              set=_SET_DIR.value,
              default_iters=get_config().max_iters)
  work = tempfile.mkdtemp(prefix="kernelgan_run_")
  try:
    warm = {iters: warm_cache(work, iters) for iters in _JAX_ITERS.value}
    rows = []
    for example in examples:
      path = os.path.join(_SET_DIR.value, "LR", example.name + ".png")
      row = {"name": example.name, "lr_shape": list(example.lr.shape),
             "jax": {iters: time_image(example, path, work, iters,
                                       warm[iters])
                     for iters in _JAX_ITERS.value},
             "bicubic": metrics.score_kernel(metrics.bicubic_kernel_x2(),
                                             example),
             "truth": metrics.score_kernel(example.kernel_x2, example)}
      if not _SKIP_TORCH.value:
        import torch  # pylint: disable=g-import-not-at-top
        meta["torch"] = torch.__version__
        output = os.path.join(work, f"torch-{example.name}.npy")
        seconds = torch_cli(path, output)
        row["torch"] = {"seconds": seconds,
                        "scores": metrics.score_kernel(np.load(output),
                                                       example)}
      rows.append(row)
      print(json.dumps(row), flush=True)
    folder = {}
    if _FOLDER_IMAGES.value:
      paths = folder_images(examples, _FOLDER_IMAGES.value,
                            os.path.join(work, "folder"))
      folder = {iters: time_folder(paths, work, iters, warm[iters])
                for iters in _JAX_ITERS.value}
      print(json.dumps(folder), flush=True)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  machine.save_results(
      _RESULTS.value, f"{meta['device']}-{meta['date']}"
      + (f"-{_TAG.value}" if _TAG.value else ""), meta,
      {"images": rows, "folder": folder}, markdown(rows, folder, meta))


if __name__ == "__main__":
  app.run(main)
