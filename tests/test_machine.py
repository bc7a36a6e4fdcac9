"""Tests for benchmarks/machine.py: how benchmark figures are recorded."""

import json
import os

import numpy as np
import pytest

from benchmarks import machine


def test_save_results_writes_json_and_markdown(tmp_path, capsys):
  path = machine.save_results(str(tmp_path / "results"), "run", {"a": 1},
                              [{"x": 2.5}], "| x |\n|---|\n| 2.5 |\n")
  with open(path + ".json") as f:
    assert json.load(f) == {"meta": {"a": 1}, "rows": [{"x": 2.5}]}
  with open(path + ".md") as f:
    assert f.read() == "| x |\n|---|\n| 2.5 |\n"
  assert sorted(os.listdir(tmp_path / "results")) == ["run.json", "run.md"]
  assert "| 2.5 |" in capsys.readouterr().out


def test_save_results_leaves_earlier_files_whole_on_failure(tmp_path):
  machine.save_results(str(tmp_path), "run", {}, [{"x": 1}], "old\n")
  with pytest.raises(TypeError):
    machine.save_results(str(tmp_path), "run", {}, [{"x": object()}], "new\n")
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["rows"] == [{"x": 1}]
  assert (tmp_path / "run.md").read_text() == "old\n"
  assert sorted(os.listdir(tmp_path)) == ["run.json", "run.md"]


def test_write_atomically_binary_writes_a_readable_npz(tmp_path):
  path = str(tmp_path / "cache.npz")
  machine.write_atomically(
      path, lambda f: np.savez(f, image=np.arange(6.0), seconds=1.5),
      binary=True)
  saved = np.load(path)
  np.testing.assert_array_equal(saved["image"], np.arange(6.0))
  assert float(saved["seconds"]) == 1.5
  assert os.listdir(tmp_path) == ["cache.npz"]


def test_compile_seconds_per_program_without_kept_hashes():
  log = "\n".join([
      "W1201 pxla.py:712] Compiling jit(init_state_cadbf137d550f2d5256b2e060c0adb66) with ...",
      "W1201 dispatch.py:204] Finished XLA compilation of "
      "jit(init_state_cadbf137d550f2d5256b2e060c0adb66) in 2.5 sec",
      "W1201 dispatch.py:204] Finished XLA compilation of jit(draw) in 0.25 sec",
      "W1201 dispatch.py:204] Finished XLA compilation of jit(draw) in 1e-1 sec",
      "W1201 dispatch.py:204] Finished jaxpr to MLIR module conversion "
      "jit(draw) in 0.5 sec",
  ])
  seconds = machine.compile_seconds(log)
  assert seconds.keys() == {"init_state", "draw"}
  assert seconds["init_state"] == 2.5
  assert abs(seconds["draw"] - 0.35) < 1e-12
