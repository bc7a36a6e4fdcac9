"""Names the machine a benchmark figure comes from."""

import datetime
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
