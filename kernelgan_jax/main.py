r"""Command line: estimate the SR kernels of one image or of many.

  python -m kernelgan_jax.main --image=x.png [--output_dir=results] [--x4]
  python -m kernelgan_jax.main --images='photos/*.png' [--batch_size=4]
  python -m kernelgan_jax.main --images='photos/*.png' \
      --coordinator_address=HOST:PORT --num_processes=N --process_id=I

Writes `<output_dir>/<name>/<name>_kernel_x2.mat` (variable `Kernel`) and
`.npy`, the x4 kernel with --x4, a PNG picture, a JSON log, and with --sr
the ZSSR super-resolution `ZSSR_<name>.png`. With several processes, each
estimates its share of the images and process 0 then writes the summary of
all. Bad input ends with one line on
stderr and exit status 1; Ctrl-C leaves no partial folder and exits 130.
"""

import dataclasses
import glob
import importlib.metadata
import os
import re
import sys
import textwrap
import traceback

from absl import flags
from absl import logging
import jax

from kernelgan_jax import commands
from kernelgan_jax import config as config_lib
from kernelgan_jax import images
from kernelgan_jax import outputs
from kernelgan_jax import pipeline
from kernelgan_jax import programs
from kernelgan_jax import reliability
from kernelgan_jax.progress import ProgressBar

_IMAGE = flags.DEFINE_string("image", None, "Input LR image file.")
_IMAGES = flags.DEFINE_string(
    "images", None, "Many images: a glob pattern such as 'dir/*.png'.")
_INPUT_DIR = flags.DEFINE_string(
    "input_dir", None, "Many images: every file in this folder.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Many images: how many are estimated together "
    "(default: 4 on CPU, 128 on GPU/TPU).", lower_bound=1)
_SEEDS = flags.DEFINE_integer(
    "seeds", 1, "Runs per image (seeds seed, seed+1, ...); several are "
    "combined by a centre-aligned median.", lower_bound=1)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "results", "Root folder; outputs go to <output_dir>/<name>.")
_ESTIMATOR = flags.DEFINE_enum(
    "estimator", "kernelgan", list(config_lib.ESTIMATORS),
    "kernelgan: the original; fkp: KernelGAN-FKP (Liang et al., CVPR "
    "2021), G a latent of a learned kernel prior and a WGAN-GP critic, far "
    "slower; fkp_lite: KernelGAN with G replaced by that prior's latent; "
    "select: kernelgan and fkp_lite, keeping the kernel the reliability "
    "score trusts more (twice the time).")
_PRIOR = flags.DEFINE_string(
    "prior", None, "With --estimator=fkp, fkp_lite or select: the prior's "
    "weights (.npz from python -m kernelgan_jax.prior.train; default: the "
    "shipped).")
_X4 = flags.DEFINE_bool("x4", False, "Also write the analytic x4 kernel.")
_REAL = flags.DEFINE_bool(
    "real", False, "Real-image mode: do not shave the 10-pixel border.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed (crops, init, noise).",
                             lower_bound=0)
_ITERS = flags.DEFINE_integer(
    "iters", None, "Training iterations (default: the config's: 1000; the "
    "original's 3000 with --config=paper).",
    lower_bound=1)
_CONFIG = flags.DEFINE_string(
    "config", "default",
    f"Preset ({', '.join(sorted(config_lib.PRESETS))}) or a .py file "
    "defining get_config() (see configs/); the flags above change only "
    "what they are given.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace existing outputs instead of failing.")
_QUIET = flags.DEFINE_bool(
    "quiet", False, "Print nothing but errors (no progress, summary or "
    "warnings).")
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "On an unexpected error, show its full traceback.")
_VERSION = flags.DEFINE_bool("version", False, "Print the version and exit.")
_CACHE_DIR = flags.DEFINE_string(
    "compile_cache", os.path.join("~", ".cache", "kernelgan_jax", "xla"),
    "Folder of JAX's persistent compilation cache and of the train step's "
    "executables (programs/), so later runs skip compiling and tracing "
    "it; empty to disable.")
_SR = flags.DEFINE_bool(
    "sr", False, "Then super-resolve the image with ZSSR and the estimated "
    "kernel(s): ZSSR_<name>.png (x2, or x4 with --x4).")
_SR_CONFIG = flags.DEFINE_enum(
    "sr_config", "paper", ["paper", "fast"],
    "ZSSR settings: the original's, or 'fast' (64-px crops, <= 1000 "
    "iterations; about a minute per small image on a laptop CPU).")
_SR_ITERS = flags.DEFINE_integer(
    "sr_iters", None, "Cap on ZSSR's iterations per scale (default: the "
    "--sr_config's).", lower_bound=1)
_SR_FALLBACK = flags.DEFINE_bool(
    "sr_fallback", True, "With --sr, where the kernel looks unreliable "
    "(the warning's reliability score), super-resolve with the bicubic "
    "kernel (plain ZSSR): with a wrong kernel ZSSR can end far below "
    "bicubic interpolation. --nosr_fallback: always the estimate, as the "
    "original.")
_SR_NARROW = flags.DEFINE_bool(
    "sr_narrow", True, "With --sr, where the kernel beats bicubic "
    f"only narrowly (reliability score above {reliability.NARROW_FROM}), "
    "super-resolve with a copy of it narrowed by up to "
    f"{reliability.NARROWEST}x: ZSSR loses far more from a too wide kernel "
    "than from a too narrow one. --nosr_narrow: the estimate as is, as the "
    "original.")
_NOISE_SCALE = flags.DEFINE_float(
    "noise_scale", 1.0, "With --real --sr: scales ZSSR's noise on its LR "
    "training inputs.", lower_bound=0.0)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Several processes (jax.distributed."
    "initialize): process 0's host and a free port, the same in every "
    "process; each estimates its share of --images/--input_dir.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Several processes: how many.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Several processes: this one's number, "
    "counting from 0; process 0 writes the summary.", lower_bound=0)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Several processes, with the settings JAX finds "
    "itself (SLURM, Open MPI, Cloud TPU); the three flags above override "
    "them.")

# --help shows these, by purpose; absl's --helpfull lists every module's.
HELP_GROUPS = {
    "Input": (_IMAGE, _IMAGES, _INPUT_DIR, _REAL),
    "Estimation": (_CONFIG, _ESTIMATOR, _PRIOR, _ITERS, _SEED, _SEEDS, _X4),
    "Output": (_OUTPUT_DIR, _OVERWRITE),
    "Super-resolution": (_SR, _SR_CONFIG, _SR_ITERS, _SR_FALLBACK,
                         _SR_NARROW, _NOISE_SCALE),
    "Run": (_BATCH_SIZE, _CACHE_DIR, _QUIET, _VERBOSE, _VERSION),
    "Several hosts": (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID,
                      _DISTRIBUTED),
}
_METAVARS = {"image": "FILE", "images": "PATTERN", "input_dir": "FOLDER",
             "output_dir": "FOLDER", "prior": "FILE", "config": "NAME|FILE",
             "compile_cache": "FOLDER", "coordinator_address": "HOST:PORT"}


def _flag_help(holder: flags.FlagHolder) -> str:
  """One flag's entry: its name, value and help, wrapped."""
  flag = flags.FLAGS[holder.name]
  text, choices = flag.help, getattr(flag.parser, "enum_values", None)
  if flag.flag_type() == "bool":
    name = f"--{flag.name}"
  else:
    metavar = _METAVARS.get(flag.name) or (
        "|".join(choices) if choices else
        {"int": "N", "float": "X"}.get(flag.flag_type(), "VALUE"))
    name = f"--{flag.name}={metavar}"
  if choices:  # absl put them before the help too.
    text = text.removeprefix(f"<{'|'.join(choices)}>: ")
  if flag.default is not None and flag.default is not False and (
      flag.default != ""):
    text += f" (default: {flag.default})"
  indent = " " * 28
  if len(name) > 25:  # The help starts on the next line.
    return f"  {name}\n" + textwrap.fill(text, 79, initial_indent=indent,
                                         subsequent_indent=indent)
  return textwrap.fill(text, 79, initial_indent=f"  {name:<26}",
                       subsequent_indent=indent)


def help_text() -> str:
  """What --help prints: usage, then the flags under headings by purpose."""
  parts = [__doc__.strip()]
  for heading, holders in HELP_GROUPS.items():
    parts.append(f"{heading}:\n" + "\n".join(map(_flag_help, holders)))
  parts.append("absl's and JAX's own flags too: --helpfull")
  return "\n\n".join(parts)


def version() -> str:
  """The installed package's version, else the checkout's pyproject's."""
  try:
    return importlib.metadata.version("kernelgan_jax")
  except importlib.metadata.PackageNotFoundError:
    pyproject = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "pyproject.toml")
    try:
      with open(pyproject) as f:
        found = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    except OSError:
      found = None
    return found.group(1) if found else "unknown"


def _fail(message: str) -> None:
  commands.fail("kernelgan_jax", message)


def _input_paths() -> list[str]:
  """The files named by --image, --images or --input_dir."""
  if _IMAGE.value:
    return [_IMAGE.value]
  if _IMAGES.value:
    paths = sorted(p for p in glob.glob(os.path.expanduser(_IMAGES.value))
                   if os.path.isfile(p))
    if not paths:
      raise ValueError(f"--images={_IMAGES.value} matches no file")
    return paths
  if not os.path.isdir(_INPUT_DIR.value):
    raise ValueError(f"--input_dir={_INPUT_DIR.value} is not a folder")
  paths = images.files_in(_INPUT_DIR.value)
  if not paths:
    raise ValueError(f"--input_dir={_INPUT_DIR.value} holds no file")
  return paths


def _sr_settings(x4: bool) -> "pipeline.SuperResolution | None":
  """--sr and its settings."""
  if not _SR.value:
    return None
  from kernelgan_jax import zssr  # pylint: disable=g-import-not-at-top
  config = (zssr.fast_cpu_config() if _SR_CONFIG.value == "fast"
            else zssr.ZSSRConfig())
  if _SR_ITERS.value is not None:
    config = dataclasses.replace(config, max_iters=_SR_ITERS.value)
  scale = 4 if x4 else 2

  def progress():  # Announces each image's ZSSR run, once it starts.
    print(f"ZSSR x{scale} ({_SR_CONFIG.value} settings)", file=sys.stderr)
    return ProgressBar(sys.stderr, fields={"loss": "loss",
                                           "reconstruction_mse": "mse"})
  return pipeline.SuperResolution(config, _NOISE_SCALE.value,
                                  progress=None if _QUIET.value else progress,
                                  fallback=_SR_FALLBACK.value,
                                  narrow=_SR_NARROW.value)


def _row_error(row: pipeline.Row) -> str:
  """A failed row's message, naming its image."""
  message = row["message"]
  return message if row["path"] in message else f"{row['path']}: {message}"


def _run(config) -> None:
  """Estimates (and with --sr super-resolves) every input; one --image
  reports in a line, many in a table."""
  one, quiet = bool(_IMAGE.value), _QUIET.value
  rows = pipeline.estimate_files(
      _input_paths(), _OUTPUT_DIR.value, config,
      seeds=range(_SEED.value, _SEED.value + _SEEDS.value),
      estimator=_ESTIMATOR.value, batch_size=_BATCH_SIZE.value,
      overwrite=_OVERWRITE.value, skip_done=not one,
      sr=_sr_settings(config.x4), summary=not one,
      progress=None if quiet else (lambda: ProgressBar(sys.stderr)))
  failed = [r for r in rows if r["status"] == "error"]
  if _VERBOSE.value:
    for row in failed:
      sys.stderr.write(row.get("traceback", ""))
  if one:
    row = rows[0]
    if row["status"] != "ok":
      _fail(_row_error(row))
    if not quiet:
      print(f"kernel estimated in {row['seconds']:.1f} s (reliability "
            f"{row['reliability']:+.3f}); wrote {len(row['written'])} files "
            f"to {os.path.dirname(row['written'][0])}")
      if "warning" in row:
        print(row["warning"], file=sys.stderr)
      elif row["message"]:  # Which kernel ZSSR used, when not the estimate.
        print(row["message"], file=sys.stderr)
    return
  if quiet:
    for row in failed:
      print(f"kernelgan_jax: error: {_row_error(row)}", file=sys.stderr)
  else:
    print(pipeline.format_table(rows))
  if not quiet and not (jax.distributed.is_initialized()
                        and jax.process_index()):
    root = _OUTPUT_DIR.value
    print(f"a row per image: {os.path.join(root, outputs.SUMMARY)}; every "
          f"kernel: {os.path.join(root, outputs.CONTACT_SHEET)}")
  if failed:
    _fail(f"{len(failed)} of {len(rows)} images failed"
          + ("" if quiet else " (see the table)"))


def _interrupted(interrupt: KeyboardInterrupt) -> None:
  """Ctrl-C: one line naming the images left without outputs; status 130."""
  names = getattr(interrupt, "unfinished", None)
  if sys.stderr.isatty():
    print(file=sys.stderr)  # Ends the progress bar's line.
  if names is None:
    what = "; nothing written"
  elif names:
    more = len(names) - 5
    what = ("; nothing written for " + ", ".join(names[:5])
            + (f" and {more} more" if more > 0 else ""))
  else:
    what = ""
  print(f"kernelgan_jax: interrupted{what}", file=sys.stderr)
  sys.exit(130)


def _process_flags() -> dict:
  """The several-processes flags given, as jax.distributed.initialize's
  arguments."""
  return {flag.name: flag.value for flag in (_COORDINATOR, _NUM_PROCESSES,
                                             _PROCESS_ID)
          if flag.value is not None}


def _several_processes() -> bool:
  return bool(_process_flags()) or _DISTRIBUTED.value


def _start_processes() -> None:
  """jax.distributed.initialize with the several-processes flags given."""
  if not _several_processes():
    return
  if _IMAGE.value:
    _fail("--image runs in one process; give --images or --input_dir to "
          "share images between processes")
  try:
    jax.distributed.initialize(**_process_flags())
  except Exception as error:  # pylint: disable=broad-except
    lines = str(error).splitlines()
    _fail("cannot start several processes: "
          + (lines[0] if lines else type(error).__name__))


def _cpu_device_per_core() -> None:
  """One CPU device per usable core, so that a folder's images (or 'select''s
  two candidates) train side by side, one per core
  (`batch.run_sequentially`): the step itself keeps
  about one core busy (benchmarks/README.md, "Where the CPU time goes").
  Not where JAX_NUM_CPU_DEVICES or XLA_FLAGS already set a count. No other
  backend is touched: on a GPU the jobs still share its devices."""
  if (jax.config.jax_num_cpu_devices != -1
      or "xla_force_host_platform_device_count" in os.environ.get(
          "XLA_FLAGS", "")):
    return
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
           else os.cpu_count())
  jax.config.update("jax_num_cpu_devices", cores or 1)


def main(argv: list[str]) -> None:
  if _VERSION.value:
    print(f"kernelgan_jax {version()}")
    return
  # Hides JAX's backend probing.
  logging.set_verbosity(logging.ERROR if _QUIET.value else logging.WARNING)
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  given = [v for v in (_IMAGE.value, _IMAGES.value, _INPUT_DIR.value) if v]
  if len(given) != 1:
    _fail("give exactly one of --image=FILE, --images=PATTERN or "
          "--input_dir=FOLDER")
  if _CACHE_DIR.value:
    cache = os.path.expanduser(_CACHE_DIR.value)
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    programs.use_folder(os.path.join(cache, "programs"))
  if ((not _IMAGE.value or _ESTIMATOR.value == "select")
      and not _several_processes()):
    _cpu_device_per_core()  # Also for one image's two 'select' candidates.
  _start_processes()
  # A flag changes its field only when given, so a config file's values
  # stand unless the command line says otherwise.
  overrides = {field: flag.value for field, flag in (
      ("x4", _X4), ("real_image", _REAL), ("prior_path", _PRIOR),
      ("max_iters", _ITERS)) if flag.present}
  if _PRIOR.present and not os.path.isfile(_PRIOR.value or ""):
    _fail(f"--prior: no such file: {_PRIOR.value}")
  try:
    config = config_lib.get_config(_CONFIG.value, **overrides)
    if _ESTIMATOR.value != "fkp":
      config = config_lib.estimator_config(config, _ESTIMATOR.value)
    else:  # KernelGAN-FKP: its own settings and iteration counts.
      from kernelgan_jax import fkp  # pylint: disable=g-import-not-at-top
      config = fkp.from_config(config)
      if _ITERS.present:
        config = config.replace(iters_x2=_ITERS.value, iters_x4=_ITERS.value)
    _run(config)
  except (ValueError, OSError) as error:
    _fail(str(error))
  except KeyboardInterrupt as interrupt:
    _interrupted(interrupt)
  except Exception as error:  # pylint: disable=broad-except
    if _VERBOSE.value:
      traceback.print_exc()
    _fail(f"{given[0]}: {commands.error_line(error)}")


def run() -> None:
  """Console-script entry point."""
  commands.run(main, "kernelgan_jax", help_text)


if __name__ == "__main__":
  run()
