"""PyTorch reference implementation of the original KernelGAN.

A faithful, self-contained re-implementation of sefibk/KernelGAN (Bell-Kligler,
Shocher & Irani, NeurIPS 2019), written from `shared/spec/kernelgan.md` (cited
below as "spec N.M"). It serves two purposes:

1. a like-for-like speed baseline for the JAX port (same networks, losses,
   schedule and per-iteration host read of the bicubic loss as the original);
2. a numerical reference: crop corners are inputs and all state can be
   exported / injected as numpy arrays in PyTorch layouts, so both
   implementations can start from identical weights and see identical crops.

Deliberate differences from the original code (behaviour is otherwise
unchanged):
- runs on any device (`device` argument), nothing hard-codes CUDA;
- the real-crop noise is fresh per crop (the original's in-place accumulation
  into the stored image, spec 2.3 / 9.2, is not replicated); both noise stds
  are parameters and 0 disables noise;
- the image is uploaded once and cropped on the device (the original crops on
  the host and copies every crop), which can only favour this baseline;
- optional seeds for reproducibility (the original sets none, spec 9.9).

Threads: PyTorch's intra-op thread count is the caller's business; call
`torch.set_num_threads(n)` before `run` / `time_iterations` (the command line
entry point below has a `--threads` flag).

Usage (benchmark on this machine):
  python -m benchmarks.torch_kernelgan --threads 2 --iters 50 --warmup 5
A whole estimation, as the original's command line runs it (image file in,
kernel file out; `benchmarks/run.py` times it end to end):
  python -m benchmarks.torch_kernelgan --threads 2 --image x.png \
      --output k.npy --iters 3000
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
import scipy.ndimage
import scipy.signal
import torch
from torch import nn
from torch.nn import functional as F

G_STRUCTURE = (7, 5, 3, 1, 1, 1)
G_KERNEL_SIZE = sum(G_STRUCTURE) - len(G_STRUCTURE) + 1  # 13.
G_CHAN = 64
D_CHAN = 64
D_KERNEL_SIZE = 7
D_N_MIDDLE = 5  # D_n_layers (7) minus the first and the last layer.
INPUT_CROP_SIZE = 64
G_OUTPUT_SIZE = (INPUT_CROP_SIZE - G_KERNEL_SIZE) // 2 + 1  # 26.
D_OUTPUT_SIZE = G_OUTPUT_SIZE - D_KERNEL_SIZE + 1  # 20.
SCALE_STRIDE = 2  # int(1 / scale_factor) with scale_factor 0.5.
BICUBIC_TAPS = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256.0
DEFAULT_NOISE_STD = 1.0 / 255

StateDict = Dict[str, np.ndarray]


# --------------------------------------------------------------------------
# Networks (spec 3 and 4).
# --------------------------------------------------------------------------


class Generator(nn.Module):
  """Linear generator: six bias-free convs, stride 2 on the last (spec 3).

  The colour channels are moved to the batch axis, so one single-channel
  network (one kernel) is shared by R, G and B.
  """

  def __init__(self):
    super().__init__()
    in_chans = (1,) + (G_CHAN,) * (len(G_STRUCTURE) - 1)
    out_chans = (G_CHAN,) * (len(G_STRUCTURE) - 1) + (1,)
    strides = (1,) * (len(G_STRUCTURE) - 1) + (SCALE_STRIDE,)
    self.convs = nn.ModuleList([
        nn.Conv2d(c_in, c_out, k, stride=s, bias=False)
        for c_in, c_out, k, s in zip(in_chans, out_chans, G_STRUCTURE, strides)
    ])

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Maps [1, 3, 64, 64] to [1, 3, 26, 26] (channels as batch)."""
    x = x.transpose(0, 1)
    for conv in self.convs:
      x = conv(x)
    return x.transpose(0, 1)


class Discriminator(nn.Module):
  """Fully convolutional patch discriminator with spectral norm (spec 4).

  SN 7x7 conv 3->64 (bias), 5 x [SN 1x1 conv, BatchNorm2d, ReLU], SN 1x1 conv
  64->1, sigmoid. Always used in training mode: every forward runs one
  power-iteration step per SN layer and BatchNorm uses batch statistics.
  """

  def __init__(self):
    super().__init__()
    sn = nn.utils.spectral_norm
    self.convs = nn.ModuleList(
        [sn(nn.Conv2d(3, D_CHAN, D_KERNEL_SIZE, bias=True))] +
        [sn(nn.Conv2d(D_CHAN, D_CHAN, 1, bias=True))
         for _ in range(D_N_MIDDLE)] +
        [sn(nn.Conv2d(D_CHAN, 1, 1, bias=True))])
    self.norms = nn.ModuleList(
        [nn.BatchNorm2d(D_CHAN) for _ in range(D_N_MIDDLE)])

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Maps [1, 3, 26, 26] to a [1, 1, 20, 20] map of scores in (0, 1)."""
    x = self.convs[0](x)
    for conv, norm in zip(self.convs[1:-1], self.norms):
      x = F.relu(norm(conv(x)))
    return torch.sigmoid(self.convs[-1](x))


def init_generator(generator: Generator, gain: float = 0.1) -> None:
  """Xavier-normal init with gain 0.1 of every conv (spec 3)."""
  for conv in generator.convs:
    nn.init.xavier_normal_(conv.weight, gain)


def init_discriminator(discriminator: Discriminator) -> None:
  """Reproduces the original's effective D init (spec 4).

  The constructor's dummy forward (ones, 64x64) updates u/v once; the
  Xavier call of `weights_init_D` then hits the derived `weight` tensor and
  has no lasting effect, so weight_orig keeps PyTorch's default init. Biases
  are zeroed, BN gamma ~ N(1, 0.02), beta = 0.
  """
  with torch.no_grad():
    discriminator(torch.ones(1, 3, INPUT_CROP_SIZE, INPUT_CROP_SIZE))
    for conv in discriminator.convs:
      nn.init.xavier_normal_(conv.weight, 0.1)  # No lasting effect.
      conv.bias.zero_()
    for norm in discriminator.norms:
      norm.weight.normal_(1.0, 0.02)
      norm.bias.zero_()


def count_parameters(module: nn.Module) -> int:
  """Number of trainable scalars (G: 150,656; D: 30,977; spec 11)."""
  return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --------------------------------------------------------------------------
# Kernel folding and losses (spec 5 and 7.1).
# --------------------------------------------------------------------------


def calc_curr_k(generator: Generator) -> torch.Tensor:
  """The 13x13 kernel G represents, differentiable w.r.t. G (spec 7.1).

  A 1x1 delta is convolved with layer 1 (zero padding 12), then with layers
  2..6 as valid stride-1 correlations, and flipped, so that
  G(x) == correlate_valid(x, k)[::2, ::2] per channel.

  Returns:
    A [13, 13] tensor on G's device.
  """
  weights = [conv.weight for conv in generator.convs]
  delta = torch.ones(1, 1, 1, 1, device=weights[0].device,
                     dtype=weights[0].dtype)
  curr_k = F.conv2d(delta, weights[0], padding=G_KERNEL_SIZE - 1)
  for weight in weights[1:]:
    curr_k = F.conv2d(curr_k, weight)
  return curr_k.squeeze().flip([0, 1])


def bicubic_kernel_2d() -> np.ndarray:
  """Antialiased x2 Keys-cubic kernel: outer(h, h), 8x8 (spec 5.2)."""
  return np.outer(BICUBIC_TAPS, BICUBIC_TAPS)


def penalty_mask(k_size: int = G_KERNEL_SIZE,
                 scale: float = 30.0) -> np.ndarray:
  """Boundary penalty M = scale * mask (spec 5.3).

  mask = 1 - g/max(g) for an outer product g of Gaussians with sigma = k_size
  sampled at -k//2+1 .. k//2, with the centre block [2:-2, 2:-2] zeroed.
  """
  z = np.arange(-k_size // 2 + 1, k_size // 2 + 1)
  gauss_1d = np.exp(-z**2 / (2.0 * k_size**2)) / np.sqrt(
      2 * np.pi * k_size**2)
  gauss = np.outer(gauss_1d, gauss_1d)
  mask = 1.0 - gauss / gauss.max()
  center_size = k_size // 2 + k_size % 2
  margin = (k_size - center_size) // 2 - 1
  mask[margin:-margin, margin:-margin] = 0.0
  return scale * mask


def gan_loss(d_map: torch.Tensor, is_real: bool) -> torch.Tensor:
  """L1 distance to an all-ones or all-zeros label map (spec 5.1)."""
  label = torch.ones_like(d_map) if is_real else torch.zeros_like(d_map)
  return F.l1_loss(d_map, label)


def downscale_loss(g_input: torch.Tensor, g_output: torch.Tensor,
                   bicubic_weight: torch.Tensor) -> torch.Tensor:
  """MSE between G's output and the channel-SUMMED bicubic target (spec 5.2).

  Args:
    g_input: [1, 3, 64, 64] crop in [-1, 1].
    g_output: [1, 3, 26, 26] output of G.
    bicubic_weight: [3, 3, 8, 8] weight (the 8x8 kernel broadcast to every
      (out, in) pair and used without groups: the original's quirk).

  Returns:
    Scalar loss.
  """
  target = F.conv2d(g_input, bicubic_weight, stride=SCALE_STRIDE, padding=3)
  shave = (target.shape[-1] - g_output.shape[-1]) // 2
  target = target[:, :, shave:shave + g_output.shape[-2],
                  shave:shave + g_output.shape[-1]]
  return F.mse_loss(g_output, target)


def sum2one_loss(kernel: torch.Tensor) -> torch.Tensor:
  """|1 - sum(k)| (spec 5.3)."""
  return torch.abs(1.0 - kernel.sum())


def boundaries_loss(kernel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
  """mean(|k * M|) (spec 5.3)."""
  return torch.mean(torch.abs(kernel * mask))


def centralized_loss(kernel: torch.Tensor) -> torch.Tensor:
  """Mean squared distance of the centre of mass to 6.5 (spec 5.3)."""
  k_size = kernel.shape[0]
  center = k_size // 2 + 0.5 * (SCALE_STRIDE - k_size % 2)
  indices = torch.arange(k_size, dtype=kernel.dtype, device=kernel.device)
  total = kernel.sum()
  row_com = (kernel.sum(dim=1) * indices).sum() / total
  col_com = (kernel.sum(dim=0) * indices).sum() / total
  return 0.5 * ((row_com - center)**2 + (col_com - center)**2)


def sparsity_loss(kernel: torch.Tensor, power: float = 0.2) -> torch.Tensor:
  """mean(|k|^0.2) (spec 5.3)."""
  return torch.mean(torch.abs(kernel)**power)


# --------------------------------------------------------------------------
# Schedule (spec 6.2).
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Learner:
  """Loss weights, LR decay and the bicubic-phase logic of `learner.py`.

  Attributes:
    lambda_bicubic, lambda_sum2one, lambda_boundaries, lambda_centralized,
      lambda_sparse: current loss weights (spec 5.4).
    lr_scale: factor applied to both initial learning rates.
    similar_to_bicubic: the flag set after 3 consecutive L_bic < 0.4.
    bic_loss_counter: current streak length.
    insert_constraints: whether cent/sparse are still to be switched on.
  """

  lambda_bicubic: float = 5.0
  lambda_sum2one: float = 0.5
  lambda_boundaries: float = 0.5
  lambda_centralized: float = 0.0
  lambda_sparse: float = 0.0
  lr_scale: float = 1.0
  similar_to_bicubic: bool = False
  bic_loss_counter: int = 0
  insert_constraints: bool = True

  lambda_update_freq = 200
  bic_loss_to_start_change = 0.4
  lambda_bicubic_decay_rate = 100.0
  update_l_rate_freq = 750
  update_l_rate_rate = 10.0
  lambda_sparse_end = 5.0
  lambda_centralized_end = 1.0
  lambda_bicubic_min = 5e-6
  constraints_threshold = 5e-3

  def update(self, iteration: int, loss_bicubic: float) -> None:
    """Runs after iteration `iteration` with that iteration's L_bic."""
    if iteration == 0:
      return
    if iteration % self.update_l_rate_freq == 0:
      self.lr_scale /= self.update_l_rate_rate
    if not self.similar_to_bicubic:
      if loss_bicubic < self.bic_loss_to_start_change:
        if self.bic_loss_counter >= 2:
          self.similar_to_bicubic = True
        else:
          self.bic_loss_counter += 1
      else:
        self.bic_loss_counter = 0
    elif (iteration % self.lambda_update_freq == 0 and
          self.lambda_bicubic > self.lambda_bicubic_min):
      self.lambda_bicubic = max(
          self.lambda_bicubic / self.lambda_bicubic_decay_rate,
          self.lambda_bicubic_min)
      if (self.insert_constraints and
          self.lambda_bicubic < self.constraints_threshold):
        self.lambda_centralized = self.lambda_centralized_end
        self.lambda_sparse = self.lambda_sparse_end
        self.insert_constraints = False


# --------------------------------------------------------------------------
# The GAN (spec 6.1, 6.3).
# --------------------------------------------------------------------------


class KernelGAN:
  """G, D, their Adam optimisers, loss constants and the learner.

  Args:
    device: torch device (string or object), e.g. "cpu" or "cuda".
    seed: torch seed for the weight init and the fake noise; None = unseeded.
    lr: initial learning rate of both optimisers.
    betas: Adam betas of both optimisers.
    dtype: float dtype of the networks and constants (float64 gives a
      high-precision reference for parity checks; the original is float32).
  """

  def __init__(self, device: Any = "cpu", seed: Optional[int] = None,
               lr: float = 2e-4, betas: Tuple[float, float] = (0.5, 0.999),
               dtype: torch.dtype = torch.float32):
    self.device = torch.device(device)
    self.dtype = dtype
    if seed is not None:
      torch.manual_seed(seed)
    self.generator = Generator()
    self.discriminator = Discriminator()
    init_generator(self.generator)
    init_discriminator(self.discriminator)
    self.generator.to(self.device, dtype).train()
    self.discriminator.to(self.device, dtype).train()
    self.lr = lr
    self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr,
                                  betas=betas)
    self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr,
                                  betas=betas)
    self.learner = Learner()
    bicubic = torch.tensor(bicubic_kernel_2d(), dtype=dtype)
    self.bicubic_weight = bicubic.expand(3, 3, 8, 8).contiguous().to(
        self.device)
    self.mask = torch.tensor(penalty_mask(), dtype=dtype, device=self.device)
    self.noise_generator = torch.Generator(device=self.device)
    if seed is not None:
      self.noise_generator.manual_seed(seed + 1)
    else:
      self.noise_generator.seed()

  def _noise_like(self, x: torch.Tensor, std: float) -> torch.Tensor:
    return std * torch.randn(x.shape, generator=self.noise_generator,
                             device=x.device, dtype=x.dtype)

  def train_g(self, g_input: torch.Tensor) -> Dict[str, torch.Tensor]:
    """One G step (spec 6.1 step 2). Returns detached loss terms."""
    learner = self.learner
    self.opt_g.zero_grad()
    g_pred = self.generator(g_input)
    d_pred_fake = self.discriminator(g_pred)
    loss_adv = gan_loss(d_pred_fake, is_real=True)
    kernel = calc_curr_k(self.generator)
    terms = {
        "bicubic": downscale_loss(g_input, g_pred, self.bicubic_weight),
        "sum2one": sum2one_loss(kernel),
        "boundaries": boundaries_loss(kernel, self.mask),
        "centralized": centralized_loss(kernel),
        "sparse": sparsity_loss(kernel),
    }
    constraints = (terms["bicubic"] * learner.lambda_bicubic +
                   terms["sum2one"] * learner.lambda_sum2one +
                   terms["boundaries"] * learner.lambda_boundaries +
                   terms["centralized"] * learner.lambda_centralized +
                   terms["sparse"] * learner.lambda_sparse)
    loss_g = loss_adv + constraints
    loss_g.backward()
    self.opt_g.step()
    out = {name: value.detach() for name, value in terms.items()}
    out.update(g_adv=loss_adv.detach(), g_total=loss_g.detach(),
               kernel=kernel.detach())
    return out

  def train_d(self, g_input: torch.Tensor, d_input: torch.Tensor,
              fake_noise_std: float) -> Dict[str, torch.Tensor]:
    """One D step (spec 6.1 step 3). Returns detached loss terms."""
    self.opt_d.zero_grad()
    d_pred_real = self.discriminator(d_input)
    g_output = self.generator(g_input)
    if fake_noise_std:
      g_output = g_output + self._noise_like(g_output, fake_noise_std)
    d_pred_fake = self.discriminator(g_output.detach())
    loss_fake = gan_loss(d_pred_fake, is_real=False)
    loss_real = gan_loss(d_pred_real, is_real=True)
    loss_d = (loss_fake + loss_real) * 0.5
    loss_d.backward()
    self.opt_d.step()
    return {"d_real": loss_real.detach(), "d_fake": loss_fake.detach(),
            "d_total": loss_d.detach()}

  def update_learner(self, iteration: int, loss_bicubic: float) -> None:
    """Learner step (spec 6.2): host read of L_bic, LR decay."""
    self.learner.update(iteration, loss_bicubic)
    self.apply_learning_rate()

  def apply_learning_rate(self) -> None:
    """Sets both optimisers' LR to lr x the learner's current scale."""
    for opt in (self.opt_g, self.opt_d):
      for group in opt.param_groups:
        group["lr"] = self.lr * self.learner.lr_scale

  # State export / injection in PyTorch layouts.

  def get_state(self) -> StateDict:
    """All network state as numpy arrays (PyTorch layouts).

    Keys: "G/conv{i}/weight" (OIHW, i = 0..5); "D/conv{i}/weight_orig"
    (OIHW), "D/conv{i}/bias", "D/conv{i}/u" (i = 0..6); "D/bn{j}/weight",
    "D/bn{j}/bias" (j = 0..4, the BN after D conv j+1).
    """
    state = {}
    for i, conv in enumerate(self.generator.convs):
      state[f"G/conv{i}/weight"] = _to_numpy(conv.weight)
    for i, conv in enumerate(self.discriminator.convs):
      state[f"D/conv{i}/weight_orig"] = _to_numpy(conv.weight_orig)
      state[f"D/conv{i}/bias"] = _to_numpy(conv.bias)
      state[f"D/conv{i}/u"] = _to_numpy(conv.weight_u)
    for j, norm in enumerate(self.discriminator.norms):
      state[f"D/bn{j}/weight"] = _to_numpy(norm.weight)
      state[f"D/bn{j}/bias"] = _to_numpy(norm.bias)
    return state

  def _param_tensors(self) -> Dict[str, torch.Tensor]:
    """Trainable tensors by state key (the keys of `get_state` but u)."""
    tensors = {}
    for i, conv in enumerate(self.generator.convs):
      tensors[f"G/conv{i}/weight"] = conv.weight
    for i, conv in enumerate(self.discriminator.convs):
      tensors[f"D/conv{i}/weight_orig"] = conv.weight_orig
      tensors[f"D/conv{i}/bias"] = conv.bias
    for j, norm in enumerate(self.discriminator.norms):
      tensors[f"D/bn{j}/weight"] = norm.weight
      tensors[f"D/bn{j}/bias"] = norm.bias
    return tensors

  def set_state(self, state: StateDict) -> None:
    """Loads arrays with the keys of `get_state` (all must be present).

    The SN v vectors are not part of the state: in training mode each
    forward recomputes v = normalize(W^T u) before using it.
    """
    targets = self._param_tensors()
    for i, conv in enumerate(self.discriminator.convs):
      targets[f"D/conv{i}/u"] = conv.weight_u
    _copy_into(targets, state)

  def get_optimizer_state(self) -> Tuple[int, StateDict, StateDict]:
    """(Adam step count, first moments, second moments) by state key."""
    first, second, step = {}, {}, 0
    for name, tensor in self._param_tensors().items():
      opt = self.opt_g if name.startswith("G/") else self.opt_d
      slot = opt.state.get(tensor, {})
      if slot:
        step = int(slot["step"])
        first[name] = _to_numpy(slot["exp_avg"])
        second[name] = _to_numpy(slot["exp_avg_sq"])
      else:
        first[name] = np.zeros(tuple(tensor.shape), np.float32)
        second[name] = np.zeros(tuple(tensor.shape), np.float32)
    return step, first, second

  def set_optimizer_state(self, step: int, first: StateDict,
                          second: StateDict) -> None:
    """Sets both Adams' step count and moments (keys as `get_state`)."""
    for name, tensor in self._param_tensors().items():
      opt = self.opt_g if name.startswith("G/") else self.opt_d
      moments = {"exp_avg": first[name], "exp_avg_sq": second[name]}
      opt.state[tensor] = {
          "step": torch.tensor(float(step), dtype=torch.float32),
          **{key: torch.as_tensor(np.asarray(value), dtype=tensor.dtype).to(
              tensor.device).clone() for key, value in moments.items()}}
    self.apply_learning_rate()


def _copy_into(targets: Dict[str, torch.Tensor], state: StateDict) -> None:
  """Copies state[key] into targets[key] for every key, checking shapes."""
  missing = sorted(set(targets) - set(state))
  if missing:
    raise KeyError(f"state lacks {missing}")
  with torch.no_grad():
    for name, tensor in targets.items():
      value = torch.as_tensor(np.asarray(state[name]), dtype=tensor.dtype)
      if value.shape != tensor.shape:
        raise ValueError(f"{name}: shape {tuple(value.shape)} != "
                         f"{tuple(tensor.shape)}")
      tensor.copy_(value.to(tensor.device))


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
  return tensor.detach().cpu().numpy().copy()


# --------------------------------------------------------------------------
# Data: crop-location maps and sampling (spec 2.2, 2.3).
# --------------------------------------------------------------------------


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
  """0.299 R + 0.587 G + 0.114 B."""
  return image[..., :3] @ np.array([0.299, 0.587, 0.114])


def _clip_extreme(values: np.ndarray, percent: float) -> np.ndarray:
  """Indicator-like clip at the `percent` quantile (spec 2.2 step 5)."""
  flat = np.sort(values.ravel())
  pivot = int(percent * flat.size)
  low = flat[pivot]
  high = flat[pivot + 1] if flat[pivot + 1] > low else low + 1e-5
  return np.clip(values, low, high) - low


def create_gradient_map(image: np.ndarray, window: int = 5,
                        percent: float = 0.97) -> np.ndarray:
  """Gradient ("loss") map of an RGB image, mean 1 (spec 2.2)."""
  d_rows, d_cols = np.gradient(rgb_to_gray(image))
  magnitude = np.sqrt(d_rows**2 + d_cols**2)
  d_rows, d_cols = np.abs(d_rows), np.abs(d_cols)
  framed = []
  for values in (d_rows, d_cols, magnitude):
    out = np.zeros_like(values)
    out[window:-window, window:-window] = values[window:-window,
                                                 window:-window]
    framed.append(out)
  d_rows = _clip_extreme(framed[0], percent)
  d_cols = _clip_extreme(framed[1], percent)
  magnitude = framed[2]  # The clipped magnitude is unused (spec 2.2 quirk).
  combined = (d_rows / d_rows.sum() + d_cols / d_cols.sum() +
              magnitude / magnitude.sum())
  blurred = scipy.signal.convolve2d(
      combined, np.ones((window, window)), mode="same") / window**2
  return blurred / blurred.mean()


def create_probability_map(loss_map: np.ndarray, crop: int) -> np.ndarray:
  """Flat probability of each pixel being a crop centre (spec 2.2)."""
  window = crop // 2
  prob = scipy.signal.convolve2d(
      loss_map, np.ones((window, window)), mode="same") / window**2
  framed = np.zeros_like(prob)
  framed[window:-window, window:-window] = prob[window:-window,
                                                window:-window]
  flat = framed.ravel()
  total = flat.sum()
  if total == 0:
    return np.full(flat.size, 1.0 / flat.size)
  return flat / total


def imresize_half(image: np.ndarray) -> np.ndarray:
  """MATLAB-style antialiased cubic x0.5 downscale of an HxWxC image.

  Output pixel i (0-based) is sum_t h[t] x[2i - 3 + t] with the 8 taps of
  spec 5.2 and symmetric (edge-repeating) boundary indices, as in the
  original's `imresize`.
  """
  out = image
  for axis in (0, 1):
    pad = [(0, 0)] * out.ndim
    pad[axis] = (3, 4)
    padded = np.pad(out, pad, mode="symmetric")
    length = out.shape[axis] // 2
    out = sum(
        BICUBIC_TAPS[t] * np.take(padded, np.arange(length) * 2 + t, axis=axis)
        for t in range(len(BICUBIC_TAPS)))
  return out


def crop_probability_maps(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(G map for 64-crops, D map for 26-crops), each flat over H*W."""
  height, width = image.shape[:2]
  small_map = create_gradient_map(imresize_half(image))
  big_from_small = np.repeat(np.repeat(small_map, 2, axis=0), 2, axis=1)
  big_from_small = big_from_small[:height, :width]
  g_map = create_probability_map(big_from_small, INPUT_CROP_SIZE)
  d_map = create_probability_map(create_gradient_map(image), G_OUTPUT_SIZE)
  return g_map, d_map


def _centres_to_corners(flat_idx: np.ndarray, size: int, height: int,
                        width: int) -> np.ndarray:
  """Top-left corners, clamped to the image and rounded down to even."""
  rows, cols = flat_idx // width, flat_idx % width
  tops = np.clip(rows - size // 2, 0, height - size)
  lefts = np.clip(cols - size // 2, 0, width - size)
  corners = np.stack([tops - tops % 2, lefts - lefts % 2], axis=1)
  return corners.astype(np.int64)


def draw_crop_corners(image_01: np.ndarray, iters: int,
                      seed: Optional[int] = None
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """Draws the crop corners the original way (spec 2.2, 2.3).

  Args:
    image_01: HxWx3 image in [0, 1] (already shaved, even sizes).
    iters: number of iterations.
    seed: numpy seed (None = unseeded, like the original).

  Returns:
    (g_corners, d_corners): int64 arrays of shape (iters, 2), (top, left),
    for the 64x64 G crops and the 26x26 D crops.
  """
  height, width = image_01.shape[:2]
  g_map, d_map = crop_probability_maps(image_01)
  rng = np.random.RandomState(seed)
  g_idx = rng.choice(g_map.size, size=iters, p=g_map)
  d_idx = rng.choice(d_map.size, size=iters, p=d_map)
  return (_centres_to_corners(g_idx, INPUT_CROP_SIZE, height, width),
          _centres_to_corners(d_idx, G_OUTPUT_SIZE, height, width))


def prepare_image(image_01: np.ndarray, real_image: bool = False,
                  shave: int = 10) -> np.ndarray:
  """Edge shave (synthetic mode) and even sizes (spec 2.1 step 2)."""
  image = np.asarray(image_01, dtype=np.float64)[..., :3]
  if not real_image:
    image = image[shave:-shave, shave:-shave]
  height, width = image.shape[:2]
  return image[:height - height % 2, :width - width % 2]


# --------------------------------------------------------------------------
# Post-processing (spec 7.2, 7.3).
# --------------------------------------------------------------------------


def soft_threshold(kernel: np.ndarray, n: int = 40) -> np.ndarray:
  """Subtract 0.75 x the (n+1)-th largest value, clip at 0, normalise."""
  threshold = 0.75 * np.sort(kernel.ravel())[-n - 1]
  filtered = np.clip(kernel - threshold, 0, 100)
  return filtered / filtered.sum()


def kernel_shift(kernel: np.ndarray, sf: int = 2) -> np.ndarray:
  """Moves the centre of mass to size//2 + 0.5 (sf - size%2) (spec 7.2)."""
  current = np.array(scipy.ndimage.center_of_mass(kernel))
  shape = np.array(kernel.shape)
  wanted = shape // 2 + 0.5 * (sf - shape % 2)
  shift = wanted - current
  pad = int(np.ceil(np.max(np.abs(shift)))) + 1
  return scipy.ndimage.shift(np.pad(kernel, pad, mode="constant"), shift)


def post_process_kernel(kernel: np.ndarray, n: int = 40) -> np.ndarray:
  """Final x2 kernel from the raw 13x13 one, float32 (spec 7.2)."""
  kernel = np.asarray(kernel, dtype=np.float32)
  return kernel_shift(soft_threshold(kernel, n), sf=2)


def analytic_kernel(kernel_x2: np.ndarray) -> np.ndarray:
  """x4 kernel = (k2 dilated by 2) composed with k2, cropped (spec 7.3)."""
  size = kernel_x2.shape[0]
  big = np.zeros((3 * size - 2, 3 * size - 2))
  for r in range(size):
    for c in range(size):
      big[2 * r:2 * r + size, 2 * c:2 * c + size] += kernel_x2[r, c] * kernel_x2
  crop = size // 2
  cropped = big[crop:-crop, crop:-crop]
  return cropped / cropped.sum()


# --------------------------------------------------------------------------
# Training entry point.
# --------------------------------------------------------------------------


def _crop(image: torch.Tensor, corner: np.ndarray, size: int) -> torch.Tensor:
  top, left = int(corner[0]), int(corner[1])
  return image[:, :, top:top + size, left:left + size]


def train_step(gan: KernelGAN, iteration: int, image_net: torch.Tensor,
               g_corner: np.ndarray, d_corner: np.ndarray,
               real_noise_std: float, fake_noise_std: float
               ) -> Dict[str, torch.Tensor]:
  """One full iteration: G step, D step, learner (spec 6.1).

  Args:
    gan: the model.
    iteration: index i (drives the learner).
    image_net: [1, 3, H, W] image in [-1, 1] on the model's device.
    g_corner, d_corner: (top, left) of the 64 and 26 crops.
    real_noise_std: std of the real-crop noise in [0, 1] units.
    fake_noise_std: std of the fake-input noise in [-1, 1] units.

  Returns:
    Detached loss terms of this iteration (plus the kernel of the G step).
  """
  g_input = _crop(image_net, g_corner, INPUT_CROP_SIZE)
  d_input = _crop(image_net, d_corner, G_OUTPUT_SIZE)
  if real_noise_std:
    d_input = d_input + gan._noise_like(d_input, 2.0 * real_noise_std)
  g_terms = gan.train_g(g_input)
  d_terms = gan.train_d(g_input, d_input, fake_noise_std)
  gan.update_learner(iteration, float(g_terms["bicubic"]))
  return {**g_terms, **d_terms}


LOSS_NAMES = ("g_adv", "bicubic", "sum2one", "boundaries", "centralized",
              "sparse", "g_total", "d_real", "d_fake", "d_total")


def run(image_01: np.ndarray, g_corners: np.ndarray, d_corners: np.ndarray,
        iters: Optional[int] = None, device: Any = "cpu",
        real_noise_std: float = DEFAULT_NOISE_STD,
        fake_noise_std: float = DEFAULT_NOISE_STD, seed: Optional[int] = 0,
        init_state: Optional[StateDict] = None, n_filtering: int = 40,
        x4: bool = False) -> Dict[str, Any]:
  """Trains KernelGAN on one image and returns the kernels and loss history.

  Args:
    image_01: HxWx3 float image in [0, 1], already shaved (see
      `prepare_image`).
    g_corners, d_corners: (iters, 2) top-left corners of the 64x64 G crops
      and 26x26 D crops (e.g. from `draw_crop_corners`).
    iters: iterations (default: len(g_corners)).
    device: torch device.
    real_noise_std: D real-crop noise std in [0, 1] units (0 disables).
    fake_noise_std: D fake-input noise std in [-1, 1] units (0 disables).
    seed: torch seed for init and noise (None = unseeded).
    init_state: optional state (see `KernelGAN.get_state`) loaded after init.
    n_filtering: post-processing threshold rank (spec 7.2).
    x4: also compute the analytic x4 kernel.

  Returns:
    dict with "raw_kernel" (13x13, from the last G step, spec 7.1),
    "kernel_x2" (post-processed), optionally "kernel_x4", one float array
    per name in LOSS_NAMES (length iters), "lambda_bicubic" (weight used in
    each G step), "lr" (used in each step), "final_state" and
    "final_kernel" (13x13 from the final weights).
  """
  iters = len(g_corners) if iters is None else iters
  if len(g_corners) < iters or len(d_corners) < iters:
    raise ValueError("fewer crop corners than iterations")
  gan = KernelGAN(device=device, seed=seed)
  if init_state is not None:
    gan.set_state(init_state)
  image = np.asarray(image_01, dtype=np.float32).transpose(2, 0, 1)[None]
  image_net = torch.from_numpy(2.0 * image - 1.0).to(gan.device)
  history = {name: [] for name in LOSS_NAMES}
  lambda_bicubic, lrs = [], []
  kernel = None
  for i in range(iters):
    lambda_bicubic.append(gan.learner.lambda_bicubic)
    lrs.append(gan.opt_g.param_groups[0]["lr"])
    terms = train_step(gan, i, image_net, g_corners[i], d_corners[i],
                       real_noise_std, fake_noise_std)
    for name in LOSS_NAMES:
      history[name].append(terms[name])
    kernel = terms["kernel"]
  result = {name: torch.stack(values).cpu().numpy().astype(np.float64)
            for name, values in history.items()}
  result["lambda_bicubic"] = np.array(lambda_bicubic)
  result["lr"] = np.array(lrs)
  result["raw_kernel"] = kernel.cpu().numpy()
  result["kernel_x2"] = post_process_kernel(result["raw_kernel"], n_filtering)
  if x4:
    result["kernel_x4"] = analytic_kernel(result["kernel_x2"])
  result["final_state"] = gan.get_state()
  result["final_kernel"] = calc_curr_k(gan.generator).detach().cpu().numpy()
  return result


# --------------------------------------------------------------------------
# Benchmark.
# --------------------------------------------------------------------------


def synthetic_image(size: int = 128, seed: int = 0) -> np.ndarray:
  """A smooth random RGB test image in [0, 1] with edges (size x size)."""
  rng = np.random.RandomState(seed)
  noise = scipy.ndimage.gaussian_filter(rng.rand(size, size, 3), (2, 2, 0))
  rows, cols = np.mgrid[:size, :size]
  squares = (((rows // 16) + (cols // 16)) % 2).astype(np.float64)
  image = 0.5 * squares[..., None] + 0.5 * noise
  image = scipy.ndimage.gaussian_filter(image, (1.0, 1.0, 0))
  return (image - image.min()) / (image.max() - image.min())


def _sync(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def time_iterations(image_01: np.ndarray, iters: int = 50, warmup: int = 5,
                    device: Any = "cpu", seed: int = 0) -> Dict[str, float]:
  """Steady-state seconds per iteration (noise on, original settings).

  Args:
    image_01: HxWx3 image in [0, 1].
    iters: timed iterations (after `warmup` untimed ones).
    warmup: untimed iterations first.
    device: torch device.
    seed: seed of the crops, init and noise.

  Returns:
    dict with wall-clock "ms_per_iter" (mean), "ms_per_iter_median",
    "ms_per_iter_p10", "ms_per_iter_min", "cpu_ms_per_iter" (process CPU
    time, all threads), "full_run_s" (mean x 3000) and "threads". On a
    shared machine the mean and median include waiting for other
    processes; p10 / min are closer to the uncontended cost.
  """
  gan = KernelGAN(device=device, seed=seed)
  g_corners, d_corners = draw_crop_corners(image_01, warmup + iters, seed)
  image = np.asarray(image_01, dtype=np.float32).transpose(2, 0, 1)[None]
  image_net = torch.from_numpy(2.0 * image - 1.0).to(gan.device)
  times = []
  for i in range(warmup + iters):
    if i == warmup:
      cpu_start = time.process_time()
    _sync(gan.device)
    start = time.perf_counter()
    train_step(gan, i, image_net, g_corners[i], d_corners[i],
               DEFAULT_NOISE_STD, DEFAULT_NOISE_STD)
    _sync(gan.device)
    times.append(time.perf_counter() - start)
  cpu_ms = 1e3 * (time.process_time() - cpu_start) / iters
  steady = 1e3 * np.array(times[warmup:])
  ms = float(steady.mean())
  return {"ms_per_iter": ms,
          "ms_per_iter_median": float(np.median(steady)),
          "ms_per_iter_p10": float(np.percentile(steady, 10)),
          "ms_per_iter_min": float(steady.min()),
          "cpu_ms_per_iter": cpu_ms,
          "full_run_s": ms * 3000 / 1e3, "threads": torch.get_num_threads()}


def _define_flags() -> None:
  """The command line's flags.

  Defined only when this module runs as a script: `benchmarks/parity.py`
  imports it as a library and has flags of the same names.
  """
  flags.DEFINE_string("device", "cpu", "Torch device.")
  flags.DEFINE_integer("threads", None, "Torch intra-op threads.")
  flags.DEFINE_integer("iters", 50, "Iterations timed, or with --image, run.")
  flags.DEFINE_integer("warmup", 5, "Iterations left out of the timing.")
  flags.DEFINE_integer("size", 128, "Side of the synthetic timing image.")
  flags.DEFINE_string("image", None,
                      "Estimate this image's kernel instead of timing.")
  flags.DEFINE_string("output", None,
                      "With --image: where the x2 kernel (.npy) goes.")
  flags.DEFINE_integer("seed", 0,
                       "With --image: seed of the crops and weights.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  args = flags.FLAGS
  if args.threads:
    torch.set_num_threads(args.threads)
  if args.image:
    import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
    image = np.asarray(iio.imread(args.image))
    image = image.astype(np.float64) / np.iinfo(image.dtype).max
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    image = prepare_image(image[..., :3])
    g_corners, d_corners = draw_crop_corners(image, args.iters, args.seed)
    result = run(image, g_corners, d_corners, device=args.device,
                 seed=args.seed)
    np.save(args.output, result["kernel_x2"])
    return
  stats = time_iterations(synthetic_image(args.size), args.iters, args.warmup,
                          args.device)
  print(f"torch {torch.__version__} device={args.device} "
        f"threads={stats['threads']}: {stats['ms_per_iter']:.1f} ms/iter "
        f"(median {stats['ms_per_iter_median']:.1f}, "
        f"p10 {stats['ms_per_iter_p10']:.1f}, "
        f"min {stats['ms_per_iter_min']:.1f}; "
        f"CPU {stats['cpu_ms_per_iter']:.1f} ms/iter), "
        f"3000 iters ~ {stats['full_run_s']:.0f} s")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
