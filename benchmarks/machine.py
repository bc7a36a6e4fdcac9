"""Names the machine a benchmark figure comes from, and records figures."""

import datetime
import json
import os
import platform

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
  _write_atomically(path + ".json",
                    json.dumps({"meta": meta, "rows": rows}, indent=1))
  _write_atomically(path + ".md", table)
  print(table)
  return path


def _write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` via a temporary file, so that an interrupted
  run never leaves a half-written results file."""
  staging = f"{path}.{os.getpid()}.tmp"
  try:
    with open(staging, "w") as f:
      f.write(text)
    os.replace(staging, path)
  finally:
    if os.path.exists(staging):
      os.remove(staging)
