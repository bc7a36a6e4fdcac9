"""Config presets, derived sizes and validation."""

import pytest

from kernelgan_jax import config as config_lib


def test_default_matches_original_sizes():
  config = config_lib.get_config()
  assert config.g_kernel_size == 13
  assert config.g_output_size == 26
  assert config.d_output_size == 20
  assert config.min_image_size == 84
  assert config.replace(real_image=True).min_image_size == 64


def test_default_is_1000_iterations_and_paper_the_original_3000():
  assert config_lib.get_config().max_iters == 1000
  assert config_lib.get_config("paper").max_iters == 3000
  assert config_lib.get_config("configs/paper.py").max_iters == 3000


@pytest.mark.parametrize("name", ["paper", "quick", "smoke"])
def test_config_files_are_their_presets(name):
  assert (config_lib.get_config(f"configs/{name}.py")
          == config_lib.get_config(name))


def test_quick_preset_and_overrides():
  config = config_lib.get_config("quick", x4=True)
  assert config.max_iters == 750 and config.x4


@pytest.mark.parametrize("changes, message", [
    ({"max_iters": 0}, "max_iters"),
    ({"n_filtering": 169}, "n_filtering"),
    ({"input_crop_size": 63}, "even"),
    ({"input_crop_size": 20}, "too small"),
])
def test_bad_values_are_named(changes, message):
  with pytest.raises(ValueError, match=message):
    config_lib.get_config(**changes)


def test_unknown_preset_and_missing_file():
  with pytest.raises(ValueError, match="unknown config"):
    config_lib.get_config("nope")
  with pytest.raises(ValueError, match="not found"):
    config_lib.get_config("does/not/exist.py")
