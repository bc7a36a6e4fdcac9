r"""SR that falls back to plain ZSSR where the kernel looks unreliable, and
narrows it where it beats bicubic only narrowly (what `--sr` does).

  python -m benchmarks.sr_fallback --set_dir=.sets/div2krk_ng \
      --zssr=benchmarks/results/zssr-fast-x2-ng-...json \
      --kernels=.sets/kernels-cpu-ng-x2.npz [--estimator=kernelgan] [--x4] \
      [--narrowed_kernels=narrowed.npz | --narrowed=zssr-...json] --tag=...

ZSSR with a wrong kernel can end far below bicubic interpolation, while
ZSSR with MATLAB's bicubic kernel (plain ZSSR) rarely does. The policy
scored here is `reliability.sr_kernel`'s: super-resolve with the bicubic
kernel where the estimate's reliability score (`reliability.score`, the
headline `recurrence_vs_bicubic`) is above `reliability.WARN_ABOVE` (the
threshold the command line warns at, chosen earlier on the kernels' errors),
with a copy of the estimate narrowed by `reliability.sr_width_factor` where
it is above `reliability.NARROW_FROM`, and with the estimate elsewhere. From
one `benchmarks/zssr_eval.py` run with all four columns and the kernels file
it used: per image the score and which kernel the policy keeps, and for the
policy, the fallback alone, the estimate and plain ZSSR the mean aligned
PSNR, the share of the gap from plain ZSSR to ZSSR with the true kernel
closed, and the images below bicubic interpolation. The narrowed kernels
need ZSSR runs of their own: `--narrowed_kernels` writes them (key
`<estimator>_narrowed`) and prints the `zssr_eval` command that runs them
(only the images narrowed), whose JSON `--narrowed` then reads; without it
only the fallback is scored. The flags other than --zssr and --narrowed* are
`benchmarks/zssr_eval.py`'s, with its meaning (the run's). Writes
<results_dir>/sr_fallback-<tag>-<device>-<date>.{json,md}.
"""

import json
from typing import Optional, Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from benchmarks import zssr_eval
from kernelgan_jax import div2krk
from kernelgan_jax import reliability
from kernelgan_jax import sr_metrics

_ZSSR = flags.DEFINE_string("zssr", None, "The zssr_eval run's JSON.")
_NARROWED_KERNELS = flags.DEFINE_string(
    "narrowed_kernels", None, "Write the narrowed kernels here (.npz) and "
    "print the zssr_eval command for them, instead of scoring.")
_NARROWED = flags.DEFINE_string(
    "narrowed", None, "The zssr_eval run of the narrowed kernels (JSON).")
# The run's own settings, under zssr_eval's flags.
_SET_DIR, _KERNELS, _ESTIMATOR = (zssr_eval._SET_DIR, zssr_eval._KERNELS,  # pylint: disable=protected-access
                                  zssr_eval._ESTIMATOR)  # pylint: disable=protected-access
_SEED, _X4 = zssr_eval._SEED, zssr_eval._X4  # pylint: disable=protected-access
_TAG, _RESULTS = zssr_eval._TAG, zssr_eval._OUT  # pylint: disable=protected-access

COLUMNS = ("zssr_kernelgan", "fallback", "policy", "zssr_bicubic")
NAMES = {"zssr_kernelgan": "ZSSR, estimate", "fallback": "ZSSR, fallback",
         "policy": "ZSSR, fallback and narrowing (`--sr`)",
         "zssr_bicubic": "ZSSR, bicubic kernel"}


def policy_rows(zssr_rows: list[dict], scores: dict[str, float],
                narrowed: Optional[dict[str, dict]] = None) -> list[dict]:
  """Each image's aligned PSNRs with the policies' columns added.

  Args:
    zssr_rows: a zssr_eval run's rows (all four columns).
    scores: the reliability headline of each image's estimate.
    narrowed: rows by name of a zssr_eval run of the narrowed kernels (its
      `zssr_kernelgan` column); None scores the fallback alone ('policy'
      is then 'fallback').

  Returns:
    Rows of name, score, uses_bicubic (the policy falls back), width (the
    factor the policy narrows by), kept ('estimate', 'narrowed',
    'bicubic'), and the aligned PSNR of bicubic, zssr_bicubic,
    zssr_kernelgan, zssr_true, 'fallback' (the fallback alone) and
    'policy'.

  Raises:
    KeyError: `narrowed` lacks an image the policy narrows.
  """
  rows = []
  for row in zssr_rows:
    name = row["name"]
    psnr = {m: row[m]["aligned"]["psnr"] for m in sr_metrics.GAP_METHODS
            + ("bicubic",)}
    fallback = reliability.sr_choice(scores[name], narrow=False)[0] == (
        "bicubic")
    psnr["fallback"] = psnr["zssr_bicubic" if fallback else "zssr_kernelgan"]
    kept, width = reliability.sr_choice(scores[name],
                                        narrow=narrowed is not None)
    psnr["policy"] = (narrowed[name]["zssr_kernelgan"]["aligned"]["psnr"]
                      if kept == "narrowed" else psnr["fallback"])
    rows.append({"name": name, "score": scores[name],
                 "uses_bicubic": fallback, "width": width, "kept": kept,
                 "kernel_error": row.get("kernelgan_kernel_error"), **psnr})
  return rows


def summary(rows: list[dict]) -> dict[str, dict[str, float]]:
  """Per column: mean PSNR, gap closed (of the means), images below
  bicubic interpolation."""
  mean = {m: float(np.mean([r[m] for r in rows]))
          for m in COLUMNS + ("bicubic", "zssr_true")}
  result = {}
  for column in COLUMNS:
    gap = sr_metrics.gap_closed({"zssr_bicubic": mean["zssr_bicubic"],
                                 "zssr_kernelgan": mean[column],
                                 "zssr_true": mean["zssr_true"]})
    result[column] = {"psnr": mean[column], "gap_closed": gap,
                      "below_bicubic": [r["name"] for r in rows
                                        if r[column] < r["bicubic"]]}
  result["bicubic"] = {"psnr": mean["bicubic"]}
  result["zssr_true"] = {"psnr": mean["zssr_true"]}
  return result


def markdown(rows: list[dict], totals: dict, meta: dict) -> str:
  narrowing = (
      f", and with the kernel narrowed where the score is above "
      f"{reliability.NARROW_FROM} (by a factor falling to "
      f"{reliability.NARROWEST}; ZSSR of the narrowed kernels from "
      f"{meta['narrowed']})" if meta.get("narrowed") else
      " (no narrowed kernels given: 'policy' is the fallback alone)")
  lines = [
      f"SR with a fallback to plain ZSSR where the kernel looks unreliable "
      f"(reliability score above {reliability.WARN_ABOVE}){narrowing}, "
      f"{meta['estimator']}'s kernels from {meta['kernels']} on "
      f"{meta['set_dir']}{' (x4)' if meta['x4'] else ''}, ZSSR from "
      f"{meta['zssr']} (preset {meta['preset']}); scored on "
      f"{meta['device']}, {meta['date']}. Aligned Y PSNR (dB).", "",
      "| image | kernel error | score | kept | bicubic | ZSSR, estimate | "
      "ZSSR, bicubic kernel | ZSSR, true | fallback | policy |",
      "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    error = f"{r['kernel_error']:.3f}" if r["kernel_error"] is not None else ""
    kept = (f"narrowed x{r['width']:.2f}" if r["kept"] == "narrowed"
            else r["kept"])
    lines.append(
        f"| {r['name']} | {error} | {r['score']:+.3f} | {kept} | "
        f"{r['bicubic']:.2f} | {r['zssr_kernelgan']:.2f} | "
        f"{r['zssr_bicubic']:.2f} | {r['zssr_true']:.2f} | "
        f"{r['fallback']:.2f} | {r['policy']:.2f} |")
  lines += ["", "| SR | mean PSNR | gap closed | below bicubic interpolation |",
            "|---|---|---|---|"]
  for column in COLUMNS:
    t = totals[column]
    below = t["below_bicubic"]
    lines.append(f"| {NAMES[column]} | {t['psnr']:.2f} | "
                 f"{t['gap_closed']:.0%} | {len(below)} of {len(rows)}"
                 + (f" ({', '.join(below)})" if below else "") + " |")
  lines.append(f"| bicubic interpolation | {totals['bicubic']['psnr']:.2f} "
               "| | |")
  lines.append(f"| ZSSR, true kernel | {totals['zssr_true']['psnr']:.2f} "
               "| 100% | |")
  return "\n".join(lines) + "\n"


def write_narrowed(run: dict, scores: dict[str, float],
                   estimates: dict[str, np.ndarray]) -> None:
  """Writes `--narrowed_kernels` and prints the zssr_eval command for them.

  Args:
    run: the zssr_eval run.
    scores: the reliability headline of each image's estimate.
    estimates: each image's estimated x2 kernel (the run's).
  """
  narrowed, names = {}, []
  for row in run["rows"]:
    name = row["name"]
    kernel, how, _ = reliability.sr_kernel(
        estimates[name], {reliability.HEADLINE: scores[name]})
    if how == "narrowed":
      narrowed[f"{_ESTIMATOR.value}_narrowed/{name}/{_SEED.value}/"
               "kernel_x2"] = kernel
      names.append(name)
  np.savez(_NARROWED_KERNELS.value, **narrowed)
  print(f"{len(names)} of {len(run['rows'])} narrowed; their ZSSR runs:\n"
        f"python -m benchmarks.zssr_eval --set_dir={_SET_DIR.value} "
        f"--preset={run['meta']['preset']} "
        f"--kernels={_NARROWED_KERNELS.value} "
        f"--estimator={_ESTIMATOR.value}_narrowed --only={','.join(names)} "
        f"--reuse_sr{' --x4' if _X4.value else ''} --tag=...")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if not (_ZSSR.value and _KERNELS.value and _TAG.value):
    raise app.UsageError("--zssr, --kernels and --tag are required.")
  with open(_ZSSR.value) as f:
    run = json.load(f)
  examples = div2krk.load_set(_SET_DIR.value)
  kernels = np.load(_KERNELS.value)
  scores, estimates = {}, {}
  for row in run["rows"]:
    name = row["name"]
    lr = examples[name].lr_x4 if _X4.value else examples[name].lr
    estimator = row.get("selected", _ESTIMATOR.value)  # select's choice.
    estimates[name] = kernels[f"{estimator}/{name}/{_SEED.value}/kernel_x2"]
    scores[name] = reliability.score(lr, estimates[name])[reliability.HEADLINE]
  if _NARROWED_KERNELS.value:
    write_narrowed(run, scores, estimates)
    return
  narrowed = None
  if _NARROWED.value:
    with open(_NARROWED.value) as f:
      narrowed = {row["name"]: row for row in json.load(f)["rows"]}
  rows = policy_rows(run["rows"], scores, narrowed)
  totals = summary(rows)
  meta = dict(machine.describe(), set_dir=_SET_DIR.value, zssr=_ZSSR.value,
              kernels=_KERNELS.value, estimator=_ESTIMATOR.value,
              seed=_SEED.value, x4=_X4.value, tag=_TAG.value,
              preset=run["meta"]["preset"], narrowed=_NARROWED.value,
              threshold=reliability.WARN_ABOVE,
              narrow_from=reliability.NARROW_FROM,
              narrowest=reliability.NARROWEST, totals=totals)
  text = markdown(rows, totals, meta)
  machine.save_results(_RESULTS.value,
                       f"sr_fallback-{_TAG.value}-{meta['device']}-"
                       f"{meta['date']}", meta, rows, text)


if __name__ == "__main__":
  app.run(main)
