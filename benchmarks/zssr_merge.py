r"""One set's ZSSR table from `zssr_eval` runs of single images.

  python -m benchmarks.zssr_merge --set_dir=.sets/div2krk_sk \
      --inputs='out/zssr-paper-x2-fullsize-kernelgan-*.json' \
      --tag=fullsize-kernelgan1000 --results_dir=benchmarks/results
  python -m benchmarks.zssr_merge --set_dir=.sets/div2krk_sk \
      --kernels=.sets/kernels-cpu-sk-x2-wk.npz --tag=fullsize-select \
      --select_from=kernelgan=K.json,fkp_lite=F.json

`benchmarks/gpu_checks.sh` runs `zssr_eval --only=<image>` as one process per
estimator and image; this joins one estimator's runs (--inputs, files or
patterns, of one estimator, preset and scale) into the table and JSON a run
over the whole set would have written, rows in the set's order. With
--select_from (estimator=merged JSON, for both of `reliability.SELECT_FROM`)
it writes select's instead: per image, the row of the candidate
`reliability.select` keeps of the --kernels file's kernels, which is what
`zssr_eval --estimator=select` computes, without running ZSSR again.
Shares `zssr_eval`'s flags (--set_dir, --kernels, --tag, --results_dir).
Writes <results_dir>/zssr-<preset>-x<scale>-<tag>-<device>-<date>.{json,md},
device and date those of the inputs.
"""

import glob
import json
from typing import Sequence

from absl import app
from absl import flags

from benchmarks import zssr_eval
from kernelgan_jax import div2krk
from kernelgan_jax import reliability

_INPUTS = flags.DEFINE_list("inputs", [], "zssr_eval JSONs (or glob "
                            "patterns) of one estimator's single images.")
_SELECT_FROM = flags.DEFINE_list(
    "select_from", [], "estimator=merged JSON for each of "
    f"{', '.join(reliability.SELECT_FROM)}: compose select's table.")


def _load(path: str) -> dict:
  """A results JSON; ValueError naming the file if it is not one."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f"{path}: not a results JSON ({error})") from error


_SETTINGS = ("preset", "scale", "kernels", "seed")


def _check_same(results: Sequence[dict], keys: Sequence[str]) -> None:
  """Raises ValueError unless every run's meta agrees on `keys`."""
  settings = {tuple(r["meta"].get(k) for k in keys) for r in results}
  if len(settings) > 1:
    raise ValueError(f"inputs differ in {tuple(keys)}: "
                     f"{sorted(map(str, settings))}")


def merge(results: list[dict], order: Sequence[str]) -> dict:
  """One {meta, rows} from several runs' of the same settings, rows in
  `order` (image names); the first run's meta, without --only.

  Raises:
    ValueError: when the runs differ in estimator, preset, scale, kernels
      or seed, or two of them scored the same image.
  """
  _check_same(results, ("estimator",) + _SETTINGS)
  rows = [row for r in results for row in r["rows"]]
  names = [row["name"] for row in rows]
  if len(set(names)) < len(names):
    raise ValueError(f"an image is in several inputs: {sorted(names)}")
  rank = {name: i for i, name in enumerate(order)}
  rows.sort(key=lambda row: rank.get(row["name"], len(rank)))
  meta = dict(results[0]["meta"], only=[],
              skipped=[s for r in results for s in r["meta"]["skipped"]],
              merged_from=len(results))
  return {"meta": meta, "rows": rows}


def compose_select(by_estimator: dict[str, dict], examples) -> dict:
  """select's {meta, rows}: per image the kept candidate's row; an image
  whose kept candidate has no row is listed in meta's `skipped`.

  Raises:
    ValueError: when the candidates' runs differ in preset, scale, kernels
      or seed.
  """
  _check_same(list(by_estimator.values()), _SETTINGS)
  first = next(iter(by_estimator.values()))
  seed = first["meta"]["seed"]
  rows_of = {e: {row["name"]: row for row in r["rows"]}
             for e, r in by_estimator.items()}
  rows, skipped = [], []
  for example in examples:
    kept = zssr_eval.selected_estimator(example.lr, example.name, seed)
    if example.name in rows_of[kept]:
      rows.append(dict(rows_of[kept][example.name], selected=kept))
    else:
      skipped.append(f"{example.name}: select keeps {kept}, which has no "
                     "row for it")
  meta = dict(first["meta"], estimator="select", skipped=skipped,
              composed_from=sorted(by_estimator))
  return {"meta": meta, "rows": rows}


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  examples = div2krk.load_or_make_set(zssr_eval._SET_DIR.value,  # pylint: disable=protected-access
                                      zssr_eval._NUM_IMAGES.value)  # pylint: disable=protected-access
  try:
    if _SELECT_FROM.value:
      pairs = dict(item.split("=", 1) for item in _SELECT_FROM.value
                   if "=" in item)
      if (len(pairs) != len(_SELECT_FROM.value)
          or set(pairs) != set(reliability.SELECT_FROM)):
        raise app.UsageError("--select_from needs estimator=JSON for "
                             f"exactly {', '.join(reliability.SELECT_FROM)}.")
      merged = compose_select({e: _load(p) for e, p in pairs.items()},
                              examples)
    else:
      paths = sorted({p for pattern in _INPUTS.value
                      for p in glob.glob(pattern)})
      if not paths:
        raise app.UsageError("--inputs matches no file.")
      merged = merge([_load(p) for p in paths], [e.name for e in examples])
  except (OSError, ValueError) as error:  # Bad inputs: one line.
    raise app.UsageError(str(error)) from error
  zssr_eval.save(merged["meta"], merged["rows"])


if __name__ == "__main__":
  app.run(main)
