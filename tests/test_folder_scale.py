"""benchmarks/folder_scale.py: reading XLA's compile times from a run's log."""

from benchmarks import folder_scale


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
  seconds = folder_scale.compile_seconds(log)
  assert seconds.keys() == {"init_state", "draw"}
  assert seconds["init_state"] == 2.5
  assert abs(seconds["draw"] - 0.35) < 1e-12
