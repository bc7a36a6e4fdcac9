"""Numerical parity of kernelgan_jax with the PyTorch reference.

Initialises the JAX model, copies those exact initial weights (G kernels,
D weights and biases, spectral-norm u vectors, BatchNorm scale/bias) into
`benchmarks/torch_kernelgan.py`, and trains both on the same image and the
same crop corners with all noise disabled. Two comparisons:

- `stepwise_compare` (teacher-forced): before every iteration the JAX state
  (weights, u vectors, Adam moments and step count, learner state) is copied
  into torch, both take ONE iteration, and the results are compared. This
  checks every step's arithmetic to float32 precision, without the
  divergence of free-running training.
- `compare` (free-running): both train independently for N iterations; the
  loss histories and final kernels are reported. From G's native init they
  agree at iteration 0 to float precision and then drift apart: Adam's
  first update is lr * sign(g), so gradient entries at float-noise level
  (notably the biases in front of BatchNorm, whose exact gradient is 0) flip
  sign between the implementations, and G's ~1e-7 initial kernel (a sum of
  large cancelling products) feeds D an almost constant fake patch that
  BatchNorm blows up to O(1), so float32 rounding decides the details.
  With `g_scale=10` (G's init gain 1, an O(0.1) kernel) the problem is well
  conditioned and the final kernels agree to ~1e-3 relative after 30
  iterations.

Finding (fixed in kernelgan_jax since): Flax's BatchNorm defaults to
`use_fast_variance=True` (var = E[x^2] - E[x]^2); in D this cancelled in
float32 and made D's gradients differ from PyTorch's (and from float64) by
up to ~1e-2 relative instead of ~1e-5. D now has its own two-pass
BatchNorm. `stepwise_compare` with `torch_dtype=torch.float64` tells which
side carries such an error: JAX's D gradients now agree with float64 to
~2e-5 relative, except at the rare step where one of D's ReLU inputs lies
within float32 rounding of 0 (9e-8 at step 5 of the default inputs with
`g_scale=10`). Rounding then decides which side of the kink it falls on, and
that unit's gradient path switches on or off: ~1e-2 relative on every D
layer, for float32 torch as for JAX (computed from the same state, torch's
is the further of the two).

Layouts: JAX conv kernels are HWIO, PyTorch's OIHW; spectral norm views a
kernel as [out, in*kh*kw] in PyTorch order on both sides, so u vectors copy
unchanged.

Usage:
  python -m benchmarks.parity --iters 30 --threads 2
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Sequence, Tuple

from absl import app
from absl import flags
import jax
import jax.flatten_util
import numpy as np
import torch
from flax import nnx

from benchmarks import torch_kernelgan as tk
from kernelgan_jax import config as config_lib
from kernelgan_jax import data as data_lib
from kernelgan_jax import train

# Torch loss name -> JAX metric name.
LOSS_PAIRS = {
    "g_adv": "loss_adversarial",
    "bicubic": "loss_bicubic",
    "sum2one": "loss_sum2one",
    "boundaries": "loss_boundaries",
    "centralized": "loss_centralized",
    "sparse": "loss_sparse",
    "g_total": "loss_generator",
    "d_total": "loss_discriminator",
}

# D biases that feed a BatchNorm (directly or through a 1x1 conv): their
# exact gradient is 0, so their Adam steps are sign(float noise) * lr and
# they cannot be compared entry-wise (they do not affect any output).
PRE_NORM_BIASES = tuple(f"D/conv{i}/bias" for i in range(6))


def hwio_to_oihw(kernel: Any) -> np.ndarray:
  """[kh, kw, in, out] -> [out, in, kh, kw]."""
  return np.array(kernel, dtype=np.float32).transpose(3, 2, 0, 1)


def _d_convs(d_tree: Dict[Any, Any], fields: Tuple[str, ...]
             ) -> list:
  """JAX D convs in the torch reference's `convs` order (0..6).

  Each entry maps a field name to an array in torch layout. Supports both
  D layouts of kernelgan_jax: five separate `convs` (HWIO kernels) and one
  `pointwise` stack (kernel [layers, in, out], bias / u [layers, features]).
  """
  def conv(node: Dict[str, Any]) -> Dict[str, np.ndarray]:
    out = {}
    for field in fields:
      value = np.array(node[field], dtype=np.float32)
      out[field] = hwio_to_oihw(value) if field == "kernel" else value
    return out

  if "pointwise" in d_tree:
    stack = d_tree["pointwise"]
    middle = []
    for layer in range(np.shape(stack[fields[0]])[0]):
      entry = {}
      for field in fields:
        value = np.array(stack[field][layer], dtype=np.float32)
        if field == "kernel":  # [in, out] -> [out, in, 1, 1].
          value = value.T[:, :, None, None].copy()
        entry[field] = value
      middle.append(entry)
  else:
    middle = [conv(d_tree["convs"][i]) for i in sorted(d_tree["convs"])]
  return [conv(d_tree["first"])] + middle + [conv(d_tree["last"])]


def _params_to_torch(g_tree: Dict[Any, Any], d_tree: Dict[Any, Any]
                     ) -> tk.StateDict:
  """Pure-dict G / D parameter trees (or Adam moments) in torch layout."""
  out = {}
  for i in sorted(g_tree["layers"]):
    out[f"G/conv{i}/weight"] = hwio_to_oihw(g_tree["layers"][i]["kernel"])
  for i, conv in enumerate(_d_convs(d_tree, ("kernel", "bias"))):
    out[f"D/conv{i}/weight_orig"] = conv["kernel"]
    out[f"D/conv{i}/bias"] = conv["bias"]
  for j in sorted(d_tree["norms"]):
    norm = d_tree["norms"][j]
    out[f"D/bn{j}/weight"] = np.array(norm["scale"], dtype=np.float32)
    out[f"D/bn{j}/bias"] = np.array(norm["bias"], dtype=np.float32)
  return out


def jax_to_torch_state(state: train.GanState, config: config_lib.Config
                       ) -> tk.StateDict:
  """A GanState's networks as a `KernelGAN.set_state` dict (copies)."""
  state = train.unpack(state, config)
  out = _params_to_torch(nnx.to_pure_dict(state.g_params),
                         nnx.to_pure_dict(state.d_params))
  for i, conv in enumerate(_d_convs(nnx.to_pure_dict(state.d_stats),
                                    ("u",))):
    out[f"D/conv{i}/u"] = conv["u"]
  return out


def _adam_state(opt_state: Any) -> Any:
  """The optax ScaleByAdamState inside an optimiser state."""
  for leaf in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda x: hasattr(x, "mu") and hasattr(x, "nu")):
    if hasattr(leaf, "mu") and hasattr(leaf, "nu"):
      return leaf
  raise ValueError("no Adam state (mu, nu) found in the optimiser state")


def _as_param_tree(moment: Any, params: nnx.State) -> Dict[Any, Any]:
  """An Adam moment as a pure dict shaped like `params`.

  Handles both a per-parameter moment tree and the single flat vector of
  `optax.flatten` (leaves raveled in `params`' tree order).
  """
  if isinstance(moment, jax.Array) and moment.ndim == 1:
    _, unravel = jax.flatten_util.ravel_pytree(params)
    moment = unravel(moment)
  return nnx.to_pure_dict(moment)


def jax_to_torch_optimizer(state: train.GanState, config: config_lib.Config
                           ) -> Tuple[int, tk.StateDict, tk.StateDict]:
  """(step count, first moments, second moments) in torch layout."""
  state = train.unpack(state, config)
  g_adam, d_adam = _adam_state(state.g_opt), _adam_state(state.d_opt)
  step = int(g_adam.count)
  if int(d_adam.count) != step:
    raise ValueError("G and D Adam step counts differ")
  moments = []
  for field in ("mu", "nu"):
    moments.append(_params_to_torch(
        _as_param_tree(getattr(g_adam, field), state.g_params),
        _as_param_tree(getattr(d_adam, field), state.d_params)))
  return step, moments[0], moments[1]


def load_learner(learner: tk.Learner, state: train.GanState) -> None:
  """Copies the JAX schedule state (and the implied LR scale) into torch."""
  sched = state.schedule
  learner.lambda_bicubic = float(sched.lambda_bicubic)
  learner.lambda_centralized = float(sched.lambda_centralized)
  learner.lambda_sparse = float(sched.lambda_sparse)
  learner.similar_to_bicubic = bool(sched.similar_to_bicubic)
  learner.bic_loss_counter = int(sched.bic_loss_counter)
  learner.insert_constraints = bool(sched.insert_constraints)
  iteration = int(state.step)
  decays = max(0, (iteration - 1) // learner.update_l_rate_freq)
  learner.lr_scale = learner.update_l_rate_rate**-decays


def network_image(image_01: np.ndarray) -> np.ndarray:
  """The float32 [-1, 1] image both sides train on (identical bits)."""
  return 2.0 * np.asarray(image_01, np.float32) - np.float32(1.0)


def scale_generator(state: train.GanState, factor: float
                    ) -> train.GanState:
  """Multiplies every G weight by `factor` (the kernel by factor**6).

  G's own init (Xavier gain 0.1) gives a ~1e-7 kernel whose output D sees
  through BatchNorm; that regime is ill-conditioned in float32 (see the
  module docstring). factor 10 (gain 1) gives an O(0.1) kernel, a
  well-conditioned state in which to compare the arithmetic step by step.
  """
  if factor == 1.0:
    return state
  g_params = jax.tree_util.tree_map(lambda w: w * factor, state.g_params)
  return state._replace(g_params=g_params)


def _setup_jax(image_01: np.ndarray, g_corners: np.ndarray,
               d_corners: np.ndarray, iters: int, seed: int,
               g_scale: float = 1.0
               ) -> Tuple[Any, data_lib.TrainData, train.GanState]:
  if min(len(g_corners), len(d_corners)) < iters:
    raise ValueError("fewer crop corners than iterations")
  config = config_lib.get_config(max_iters=iters, real_noise_std=0.0,
                                 fake_noise_std=0.0)
  data = data_lib.TrainData(
      image=np.asarray(network_image(image_01), np.float32),
      g_corners=np.asarray(g_corners, np.int32),
      d_corners=np.asarray(d_corners, np.int32))
  state = train.init_state(jax.random.key(seed), config)
  return config, data, scale_generator(state, g_scale)


def run_jax(image_01: np.ndarray, g_corners: np.ndarray,
            d_corners: np.ndarray, iters: int, seed: int = 0,
            g_scale: float = 1.0) -> Dict[str, Any]:
  """Trains kernelgan_jax with noise off.

  Returns:
    dict with "init_state" (torch layout), "final_state" (torch layout),
    "final_kernel" (13x13 from the final G) and "history" (metric arrays).
  """
  config, data, state = _setup_jax(image_01, g_corners, d_corners, iters,
                                   seed, g_scale)
  init_state = jax_to_torch_state(state, config)  # Before the state is donated.
  state, history = train.train(state, data, config, loop="python")
  kernel = train.generator_kernel(train.networks(config).g_def,
                                  train.unpack(state, config).g_params)
  return {"init_state": init_state,
          "final_state": jax_to_torch_state(state, config),
          "final_kernel": np.array(kernel, np.float64), "history": history}


def _max_abs(a: Any, b: Any) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) -
                             np.asarray(b, np.float64))))


def _max_rel(a: Any, b: Any) -> float:
  """max |a - b| / max |b|: the error relative to the array's scale."""
  scale = float(np.max(np.abs(b)))
  return _max_abs(a, b) / scale if scale else _max_abs(a, b)


def compare(image_01: np.ndarray, g_corners: np.ndarray,
            d_corners: np.ndarray, iters: int, seed: int = 0,
            g_scale: float = 1.0) -> Dict[str, Any]:
  """Free-running comparison from the same weights and crops.

  Args:
    image_01, g_corners, d_corners: the image and crops of both runs.
    iters: iterations.
    seed: JAX init key.
    g_scale: factor on G's initial weights (see `scale_generator`).

  Returns:
    dict with "losses" {torch name: (max abs diff, max rel diff)},
    "first_losses" {name: abs diff at iteration 0, identical weights},
    "kernel_abs" / "kernel_rel" / "kernel_max" (final 13x13 kernels),
    "weights" {state key: max rel diff of the final values},
    "lambda_bicubic_equal", and the raw "jax" / "torch" results.
  """
  jax_out = run_jax(image_01, g_corners, d_corners, iters, seed, g_scale)
  torch_out = tk.run(image_01, g_corners, d_corners, iters=iters,
                     real_noise_std=0.0, fake_noise_std=0.0, seed=0,
                     init_state=jax_out["init_state"])
  hist = jax_out["history"]
  losses, first = {}, {}
  for torch_name, jax_name in LOSS_PAIRS.items():
    a, b = torch_out[torch_name], hist[jax_name]
    losses[torch_name] = (_max_abs(a, b), _max_rel(a, b))
    first[torch_name] = _max_abs(a[:1], b[:1])
  return {
      "losses": losses,
      "first_losses": first,
      "kernel_abs": _max_abs(torch_out["final_kernel"],
                             jax_out["final_kernel"]),
      "kernel_rel": _max_rel(torch_out["final_kernel"],
                             jax_out["final_kernel"]),
      "kernel_max": float(np.max(np.abs(jax_out["final_kernel"]))),
      "weights": {key: _max_rel(torch_out["final_state"][key], value)
                  for key, value in jax_out["final_state"].items()},
      "lambda_bicubic_equal": bool(np.array_equal(
          torch_out["lambda_bicubic"], hist["lambda_bicubic"])),
      "jax": jax_out,
      "torch": torch_out,
  }


def stepwise_compare(image_01: np.ndarray, g_corners: np.ndarray,
                     d_corners: np.ndarray, iters: int, seed: int = 0,
                     g_scale: float = 1.0,
                     torch_dtype: torch.dtype = torch.float32
                     ) -> Dict[str, Any]:
  """Teacher-forced comparison: one half-step at a time from JAX's state.

  Before iteration t the torch model gets JAX's state t (weights, u, Adam
  moments and count, learner); both then run iteration t, except that
  torch's D step starts from JAX's updated G (so a differing G step cannot
  leak into the D comparison). Gradients are
  compared through Adam's moments after the step (their change is linear in
  the gradient); updated weights are compared by the fraction of entries
  whose Adam step differs, which happens where a gradient entry is at float
  noise level and Adam's normalisation turns its sign into a full step.

  Returns:
    dict with "loss_rel" {torch loss name: max over t of the relative
    difference}, "kernel_rel" (the G-step kernel, max over t),
    "grad_rel" {key: max over t of max|mu_torch - mu_jax| / max|mu_jax|},
    "sq_grad_rel" (the same for the second moments), "flip_fraction"
    {key: max over t of the fraction of entries whose updated value differs
    by more than 10% of that tensor's largest step}, "u_abs" {u key: max
    abs diff}, and "pre_norm_biases" (the keys whose exact gradient is 0).
    With `torch_dtype=torch.float64` the torch side is a high-precision
    reference: its differences then measure the JAX side's float32 error.
  """
  # The config (and so the compiled step) is shared with a free-running
  # `compare` over all the corners given.
  config, data, state = _setup_jax(image_01, g_corners, d_corners,
                                   len(g_corners), seed, g_scale)
  step_fn = train.jitted_step(config)  # Donates `state`: used up below.
  kernel_fn = jax.jit(functools.partial(
      train.generator_kernel, train.networks(config).g_def))
  gan = tk.KernelGAN(seed=seed, dtype=torch_dtype)
  image_t = torch.from_numpy(
      network_image(image_01).transpose(2, 0, 1)[None].copy()).to(torch_dtype)
  report = {"loss_rel": {name: 0.0 for name in LOSS_PAIRS}, "kernel_rel": 0.0,
            "grad_rel": {}, "sq_grad_rel": {}, "flip_fraction": {},
            "u_abs": {}, "pre_norm_biases": PRE_NORM_BIASES}

  def record(table: str, key: str, value: float) -> None:
    report[table][key] = max(report[table].get(key, 0.0), value)

  for t in range(iters):
    before = jax_to_torch_state(state, config)
    gan.set_state(before)
    load_learner(gan.learner, state)
    gan.set_optimizer_state(*jax_to_torch_optimizer(state, config))
    jax_kernel = np.array(kernel_fn(train.unpack(state, config).g_params))
    crops = jax.tree.map(lambda a: a[0], data_lib.crops(data, config, t, 1))
    state, metrics = step_fn(state, crops)
    terms = _forced_torch_step(gan, t, image_t, g_corners[t], d_corners[t],
                               jax_to_torch_state(state, config))
    report["kernel_rel"] = max(report["kernel_rel"],
                               _max_rel(terms["kernel"], jax_kernel))
    for name, jax_name in LOSS_PAIRS.items():
      record("loss_rel", name, _max_rel(terms[name].cpu().numpy(),
                                        np.asarray(metrics[jax_name])))
    _, torch_mu, torch_nu = gan.get_optimizer_state()
    _, jax_mu, jax_nu = jax_to_torch_optimizer(state, config)
    after_jax, after_torch = jax_to_torch_state(state, config), gan.get_state()
    for key, value in after_jax.items():
      if key.endswith("/u"):
        record("u_abs", key, _max_abs(after_torch[key], value))
        continue
      record("grad_rel", key, _max_rel(torch_mu[key], jax_mu[key]))
      record("sq_grad_rel", key, _max_rel(torch_nu[key], jax_nu[key]))
      step = float(np.max(np.abs(value - before[key])))
      flips = np.abs(after_torch[key] - value) > 0.1 * step
      record("flip_fraction", key, float(flips.mean()))
  return report


def _forced_torch_step(gan: tk.KernelGAN, iteration: int,
                       image_t: torch.Tensor, g_corner: np.ndarray,
                       d_corner: np.ndarray, jax_after: tk.StateDict
                       ) -> Dict[str, torch.Tensor]:
  """torch's iteration with its D step run from JAX's updated G.

  torch's own G-step result is put back after the D step, so the G
  comparison still sees torch's G update.
  """
  g_input = image_t[:, :, g_corner[0]:g_corner[0] + tk.INPUT_CROP_SIZE,
                    g_corner[1]:g_corner[1] + tk.INPUT_CROP_SIZE]
  d_input = image_t[:, :, d_corner[0]:d_corner[0] + tk.G_OUTPUT_SIZE,
                    d_corner[1]:d_corner[1] + tk.G_OUTPUT_SIZE]
  g_terms = gan.train_g(g_input)
  torch_g = [conv.weight.detach().clone() for conv in gan.generator.convs]
  with torch.no_grad():
    for i, conv in enumerate(gan.generator.convs):
      conv.weight.copy_(torch.from_numpy(jax_after[f"G/conv{i}/weight"]).to(
          conv.weight.dtype))
  d_terms = gan.train_d(g_input, d_input, fake_noise_std=0.0)
  with torch.no_grad():
    for conv, weight in zip(gan.generator.convs, torch_g):
      conv.weight.copy_(weight)
  gan.update_learner(iteration, float(g_terms["bicubic"]))
  return {**g_terms, **d_terms}


def format_report(report: Dict[str, Any], iters: int) -> str:
  """Human-readable summary of `compare`'s result."""
  lines = [f"free-running parity over {iters} iterations "
           "(noise off, same init and crops)"]
  lines.append(f"  final kernel: max|diff| {report['kernel_abs']:.3e}, "
               f"relative {report['kernel_rel']:.3e} "
               f"(max|k| {report['kernel_max']:.3e})")
  for name, (abs_diff, rel_diff) in report["losses"].items():
    lines.append(f"  {name:12s} max|diff| {abs_diff:.3e}  rel {rel_diff:.3e}"
                 f"  (iteration 0: {report['first_losses'][name]:.3e})")
  worst = max(report["weights"].items(), key=lambda kv: kv[1])
  lines.append(f"  final weights: worst relative diff {worst[1]:.3e} "
               f"({worst[0]})")
  lines.append(f"  lambda_bicubic schedules equal: "
               f"{report['lambda_bicubic_equal']}")
  return "\n".join(lines)


def format_stepwise(report: Dict[str, Any], iters: int) -> str:
  """Human-readable summary of `stepwise_compare`'s result."""
  lines = [f"teacher-forced parity over {iters} iterations"]
  lines.append(f"  G-step kernel: max relative diff "
               f"{report['kernel_rel']:.3e}")
  for name, rel in report["loss_rel"].items():
    lines.append(f"  {name:12s} max relative diff {rel:.3e}")
  excluded = report["pre_norm_biases"]
  for table, label in (("grad_rel", "gradients (Adam mu)"),
                       ("sq_grad_rel", "squared gradients (Adam nu)"),
                       ("flip_fraction", "entries with a differing step")):
    compared = {k: v for k, v in report[table].items() if k not in excluded}
    worst = max(compared.items(), key=lambda kv: kv[1])
    lines.append(f"  {label}: worst {worst[1]:.3e} ({worst[0]})")
  worst_u = max(report["u_abs"].items(), key=lambda kv: kv[1])
  lines.append(f"  spectral-norm u: worst abs diff {worst_u[1]:.3e} "
               f"({worst_u[0]})")
  lines.append("  (pre-BatchNorm D biases excluded: exact gradient 0)")
  return "\n".join(lines)


def default_inputs(iters: int, size: int = 96, seed: int = 0
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A synthetic image and crop corners drawn the original way."""
  image = tk.synthetic_image(size, seed)
  g_corners, d_corners = tk.draw_crop_corners(image, iters, seed)
  return image, g_corners, d_corners


def _define_flags() -> None:
  """The command line's flags.

  Defined only when this module runs as a script, so that importing it
  (tests, other benchmarks) defines none that could clash.
  """
  flags.DEFINE_integer("iters", 30, "Free-running iterations (0: none).")
  flags.DEFINE_integer("stepwise_iters", 10,
                       "Teacher-forced iterations (0: none).")
  flags.DEFINE_integer("size", 96, "Side of the synthetic image.")
  flags.DEFINE_integer("seed", 0, "Seed of the image, crops and weights.")
  flags.DEFINE_integer("threads", None, "Torch intra-op threads.")
  flags.DEFINE_float("g_scale", 1.0,
                     "Factor on G's initial weights (10 = gain 1).")
  flags.DEFINE_bool("torch_float64", False,
                    "Stepwise: float64 torch as the precise reference.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  args = flags.FLAGS
  if args.threads:
    torch.set_num_threads(args.threads)
  _report(args)


def _report(args: flags.FlagValues) -> None:
  """Runs and prints the comparisons selected on the command line."""
  n = max(args.iters, args.stepwise_iters)
  image, g_corners, d_corners = default_inputs(n, args.size, args.seed)
  if args.stepwise_iters:
    report = stepwise_compare(image, g_corners, d_corners,
                              args.stepwise_iters, args.seed, args.g_scale,
                              torch.float64 if args.torch_float64
                              else torch.float32)
    print(format_stepwise(report, args.stepwise_iters))
  if args.iters:
    report = compare(image, g_corners, d_corners, args.iters, args.seed,
                     args.g_scale)
    print(format_report(report, args.iters))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
