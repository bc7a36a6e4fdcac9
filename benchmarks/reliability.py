r"""Which number, computed without the HR image, says a kernel is wrong?

  python -m benchmarks.reliability --estimate \
      --kernels=/tmp/rel/h-gaussian.npz,/tmp/rel/h-nongaussian.npz \
      --set_dirs=/tmp/div2krk_sk,/tmp/div2krk_ng [--iters=1000]
  python -m benchmarks.reliability \
      --kernels=/tmp/rel/h-gaussian.npz,/tmp/rel/h-nongaussian.npz \
      --set_dirs=/tmp/div2krk_sk,/tmp/div2krk_ng \
      --set_names=gaussian,nongaussian --tag=1000it [--lr_noise=3] \
      [--nowidth_scan] [--noprior]

The first form estimates every image's kernel (seed 0) with each of
--run_estimators and writes them with their loss histories to --kernels,
in the layout of `benchmarks/estimators.py` (whose kernels files, e.g.
several seeds or full-length runs from an accelerator, the second form
also reads; without histories the history candidates are nan).

The second scores kernels files against their DIV2KRK-protocol sets. For
every (estimator, image, seed) it computes each candidate signal of
`kernelgan_jax.reliability` from the x2 LR image and the estimate (and,
for 'agreement', the other estimators' kernels of the same image and seed;
for the history candidates, the stored losses), the true kernel error
(`metrics.kernel_error`) and bicubic's, and the seconds each took. Then,
per set and pooled: the Spearman rho of every candidate (oriented so that
larger means "trust less") with the true error, a 90 % interval for a
few (resampling images), how often each orders two estimators' estimates
of one image right, the candidates at the true kernels (what a correct
kernel scores), a control (the headline of the true kernel: how much of
the ranking is image difficulty), and how well a threshold separates the
bad estimates (worse than bicubic's kernel, or the worst third) from the
rest, both the best threshold on the data and the package's
`reliability.WARN_ABOVE`. --lr_noise adds Gaussian noise to the LR images
first (the kernels stay those of the clean images): a robustness check.
Writes benchmarks/results/reliability-<tag>-<device>-<date>.{json,md}.
"""

import json
import time
import zlib
from typing import Callable, Sequence

from absl import app
from absl import flags
import numpy as np
from scipy import stats

from benchmarks import machine
from kernelgan_jax import batch
from kernelgan_jax import div2krk
from kernelgan_jax import metrics
from kernelgan_jax import reliability
from kernelgan_jax.config import get_config

_KERNELS = flags.DEFINE_list("kernels", None, "Kernels files (.npz).")
_SET_DIRS = flags.DEFINE_list("set_dirs", None,
                              "The set of each kernels file.")
_SET_NAMES = flags.DEFINE_list("set_names", None,
                               "Short names of the sets (default: dirs).")
_ESTIMATORS = flags.DEFINE_list("estimators", None,
                                "Estimators to score (default: all).")
_WIDTH_SCAN = flags.DEFINE_bool(
    "width_scan", True, "Also the recurrence width scan (5x the cost).")
_PRIOR = flags.DEFINE_bool("prior", True, "Also the prior's NLL.")
_ESTIMATE = flags.DEFINE_bool(
    "estimate", False, "Instead of scoring, estimate every set's kernels "
    "(seed 0, with loss histories) into its --kernels file.")
_RUN_ESTIMATORS = flags.DEFINE_list("run_estimators",
                                    ["kernelgan", "fkp_lite"],
                                    "With --estimate: the estimators run.")
_ITERS = flags.DEFINE_integer("iters", 1000, "With --estimate: iterations.")
_LR_NOISE = flags.DEFINE_float(
    "lr_noise", 0.0, "Gaussian noise std (8-bit levels) added to the LR "
    "images before the signals (the kernels stay those of clean images).")
_TAG = flags.DEFINE_string("tag", "x2", "Names the results files.")
_OUT = flags.DEFINE_string("results_dir", "benchmarks/results",
                           "Where the JSON and markdown go.")

flags.mark_flags_as_required(["kernels", "set_dirs"])

# Candidate -> (how it is read off a row's signals, what it means). Every
# candidate is oriented so that larger means "trust less".
CANDIDATES: dict[str, tuple[Callable[[dict], float], str]] = {
    "sharpness_mismatch": (lambda s: abs(s["sharpness_log_ratio"]),
                           "|log sharpness(down) / sharpness(LR)|"),
    "too_wide": (lambda s: -s["sharpness_log_ratio"],
                 "-log sharpness ratio (kernel looks too wide)"),
    "spectral_mismatch": (lambda s: abs(s["spectral_log_ratio"]),
                          "|log band ratio(down) / band ratio(LR)|"),
    "spectral_too_wide": (lambda s: -s["spectral_log_ratio"],
                          "-log band ratio (kernel looks too wide)"),
    "spectral_directional": (
        lambda s: float(np.sqrt(np.mean(np.square(s["spectral_sectors"])))),
        "RMS over 4 orientation sectors of the log band ratio"),
    "recurrence": (lambda s: s["recurrence"],
                   "patch recurrence error of the estimate"),
    "recurrence_vs_bicubic": (
        lambda s: np.log(s["recurrence"] / s["recurrence_bicubic"]),
        "log(recurrence / recurrence with bicubic)"),
    "width_excess": (lambda s: s.get("width_excess", np.nan),
                     "recurrence width scan: log(R(1) / min R)"),
    "width_offset": (lambda s: abs(s.get("best_width", np.nan)),
                     "recurrence width scan: |log best factor|"),
    "prior_nll": (lambda s: s.get("prior_nll", np.nan),
                  "FKP prior NLL (nats)"),
    "variance": (lambda s: s["variance"], "kernel variance (px^2)"),
    "anisotropy": (lambda s: s["anisotropy"], "sqrt(eigenvalue ratio)"),
    "far_mass": (lambda s: s["far_mass"], "mass beyond 5 px"),
    "agreement": (lambda s: s.get("agreement", np.nan),
                  "kernel_error to the other estimators' kernels"),
    "d_wins": (lambda s: -s.get("loss_discriminator_final", np.nan),
               "-D loss, last 100 iterations (history)"),
    "g_adversarial": (lambda s: s.get("loss_adversarial_final", np.nan),
                      "G adversarial loss, last 100 iterations"),
    "bicubic_loss": (lambda s: s.get("loss_bicubic_final", np.nan),
                     "G bicubic loss, last 100 iterations"),
}
HISTORY_KEYS = ("loss_discriminator", "loss_adversarial", "loss_bicubic")


def timed(seconds: dict, name: str, fn: Callable, *args):
  """fn(*args), adding its wall time to seconds[name]."""
  start = time.perf_counter()
  value = fn(*args)
  seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
  return value


def signals(lr: np.ndarray, kernel: np.ndarray, others: list[np.ndarray],
            bicubic_recurrence: float, prior) -> tuple[dict, dict]:
  """Every candidate's raw inputs for one kernel, and their seconds."""
  seconds = {}
  found = {"sharpness_log_ratio": timed(
      seconds, "sharpness", reliability.sharpness_mismatch, lr, kernel)}
  found["spectral_log_ratio"] = float(timed(
      seconds, "spectral", reliability.spectral_mismatch, lr, kernel)[0])
  found["spectral_sectors"] = timed(
      seconds, "spectral_sectors", reliability.spectral_mismatch, lr, kernel,
      2, 4).tolist()
  found["recurrence"] = timed(seconds, "recurrence",
                              reliability.recurrence_error, lr, kernel)
  found["recurrence_bicubic"] = bicubic_recurrence
  if _WIDTH_SCAN.value:
    scan = timed(seconds, "width_scan", reliability.width_scan, lr, kernel)
    found["width_excess"] = scan["excess"]
    found["best_width"] = scan["best_width"]
  if prior is not None:
    found["prior_nll"] = timed(seconds, "prior_nll", reliability.prior_nll,
                               kernel, prior)
  found.update(timed(seconds, "moments", reliability.kernel_moments, kernel))
  if others:
    found["agreement"] = timed(seconds, "agreement", lambda: float(np.mean(
        [reliability.agreement(kernel, o) for o in others])))
  return found, seconds


def score_set(set_name: str, set_dir: str, kernels_path: str, prior
              ) -> list[dict]:
  """One row per (estimator, image, seed), plus one per image's truth."""
  examples = div2krk.load_set(set_dir)
  stored = np.load(kernels_path)
  runs = sorted({tuple(k.split("/")[:3]) for k in stored.files
                 if k.endswith("/kernel_x2")})
  if _ESTIMATORS.value:
    runs = [r for r in runs if r[0] in _ESTIMATORS.value]
  bicubic = metrics.bicubic_kernel_x2()
  rows = []
  for name, example in examples.items():
    mine = [r for r in runs if r[1] == name]
    if not mine:
      continue
    lr = example.lr
    if _LR_NOISE.value:
      rng = np.random.default_rng(zlib.crc32(name.encode()))
      lr = np.round(np.clip(lr + rng.normal(0.0, _LR_NOISE.value / 255,
                                            lr.shape), 0, 1) * 255) / 255
    bicubic_recurrence = reliability.recurrence_error(lr, bicubic)
    bicubic_error = metrics.kernel_error(bicubic, example.kernel_x2)
    truth, _ = signals(lr, example.kernel_x2, [], bicubic_recurrence, prior)
    rows.append({"set": set_name, "estimator": "truth", "name": name,
                 "seed": "-", "family": example.family, "kernel_error": 0.0,
                 "bicubic_error": bicubic_error, "signals": truth})
    for estimator, _, seed in mine:
      kernel = stored[f"{estimator}/{name}/{seed}/kernel_x2"]
      others = [stored[f"{e}/{name}/{s}/kernel_x2"] for e, n, s in mine
                if n == name and s == seed and e != estimator]
      found, seconds = signals(lr, kernel, others, bicubic_recurrence,
                               prior)
      prefix = f"{estimator}/{name}/{seed}/history/"
      found.update(reliability.history_features(
          {k: stored[prefix + k] for k in HISTORY_KEYS
           if prefix + k in stored.files}))
      row = {"set": set_name, "estimator": estimator, "name": name,
             "seed": seed, "family": example.family,
             "kernel_error": metrics.kernel_error(kernel, example.kernel_x2),
             "bicubic_error": bicubic_error, "signals": found,
             "seconds": seconds}
      rows.append(row)
      print(json.dumps(row), flush=True)
  return rows


def estimate(set_dir: str, kernels_path: str) -> None:
  """Seed 0's kernels and loss histories of every image of a set, in the
  kernels-file layout of `benchmarks/estimators.py` plus
  "{estimator}/{name}/0/history/{metric}" arrays."""
  examples = list(div2krk.load_set(set_dir).values())
  stored, timing = {}, {}
  for estimator in _RUN_ESTIMATORS.value:
    start = time.perf_counter()
    results = batch.estimate_kernels(
        [e.lr for e in examples], get_config(max_iters=_ITERS.value), [0],
        estimator=estimator)
    timing[estimator] = {"seconds": time.perf_counter() - start,
                         "runs": len(examples)}
    for example, (result,) in zip(examples, results):
      prefix = f"{estimator}/{example.name}/0"
      stored[prefix + "/kernel_x2"] = result.kernel_x2
      stored[prefix + "/raw_kernel"] = result.raw_kernel
      for key in HISTORY_KEYS:
        stored[f"{prefix}/history/{key}"] = result.history[key]
    print(f"{estimator}: {json.dumps(timing[estimator])}", flush=True)
  meta = dict(machine.describe(), set=set_dir, x4=False, seeds=[0],
              iters=_ITERS.value, timing=timing)
  machine.write_atomically(kernels_path, lambda f: np.savez(
      f, meta=json.dumps(meta), **stored), binary=True)


def candidate_values(rows: list[dict], candidate: str) -> np.ndarray:
  read = CANDIDATES[candidate][0]
  return np.array([read(r["signals"]) for r in rows], np.float64)


def spearman(values: np.ndarray, errors: np.ndarray) -> float:
  """Spearman's rho over the finite values (nan with fewer than 3)."""
  finite = np.isfinite(values)
  if finite.sum() < 3 or np.ptp(values[finite]) == 0:
    return float("nan")
  return float(stats.spearmanr(values[finite], errors[finite])[0])


def correlations(groups: dict[str, list[dict]]
                 ) -> dict[str, dict[str, float]]:
  """candidate -> group -> rho with the true kernel error."""
  table = {}
  for candidate in CANDIDATES:
    table[candidate] = {}
    for group, rows in groups.items():
      errors = np.array([r["kernel_error"] for r in rows])
      table[candidate][group] = spearman(candidate_values(rows, candidate),
                                         errors)
  return table


def pairs_ordered(rows: list[dict], candidate: str) -> tuple[int, int]:
  """Among pairs of estimators' estimates of one image and seed, how often
  the candidate orders them as their true errors do: (right, pairs). This
  ignores what makes an image hard for every estimator."""
  by_run = {}
  for row in rows:
    by_run.setdefault((row["set"], row["name"], row["seed"]), []).append(row)
  right = total = 0
  for members in by_run.values():
    values = candidate_values(members, candidate)
    for i in range(len(members)):
      for j in range(i + 1, len(members)):
        step = ((values[i] - values[j])
                * (members[i]["kernel_error"] - members[j]["kernel_error"]))
        if np.isfinite(step) and step != 0:
          total += 1
          right += int(step > 0)
  return right, total


def bootstrap_interval(rows: list[dict], candidate: str,
                       resamples: int = 1000, seed: int = 0
                       ) -> tuple[float, float]:
  """A 90 % interval of rho, resampling whole images (set, name) with
  replacement: an image's estimates are not independent."""
  clusters = {}
  for row in rows:
    clusters.setdefault((row["set"], row["name"]), []).append(row)
  keys = list(clusters)
  rng = np.random.default_rng(seed)
  found = []
  for _ in range(resamples):
    sample = [r for i in rng.integers(len(keys), size=len(keys))
              for r in clusters[keys[i]]]
    found.append(spearman(candidate_values(sample, candidate),
                          np.array([r["kernel_error"] for r in sample])))
  low, high = np.nanquantile(found, [0.05, 0.95])
  return float(low), float(high)


def separation(values: np.ndarray, bad: np.ndarray) -> dict:
  """The threshold (flag when value > it) with the best hit - false alarm,
  its rates, and the area under the ROC curve."""
  good = ~bad
  result = {"bad": int(bad.sum()), "good": int(good.sum())}
  if not bad.any() or not good.any():
    return result
  best = None
  ordered = np.unique(values)
  cuts = np.concatenate([[ordered[0] - 1.0],
                         (ordered[:-1] + ordered[1:]) / 2])
  for cut in cuts:
    flagged = values > cut
    hit, false_alarm = flagged[bad].mean(), flagged[good].mean()
    if best is None or hit - false_alarm > best[1] - best[2]:
      best = (float(cut), float(hit), float(false_alarm))
  auc = float(np.mean([(b > g) + 0.5 * (b == g) for b in values[bad]
                       for g in values[good]]))
  return {**result, "threshold": best[0], "hit_rate": best[1],
          "false_alarm_rate": best[2], "auc": auc}


def at_threshold(values: np.ndarray, bad: np.ndarray, cut: float) -> dict:
  """Hit and false alarm rates of a fixed threshold."""
  flagged = values > cut
  return {"threshold": cut,
          "hit_rate": float(flagged[bad].mean()) if bad.any() else None,
          "false_alarm_rate": (float(flagged[~bad].mean())
                               if (~bad).any() else None)}


def markdown(meta: dict, table: dict, intervals: dict, groups: dict,
             sizes: dict, seps: dict, costs: dict, truths: list[dict]
             ) -> str:
  names = list(groups)
  lines = [
      f"Reliability signals vs the true kernel error "
      f"({meta['tag']}): kernels {', '.join(meta['kernels'])}, scored on "
      f"{meta['device']}, {meta['date']}. Spearman rho of each candidate "
      "(oriented: larger = trust less) with metrics.kernel_error; n = "
      "estimates (estimator x image x seed). With n about 16, |rho| below "
      "about 0.5 is not distinguishable from 0 (p > 0.05); [a, b]: a 90 % "
      "interval, resampling images.",
      "",
      "| candidate | " + " | ".join(f"{g} (n={sizes[g]})" for g in names)
      + " | pairs ordered | at the true kernels: median / 90th pct | "
      "meaning | seconds/image |",
      "|---|" + "---|" * (len(names) + 4)]
  for candidate, per_group in table.items():
    cells = " | ".join(
        f"{per_group[g]:+.2f}" + (" [{:+.2f}, {:+.2f}]".format(
            *intervals[(candidate, g)]) if (candidate, g) in intervals
                                    else "") for g in names)
    at_truth = candidate_values(truths, candidate)
    at_truth = (f"{np.median(at_truth):.3g} / "
                f"{np.quantile(at_truth, 0.9):.3g}"
                if np.isfinite(at_truth).all() else "-")
    right, total = pairs_ordered(groups[names[-1]], candidate)
    lines.append(f"| {candidate} | {cells} | {right}/{total} | {at_truth} | "
                 f"{CANDIDATES[candidate][1]} | "
                 f"{costs.get(candidate, float('nan')):.3f} |")
  at_truth = {(r["set"], r["name"]): r for r in truths}
  control = " | ".join(
      "{:+.2f}".format(spearman(
          candidate_values([at_truth[(r["set"], r["name"])]
                            for r in groups[g]], reliability.HEADLINE),
          np.array([r["kernel_error"] for r in groups[g]])))
      for g in names)
  lines += ["", "Pairs ordered: of the pairs of estimators' estimates of one "
            f"image and seed ({names[-1]}), how many the candidate orders "
            "as their true errors. A control that needs the true kernel: "
            f"`{reliability.HEADLINE}` of the true kernel itself (how hard "
            "the image's kernel is to tell from bicubic, the same for every "
            f"estimate of the image) has rho {control} ({', '.join(names)}) "
            "with the estimates' errors: much of the ranking is which "
            "images are hard, not which estimate of an image is off."]
  flagged = candidate_values(truths, reliability.HEADLINE) > (
      reliability.WARN_ABOVE)
  lines += ["", f"At the true kernels the package's warning fires on "
            f"{flagged.sum()} of {len(truths)} images."]
  lines += ["", "How well a threshold separates the bad estimates (flag "
            "when the signal is above it): the best threshold on these very "
            "data (optimistic), and the package's warning threshold "
            f"({reliability.HEADLINE} > {reliability.WARN_ABOVE}).", "",
            "| signal | bad = | group | bad / good | best threshold | hit "
            "| false alarm | AUC | package threshold: hit | false alarm |",
            "|---|---|---|---|---|---|---|---|---|---|"]

  def rate(x):
    return "-" if x is None else f"{x:.2f}"

  for (candidate, label, group), sep in seps.items():
    best, fixed = sep["best"], sep["fixed"]
    head = (f"| {candidate} | {label} | {group} | {best['bad']} / "
            f"{best['good']} |")
    if "threshold" not in best:
      lines.append(head + " - | - | - | - | - | - |")
      continue
    lines.append(
        f"{head} {best['threshold']:.3f} | {best['hit_rate']:.2f} | "
        f"{best['false_alarm_rate']:.2f} | {best['auc']:.2f} | "
        f"{rate(fixed.get('hit_rate'))} | "
        f"{rate(fixed.get('false_alarm_rate'))} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
  del argv
  set_names = _SET_NAMES.value or _SET_DIRS.value
  if not len(_KERNELS.value) == len(_SET_DIRS.value) == len(set_names):
    raise app.UsageError("--kernels, --set_dirs and --set_names must pair")
  if _ESTIMATE.value:
    for set_dir, path in zip(_SET_DIRS.value, _KERNELS.value):
      estimate(set_dir, path)
    return
  prior = reliability.default_prior() if _PRIOR.value else None
  rows = []
  for name, set_dir, path in zip(set_names, _SET_DIRS.value,
                                 _KERNELS.value):
    rows += score_set(name, set_dir, path, prior)
  estimates = [r for r in rows if r["estimator"] != "truth"]
  groups = {name: [r for r in estimates if r["set"] == name]
            for name in set_names}
  if len(set_names) > 1:
    groups["pooled"] = estimates
  sizes = {g: len(r) for g, r in groups.items()}
  table = correlations(groups)
  intervals = {(c, g): bootstrap_interval(members, c)
               for g, members in groups.items()
               for c in dict.fromkeys([reliability.HEADLINE,
                                       "sharpness_mismatch",
                                       "spectral_directional"])}
  last = list(groups)[-1]
  best = max(CANDIDATES, key=lambda c: np.nan_to_num(table[c][last],
                                                     nan=-2.0))
  seps = {}
  for group, members in groups.items():
    errors = np.array([r["kernel_error"] for r in members])
    labels = {
        "worse than bicubic": np.array(
            [r["kernel_error"] > r["bicubic_error"] for r in members]),
        "worst third": errors > np.quantile(errors, 2 / 3)}
    for label, bad in labels.items():
      for candidate in dict.fromkeys([reliability.HEADLINE, best]):
        values = candidate_values(members, candidate)
        seps[(candidate, label, group)] = {
            "best": separation(values, bad),
            "fixed": (at_threshold(values, bad, reliability.WARN_ABOVE)
                      if candidate == reliability.HEADLINE else {})}
  per_kernel = {}
  for r in estimates:
    for part, seconds in r["seconds"].items():
      per_kernel.setdefault(part, []).append(seconds)
  part_of = {"sharpness_mismatch": "sharpness", "too_wide": "sharpness",
             "spectral_mismatch": "spectral", "spectral_too_wide": "spectral",
             "spectral_directional": "spectral_sectors",
             "recurrence": "recurrence",
             "recurrence_vs_bicubic": "recurrence",
             "width_excess": "width_scan", "width_offset": "width_scan",
             "prior_nll": "prior_nll", "variance": "moments",
             "anisotropy": "moments", "far_mass": "moments",
             "agreement": "agreement"}
  costs = {c: float(np.median(per_kernel[p])) for c, p in part_of.items()
           if p in per_kernel}
  meta = dict(machine.describe(), tag=_TAG.value, kernels=_KERNELS.value,
              set_dirs=_SET_DIRS.value, set_names=set_names, best=best,
              width_scan=_WIDTH_SCAN.value, prior=_PRIOR.value,
              lr_noise=_LR_NOISE.value,
              headline=reliability.HEADLINE,
              warn_above=reliability.WARN_ABOVE)
  summary = {"spearman": table, "sizes": sizes, "median_seconds": costs,
             "spearman_90pct_interval": {f"{c} / {g}": v
                                         for (c, g), v in intervals.items()},
             "separation": {" / ".join(key): sep
                            for key, sep in seps.items()}}
  meta["summary"] = summary
  machine.save_results(
      _OUT.value, f"reliability-{_TAG.value}-{meta['device']}-"
      f"{meta['date']}", meta, rows,
      markdown(meta, table, intervals, groups, sizes, seps, costs,
               [r for r in rows if r["estimator"] == "truth"]))


if __name__ == "__main__":
  app.run(main)
