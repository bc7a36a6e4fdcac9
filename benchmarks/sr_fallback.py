r"""SR that falls back to plain ZSSR where the kernel looks unreliable.

  python -m benchmarks.sr_fallback --set_dir=.sets/div2krk_ng \
      --zssr=benchmarks/results/zssr-fast-x2-ng-...json \
      --kernels=.sets/kernels-cpu-ng-x2.npz [--estimator=kernelgan] [--x4] \
      --tag=...

ZSSR with a wrong kernel can end far below bicubic interpolation, while
ZSSR with MATLAB's bicubic kernel (plain ZSSR) rarely does. The policy
scored here: super-resolve with the estimated kernel unless its reliability
score (`reliability.score`, the headline `recurrence_vs_bicubic`) is above
`reliability.WARN_ABOVE`, the threshold the command line already warns at,
and with the bicubic kernel where it is. Nothing is tuned on these sets:
the threshold was chosen earlier, on the kernels' errors. From one
`benchmarks/zssr_eval.py` run with all four columns (its SR images are the
policy's, so no ZSSR runs here), and the kernels file the run used: per
image the score and which kernel the policy keeps, and for the policy, the
estimate and plain ZSSR the mean aligned PSNR, the share of the gap from
plain ZSSR to ZSSR with the true kernel closed, and the images below bicubic
interpolation. The flags other than --zssr are `benchmarks/zssr_eval.py`'s,
with its meaning (the run's). Writes
<results_dir>/sr_fallback-<tag>-<device>-<date>.{json,md}.
"""

import json
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import machine
from benchmarks import zssr_eval
from kernelgan_jax import div2krk
from kernelgan_jax import reliability
from kernelgan_jax import sr_metrics

_ZSSR = flags.DEFINE_string("zssr", None, "The zssr_eval run's JSON.")
# The run's own settings, under zssr_eval's flags.
_SET_DIR, _KERNELS, _ESTIMATOR = (zssr_eval._SET_DIR, zssr_eval._KERNELS,  # pylint: disable=protected-access
                                  zssr_eval._ESTIMATOR)  # pylint: disable=protected-access
_SEED, _X4 = zssr_eval._SEED, zssr_eval._X4  # pylint: disable=protected-access
_TAG, _RESULTS = zssr_eval._TAG, zssr_eval._OUT  # pylint: disable=protected-access

COLUMNS = ("zssr_kernelgan", "policy", "zssr_bicubic")
NAMES = {"zssr_kernelgan": "ZSSR, estimate", "policy": "ZSSR, fallback",
         "zssr_bicubic": "ZSSR, bicubic kernel"}


def policy_rows(zssr_rows: list[dict], scores: dict[str, float]
                ) -> list[dict]:
  """Each image's aligned PSNRs with the policy's column added.

  Args:
    zssr_rows: a zssr_eval run's rows (all four columns).
    scores: the reliability headline of each image's estimate.

  Returns:
    Rows of name, score, uses_bicubic (the policy falls back) and the
    aligned PSNR of bicubic, zssr_bicubic, zssr_kernelgan, zssr_true and
    'policy'.
  """
  rows = []
  for row in zssr_rows:
    psnr = {m: row[m]["aligned"]["psnr"] for m in sr_metrics.GAP_METHODS
            + ("bicubic",)}
    fallback = scores[row["name"]] > reliability.WARN_ABOVE
    psnr["policy"] = psnr["zssr_bicubic" if fallback else "zssr_kernelgan"]
    rows.append({"name": row["name"], "score": scores[row["name"]],
                 "uses_bicubic": fallback,
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
  lines = [
      f"SR with a fallback to plain ZSSR where the kernel looks unreliable "
      f"(reliability score above {reliability.WARN_ABOVE}), "
      f"{meta['estimator']}'s kernels from {meta['kernels']} on "
      f"{meta['set_dir']}{' (x4)' if meta['x4'] else ''}, ZSSR from "
      f"{meta['zssr']} (preset {meta['preset']}); scored on "
      f"{meta['device']}, {meta['date']}. Aligned Y PSNR (dB).", "",
      "| image | kernel error | score | kept | bicubic | ZSSR, estimate | "
      "ZSSR, bicubic kernel | ZSSR, true | policy |",
      "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    error = f"{r['kernel_error']:.3f}" if r["kernel_error"] is not None else ""
    lines.append(
        f"| {r['name']} | {error} | {r['score']:+.3f} | "
        f"{'bicubic' if r['uses_bicubic'] else 'estimate'} | "
        f"{r['bicubic']:.2f} | {r['zssr_kernelgan']:.2f} | "
        f"{r['zssr_bicubic']:.2f} | {r['zssr_true']:.2f} | "
        f"{r['policy']:.2f} |")
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


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if not (_ZSSR.value and _KERNELS.value and _TAG.value):
    raise app.UsageError("--zssr, --kernels and --tag are required.")
  with open(_ZSSR.value) as f:
    run = json.load(f)
  examples = div2krk.load_set(_SET_DIR.value)
  kernels = np.load(_KERNELS.value)
  scores = {}
  for row in run["rows"]:
    example = examples[row["name"]]
    lr = example.lr_x4 if _X4.value else example.lr
    estimator = row.get("selected", _ESTIMATOR.value)  # select's choice.
    kernel = kernels[f"{estimator}/{row['name']}/{_SEED.value}/kernel_x2"]
    scores[row["name"]] = reliability.score(lr, kernel)[reliability.HEADLINE]
  rows = policy_rows(run["rows"], scores)
  totals = summary(rows)
  meta = dict(machine.describe(), set_dir=_SET_DIR.value, zssr=_ZSSR.value,
              kernels=_KERNELS.value, estimator=_ESTIMATOR.value,
              seed=_SEED.value, x4=_X4.value, tag=_TAG.value,
              preset=run["meta"]["preset"],
              threshold=reliability.WARN_ABOVE, totals=totals)
  text = markdown(rows, totals, meta)
  machine.save_results(_RESULTS.value,
                       f"sr_fallback-{_TAG.value}-{meta['device']}-"
                       f"{meta['date']}", meta, rows, text)


if __name__ == "__main__":
  app.run(main)
