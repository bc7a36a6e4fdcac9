r"""How many iterations KernelGAN needs: kernels along one run, and a stop rule.

  python -m benchmarks.iterations --set_dir=/tmp/div2krk_sk --num_images=8 \
      [--x4] [--seeds=0,1,2] [--tag=gaussian]
  python -m benchmarks.iterations --photos [--seeds=0,1,2]

The learning rate drops 10x every 750 iterations (2e-7 from iteration
2250), so the late iterations may change nothing measurable. For every
image and seed one 3000-iteration run is made, and its kernel is read every
`--every` iterations. At each of `--checkpoints` it records the kernel
error against the true kernel (`metrics.kernel_error`; at x4 the analytic
x4 kernels of the estimate and of the truth, on the x4 LR image) and the
re-synthesis PSNR (`metrics.resynthesis_psnr`). The stop rule "stop at the
first read-out from `--min_stop` on where the raw kernel moved by less than
`tol` (relative L2) since the previous read-out" is evaluated for each of
`--stop_tols` on the same runs. The seed-to-seed spread (standard deviation
of the kernel error over seeds, per image) is the yardstick a shorter run
must stay within. With --photos the inputs are scikit-image's photographs
themselves, blurred only by their cameras (no true kernel): each
checkpoint's x2 kernel is compared with the same run's final one
(`metrics.kernel_error` between the two) and with the other seeds' at that
checkpoint, and the reliability score (`reliability.score`, from the LR
image alone) is recorded. Writes
benchmarks/results/iterations-<tag>[-x4]-<device>-<date>.{json,md}
(tag 'photos' with --photos).
"""

import json
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from kernelgan_jax import data as data_lib
from kernelgan_jax import div2krk
from kernelgan_jax import images
from kernelgan_jax import kernel as kernel_lib
from kernelgan_jax import metrics
from kernelgan_jax import reliability
from kernelgan_jax import train
from kernelgan_jax.config import get_config

_SET_DIR = flags.DEFINE_string("set_dir", "/tmp/div2krk_sk", "Set folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Images to evaluate.")
_X4 = flags.DEFINE_bool("x4", False, "The x4 LR images and x4 kernels.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per image.")
_ITERS = flags.DEFINE_integer("iters", 3000, "Length of each run.")
_CHECKPOINTS = flags.DEFINE_list(
    "checkpoints", ["500", "750", "1000", "1500", "2250", "3000"],
    "Iterations at which the kernels are scored.")
_EVERY = flags.DEFINE_integer("every", 250, "Kernel read-out period.")
_MIN_STOP = flags.DEFINE_integer("min_stop", 750,
                                 "Earliest iteration the stop rule may stop.")
_STOP_TOLS = flags.DEFINE_list("stop_tols", ["0.05", "0.02", "0.01"],
                               "Relative kernel changes of the stop rule.")
_TAG = flags.DEFINE_string("tag", "gaussian", "Names the results files.")
_PHOTOS = flags.DEFINE_bool(
    "photos", False, "scikit-image's photographs as they are, instead of "
    "a set (no true kernel).")
_OUT = flags.DEFINE_string("results_dir", "benchmarks/results",
                           "Where the JSON and markdown go.")


def run_with_readouts(lr: np.ndarray, config, seed: int, every: int
                      ) -> dict[int, np.ndarray]:
  """One run; the raw 13x13 kernel after every `every` iterations."""
  data_key, init_key = train.seed_keys(seed)
  data = data_lib.prepare(images.as_float_rgb(lr), config, data_key)
  state = train.init_state(init_key, config)
  step = train.jitted_step(config)
  raw = {}
  for done in range(every, config.max_iters + 1, every):
    state, _ = train.drive(
        state, lambda start, length: data_lib.crops(data, config, start,
                                                    length),
        every, step, lambda length: train.jitted_chunk(config, length))
    raw[done] = train.final_kernel(state, config)
  return raw


def stop_iteration(raw: dict[int, np.ndarray], tol: float,
                   min_stop: int) -> int:
  """The first read-out from `min_stop` on whose kernel moved by less than
  `tol` (relative L2) since the previous read-out, else the last one."""
  times = sorted(raw)
  for before, now in zip(times, times[1:]):
    change = np.linalg.norm(raw[now] - raw[before]) / np.linalg.norm(raw[now])
    if now >= min_stop and change < tol:
      return now
  return times[-1]


def score(example: div2krk.Example, raw: np.ndarray, config, x4: bool
          ) -> dict:
  """Kernel error and re-synthesis PSNR of a raw kernel's final kernels."""
  estimate = kernel_lib.estimate_from_raw(raw, {}, 0, config)
  kernel = estimate.kernel_x4 if x4 else estimate.kernel_x2
  return metrics.score_kernel(kernel, example, x4)


def markdown(rows: list[dict], meta: dict) -> str:
  """Means over images of the per-image seed means, per checkpoint."""
  checkpoints = meta["checkpoints"]
  images = sorted({r["name"] for r in rows}, key=[r["name"]
                                                  for r in rows].index)
  def per_image(key, at):
    return [np.mean([r["scores"][str(at)][key] for r in rows
                     if r["name"] == name]) for name in images]
  spread = np.mean([np.std([r["scores"][str(checkpoints[-1])]["kernel_error"]
                            for r in rows if r["name"] == name])
                    for name in images])
  lines = [
      f"Kernels along one run, {meta['tag']}{' x4' if meta['x4'] else ''} "
      f"({meta['set']}, {len(images)} images x seeds {meta['seeds']}), "
      f"{meta['device']} ({meta['processor']}), jax {meta['jax']}, "
      f"{meta['date']}.",
      "",
      "| iterations | kernel error (mean) | change vs last | re-synthesis "
      "PSNR (mean) | change vs last |",
      "|---|---|---|---|---|",
  ]
  last_err = np.mean(per_image("kernel_error", checkpoints[-1]))
  last_psnr = np.mean(per_image("resynthesis_psnr", checkpoints[-1]))
  for at in checkpoints:
    err = np.mean(per_image("kernel_error", at))
    psnr = np.mean(per_image("resynthesis_psnr", at))
    lines.append(f"| {at} | {err:.4f} | {err - last_err:+.4f} | {psnr:.2f} "
                 f"| {psnr - last_psnr:+.2f} |")
  lines += ["", f"Seed-to-seed spread of the kernel error at "
            f"{checkpoints[-1]} (std over seeds, mean over images): "
            f"{spread:.4f}.", "",
            "| stop rule tol | mean stop iteration | kernel error at stop "
            "| PSNR at stop |", "|---|---|---|---|"]
  for tol in meta["stop_tols"]:
    stops = [r["stop"][str(tol)] for r in rows]
    lines.append(
        f"| {tol} | {np.mean([s['iteration'] for s in stops]):.0f} "
        f"| {np.mean([s['kernel_error'] for s in stops]):.4f} "
        f"| {np.mean([s['resynthesis_psnr'] for s in stops]):.2f} |")
  lines += ["", "Per image (seed means), kernel error at each checkpoint:",
            "", "| image | " + " | ".join(map(str, checkpoints)) + " |",
            "|---|" + "---|" * len(checkpoints)]
  columns = [per_image("kernel_error", at) for at in checkpoints]
  for i, name in enumerate(images):
    lines.append(f"| {name} | "
                 + " | ".join(f"{c[i]:.4f}" for c in columns) + " |")
  return "\n".join(lines) + "\n"


def photo_rows(config, seeds: list[int], checkpoints: list[int]
               ) -> list[dict]:
  """Per photograph and seed: each checkpoint's x2 kernel against the run's
  last, and its reliability score; then, per checkpoint, the mean distance
  between seeds' kernels (the yardstick)."""
  rows = []
  for name, photo in div2krk.sample_photographs().items():
    kernels = {}
    for seed in seeds:
      raw = run_with_readouts(photo, config, seed, _EVERY.value)
      kernels[seed] = {at: kernel_lib.estimate_from_raw(
          raw[at], {}, seed, config).kernel_x2 for at in checkpoints}
      final = kernels[seed][checkpoints[-1]]
      row = {"name": name, "seed": seed, "lr_shape": list(photo.shape),
             "to_last": {str(at): metrics.kernel_error(k, final)
                         for at, k in kernels[seed].items()},
             "reliability": {str(at): reliability.score(photo, k)[
                 reliability.HEADLINE] for at, k in kernels[seed].items()}}
      rows.append(row)
      print(json.dumps(row), flush=True)
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    for row in rows[-len(seeds):]:
      row["between_seeds"] = {str(at): float(np.mean(
          [metrics.kernel_error(kernels[a][at], kernels[b][at])
           for a, b in pairs])) if pairs else None for at in checkpoints}
  return rows


def photo_markdown(rows: list[dict], meta: dict) -> str:
  """Means over photographs and seeds, per checkpoint."""
  checkpoints = meta["checkpoints"]
  mean = lambda key, at: float(np.mean([r[key][str(at)] for r in rows]))
  lines = [
      f"Kernels along one run on scikit-image's photographs as they are "
      f"(camera blur, no true kernel), {len({r['name'] for r in rows})} "
      f"photographs x seeds {meta['seeds']}: {meta['device']} "
      f"({meta['processor']}), jax {meta['jax']}, {meta['date']}.", "",
      "| iterations | distance to the run's last kernel | distance between "
      "seeds | reliability score |", "|---|---|---|---|"]
  for at in checkpoints:
    between = ([r["between_seeds"][str(at)] for r in rows]
               if rows and rows[0]["between_seeds"][str(at)] is not None
               else [])
    lines.append(f"| {at} | {mean('to_last', at):.4f} | "
                 + (f"{np.mean(between):.4f}" if between else "")
                 + f" | {mean('reliability', at):+.3f} |")
  lines += ["", "Per photograph (seed means): distance to the last kernel "
            f"at {checkpoints[0]} / ... / {checkpoints[-2]} iterations, and "
            "between seeds at the last.", "",
            "| photograph | " + " | ".join(map(str, checkpoints[:-1]))
            + f" | between seeds at {checkpoints[-1]} |",
            "|---|" + "---|" * len(checkpoints)]
  for name in dict.fromkeys(r["name"] for r in rows):
    mine = [r for r in rows if r["name"] == name]
    cells = [f"{np.mean([r['to_last'][str(at)] for r in mine]):.4f}"
             for at in checkpoints[:-1]]
    between = mine[0]["between_seeds"][str(checkpoints[-1])]
    cells.append(f"{between:.4f}" if between is not None else "")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  if _PHOTOS.value:
    config = get_config(max_iters=_ITERS.value)
    checkpoints = sorted(map(int, _CHECKPOINTS.value))
    seeds = list(map(int, _SEEDS.value))
    rows = photo_rows(config, seeds, checkpoints)
    meta = dict(machine.describe(), photos=True, seeds=seeds,
                iters=_ITERS.value, every=_EVERY.value,
                checkpoints=checkpoints, tag="photos")
    machine.save_results(
        _OUT.value, f"iterations-photos-{meta['device']}-{meta['date']}",
        meta, rows, photo_markdown(rows, meta))
    return
  examples = div2krk.load_or_make_set(_SET_DIR.value, _NUM_IMAGES.value,
                                      x4=_X4.value)
  config = get_config(max_iters=_ITERS.value)
  checkpoints = sorted(map(int, _CHECKPOINTS.value))
  tols = [float(t) for t in _STOP_TOLS.value]
  rows = []
  for example in examples:
    lr = example.lr_x4 if _X4.value else example.lr
    for seed in map(int, _SEEDS.value):
      start = time.perf_counter()
      try:
        raw = run_with_readouts(lr, config, seed, _EVERY.value)
      except images.ImageError as error:  # An x4 image too small for G.
        print(f"skipping {example.name}: {error}", flush=True)
        break
      seconds = time.perf_counter() - start
      row = {"name": example.name, "seed": seed, "lr_shape": list(lr.shape),
             "seconds": seconds,
             "scores": {str(at): score(example, raw[at], config, _X4.value)
                        for at in checkpoints},
             "stop": {}}
      for tol in tols:
        at = stop_iteration(raw, tol, _MIN_STOP.value)
        row["stop"][str(tol)] = dict(score(example, raw[at], config,
                                           _X4.value), iteration=at)
      rows.append(row)
      print(json.dumps(row), flush=True)
  meta = dict(machine.describe(), set=_SET_DIR.value, x4=_X4.value,
              seeds=_SEEDS.value, iters=_ITERS.value, every=_EVERY.value,
              checkpoints=checkpoints, stop_tols=tols,
              min_stop=_MIN_STOP.value, tag=_TAG.value)
  suffix = "-x4" if _X4.value else ""
  machine.save_results(
      _OUT.value,
      f"iterations-{_TAG.value}{suffix}-{meta['device']}-{meta['date']}",
      meta, rows, markdown(rows, meta))


if __name__ == "__main__":
  app.run(main)
