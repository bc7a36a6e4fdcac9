"""The learner's transitions and the LR schedule against the spec (6.2)."""

import jax
import jax.numpy as jnp
import pytest

from kernelgan_jax import config as config_lib
from kernelgan_jax import schedule

CONFIG = config_lib.get_config()


def _run(bic_losses):
  """Feeds one bicubic loss per iteration; returns the states after each."""
  update = jax.jit(lambda s, i, l: schedule.update_schedule(s, i, l, CONFIG))
  state, states = schedule.init_schedule(CONFIG), []
  for i, loss in enumerate(bic_losses):
    state = update(state, jnp.int32(i), jnp.float32(loss))
    states.append(state)
  return states


def test_the_spec_example_flag_at_50():
  # Below 0.4 from iteration 48 on: the 3rd consecutive one (50) sets it.
  states = _run([1.0] * 48 + [0.1] * 800)
  assert not bool(states[49].similar_to_bicubic)
  assert bool(states[50].similar_to_bicubic)
  lam = [float(s.lambda_bicubic) for s in states]
  assert lam[199] == 5.0 and lam[200] == pytest.approx(0.05)
  assert lam[399] == pytest.approx(0.05) and lam[400] == pytest.approx(5e-4)
  assert float(states[399].lambda_sparse) == 0.0
  assert float(states[400].lambda_centralized) == 1.0
  assert float(states[400].lambda_sparse) == 5.0
  assert lam[600] == pytest.approx(5e-6) and lam[800] == pytest.approx(5e-6)


def test_a_high_loss_resets_the_streak_and_iteration_0_is_ignored():
  states = _run([0.1, 0.1, 0.1, 1.0, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1])
  flags = [bool(s.similar_to_bicubic) for s in states]
  # Iteration 0 counts nothing; 1, 2 count; 3 resets; 6 resets; 7, 8, 9 set.
  assert flags == [False] * 9 + [True]
  assert int(states[2].bic_loss_counter) == 2
  assert int(states[3].bic_loss_counter) == 0


def test_never_similar_keeps_the_start_weights():
  state = _run([0.5] * 401)[-1]
  assert float(state.lambda_bicubic) == 5.0
  assert float(state.lambda_sparse) == 0.0


def test_learning_rate_drops_after_750_1500_2250():
  lr = schedule.learning_rate(2e-4, CONFIG)
  rates = {c: float(lr(jnp.int32(c))) for c in (0, 750, 751, 1500, 1501,
                                                 2251, 2999)}
  assert rates[0] == pytest.approx(2e-4) and rates[750] == pytest.approx(2e-4)
  assert rates[751] == pytest.approx(2e-5)
  assert rates[1500] == pytest.approx(2e-5)
  assert rates[1501] == pytest.approx(2e-6)
  assert rates[2251] == pytest.approx(2e-7)
  assert rates[2999] == pytest.approx(2e-7)
