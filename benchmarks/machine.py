"""Names the machine a benchmark figure comes from, and records figures."""

import datetime
import json
import os
import platform
import re
from typing import IO, Callable

import jax


def device_name() -> str:
  """'cpu<cores>' on CPU, else the accelerator kind (e.g. NVIDIA_H100)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return f"cpu{os.cpu_count()}"
  return device.device_kind.replace(" ", "_")


def describe() -> dict:
  """Device, processor, core count, versions and today's date."""
  device = jax.devices()[0]
  return {
      "device": device_name(),
      "device_kind": device.device_kind,
      "processor": _cpu_model(),
      "cores": os.cpu_count(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "date": datetime.date.today().isoformat(),
  }


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def save_results(results_dir: str, stem: str, meta: dict, rows: list,
                 table: str) -> str:
  """Writes <results_dir>/<stem>.json ({meta, rows}) and .md (`table`),
  prints the table, and returns the path without extension.
  """
  os.makedirs(results_dir, exist_ok=True)
  path = os.path.join(results_dir, stem)
  write_atomically(path + ".json", lambda f: json.dump(
      {"meta": meta, "rows": rows}, f, indent=1))
  write_atomically(path + ".md", lambda f: f.write(table))
  print(table)
  return path


def write_atomically(path: str, write: Callable[[IO], object],
                     binary: bool = False) -> None:
  """Calls `write(file)` on a temporary file, then moves it to `path`, so
  that an interrupted or failing run never leaves a half-written file."""
  staging = f"{path}.{os.getpid()}.tmp"
  try:
    with open(staging, "wb" if binary else "w") as f:
      write(f)
    os.replace(staging, path)
  finally:
    if os.path.exists(staging):
      os.remove(staging)


_COMPILED = re.compile(
    r"Finished XLA compilation of jit\(([^)]*)\) in ([0-9.e+-]+) sec")


def compile_seconds(log: str) -> dict[str, float]:
  """XLA's seconds per program from a JAX_LOG_COMPILES=1 log, the program
  names without the hash that kept programs carry, summed over repeats."""
  seconds = {}
  for name, value in _COMPILED.findall(log):
    name = re.sub(r"_[0-9a-f]{32}$", "", name)
    seconds[name] = seconds.get(name, 0.0) + float(value)
  return seconds
