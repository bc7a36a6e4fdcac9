r"""Command line: LR training images made with kernels from a pool.

  python -m kernelgan_jax.degrade --hr=DIR --pool=pool.npz --scale=2 \
      --output_dir=OUT [--seed=0] [--noise_sigma=0] [--batch_size=4]

For each HR image in DIR (sorted; read by `images.read_image`, so as RGB
in [0, 1]) draws a kernel from the pool (`pool.py`; --scale=4 uses its x4
kernels) and writes `OUT/<name>.png`, 8-bit RGB:

  lr = quantize(correlate(hr, kernel, reflect)[::s, ::s] + noise)

per channel, rows and columns 0, s, 2s, ..., so (ceil(H / s), ceil(W / s));
noise is Gaussian with standard deviation --noise_sigma in 8-bit levels (of
255), added before rounding and clipping (`div2krk.quantize`).

The blur is `degradation.downscale` in float32 under jit and vmap, on the
accelerator when there is one, --batch_size images at a time
(`downscale_batch`): each batch goes onto one canvas, its largest sides
rounded up to CANVAS_MULTIPLE, so one compiled program serves images of
many sizes; batches of larger images hold fewer (`batch_slots`). A batch
is blurred while the next is read and the previous written. An image's
result does not depend on the batch size or its batch-mates.

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
from typing import Callable, Optional, Sequence

from absl import flags
import imageio.v3 as iio
import jax
from jaxtyping import Float, Int, UInt8
import numpy as np

from kernelgan_jax import commands
from kernelgan_jax import degradation
from kernelgan_jax import div2krk
from kernelgan_jax import images
from kernelgan_jax import outputs
from kernelgan_jax import pool as pool_lib


MANIFEST = "manifest.jsonl"
_ERROR = "kernelgan_jax.degrade: error:"

# Canvases are rounded up to multiples of this, so that batches of images of
# similar sizes share one compiled program.
CANVAS_MULTIPLE = 128
# A batch holds up to --batch_size canvases of this many pixels; larger
# images take more than one slot's share.
SLOT_PIXELS = 2048 * 2048


def _downscale_canvases(canvases: Float[jax.Array, "n h w c"],
                        kernels: Float[jax.Array, "n k k"],
                        sizes: Int[jax.Array, "n 2"], scale: int
                        ) -> Float[jax.Array, "n h2 w2 c"]:
  """`degradation.downscale` of each canvas's top-left `sizes[i]` image."""
  return jax.vmap(lambda canvas, kernel, size: degradation.downscale(
      canvas, kernel, scale, size=size))(canvases, kernels, sizes)


_downscale_jit = jax.jit(_downscale_canvases, static_argnames=("scale",))


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


def canvas_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, int]:
  """The canvas of images of these shapes (portrait ones transposed): the
  largest height and width, each rounded up to CANVAS_MULTIPLE."""
  def rounded(n: int) -> int:
    return -(-n // CANVAS_MULTIPLE) * CANVAS_MULTIPLE
  sides = [sorted(shape[:2]) for shape in shapes]
  return (rounded(max(short for short, _ in sides)),
          rounded(max(long for _, long in sides)))


def batch_slots(canvas_hw: tuple[int, int], batch_size: int) -> int:
  """How many images of this canvas a batch holds: `batch_size`, fewer for
  canvases over SLOT_PIXELS (at least 1)."""
  pixels = canvas_hw[0] * canvas_hw[1]
  return max(1, min(batch_size, batch_size * SLOT_PIXELS // pixels))


def _dispatch(hrs: Sequence[np.ndarray], kernels: Sequence[np.ndarray],
              scale: int, slots: int) -> tuple[jax.Array, list]:
  """Starts `downscale_batch`'s blur; returns the (unfinished) result and
  what `_collect` needs to cut each image out of it."""
  h, w = canvas_shape([hr.shape for hr in hrs])
  # At least RGB's 3 channels, so that gray images do not need a program.
  channels = max(3, *(1 if hr.ndim == 2 else hr.shape[2] for hr in hrs))
  canvases = np.zeros((slots, h, w, channels), np.float32)
  stack = np.zeros((slots, *np.shape(kernels[0])), np.float32)
  sizes = np.ones((slots, 2), np.int32)
  crops = []
  for i, (hr, kernel) in enumerate(zip(hrs, kernels)):
    image = hr if hr.ndim == 3 else hr[..., None]
    # Portrait images go on the canvas transposed, with their kernel, so
    # that they share landscape images' canvas.
    transposed = image.shape[0] > image.shape[1]
    if transposed:
      image, kernel = image.transpose(1, 0, 2), np.transpose(kernel)
    canvases[i, :image.shape[0], :image.shape[1], :image.shape[2]] = image
    stack[i] = kernel
    sizes[i] = image.shape[:2]
    crops.append((-(-image.shape[0] // scale), -(-image.shape[1] // scale),
                  hr.shape[2] if hr.ndim == 3 else None, transposed))
  return _downscale_jit(canvases, stack, sizes, scale=scale), crops


def _collect(out: jax.Array, crops: list) -> list[np.ndarray]:
  """Each image's result out of `_dispatch`'s (waits for it)."""
  out = np.asarray(out)
  results = []
  for lr, (h, w, channels, transposed) in zip(out, crops):
    lr = lr[:h, :w, :channels or 1]
    lr = lr.transpose(1, 0, 2) if transposed else lr
    results.append(lr if channels else lr[..., 0])
  return results


def downscale_batch(hrs: Sequence[Float[np.ndarray, "h w *c"]],
                    kernels: Sequence[Float[np.ndarray, "k k"]], scale: int,
                    slots: Optional[int] = None
                    ) -> list[Float[np.ndarray, "h2 w2 *c"]]:
  """`degradation.downscale` (reflect) of each image with its kernel, in
  float32, as one batched call.

  The images go onto one zero canvas (`canvas_shape`; portrait images and
  their kernels transposed; 3 channels, or the most), padded with empty
  slots to `slots`; so one compiled program serves every batch of that
  canvas and slot count, whatever the sizes inside, and each image's result
  does not depend on the others.

  Args:
    hrs: HR images, (h, w, c) or (h, w), any sizes.
    kernels: one correlation kernel per image, all of one shape.
    scale: subsampling factor.
    slots: images in the compiled batch (default: as many as `hrs`).

  Returns:
    Per image, float32 (ceil(h / scale), ceil(w / scale)[, c]).
  """
  return _collect(*_dispatch(hrs, kernels, scale, slots or len(hrs)))


def noisy_quantize(lr_01: Float[np.ndarray, "h w *c"],
                   rng: Optional[np.random.Generator] = None,
                   noise_sigma: float = 0.0) -> UInt8[np.ndarray, "h w *c"]:
  """Adds Gaussian noise of `noise_sigma` 8-bit levels (drawn from `rng`,
  needed when noise_sigma > 0), rounds and clips to 8 bits."""
  lr = np.asarray(lr_01, np.float64)
  if noise_sigma > 0:
    lr = lr + rng.standard_normal(lr.shape) * (noise_sigma / 255.0)
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
                   pool_path: str = "", batch_size: int = 4,
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
    batch_size: images blurred together (`downscale_batch`, `batch_slots`);
      the results do not depend on it.
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
  todo = len(planned - done)

  def finish(batch: list[dict], started: tuple) -> None:
    for item, lr in zip(batch, _collect(*started)):
      lr_u8 = noisy_quantize(lr, item["rng"], noise_sigma)
      outputs.replace_atomically(
          os.path.join(output_dir, item["lr"]),
          lambda p, lr_u8=lr_u8: iio.imwrite(p, lr_u8))
      record = {"hr": item["hr"], "lr": item["lr"],
                "kernel_index": item["index"],
                "kernel_name": str(pool["names"][item["index"]]),
                **settings, "pool": pool_path}
      with open(manifest, "a") as f:
        f.write(json.dumps(record) + "\n")
      counts["written"] += 1

  # A batch's blur runs while the next batch is read and the previous one
  # written.
  batch, in_flight = [], None

  def room(items: list[dict]) -> int:
    return batch_slots(canvas_shape([i["image"].shape for i in items]),
                       batch_size)

  def start() -> None:
    nonlocal batch, in_flight
    # Every batch of a canvas gets the same slots (one program), but a run
    # of fewer images does not blur empty ones.
    slots = max(min(room(batch), todo), len(batch))
    started = _dispatch([item.pop("image") for item in batch],
                        [kernels[item["index"]] for item in batch], scale,
                        slots)
    if in_flight:
      finish(*in_flight)
    batch, in_flight = [], (batch, started)

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
      hr = images.read_image(path).astype(np.float32)
    except Exception as error:  # pylint: disable=broad-except
      report(f"{path}: {commands.error_line(error)}")
      counts["failed"] += 1
      continue
    rng = image_rng(seed, name)
    item = {"hr": path, "lr": lr_name, "rng": rng, "image": hr,
            "index": int(eligible[rng.integers(len(eligible))])}
    if batch and len(batch) + 1 > room(batch + [item]):
      start()
    batch.append(item)
    if len(batch) == room(batch):
      start()
  if batch:
    start()
  if in_flight:
    finish(*in_flight)
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
  flags.DEFINE_integer(
      "batch_size", 4, "HR images blurred together in one call. More keeps "
      "an accelerator busier but takes more memory: about 0.15 GB per "
      "2040x1356 image in float32, on the host and the device; images "
      "over 2048x2048 pixels count for more than one. The LR images do not "
      "depend on it.", lower_bound=1)


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
        args.noise_sigma, args.pool, args.batch_size,
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
