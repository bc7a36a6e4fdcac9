"""KernelGAN in JAX/Flax: blind super-resolution kernel estimation.

Bell-Kligler, Shocher & Irani, "Blind Super-Resolution Kernel Estimation
using an Internal-GAN", NeurIPS 2019.
"""

from kernelgan_jax.config import Config, get_config

__all__ = ["Config", "get_config"]
