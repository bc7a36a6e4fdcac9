r"""Where a fresh process spends its time before (and around) training.

  python -m benchmarks.startup [--image=tests/data/example_lr.png] [--runs=3]

Runs the command line's path for one image in fresh processes with a warm
compilation cache (filled by a first, untimed process), and times each
phase from the start of the process: the interpreter, importing the
command line (`kernelgan_jax.main`), starting the backend, reading the
image, preparing the data (maps, crop corners), initialising the state
(read from the kept folder for a seed met before),
loading the scanned chunk's executable (`programs`, as the command line
does), the first chunk of iterations (50), and the rest of the run
(`--iters`). The process ends as the command line does
(`commands.exit_now`: no teardown of the modules).
Medians over `--runs` processes. Writes
benchmarks/results/startup[-<tag>]-<device>-<date>.{json,md}.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

_IMAGE = flags.DEFINE_string("image", "tests/data/example_lr.png",
                             "The LR image.")
_RUNS = flags.DEFINE_integer("runs", 3, "Timed processes.")
_ITERS = flags.DEFINE_integer("iters", 3000, "Iterations of the run.")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")
_TAG = flags.DEFINE_string("tag", "", "Inserted into the results' names.")

WORKER = r"""
import time
t = {"start": time.perf_counter()}
import sys
import jax
from kernelgan_jax import main as _
from kernelgan_jax import data as data_lib, estimate, images, programs, train
from kernelgan_jax.config import get_config
t["imports"] = time.perf_counter()
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
programs.use_folder(sys.argv[1] + "/programs")
jax.devices()
t["backend"] = time.perf_counter()
config = get_config(max_iters=int(sys.argv[3]))
image = images.read_image(sys.argv[2])
t["read"] = time.perf_counter()
data_key, init_key = train.seed_keys(0)
data = data_lib.prepare(images.as_float_rgb(image), config, data_key)
t["prepare"] = time.perf_counter()
state = jax.block_until_ready(train.init_state(init_key, config))
t["init"] = time.perf_counter()
crops = data_lib.crops(data, config, 0, 50)
train.chunk_program(config, 50).load(state, crops)
t["load_chunk"] = time.perf_counter()
state, _ = train.chunk_program(config, 50)(state, crops)
jax.block_until_ready(state)
t["first_chunk"] = time.perf_counter()
state, _ = train.drive(state, lambda s, n: data_lib.crops(data, config, s, n),
                       config.max_iters - 50, train.jitted_step(config),
                       lambda n: train.chunk_program(config, n))
train.final_kernel(state, config)
t["rest"] = time.perf_counter()
print("TIMES", {k: v - t["start"] for k, v in t.items()})
from kernelgan_jax import commands
commands.exit_now(0)  # As the command line ends: no module teardown.
"""

PHASES = ("imports", "backend", "read", "prepare", "init", "load_chunk",
          "first_chunk", "rest")


def one_process(cache: str) -> dict:
  start = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", WORKER, cache, _IMAGE.value,
                        str(_ITERS.value)], capture_output=True, text=True,
                       check=True).stdout
  total = time.perf_counter() - start
  times = eval(out.split("TIMES", 1)[1])  # pylint: disable=eval-used
  # Each phase's own seconds; the interpreter's start-up is what the
  # process took beyond its own first timestamp.
  phases = {"interpreter_start_exit": total - times["rest"]}
  previous = 0.0
  for phase in PHASES:
    phases[phase] = times[phase] - previous
    previous = times[phase]
  phases["total"] = total
  return phases


def main(argv: Sequence[str]) -> None:
  del argv
  from benchmarks import machine  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as cache:
    one_process(cache)  # Fills the cache.
    runs = [one_process(cache) for _ in range(_RUNS.value)]
  median = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
  meta = dict(machine.describe(), image=_IMAGE.value, iters=_ITERS.value,
              runs=_RUNS.value,
              load_average=" ".join(f"{x:.1f}" for x in os.getloadavg()))
  lines = [f"A fresh process on {meta['image']}, warm compilation cache, "
           f"{meta['iters']} iterations: {meta['device']} "
           f"({meta['processor']}), jax {meta['jax']}, {meta['date']}; "
           f"median of {meta['runs']} processes (load average "
           f"{meta['load_average']}).", "",
           "| phase | seconds | share |", "|---|---|---|"]
  for phase, seconds in median.items():
    if phase != "total":
      lines.append(f"| {phase} | {seconds:.2f} "
                   f"| {100 * seconds / median['total']:.0f}% |")
  lines.append(f"| **total** | {median['total']:.2f} | |")
  print(json.dumps(median))
  machine.save_results(_RESULTS.value,
                       "-".join(["startup"] + [_TAG.value] * bool(_TAG.value)
                                + [meta["device"], meta["date"]]), meta,
                       runs, "\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
