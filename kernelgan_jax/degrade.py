r"""Command line: LR training images made with kernels from a pool.

  python -m kernelgan_jax.degrade --hr=DIR --pool=pool.npz --scale=2 \
      --output_dir=OUT [--seed=0] [--noise_sigma=0]

For each HR image in DIR (sorted; read by `images.read_image`, so as RGB
in [0, 1]) draws a kernel from the pool (`pool.py`; --scale=4 uses its x4
kernels) and writes `OUT/<name>.png`, 8-bit RGB:

  lr = quantize(correlate(hr, kernel, reflect)[::s, ::s] + noise)

per channel, `degradation.downscale` under jit (on the accelerator when
there is one; each new image size compiles once), rows and columns 0, s,
2s, ..., so (ceil(H / s), ceil(W / s)); noise is Gaussian with standard
deviation --noise_sigma in 8-bit levels (of 255), added before rounding
and clipping (`div2krk.quantize`).

Each image's kernel index and noise come from a generator seeded by
(--seed, the image's name), so a file's result depends on neither the order
nor on restarts. `OUT/manifest.jsonl` has one JSON object per LR image
(`record`), appended as each is written (the PNG atomically). A restarted
run rebuilds the manifest (no duplicates, no lines without a file) and
skips images whose LR file and matching line exist. Unreadable images are
reported in one line each and skipped; then the exit status is 1.
"""

import hashlib
import json
import os
import sys
from typing import Callable, Optional

from absl import flags
import imageio.v3 as iio
import jax
from jaxtyping import Float, UInt8
import numpy as np

from kernelgan_jax import commands
from kernelgan_jax import degradation
from kernelgan_jax import div2krk
from kernelgan_jax import images
from kernelgan_jax import outputs
from kernelgan_jax import pool as pool_lib


MANIFEST = "manifest.jsonl"
_ERROR = "kernelgan_jax.degrade: error:"

_downscale = jax.jit(degradation.downscale, static_argnames=("scale",
                                                             "padding"))


def image_rng(seed: int, name: str) -> np.random.Generator:
  """The generator of one image's draws, from the seed and its name only."""
  digest = hashlib.sha256(name.encode("utf-8")).digest()
  words = np.frombuffer(digest, np.uint32).tolist()
  return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def kernels_for_scale(pool: dict[str, np.ndarray], scale: int
                      ) -> tuple[Float[np.ndarray, "n k k"], np.ndarray]:
  """The pool's kernels for `scale` and the indices that may be drawn.

  Raises:
    pool_lib.PoolError: --scale=4 with a pool without x4 kernels.
  """
  if scale == 2:
    kernels = pool["kernels_x2"]
    return kernels, np.arange(len(kernels))
  has_x4 = pool.get("has_x4")
  if "kernels_x4" not in pool or has_x4 is None or not has_x4.any():
    raise pool_lib.PoolError(
        "the pool has no x4 kernels (pool results of runs with --x4)")
  return pool["kernels_x4"], np.flatnonzero(has_x4)


def degrade_image(hr_01: Float[np.ndarray, "h w c"],
                  kernel: Float[np.ndarray, "k k"], scale: int,
                  rng: Optional[np.random.Generator] = None,
                  noise_sigma: float = 0.0) -> UInt8[np.ndarray, "h2 w2 c"]:
  """Blur, subsample, add noise, round: one LR image.

  Args:
    hr_01: HR image in [0, 1].
    kernel: correlation kernel (origin at k // 2).
    scale: subsampling factor.
    rng: the noise generator (needed when noise_sigma > 0).
    noise_sigma: noise std dev in 8-bit levels.

  Returns:
    uint8 (ceil(h / scale), ceil(w / scale), c).
  """
  lr = np.asarray(_downscale(np.asarray(hr_01, np.float32),
                             np.asarray(kernel, np.float32), scale=scale),
                  np.float64)
  if noise_sigma > 0:
    lr += rng.standard_normal(lr.shape) * (noise_sigma / 255.0)
  return div2krk.quantize(lr)


def _read_manifest(path: str) -> list[dict]:
  """The manifest's records; a line cut short by a crash is dropped."""
  records = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue
        if isinstance(record, dict) and "lr" in record:
          records.append(record)
  return records


def _write_manifest(path: str, records: list[dict]) -> None:
  def write(temporary: str) -> None:
    with open(temporary, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
  outputs.replace_atomically(path, write)


def pool_digest(kernels: np.ndarray) -> str:
  """A short fingerprint of a pool's kernels (a restart with another pool
  redoes its images)."""
  data = np.ascontiguousarray(kernels, np.float64).tobytes()
  return hashlib.sha256(data).hexdigest()[:16]


def hr_files(hr_dir: str) -> list[str]:
  """The files in `hr_dir` (not hidden), sorted."""
  if not os.path.isdir(hr_dir):
    raise OSError(f"--hr: no such folder: {hr_dir}")
  return images.files_in(hr_dir)


def degrade_folder(paths: list[str], pool: dict[str, np.ndarray], scale: int,
                   output_dir: str, seed: int = 0, noise_sigma: float = 0.0,
                   pool_path: str = "",
                   report: Callable[[str], None] = print
                   ) -> dict[str, int]:
  """Writes each HR image's LR image and manifest line (module docstring).

  Args:
    paths: HR image files.
    pool: the pool's arrays (`pool.load_pool`).
    scale: 2 or 4.
    output_dir: where `<name>.png` and `MANIFEST` go (created).
    seed: seed of the draws.
    noise_sigma: noise std dev in 8-bit levels.
    pool_path: recorded in the manifest.
    report: called with one line per file that fails.

  Returns:
    Counts: 'written', 'skipped' (done before), 'failed'.
  """
  kernels, eligible = kernels_for_scale(pool, scale)
  digest = pool_digest(kernels)
  os.makedirs(output_dir, exist_ok=True)
  manifest = os.path.join(output_dir, MANIFEST)
  settings = {"scale": scale, "noise_sigma": noise_sigma, "seed": seed,
              "pool_digest": digest}
  names = [outputs.image_name(p) for p in paths]
  planned = {name + ".png" for name in names}
  kept = {}  # lr -> record; the last line of a file wins.
  for record in _read_manifest(manifest):
    if os.path.exists(os.path.join(output_dir, record["lr"])):
      kept[record["lr"]] = record
  done = {lr for lr, record in kept.items() if lr in planned and all(
      record.get(key) == value for key, value in settings.items())}
  kept = {lr: r for lr, r in kept.items() if lr in done or lr not in planned}
  _write_manifest(manifest, list(kept.values()))
  counts = {"written": 0, "skipped": 0, "failed": 0}
  seen = set()
  for path, name in zip(paths, names):
    lr_name = name + ".png"
    if lr_name in seen:
      report(f"{path}: another input has the name {name!r}; skipped")
      counts["failed"] += 1
      continue
    seen.add(lr_name)
    if lr_name in done:
      counts["skipped"] += 1
      continue
    try:
      hr = images.read_image(path)
    except Exception as error:  # pylint: disable=broad-except
      report(f"{path}: {commands.error_line(error)}")
      counts["failed"] += 1
      continue
    rng = image_rng(seed, name)
    index = int(eligible[rng.integers(len(eligible))])
    lr = degrade_image(hr, kernels[index], scale, rng, noise_sigma)
    outputs.replace_atomically(os.path.join(output_dir, lr_name),
                               lambda p, lr=lr: iio.imwrite(p, lr))
    record = {"hr": path, "lr": lr_name, "kernel_index": index,
              "kernel_name": str(pool["names"][index]), **settings,
              "pool": pool_path}
    with open(manifest, "a") as f:
      f.write(json.dumps(record) + "\n")
    counts["written"] += 1
  return counts


def _fail(message: str) -> None:
  commands.fail("kernelgan_jax.degrade", message)


def _define_flags() -> None:
  """The command's flags, defined only when it runs as a command, so that
  importing this module (tests, benchmarks) defines none."""
  flags.DEFINE_string("hr", None, "Folder of HR images.")
  flags.DEFINE_string(
      "pool", None, "Kernel pool (.npz from python -m kernelgan_jax.pool).")
  flags.DEFINE_enum("scale", "2", ["2", "4"],
                    "Downscaling factor; 4 uses the pool's x4 kernels.")
  flags.DEFINE_string("output_dir", None,
                      "Where the LR images and manifest go.")
  flags.DEFINE_integer("seed", 0, "Seed of the kernel draws and noise.",
                       lower_bound=0)
  flags.DEFINE_float(
      "noise_sigma", 0.0, "Std dev of Gaussian noise added to the LR image "
      "before rounding, in 8-bit levels (of 255).", lower_bound=0.0)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  args = flags.FLAGS
  for name in ("hr", "pool", "output_dir"):
    if not getattr(args, name):
      _fail(f"give --{name}")
  scale = int(args.scale)
  try:
    pool = pool_lib.load_pool(args.pool)
    kernels_for_scale(pool, scale)
    paths = hr_files(args.hr)
    counts = degrade_folder(
        paths, pool, scale, args.output_dir, args.seed,
        args.noise_sigma, args.pool,
        report=lambda line: print(f"{_ERROR} {line}", file=sys.stderr))
  except (pool_lib.PoolError, OSError) as error:
    _fail(str(error))
  print(f"{counts['written']} written, {counts['skipped']} skipped (done "
        f"before), {counts['failed']} failed: {args.output_dir}")
  if counts["failed"]:
    print(f"kernelgan_jax.degrade: {counts['failed']} file(s) failed",
          file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  commands.run(main, "kernelgan_jax.degrade")
