"""Writing the estimate's files.

Outputs per image, in `<output_dir>/<name>/`: `<name>_kernel_x2.mat`
(variable `Kernel`, as the original, so downstream SR code reads it), the
same as `.npy`, the x4 kernel likewise when asked, `<name>_kernels.png` (a
picture of the kernels, `pictures.kernel_picture`) and `<name>_log.json`
(settings and loss history). Files are written into a temporary folder
first and moved into place only when all of them exist, so a failed or
interrupted run leaves nothing half written (nor a folder it created).

A run over many images also writes, in `<output_dir>`, `summary.csv` (one
row per input: `SUMMARY_COLUMNS`) and `kernels.png` (every x2 kernel at a
glance, `pictures.contact_sheet`), each replacing the last atomically
(`write_summary`).
"""

import csv
import dataclasses
import json
import os
import shutil
import tempfile

import imageio.v3 as iio
import numpy as np

from kernelgan_jax import pictures
from kernelgan_jax import reliability
from kernelgan_jax.config import Config
from kernelgan_jax.kernel import KernelEstimate, principal_axes

SUMMARY = "summary.csv"
CONTACT_SHEET = "kernels.png"


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
                pictures.kernel_picture(kernels))
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


# `summary.csv`'s columns: the row, the x2 kernel's numbers, and the output
# files by kind (`_FILE_COLUMNS`), relative to the output root.
SUMMARY_COLUMNS = (
    "name", "path", "status", "message", "seconds", "kernel_size",
    "sigma_major", "sigma_minor", "angle_deg", "reliability", "unreliable",
    "kernel_x2_mat", "kernel_x2_npy", "kernel_x4_mat", "kernel_x4_npy",
    "picture", "log", "sr_image", "sr_kernel", "sr_kernel_width")
_FILE_COLUMNS = {"_kernel_x2.mat": "kernel_x2_mat",
                 "_kernel_x2.npy": "kernel_x2_npy",
                 "_kernel_x4.mat": "kernel_x4_mat",
                 "_kernel_x4.npy": "kernel_x4_npy",
                 "_kernels.png": "picture", "_log.json": "log"}


def _file_column(name: str, file_name: str) -> str:
  if file_name == f"ZSSR_{name}.png":
    return "sr_image"
  return _FILE_COLUMNS[file_name[len(name):]]


def _summary_record(output_dir: str, row: dict, x4: bool, sr: bool
                    ) -> tuple[dict, np.ndarray | None, bool]:
  """A row of `summary.csv`, the x2 kernel and whether it is doubtful.

  An 'ok' or 'skipped' row's numbers come from its files: the kernel from
  the .npy, the reliability from the log; 'seconds' stays blank for a
  skipped image (no time spent on it in this run; for an image another
  process estimated, it is read from the log), and all stay blank when the
  files cannot be read.
  """
  record = {c: "" for c in SUMMARY_COLUMNS}
  record.update({k: row.get(k, "") for k in ("name", "path", "status",
                                             "message")})
  if row["status"] not in ("ok", "skipped"):
    return record, None, False
  name = row["name"]
  folder = os.path.join(output_dir, name)
  paths = row.get("written") or [
      os.path.join(folder, f) for f in existing_outputs(output_dir, name, x4,
                                                        sr)]
  for path in paths:
    record[_file_column(name, os.path.basename(path))] = os.path.relpath(
        path, output_dir)
  if row.get("seconds") is not None:
    record["seconds"] = f"{row['seconds']:.3f}"
  try:
    kernel = np.load(os.path.join(folder, f"{name}_kernel_x2.npy"))
    with open(os.path.join(folder, f"{name}_log.json")) as f:
      log = json.load(f)
  except (OSError, ValueError):  # Damaged since: the numbers stay blank.
    return record, None, False
  trust = log.get("reliability", {})
  if row["status"] == "ok" and not record["seconds"] and "seconds" in log:
    record["seconds"] = f"{log['seconds']:.3f}"  # Another process's image.
  major, minor, angle = principal_axes(kernel)
  doubtful = bool(trust.get("unreliable", False))
  record.update(kernel_size=kernel.shape[0], sigma_major=f"{major:.4f}",
                sigma_minor=f"{minor:.4f}", angle_deg=f"{angle:.2f}",
                unreliable=str(doubtful).lower())
  if reliability.HEADLINE in trust:
    record["reliability"] = f"{trust[reliability.HEADLINE]:.4f}"
  record.update({k: log.get(k, "") for k in ("sr_kernel", "sr_kernel_width")})
  return record, kernel, doubtful


def replace_atomically(path: str, write) -> None:
  """Calls write(temporary path) in `path`'s folder, then moves the file to
  `path`, so that readers see the old file or the new, never a part."""
  handle, temporary = tempfile.mkstemp(
      prefix=f".{os.path.basename(path)}.", suffix=os.path.splitext(path)[1],
      dir=os.path.dirname(path) or ".")
  os.close(handle)
  try:
    write(temporary)
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def write_summary(output_dir: str, rows: list[dict], x4: bool,
                  sr: bool = False) -> list[str]:
  """Writes a run's manifest and contact sheet into `output_dir`.

  Args:
    output_dir: the output root (created if needed).
    rows: `pipeline.estimate_files`' rows, one per input.
    x4: whether the run writes x4 kernels (which files a skipped image has).
    sr: whether it writes ZSSR images.

  Returns:
    The paths of `SUMMARY` (one row per input, `SUMMARY_COLUMNS`) and
    `CONTACT_SHEET` (the x2 kernels of the 'ok' and 'skipped' images).
  """
  records, entries = [], []
  for row in rows:
    record, kernel, doubtful = _summary_record(output_dir, row, x4, sr)
    records.append(record)
    if kernel is not None:
      entries.append((row["name"], kernel, doubtful))
  os.makedirs(output_dir, exist_ok=True)
  summary = os.path.join(output_dir, SUMMARY)
  sheet = os.path.join(output_dir, CONTACT_SHEET)

  def write_csv(path):
    with open(path, "w", newline="") as f:
      writer = csv.DictWriter(f, SUMMARY_COLUMNS, lineterminator="\n")
      writer.writeheader()
      writer.writerows(records)

  replace_atomically(summary, write_csv)
  replace_atomically(sheet, lambda path: iio.imwrite(
      path, pictures.contact_sheet(entries)))
  return [summary, sheet]
