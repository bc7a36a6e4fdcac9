"""Test set-up: a CPU-only JAX with float32 and deterministic behaviour."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
