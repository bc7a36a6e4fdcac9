"""benchmarks/sr_fallback.py: the SR policy's columns and summary."""

import pytest

from benchmarks import sr_fallback
from kernelgan_jax import reliability


def _row(name, bicubic, plain, estimate, true):
  cell = lambda p: {"psnr": p - 1.0, "aligned": {"psnr": p}}
  return {"name": name, "bicubic": cell(bicubic), "zssr_bicubic": cell(plain),
          "zssr_kernelgan": cell(estimate), "zssr_true": cell(true),
          "kernelgan_kernel_error": 0.1}


def test_the_policy_keeps_plain_zssr_where_the_score_is_above_the_warning():
  zssr = [_row("good", 30.0, 31.0, 33.0, 35.0),
          _row("bad", 30.0, 31.0, 25.0, 35.0)]
  scores = {"good": reliability.WARN_ABOVE - 0.1,
            "bad": reliability.WARN_ABOVE + 0.01}
  rows = sr_fallback.policy_rows(zssr, scores)
  assert [r["uses_bicubic"] for r in rows] == [False, True]
  assert [r["policy"] for r in rows] == [33.0, 31.0]
  totals = sr_fallback.summary(rows)
  assert totals["zssr_kernelgan"]["below_bicubic"] == ["bad"]
  assert totals["policy"]["below_bicubic"] == []
  assert totals["policy"]["psnr"] == pytest.approx(32.0)
  assert totals["policy"]["gap_closed"] == pytest.approx(0.25)
  assert totals["zssr_kernelgan"]["gap_closed"] == pytest.approx(-0.5)
  text = sr_fallback.markdown(rows, totals, {
      "estimator": "kernelgan", "kernels": "k.npz", "set_dir": "s",
      "x4": False, "zssr": "z.json", "preset": "fast", "device": "cpu",
      "date": "today"})
  assert "| bad | 0.100 | " in text and "| bicubic | 30.00 |" in text
  assert "| ZSSR, estimate | 29.00 | -50% | 1 of 2 (bad) |" in text


def test_the_policy_takes_the_narrowed_run_where_the_score_is_close():
  zssr = [_row("sure", 30.0, 31.0, 34.0, 35.0),
          _row("close", 30.0, 31.0, 29.0, 35.0),
          _row("bad", 30.0, 31.0, 25.0, 35.0)]
  scores = {"sure": reliability.NARROW_FROM - 0.01,
            "close": (reliability.NARROW_FROM + reliability.WARN_ABOVE) / 2,
            "bad": reliability.WARN_ABOVE + 0.01}
  narrowed = {"close": _row("close", 30.0, 31.0, 33.0, 35.0)}
  rows = sr_fallback.policy_rows(zssr, scores, narrowed)
  assert [r["kept"] for r in rows] == ["estimate", "narrowed", "bicubic"]
  assert rows[1]["width"] == pytest.approx(
      (1.0 + reliability.NARROWEST) / 2)
  assert [r["fallback"] for r in rows] == [34.0, 29.0, 31.0]
  assert [r["policy"] for r in rows] == [34.0, 33.0, 31.0]
  totals = sr_fallback.summary(rows)
  assert totals["fallback"]["below_bicubic"] == ["close"]
  assert totals["policy"]["below_bicubic"] == []
  text = sr_fallback.markdown(rows, totals, {
      "estimator": "kernelgan", "kernels": "k.npz", "set_dir": "s",
      "x4": False, "zssr": "z.json", "preset": "fast", "device": "cpu",
      "date": "today", "narrowed": "n.json"})
  assert "| close | 0.100 | -0.135 | narrowed x0.85 |" in text
  with pytest.raises(KeyError):
    sr_fallback.policy_rows(zssr, scores, {})
