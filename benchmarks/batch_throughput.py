r"""Throughput and memory of batched estimation (`batch`) per batch size.

  python -m benchmarks.batch_throughput --batch_sizes=1,4,16 --iters=100

Each batch size runs in a fresh subprocess (so peak RSS is its own): B jobs
(the example image, seeds 0..B-1) are prepared and stacked, the vmapped
step is compiled (timed apart), then `--iters` - 1 iterations are timed in
the host loop `batch.train_batch` uses on CPU (on GPU it would use `lax.scan`
chunks; this script times the host loop). Images/s is scaled to a full
`--full_iters` run: B / (seconds per iteration x full_iters). Memory: XLA's
`memory_analysis` of the compiled step (arguments + outputs + temporaries)
and the process's peak RSS. Writes
benchmarks/results/batch-<device>-<date>.{json,md}.
"""

import json
import os
import resource
import subprocess
import sys
import time
from typing import Sequence

from absl import app
from absl import flags
import jax

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax import images
from kernelgan_jax.config import get_config

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "4", "16"],
                                 "Jobs per batch.")
_ITERS = flags.DEFINE_integer("iters", 100, "Timed iterations.")
_FULL_ITERS = flags.DEFINE_integer("full_iters", 3000,
                                   "Run length images/s is scaled to.")
_IMAGE = flags.DEFINE_string("image", "tests/data/example_lr.png",
                             "The LR image every job uses.")
_WORKER = flags.DEFINE_integer("worker_batch", 0,
                               "Internal: measure this batch size only.")
_OUT = flags.DEFINE_string("results_dir", "benchmarks/results",
                           "Where the JSON and markdown go.")

MIB = 2.0**20


def measure(batch_size: int) -> dict:
  """Times and sizes one batch size in this process."""
  config = get_config(max_iters=_ITERS.value)
  image = images.read_image(_IMAGE.value)
  start = time.perf_counter()
  jobs = batch.prepare_jobs(image, config, range(batch_size))
  states = batch.stack_states(jobs, config)
  data = jax.tree.map(lambda x: jax.numpy.asarray(x[0]),
                      batch.batch_crops(jobs, config, 0, 1))
  jax.block_until_ready((states, data))
  prepare_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = batch.batched_step(config).lower(states, data).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  step_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                + memory.temp_size_in_bytes)
  step = batch.batched_step(config)
  states, _ = step(states, data)  # Warm: the jit's own compilation.
  jax.block_until_ready(states)
  start = time.perf_counter()
  for _ in range(_ITERS.value - 1):  # The host loop `train_batch` runs.
    states, metrics = step(states, data)
  jax.block_until_ready((states, metrics))
  per_iter = (time.perf_counter() - start) / (_ITERS.value - 1)
  return {
      "batch_size": batch_size, "image_shape": list(image.shape),
      "prepare_s": prepare_s, "compile_s": compile_s,
      "timed_iters": _ITERS.value, "seconds_per_iter": per_iter,
      "images_per_s": batch_size / (per_iter * _FULL_ITERS.value),
      "xla_step_mib": step_bytes / MIB,
      "xla_temp_mib": memory.temp_size_in_bytes / MIB,
      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      / 1024,
  }


def markdown(rows: list[dict], meta: dict) -> str:
  """The results table."""
  lines = [
      f"Batched estimation throughput, {meta['device']} "
      f"({meta['processor']}), jax {meta['jax']}, {meta['date']}. Image "
      f"{meta['image']}; {meta['iters']} timed iterations after compiling, "
      f"images/s scaled to {meta['full_iters']} iterations; load average "
      f"{meta['load_average']} (shared machine).",
      "",
      "| batch | ms / iteration | images/s (full run) | s / image (full run) "
      "| compile s | XLA step MiB | peak RSS MiB |",
      "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['batch_size']} | {1000 * r['seconds_per_iter']:.1f} "
        f"| {r['images_per_s']:.4f} | {1 / r['images_per_s']:.1f} "
        f"| {r['compile_s']:.1f} | {r['xla_step_mib']:.1f} "
        f"| {r['peak_rss_mib']:.0f} |")
  if len(rows) > 1:
    first, last = rows[0], rows[-1]
    per_image = ((last["xla_step_mib"] - first["xla_step_mib"])
                 / (last["batch_size"] - first["batch_size"]))
    per_rss = ((last["peak_rss_mib"] - first["peak_rss_mib"])
               / (last["batch_size"] - first["batch_size"]))
    lines += ["", f"Marginal memory per job: {per_image:.2f} MiB of XLA "
              f"buffers, {per_rss:.1f} MiB of peak RSS."]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  if _WORKER.value:
    print(json.dumps(measure(_WORKER.value)))
    return
  rows = []
  for size in map(int, _BATCH_SIZES.value):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.batch_throughput",
         f"--worker_batch={size}", f"--iters={_ITERS.value}",
         f"--full_iters={_FULL_ITERS.value}", f"--image={_IMAGE.value}"],
        check=True, capture_output=True, text=True).stdout
    rows.append(json.loads(out.splitlines()[-1]))
    print(json.dumps(rows[-1]), flush=True)
  meta = dict(machine.describe(), backend=jax.default_backend(),
              image=_IMAGE.value, iters=_ITERS.value,
              full_iters=_FULL_ITERS.value,
              load_average=" ".join(f"{x:.1f}" for x in os.getloadavg()))
  machine.save_results(
      _OUT.value, f"batch-{meta['device']}-{meta['date']}",
      meta, rows, markdown(rows, meta))


if __name__ == "__main__":
  app.run(main)
