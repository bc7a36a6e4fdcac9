r"""ZSSR's peak memory and time on large images, in fresh processes.

  python -m benchmarks.zssr_memory [--sizes=700x500,1200x1000] [--iters=20]
      [--other=/path/to/another/checkout] [--x4] [--tag=tiles]
      [--keep_freed_memory]

For each LR size, a fresh process super-resolves x2 (or x4) a synthetic
RGB image
(`zssr.super_resolve`, a Gaussian kernel, `--iters` training iterations,
the `paper` preset's other settings, so the reconstruction tests and the
last step run on the whole image as in a real run) and reports its
seconds and its peak RSS above the process after its imports
(`resource.getrusage`; on an accelerator also the device's own peak),
against `zssr.memory.memory_needed`. With `--keep_freed_memory` each
process first sets glibc's malloc as the command lines do
(`commands.keep_freed_memory`; skipped for a checkout that predates it). With
`--other`, the same runs with that checkout's package on the path,
alternated with this one's, and whether the two outputs are equal. Writes
benchmarks/results/zssr_memory[-<tag>]-<device>-<date>.{json,md}.
"""

import json
import os
import subprocess
import sys
import tempfile
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine

_SIZES = flags.DEFINE_list("sizes", ["700x500", "1200x1000"],
                           "LR sizes, ROWSxCOLS.")
_ITERS = flags.DEFINE_integer("iters", 20,
                              "ZSSR training iterations (per scale).")
_X4 = flags.DEFINE_bool("x4", False, "x4 (gradual: x2, then x4).")
_OTHER = flags.DEFINE_string("other", None,
                             "Another checkout's root, run the same way.")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string("tag", "", "Inserted into the results' names.")
_KEEP = flags.DEFINE_bool(
    "keep_freed_memory", False,
    "Set malloc as the command lines do (commands.keep_freed_memory).")

WORKER = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from kernelgan_jax import commands
if sys.argv[7] == "kept" and hasattr(commands, "keep_freed_memory"):
  commands.keep_freed_memory()
import numpy as np
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import zssr
from kernelgan_jax.zssr import memory
rows, cols, iters, out = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
x4 = sys.argv[6] == "x4"
yy, xx = np.mgrid[0:rows, 0:cols]
image = (0.5 + 0.25 * np.sin(yy / 7.0)[..., None] * np.cos(xx / 5.0)[..., None]
         + 0.1 * np.random.default_rng(0).random((rows, cols, 3))).astype(np.float32)
taps = np.exp(-np.arange(-6, 7) ** 2 / 4.0)
kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
sr = zssr.super_resolve(
    image, kernel, x4=x4, config=zssr.ZSSRConfig(max_iters=iters),
    kernel_x4=kernel_lib.analytic_kernel_x4(kernel) if x4 else None)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
np.save(out, sr)
import jax
stats = jax.local_devices()[0].memory_stats() or {}  # None on CPU.
print(json.dumps({"seconds": seconds, "above_imports": peak - base,
                  "device_peak": stats.get("peak_bytes_in_use"),
                  "formula": memory.memory_needed(rows, cols, x4=x4)}))
"""


def run_one(root: str, rows: int, cols: int, out: str) -> dict:
  done = subprocess.run(
      [sys.executable, "-c", WORKER, root, str(rows), str(cols),
       str(_ITERS.value), out, "x4" if _X4.value else "x2",
       "kept" if _KEEP.value else "default"],
      capture_output=True, text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str]) -> None:
  del argv
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  trees = {"this": here} | ({"other": _OTHER.value} if _OTHER.value else {})
  rows_out = []
  with tempfile.TemporaryDirectory() as scratch:
    for size in _SIZES.value:
      rows, cols = (int(v) for v in size.lower().split("x"))
      scale = 4 if _X4.value else 2
      row = {"lr": f"{rows}x{cols}",
             "output_mpx": scale**2 * rows * cols / 1e6}
      for name, root in trees.items():
        out = os.path.join(scratch, f"{name}.npy")
        row[name] = run_one(root, rows, cols, out)
        print(size, name, row[name], flush=True)
      if "other" in trees:
        row["max_difference"] = float(np.abs(
            np.load(os.path.join(scratch, "this.npy"))
            - np.load(os.path.join(scratch, "other.npy"))).max())
      rows_out.append(row)
  meta = machine.describe() | {"iters": _ITERS.value, "trees": trees,
                               "x4": _X4.value,
                               "keep_freed_memory": _KEEP.value}
  mib = 2**20
  lines = [
      f"ZSSR x{4 if _X4.value else 2} of a synthetic RGB image, "
      f"{_ITERS.value} training iterations{' per scale' * _X4.value} "
      "(paper preset otherwise), each run a fresh process: seconds and peak "
      "RSS above the process after its imports (MiB), against "
      "`zssr.memory.memory_needed` (MiB). "
      + ("malloc set as the command lines set it "
         "(`commands.keep_freed_memory`, where the checkout has it). "
         if _KEEP.value else "")
      + f"{meta['device']}, jax {meta['jax']}, {meta['date']}.", "",
      "| LR | output Mpx | " + " | ".join(
          f"{n}: s, MiB, formula" for n in trees)
      + (" | largest difference |" if "other" in trees else " |"),
      "|---|---|" + "---|" * (len(trees) + ("other" in trees))]
  for row in rows_out:
    cells = [f"{row[n]['seconds']:.1f}, {row[n]['above_imports'] / mib:.0f}"
             + (f" (device {row[n]['device_peak'] / mib:.0f})"
                if row[n].get("device_peak") else "")
             + f", {row[n]['formula'] / mib:.0f}" for n in trees]
    extra = ([f"{row['max_difference']:.2g}"] if "other" in trees else [])
    lines.append(f"| {row['lr']} | {row['output_mpx']:.2f} | "
                 + " | ".join(cells + extra) + " |")
  tag = f"-{_TAG.value}" if _TAG.value else ""
  tag += "-x4" if _X4.value else ""
  machine.save_results(_RESULTS.value,
                       f"zssr_memory{tag}-{meta['device']}-{meta['date']}",
                       meta, rows_out, "\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
