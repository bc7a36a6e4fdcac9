"""What the package's command lines share: a one-line error and exit
status 1, an unexpected error in one line, and absl's flag parsing with a
bad flag reported that way."""

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
        help_text: Optional[Callable[[], str]] = None) -> None:
  """`app.run(main)`, a bad flag failing in one line; with `help_text`,
  -h/--help print it instead of absl's listing."""

  def parse(argv: list[str]) -> list[str]:
    if help_text and any(arg in ("-h", "-help", "--help", "-?",
                                 "--helpshort") for arg in argv[1:]):
      print(help_text())
      sys.exit(0)
    try:
      return flags.FLAGS(argv)
    except flags.Error as error:
      fail(program, str(error))

  app.run(main, flags_parser=parse)
