"""Compiled programs kept on disk, so that a fresh process neither traces
nor lowers them.

JAX's persistent compilation cache spares a fresh process XLA's compile,
but not tracing the function and lowering it to find the cache entry; for
the scanned train chunk those two cost more than loading the executable
(benchmarks/results/startup-*). `stored` wraps a jitted function: once
`use_folder` names a folder, its first call in a process loads the
executable `jax.experimental.serialize_executable` wrote there, keyed by a
name, the caller's key (the config), the arguments' structure, shapes and
placement, and everything else that changes the traced program (this
package's source, the versions of jax, jaxlib, flax and optax, JAX's
settings, the backend); without one it compiles and writes it. Not with
several processes (`jax.distributed`).

`stored_result` keeps a function's results instead, by the values of its
arguments: where a program costs more to load than its result does to
read (the initial state of a seed), a later process reads the result.

Loading an executable runs code from the folder, as JAX's own cache does
(and a result is unpickled): use only a folder of your own.
"""

import contextlib
import functools
import hashlib
import os
import pickle
import threading
from typing import Any, Callable, Optional

from absl import logging
import jax
import numpy as np

_state = {"folder": None}
_loaded: dict[tuple, Callable] = {}
_hits = threading.local()
_locks: dict[tuple, threading.Lock] = {}
_locks_lock = threading.Lock()
_EXCLUDED_SETTINGS = ("cache", "log", "explain")  # Not the program's.


def use_folder(folder: Optional[str]) -> None:
  """Keep and look up executables in `folder` (None: do not)."""
  _state["folder"] = folder and os.path.expanduser(folder)


def stored(name: str, jitted: Callable, key: str, *,
           donate_argnums: tuple[int, ...] = ()) -> Callable:
  """`jitted`, or with a folder set (`use_folder`), its executable from
  there.

  Args:
    name: names the program (and its files); letters, digits, '_'.
    jitted: a `jax.jit`-wrapped function, called with positional arrays;
      what is called with tracers (under `jax.vmap`, say) calls it.
    key: whatever else the traced program depends on (e.g. the config's
      repr).
    donate_argnums: `jitted`'s own.

  Returns:
    A function of the same arguments and results.
  """
  folder = _state["folder"]
  if folder is None or jax.distributed.is_initialized():
    return jitted  # Several processes would write each other's devices.
  def load(*args) -> Callable:
    """The executable for these arguments (loaded or compiled once)."""
    leaves, tree = jax.tree.flatten(args)
    layout = tuple((x.shape, str(x.dtype), str(getattr(x, "sharding", "")))
                   for x in leaves)
    memo = (folder, name, key, tree, layout)
    program = _loaded.get(memo)
    if program is None:
      with _lock_of(memo):  # Threads wanting the same one load it once.
        program = _loaded.get(memo)
        if program is None:
          digest = hashlib.sha256(repr((name, key, str(tree), layout,
                                        _environment())).encode()).hexdigest()
          program = _load_or_compile(
              os.path.join(folder, f"{name}-{digest[:32]}"), jitted, args,
              donate_argnums)
          _loaded[memo] = program
    return program
  def call(*args):
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args)):
      return jitted(*args)  # Inside another transformation.
    return load(*args)(*args)
  call.load = load
  return call


def stored_result(name: str, function: Callable, key: str) -> Callable:
  """`function`, or with a folder set (`use_folder`), its results kept
  there by the values of its arguments.

  For a deterministic function of small arguments whose program costs
  more to load than its result costs to read: the initial state (a large
  program; a result of about 2 MB, and most runs use the same seed). A
  call whose arguments equal an earlier one's, in this process or
  another, reads the result, placed where the arguments are, and neither
  loads nor runs the program. Keyed as `stored` keys executables, plus
  the arguments' values.

  Args:
    name: names the results' files; letters, digits, '_'.
    function: arrays (or PRNG keys) in, a pytree of them out.
    key: whatever else the result depends on (e.g. the config's repr).

  Returns:
    A function of the same arguments and results.
  """
  folder = _state["folder"]
  if folder is None or jax.distributed.is_initialized():
    return function
  def call(*args):
    leaves, tree = jax.tree.flatten(args)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
      return function(*args)
    digest = hashlib.sha256(repr((name, key, str(tree),
                                  _environment())).encode())
    for kind, value in map(_portable, leaves):
      digest.update(repr((kind, value.dtype.str, value.shape)).encode())
      digest.update(np.ascontiguousarray(value).tobytes())
    path = os.path.join(folder, f"{name}-{digest.hexdigest()[:32]}")
    placement = next((x.sharding for x in leaves
                      if isinstance(x, jax.Array)), None)
    try:
      with open(path, "rb") as f:
        result_tree, values = pickle.load(f)
      return jax.tree.unflatten(result_tree, [
          _restored(kind, value, placement) for kind, value in values])
    except FileNotFoundError:
      pass
    except Exception as error:  # pylint: disable=broad-except
      logging.warning("recomputing %s: %s", path, error)
    result = function(*args)
    result_leaves, result_tree = jax.tree.flatten(result)
    try:
      _write(path, (result_tree, [_portable(x) for x in result_leaves]))
    except Exception as error:  # pylint: disable=broad-except
      logging.warning("cannot keep %s: %s", path, error)
    return result
  return call


def _portable(x: Any) -> tuple[str, np.ndarray]:
  """(kind, numpy value) of an array or a PRNG key array (its key data)."""
  dtype = getattr(x, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return f"key:{jax.random.key_impl(x)}", np.asarray(jax.random.key_data(x))
  return "array", np.asarray(x)


def _restored(kind: str, value: np.ndarray,
              placement: Optional[jax.sharding.Sharding]) -> jax.Array:
  """`_portable`'s inverse, on `placement` (None: the default device)."""
  array = jax.device_put(value, placement)
  if kind.startswith("key:"):
    return jax.random.wrap_key_data(array, impl=kind[len("key:"):])
  return array


def _lock_of(memo: tuple) -> threading.Lock:
  """The lock of one program's loading (one per program, made once)."""
  with _locks_lock:
    return _locks.setdefault(memo, threading.Lock())


def _load_or_compile(path: str, jitted: Callable, args: tuple,
                     donate_argnums: tuple[int, ...]) -> Callable:
  """The executable at `path`, else compiled (and written when whole)."""
  from jax.experimental import serialize_executable  # pylint: disable=g-import-not-at-top
  try:
    with open(path, "rb") as f:
      payload, in_tree, out_tree, device_ids = pickle.load(f)
    # On the devices it was compiled for: by default JAX would load it
    # over every local device, and a one-device program then fails.
    devices = {device.id: device for device in jax.local_devices()}
    return serialize_executable.deserialize_and_load(
        payload, in_tree, out_tree,
        execution_devices=[devices[i] for i in device_ids])
  except FileNotFoundError:
    pass
  except Exception as error:  # pylint: disable=broad-except
    logging.warning("recompiling %s: %s", path, error)
  # Named after the file: XLA:CPU cannot serialise again an executable
  # it read from JAX's cache, so this one must be freshly compiled, and a
  # name of its own keeps it out of entries other programs left there.
  fun = jitted.__wrapped__
  def program(*inner):
    return fun(*inner)
  program.__name__ = program.__qualname__ = os.path.basename(path).replace(
      "-", "_")
  _hits.count = 0
  with _without_jax_cache():  # Its entry would never be read.
    compiled = jax.jit(program, donate_argnums=donate_argnums).trace(
        *args).lower().compile()
  if not _hits.count:
    try:
      device_ids = [device.id for device in
                    compiled.runtime_executable().local_devices()]
      _write(path, (*serialize_executable.serialize(compiled), device_ids))
    except Exception as error:  # pylint: disable=broad-except
      logging.warning("cannot keep %s: %s", path, error)
  return compiled


def _without_jax_cache() -> contextlib.AbstractContextManager:
  """Keeps JAX's persistent cache from writing, in this thread, where this
  JAX has the (private) setting; else a no-op. Not by turning the cache
  off: JAX decides once per process whether it uses the cache, at the
  first compile, which may be this one."""
  from jax._src import config  # pylint: disable=g-import-not-at-top
  setting = getattr(config, "persistent_cache_min_compile_time_secs", None)
  return (setting(float("inf")) if callable(setting)
          else contextlib.nullcontext())


def _write(path: str, value: Any) -> None:
  """Pickles `value` to `path` through a temporary file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  staging = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
  try:
    with open(staging, "wb") as f:
      pickle.dump(value, f)
    os.replace(staging, path)
  finally:
    if os.path.exists(staging):
      os.remove(staging)


def _on_event(event: str, **_) -> None:
  if event == "/jax/compilation_cache/cache_hits":
    _hits.count = getattr(_hits, "count", 0) + 1


jax.monitoring.register_event_listener(_on_event)


@functools.lru_cache(maxsize=None)
def _environment() -> str:
  """What a traced program depends on besides its arguments."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  source = hashlib.sha256()
  package = os.path.dirname(os.path.abspath(__file__))
  for root, dirs, files in os.walk(package):
    dirs.sort()
    for file in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(root, file)
      source.update(os.path.relpath(path, package).encode())
      with open(path, "rb") as f:
        source.update(f.read())
  settings = sorted((k, repr(v)) for k, v in jax.config.values.items()
                    if not any(w in k for w in _EXCLUDED_SETTINGS))
  device = jax.devices()[0]
  return repr((source.hexdigest(), _processor(), jax.__version__, jaxlib.__version__,
               metadata.version("flax"), metadata.version("optax"), settings,
               os.environ.get("XLA_FLAGS", ""), device.platform,
               device.device_kind, device.client.platform_version,
               jax.local_device_count()))


def _processor() -> str:
  """The CPU's feature flags (XLA:CPU compiles for them), where known."""
  try:
    with open("/proc/cpuinfo") as f:
      return next((line for line in f if line.startswith("flags")), "")
  except OSError:
    return ""
