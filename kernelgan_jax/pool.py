r"""Command line: collect estimated kernels into one pool (RealSR-style).

  python -m kernelgan_jax.pool --results=DIR --output=pool.npz

Finds every `<name>_kernel_x2.npy` under DIR (at any depth; the command
line writes `<name>/<name>_kernel_x2.npy`), or `<name>_kernel_x2.mat`
(variable `Kernel`, as the original PyTorch KernelGAN writes it) where no
`.npy` lies beside it, and the matching x4 kernels where present. Writes
the pool (`POOL_KEYS`) to the .npz and a contact sheet of its x2 kernels to
`<output stem>.png` beside it, each atomically. A file that cannot be read
is reported in one line and left out (exit status 1); when no kernel is
found nothing is written.

Each kernel is normalised to sum 1 and zero-padded onto a common odd
canvas with its origin (index k // 2, `degradation`'s convention) at the
centre (`ensemble.pad_to`), so a pool kernel degrades an image exactly as
its file does; with --recentre its centre of mass is also moved, by a
cubic-spline shift, to the command line's target for the scale
(`kernel.center_of_mass_target`).
"""

import dataclasses
import os
import re
import sys
from typing import Optional

from absl import flags
from jaxtyping import Bool, Float
import imageio.v3 as iio
import numpy as np
from scipy import io as scipy_io

from kernelgan_jax import commands
from kernelgan_jax import ensemble
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import outputs
from kernelgan_jax import pictures


SCALES = (2, 4)
# The arrays of a pool file. N kernels, in sorted name order; x4 entries of
# a name without an x4 kernel are zeros (kernels) and NaN (numbers).
POOL_KEYS = ("names", "sources_x2", "kernels_x2", "sigma_major",
             "sigma_minor", "angle_deg", "has_x4", "kernels_x4",
             "sigma_major_x4", "sigma_minor_x4", "angle_deg_x4")
_KERNEL_FILE = re.compile(
    r"^(?P<stem>.+)_kernel_x(?P<scale>[24])\.(?P<ext>npy|mat)$")


class PoolError(ValueError):
  """A pool cannot be made or read."""


@dataclasses.dataclass
class Found:
  """One name's kernel files: scale -> path."""
  name: str
  paths: dict[int, str]


def find_kernels(results_dir: str) -> list[Found]:
  """Every name's kernel files under `results_dir`, sorted by name.

  A name is the folder of `<name>/<name>_kernel_x2.npy` relative to
  `results_dir` (the command line's layout), else the file's path relative
  to it without `_kernel_x2.npy`. `.npy` files win over `.mat` files.
  Names without an x2 kernel are left out.
  """
  by_name: dict[str, dict[int, str]] = {}
  for folder, subfolders, files in os.walk(results_dir):
    subfolders.sort()
    for file_name in sorted(files):
      match = _KERNEL_FILE.match(file_name)
      if not match:
        continue
      stem, scale = match["stem"], int(match["scale"])
      if (match["ext"] == "mat" and
          os.path.exists(os.path.join(folder, file_name[:-4] + ".npy"))):
        continue
      relative = os.path.relpath(os.path.join(folder, stem), results_dir)
      if os.path.basename(folder) == stem and folder != results_dir:
        relative = os.path.dirname(relative)
      by_name.setdefault(relative.replace(os.sep, "/"), {})[scale] = (
          os.path.join(folder, file_name))
  return [Found(name, paths) for name, paths in sorted(by_name.items())
          if 2 in paths]


def read_kernel(path: str) -> Float[np.ndarray, "h w"]:
  """A kernel file (.npy, or .mat with variable `Kernel`), float64, sum 1.

  Raises:
    PoolError: unreadable, not 2-D, not finite, or not a positive sum.
  """
  try:
    kernel = (scipy_io.loadmat(path).get("Kernel") if path.endswith(".mat")
              else np.load(path, allow_pickle=False))
  except (OSError, ValueError) as error:
    raise PoolError(f"{path}: {error}") from error
  if kernel is None:
    raise PoolError(f"{path}: no variable 'Kernel'")
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2 or min(kernel.shape) < 1:
    raise PoolError(f"{path}: a kernel must be 2-D, got shape {kernel.shape}")
  if not np.all(np.isfinite(kernel)) or not kernel.sum() > 0:
    raise PoolError(f"{path}: kernel is not finite with a positive sum")
  return kernel / kernel.sum()


def on_canvas(kernels: list[np.ndarray], scale: int, recentre: bool = False
              ) -> Float[np.ndarray, "n s s"]:
  """The kernels zero-padded onto the smallest common odd square canvas.

  Args:
    kernels: 2-D kernels of any sizes, each summing to 1.
    scale: their scale (the centre-of-mass target with `recentre`).
    recentre: move each centre of mass to `kernel.center_of_mass_target`.

  Returns:
    (n, s, s) float64, s odd, each kernel's origin at (s // 2, s // 2).
  """
  size = max(max(k.shape) for k in kernels)
  size += 1 - size % 2
  padded = [ensemble.pad_to(k, size) for k in kernels]
  if recentre:
    target = kernel_lib.center_of_mass_target(size, scale)
    padded = [kernel_lib.shift_center_of_mass(k, target) for k in padded]
    padded = [np.clip(k, 0.0, None) / np.clip(k, 0.0, None).sum()
              for k in padded]
  return np.stack(padded)


def _axes(kernels: Float[np.ndarray, "n s s"], present: Bool[np.ndarray, "n"]
          ) -> Float[np.ndarray, "3 n"]:
  """principal_axes of each present kernel; NaN for the others."""
  stats = np.full((3, len(kernels)), np.nan)
  for i in np.flatnonzero(present):
    stats[:, i] = kernel_lib.principal_axes(kernels[i])
  return stats


def build_pool(results_dir: str, recentre: bool = False
               ) -> tuple[dict[str, np.ndarray], list[str]]:
  """Reads every kernel under `results_dir` into the pool's arrays.

  Args:
    results_dir: folder searched by `find_kernels`.
    recentre: see `on_canvas`.

  Returns:
    (pool, errors): the arrays of `POOL_KEYS` (`kernels_x4` and its numbers
    only when some name has an x4 kernel; `has_x4` always) and one message
    per file that could not be read (a bad x2 file drops its name, a bad x4
    file only the x4 kernel).

  Raises:
    PoolError: when no readable x2 kernel is found.
  """
  if not os.path.isdir(results_dir):
    raise PoolError(f"--results: no such folder: {results_dir}")
  names, sources, kernels_x2, kernels_x4, errors = [], [], [], [], []
  for found in find_kernels(results_dir):
    try:
      kernel_x2 = read_kernel(found.paths[2])
    except PoolError as error:
      errors.append(str(error))
      continue
    kernel_x4 = None
    if 4 in found.paths:
      try:
        kernel_x4 = read_kernel(found.paths[4])
      except PoolError as error:
        errors.append(str(error))
    names.append(found.name)
    sources.append(os.path.relpath(found.paths[2], results_dir))
    kernels_x2.append(kernel_x2)
    kernels_x4.append(kernel_x4)
  if not names:
    raise PoolError(f"no kernels (*_kernel_x2.npy or .mat) under "
                    f"{results_dir}" + (f" ({len(errors)} unreadable)"
                                         if errors else ""))
  pool = {"names": np.array(names), "sources_x2": np.array(sources),
          "kernels_x2": on_canvas(kernels_x2, 2, recentre)}
  everywhere = np.ones(len(names), bool)
  (pool["sigma_major"], pool["sigma_minor"],
   pool["angle_deg"]) = _axes(pool["kernels_x2"], everywhere)
  has_x4 = np.array([k is not None for k in kernels_x4])
  pool["has_x4"] = has_x4
  if has_x4.any():
    stacked = on_canvas([k for k in kernels_x4 if k is not None], 4, recentre)
    pool["kernels_x4"] = np.zeros((len(names),) + stacked.shape[1:])
    pool["kernels_x4"][has_x4] = stacked
    (pool["sigma_major_x4"], pool["sigma_minor_x4"],
     pool["angle_deg_x4"]) = _axes(pool["kernels_x4"], has_x4)
  return pool, errors


def load_pool(path: str) -> dict[str, np.ndarray]:
  """A pool file's arrays (`POOL_KEYS`, those present).

  Raises:
    PoolError: unreadable or without `kernels_x2`.
  """
  try:
    with np.load(path, allow_pickle=False) as contents:
      pool = {key: contents[key] for key in contents.files}
  except (OSError, ValueError) as error:
    raise PoolError(f"{path}: not a readable pool: {error}") from error
  if "kernels_x2" not in pool or pool["kernels_x2"].ndim != 3:
    raise PoolError(f"{path}: not a pool (no kernels_x2 array)")
  return pool


def picture_path(pool_path: str) -> str:
  """`<stem>.png` beside the pool file."""
  return os.path.splitext(pool_path)[0] + ".png"


def write_pool(pool: dict[str, np.ndarray], path: str) -> list[str]:
  """Writes the pool's .npz and its contact sheet (x2 kernels), atomically.

  Returns:
    The two paths.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  sheet = pictures.contact_sheet(
      [(str(name), kernel, False)
       for name, kernel in zip(pool["names"], pool["kernels_x2"])],
      title="pool x2 kernels")

  def write_npz(temporary: str) -> None:
    with open(temporary, "wb") as f:
      np.savez(f, **pool)

  outputs.replace_atomically(path, write_npz)
  picture = picture_path(path)
  outputs.replace_atomically(picture, lambda p: iio.imwrite(p, sheet))
  return [path, picture]


def _fail(message: str) -> None:
  commands.fail("kernelgan_jax.pool", message)


def _define_flags() -> None:
  """The command's flags, defined only when it runs as a command, so that
  importing this module (tests, `degrade`) defines none."""
  flags.DEFINE_string(
      "results", None, "Folder of kernels (searched at any depth), e.g. the "
      "command line's --output_dir.")
  flags.DEFINE_string(
      "output", "pool.npz", "The pool file; its picture goes beside it "
      "(<stem>.png).")
  flags.DEFINE_bool(
      "recentre", False, "Move each kernel's centre of mass to the command "
      "line's target (cubic-spline shift) instead of keeping it as found.")


def main(argv: list[str]) -> Optional[int]:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  args = flags.FLAGS
  if not args.results:
    _fail("give --results=FOLDER")
  if not args.output.endswith(".npz"):
    _fail(f"--output must end in .npz, got {args.output}")
  try:
    pool, errors = build_pool(args.results, args.recentre)
    for error in errors:
      print(f"kernelgan_jax.pool: error: {error}", file=sys.stderr)
    paths = write_pool(pool, args.output)
  except (PoolError, OSError) as error:
    _fail(str(error))
  print(f"{len(pool['names'])} kernels ({int(pool['has_x4'].sum())} with "
        f"x4), canvas {pool['kernels_x2'].shape[1]}: {', '.join(paths)}")
  if errors:
    print(f"kernelgan_jax.pool: {len(errors)} file(s) could not be read",
          file=sys.stderr)
    sys.exit(1)
  return None


if __name__ == "__main__":
  _define_flags()
  commands.run(main, "kernelgan_jax.pool")
