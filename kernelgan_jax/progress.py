"""Driving long training runs: the loop names, the progress callback type,
and a progress bar."""

import time
from typing import Callable, TextIO

# How the host drives the iterations (KernelGAN, ZSSR): 'python', a host
# loop over the jitted step, or 'scan', chunks of steps in one `lax.scan`.
LOOPS = ("python", "scan")

# progress(done, total, metrics): called by every training loop (KernelGAN,
# KernelGAN-FKP, ZSSR) every so many iterations, with the latest metrics.
ProgressFn = Callable[[int, int, dict[str, float]], None]


class ProgressBar:
  """A `ProgressFn` that draws a bar.

  On a terminal it redraws one line; otherwise (logs, CI) it prints a line
  every tenth of the run.
  """

  def __init__(self, stream: TextIO, width: int = 30,
               fields: dict[str, str] | None = None):
    """Shows `fields` (metric key -> label) of the latest metrics."""
    self.stream, self.width = stream, width
    self.fields = fields or {"loss_adversarial": "L_adv",
                             "loss_bicubic": "L_bic"}
    self.start = time.perf_counter()
    self.interactive = stream.isatty()
    self.next_report = 0.0

  def __call__(self, done: int, total: int, metrics: dict[str, float]):
    fraction = done / total
    if not self.interactive and fraction < self.next_report and done < total:
      return
    self.next_report = fraction + 0.1
    elapsed = time.perf_counter() - self.start
    rate = done / max(elapsed, 1e-9)
    filled = int(self.width * fraction)
    bar = "#" * filled + "." * (self.width - filled)
    shown = "  ".join(f"{label} {metrics[key]:.4g}"
                      for key, label in self.fields.items() if key in metrics)
    line = (f"[{bar}] {done}/{total} it  {rate:.0f} it/s  "
            f"eta {(total - done) / max(rate, 1e-9):.0f} s  {shown}")
    end = "\n" if not self.interactive or done == total else ""
    self.stream.write(("\r" if self.interactive else "") + line + end)
    self.stream.flush()
