"""benchmarks/zssr_merge.py: single-image runs joined, select composed."""

import collections

import pytest

from benchmarks import zssr_eval
from benchmarks import zssr_merge

_META = {"estimator": "kernelgan", "preset": "paper", "scale": 2,
         "kernels": "k.npz", "seed": 0, "skipped": []}


def _run(name, **meta):
  return {"meta": dict(_META, only=[name], **meta),
          "rows": [{"name": name, "psnr": len(name)}]}


def test_merge_keeps_the_set_order_and_drops_only():
  merged = zssr_merge.merge([_run("rocket"), _run("cat"), _run("astronaut")],
                            ["astronaut", "cat", "rocket"])
  assert [r["name"] for r in merged["rows"]] == ["astronaut", "cat", "rocket"]
  assert merged["meta"]["only"] == []
  assert merged["meta"]["merged_from"] == 3


def test_merge_refuses_mixed_estimators_and_repeated_images():
  with pytest.raises(ValueError, match="differ"):
    zssr_merge.merge([_run("cat"), _run("dog", estimator="fkp_lite")],
                     ["cat", "dog"])
  with pytest.raises(ValueError, match="several inputs"):
    zssr_merge.merge([_run("cat"), _run("cat")], ["cat"])


def test_select_takes_each_image_from_the_kept_candidate(monkeypatch):
  kept = {"cat": "fkp_lite", "dog": "kernelgan"}
  monkeypatch.setattr(zssr_eval, "selected_estimator",
                      lambda lr, name, seed: kept[name])
  Example = collections.namedtuple("Example", "name lr")
  by_estimator = {
      e: {"meta": dict(_META, estimator=e),
          "rows": [{"name": n, "from": e} for n in ("cat", "dog")]}
      for e in ("kernelgan", "fkp_lite")}
  composed = zssr_merge.compose_select(
      by_estimator, [Example("cat", None), Example("dog", None)])
  assert composed["rows"] == [
      {"name": "cat", "from": "fkp_lite", "selected": "fkp_lite"},
      {"name": "dog", "from": "kernelgan", "selected": "kernelgan"}]
  assert composed["meta"]["estimator"] == "select"
  assert composed["meta"]["skipped"] == []
  # An image whose kept candidate has no row is named, not silently lost.
  by_estimator["fkp_lite"]["rows"] = by_estimator["fkp_lite"]["rows"][1:]
  composed = zssr_merge.compose_select(
      by_estimator, [Example("cat", None), Example("dog", None)])
  assert [r["name"] for r in composed["rows"]] == ["dog"]
  assert composed["meta"]["skipped"] == [
      "cat: select keeps fkp_lite, which has no row for it"]
  by_estimator["fkp_lite"]["meta"]["seed"] = 1
  with pytest.raises(ValueError, match="differ"):
    zssr_merge.compose_select(by_estimator, [Example("cat", None)])
