"""KernelGAN in JAX/Flax: blind super-resolution kernel estimation.

Bell-Kligler, Shocher & Irani, "Blind Super-Resolution Kernel Estimation
using an Internal-GAN", NeurIPS 2019.
"""

from kernelgan_jax.batch import estimate_kernels
from kernelgan_jax.config import Config, get_config
from kernelgan_jax.estimate import estimate_kernel
from kernelgan_jax.kernel import KernelEstimate, extract_kernel

__all__ = ["Config", "KernelEstimate", "estimate_kernel", "estimate_kernels",
           "extract_kernel", "get_config"]
