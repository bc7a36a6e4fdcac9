"""Writing the estimate's files.

Outputs per image, in `<output_dir>/<name>/`: `<name>_kernel_x2.mat`
(variable `Kernel`, as the original, so downstream SR code reads it), the
same as `.npy`, the x4 kernel likewise when asked, `<name>_kernels.png` (a
picture of the kernels) and `<name>_log.json` (settings and loss history).
Files are written into a temporary folder first and moved into place only
when all of them exist, so a failed or interrupted run leaves nothing half
written (nor a folder it created).
"""

import dataclasses
import json
import os
import shutil
import tempfile

import imageio.v3 as iio
import numpy as np

from kernelgan_jax.config import Config
from kernelgan_jax.kernel import KernelEstimate


def image_name(path: str) -> str:
  """The output name of an input file: its base name without extension."""
  return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def output_files(name: str, x4: bool, sr: bool = False) -> list[str]:
  """The file names written for one image."""
  scales = ["x2", "x4"] if x4 else ["x2"]
  kernels = [f"{name}_kernel_{s}.{ext}" for s in scales for ext in ("mat",
                                                                     "npy")]
  extras = [f"ZSSR_{name}.png"] if sr else []
  return kernels + [f"{name}_kernels.png", f"{name}_log.json"] + extras


def existing_outputs(output_dir: str, name: str, x4: bool,
                     sr: bool = False) -> list[str]:
  """Which of the image's output files exist already."""
  folder = os.path.join(output_dir, name)
  return [f for f in output_files(name, x4, sr)
          if os.path.exists(os.path.join(folder, f))]


def check_writable(output_dir: str, name: str, x4: bool,
                   overwrite: bool, sr: bool = False) -> str:
  """The image's output folder; fails early if it would clobber outputs.

  Raises:
    FileExistsError: when outputs exist and `overwrite` is False.
  """
  folder = os.path.join(output_dir, name)
  existing = existing_outputs(output_dir, name, x4, sr)
  if existing and not overwrite:
    raise FileExistsError(
        f"{folder} already holds {existing[0]}; pass --overwrite to replace "
        "it or choose another --output_dir")
  return folder


def kernel_picture(kernels: list[np.ndarray], zoom: int = 12) -> np.ndarray:
  """The kernels side by side as one RGB uint8 image, 'hot' colour map,
  each normalised to its own maximum and enlarged `zoom` times.
  """
  height = max(k.shape[0] for k in kernels) * zoom
  tiles = []
  for k in kernels:
    t = np.clip(np.asarray(k, np.float64) / max(float(k.max()), 1e-12), 0, 1)
    rgb = np.stack([np.clip(3 * t - c, 0, 1) for c in range(3)], axis=-1)
    tile = np.kron(rgb, np.ones((zoom, zoom, 1)))
    pad = height - tile.shape[0]
    tiles.append(np.pad(tile, ((pad // 2, pad - pad // 2), (0, zoom), (0, 0))))
  return (255 * np.concatenate(tiles, axis=1)).round().astype(np.uint8)


def _jsonable(history: dict[str, np.ndarray]) -> dict[str, list[float]]:
  return {k: np.asarray(v, np.float64).round(7).tolist()
          for k, v in history.items()}


def _missing_folders(folder: str) -> list[str]:
  """`folder` and its parents that do not exist yet, deepest first."""
  missing, path = [], os.path.abspath(folder)
  while not os.path.isdir(path) and path != os.path.dirname(path):
    missing.append(path)
    path = os.path.dirname(path)
  return missing


def write_outputs(folder: str, name: str, estimate: KernelEstimate,
                  config: Config, extra: dict,
                  sr_image: np.ndarray | None = None) -> list[str]:
  """Writes all outputs of one image into `folder` (created if needed).

  Args:
    folder: from `check_writable`.
    name: the image name used in file names.
    estimate: what `estimate_kernel` returned.
    config: its settings (logged).
    extra: more entries for the JSON log (input path, timings).
    sr_image: the ZSSR result in [0, 1], written as `ZSSR_<name>.png`.

  Returns:
    The paths written.
  """
  from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top  # Slow.
  kernels = {"x2": estimate.kernel_x2}
  if config.x4:
    kernels["x4"] = estimate.kernel_x4
  created = _missing_folders(folder)
  os.makedirs(folder, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{name}.", dir=folder)
  try:
    for scale, k in kernels.items():
      base = os.path.join(staging, f"{name}_kernel_{scale}")
      scipy_io.savemat(base + ".mat", {"Kernel": k})
      np.save(base + ".npy", k)
    iio.imwrite(os.path.join(staging, f"{name}_kernels.png"),
                kernel_picture(list(kernels.values())))
    log = dict(extra, seed=estimate.seed, config=dataclasses.asdict(config),
               raw_kernel=estimate.raw_kernel.tolist(),
               kernel_x2=estimate.kernel_x2.tolist(),
               history=_jsonable(estimate.history))
    with open(os.path.join(staging, f"{name}_log.json"), "w") as f:
      json.dump(log, f)
    if sr_image is not None:
      iio.imwrite(os.path.join(staging, f"ZSSR_{name}.png"),
                  np.round(255 * np.clip(sr_image, 0, 1)).astype(np.uint8))
    written = []
    for file_name in output_files(name, config.x4, sr_image is not None):
      target = os.path.join(folder, file_name)
      os.replace(os.path.join(staging, file_name), target)
      written.append(target)
    return written
  except BaseException:  # Also Ctrl-C: no folder of ours left behind.
    if created:
      shutil.rmtree(created[0], ignore_errors=True)
      for parent in created[1:]:  # Shared with other images: only if empty.
        try:
          os.rmdir(parent)
        except OSError:
          break
    raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)
