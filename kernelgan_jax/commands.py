"""What the package's command lines share: a one-line error and exit
status 1, an unexpected error in one line, absl's flag parsing with a
bad flag reported that way, and glibc's malloc set to keep freed memory."""

import atexit
import ctypes
import os
import sys
from typing import Callable, NoReturn, Optional

from absl import app
from absl import flags


def fail(program: str, message: str) -> NoReturn:
  """Prints `<program>: error: <message>` on one line and exits with 1."""
  print(f"{program}: error: {' '.join(str(message).split())}",
        file=sys.stderr)
  sys.exit(1)


def error_line(error: BaseException) -> str:
  """An unexpected error in one line: its type and its first line."""
  lines = str(error).splitlines()
  return type(error).__name__ + (f": {lines[0]}" if lines else "")


def run(main: Callable[[list[str]], None], program: str,
        help_text: Optional[Callable[[], str]] = None) -> NoReturn:
  """`app.run(main)`, a bad flag failing in one line; with `help_text`,
  -h/--help print it instead of absl's listing. Ends the process with
  `exit_now`."""

  def parse(argv: list[str]) -> list[str]:
    if help_text and any(arg in ("-h", "-help", "--help", "-?",
                                 "--helpshort") for arg in argv[1:]):
      print(help_text())
      sys.exit(0)
    try:
      return flags.FLAGS(argv)
    except flags.Error as error:
      fail(program, str(error))

  keep_freed_memory()
  try:
    app.run(main, flags_parser=parse)
  except SystemExit as done:
    exit_now(done.code)


# glibc's mallopt parameters (malloc.h) and the values `keep_freed_memory`
# sets: blocks below KEPT_BLOCK come from the heap, and up to KEPT_FREE of
# free memory at its top stays mapped.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
KEPT_BLOCK = KEPT_FREE = 128 << 20


def keep_freed_memory() -> bool:
  """Sets glibc's malloc to reuse large freed blocks instead of unmapping
  them; True where it took (glibc), False elsewhere (no change).

  XLA:CPU allocates every run's temporary buffers with malloc. glibc maps a
  block above its mmap threshold (at most 32 MiB by default) afresh each
  time and unmaps it on free, so its pages fault in again on every run: with
  the original's 128-pixel crops ZSSR's training step needs about 60 MiB,
  and a whole `--sr` run spent a sixth of its CPU time in the kernel doing
  that (benchmarks/README.md, "ZSSR's speed on CPU").
  Here blocks up to `KEPT_BLOCK` come from one heap shared by all threads
  (one arena: per-thread arenas would each keep their own), and up to
  `KEPT_FREE` of free memory stays mapped at its top. A process-wide
  setting, so the command lines make it (`run`); the Python API leaves the
  process's malloc alone.
  """
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # Not glibc.
    return False
  return all(mallopt(parameter, value) == 1 for parameter, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, KEPT_BLOCK),
      (_M_TRIM_THRESHOLD, KEPT_FREE)))


def exit_now(code: int | str | None) -> NoReturn:
  """`sys.exit(code)` without the interpreter's teardown of every module.

  The exit handlers still run (logging's flush, JAX's own, the shutdown of
  `jax.distributed`) and the standard streams are flushed; every output
  file is closed by then. Tearing down JAX's modules one by one is a
  visible share of a short run (benchmarks/README.md, "Start-up").
  """
  if code is None or isinstance(code, int):
    status = code or 0
  else:  # As sys.exit: a message on stderr, status 1.
    print(code, file=sys.stderr)
    status = 1
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):  # A closed pipe or stream.
      pass
  os._exit(status)  # pylint: disable=protected-access
