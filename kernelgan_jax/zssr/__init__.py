"""ZSSR, the super-resolution stage of KernelGAN, in JAX.

Shocher, Cohen & Irani, "'Zero-Shot' Super-Resolution using Deep Internal
Learning", CVPR 2018, as run by KernelGAN (Bell-Kligler, Shocher & Irani,
"Blind Super-Resolution Kernel Estimation using an Internal-GAN", NeurIPS
2019) with the estimated kernel as the degradation.
"""

from kernelgan_jax.zssr.config import fast_cpu_config
from kernelgan_jax.zssr.config import ZSSRConfig
from kernelgan_jax.zssr.pipeline import back_projection
from kernelgan_jax.zssr.pipeline import super_resolve

__all__ = ["ZSSRConfig", "back_projection", "fast_cpu_config",
           "super_resolve"]
