"""What the package's command lines share: a one-line error and exit
status 1, an unexpected error in one line, and absl's flag parsing with a
bad flag reported that way."""

import atexit
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

  try:
    app.run(main, flags_parser=parse)
  except SystemExit as done:
    exit_now(done.code)


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
