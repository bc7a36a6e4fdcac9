"""FKP's flow-based kernel prior over 11x11 x2 kernels (Liang et al., 2021).

`load_prior()` reads the shipped weights (`fkp_x2.npz`, trained with
`python -m kernelgan_jax.prior.train`); `kernel_from_latent` is the
differentiable map KernelGAN-FKP optimises z through.
"""

from kernelgan_jax.prior.flow import (KERNEL_SIZE, LATENT_RADIUS,
                                      LATENT_SIZE, Prior, init_prior,
                                      initial_latent, kernel_from_latent,
                                      latent_from_kernel, load_prior,
                                      log_prob, post_process, pre_process,
                                      project_latent, sample)
from kernelgan_jax.prior.kernels import to_prior_grid

__all__ = ["KERNEL_SIZE", "LATENT_RADIUS", "LATENT_SIZE", "Prior",
           "init_prior", "initial_latent", "kernel_from_latent",
           "latent_from_kernel", "load_prior", "log_prob", "post_process",
           "pre_process", "project_latent", "sample", "to_prior_grid"]
