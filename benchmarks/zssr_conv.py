r"""Where ZSSR's training step spends its CPU time: one layer's three
convolutions, and the page faults of the whole step's buffers.

  python -m benchmarks.zssr_conv [--size=128] [--calls=20]

In a fresh process each way (glibc's malloc as it comes, and as the command
lines set it, `commands.keep_freed_memory`): per call of one 3x3 64->64
'SAME' convolution on a size x size image, its forward pass, its input
gradient and its weight gradient, and the value and gradient of ZSSR's
whole network (`zssr.network.apply`, 8 layers, a mean absolute error):
wall milliseconds, system CPU milliseconds and minor page faults.
Writes benchmarks/results/zssr_conv-<device>-<date>.{json,md}.
"""

import json
import subprocess
import sys
from typing import Sequence

from absl import app
from absl import flags

from benchmarks import machine

_SIZE = flags.DEFINE_integer("size", 128, "Image side (ZSSR's crop).")
_CALLS = flags.DEFINE_integer("calls", 20, "Calls timed per program.")
_RESULTS = flags.DEFINE_string("results_dir", "benchmarks/results",
                               "Where the JSON and markdown go.")

WORKER = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
from kernelgan_jax import commands
from kernelgan_jax.zssr import network
size, calls, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if mode == "kept":
  commands.keep_freed_memory()
keys = jax.random.split(jax.random.key(0), 5)
features = jax.random.normal(keys[0], (1, size, size, 64))
cotangent = jax.random.normal(keys[1], (1, size, size, 64))
weights = 0.05 * jax.random.normal(keys[2], (3, 3, 64, 64))
image, target = (jax.random.uniform(k, (size, size, 3)) for k in keys[3:])
params = network.init_params(keys[0], 3)
conv = lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
pullback = lambda x, w, dy: jax.vjp(conv, x, w)[1](dy)
programs = {
    "forward": (jax.jit(conv), (features, weights)),
    "input gradient": (jax.jit(lambda *a: pullback(*a)[0]),
                       (features, weights, cotangent)),
    "weight gradient": (jax.jit(lambda *a: pullback(*a)[1]),
                        (features, weights, cotangent)),
    "network value and gradient": (jax.jit(jax.value_and_grad(
        lambda p: jnp.mean(jnp.abs(network.apply(p, image) - target)))),
        (params,)),
}
rows = {}
for name, (program, args) in programs.items():
  jax.block_until_ready(program(*args))
  before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  for _ in range(calls):
    out = program(*args)
  jax.block_until_ready(out)
  wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
  rows[name] = {"ms": 1e3 * wall / calls,
                "system_ms": 1e3 * (after.ru_stime - before.ru_stime) / calls,
                "minor_faults": (after.ru_minflt - before.ru_minflt) / calls}
print(json.dumps(rows))
"""


def main(argv: Sequence[str]) -> None:
  del argv
  results = {}
  for mode in ("default", "kept"):
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(_SIZE.value), str(_CALLS.value),
         mode], capture_output=True, text=True, check=True)
    results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    print(mode, results[mode], flush=True)
  meta = machine.describe() | {"size": _SIZE.value, "calls": _CALLS.value}
  lines = [
      f"ZSSR's convolutions on a {_SIZE.value}x{_SIZE.value} image, one "
      f"fresh process each way, {_CALLS.value} calls each (mean per call): "
      "glibc's malloc as it comes and as the command lines set it "
      f"(`commands.keep_freed_memory`). {meta['device']}, jax {meta['jax']},"
      f" {meta['date']}.", "",
      "| program | default: ms, system ms, faults | kept: ms, system ms, "
      "faults |", "|---|---|---|"]
  for name in results["default"]:
    cells = [f"{r['ms']:.1f}, {r['system_ms']:.1f}, {r['minor_faults']:.0f}"
             for r in (results["default"][name], results["kept"][name])]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  machine.save_results(_RESULTS.value,
                       f"zssr_conv-{meta['device']}-{meta['date']}", meta,
                       results, "\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
