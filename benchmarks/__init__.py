"""Benchmarks and reference implementations for kernelgan_jax."""
