"""benchmarks/sr_fallback.py: the fallback policy's columns and summary."""

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
