"""Command-line plumbing of the scripts in ``experiments/`` and ``benchmarks/``.

Bad input to a script ends the way it ends for ``jaxunlearn``: one line on
stderr and exit status 2, never a traceback (a failure during work, such as a
full disk: one line and exit status 1). A bug (anything that is not a
:class:`~jaxunlearn.errors.JaxUnlearnError` or an argument error) still shows
its traceback.

    from jaxunlearn import scripts
    p = scripts.parser("what the script does")
    p.add_argument("--seeds", type=scripts.int_list("--seeds"), default="0")
    ...
    if __name__ == "__main__":
      scripts.run(main)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from jaxunlearn.errors import ConfigError, JaxUnlearnError

__all__ = ["parser", "OneLineParser", "run", "out_dir", "int_list", "float_list", "name_list",
           "unknown_field", "bad_value"]


class OneLineParser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors are one line and exit 2."""

  def error(self, message: str):
    print(f"{self.prog}: error: {message} (--help lists the flags)", file=sys.stderr)
    sys.exit(2)


def parser(description: str) -> OneLineParser:
  return OneLineParser(description=description)


def int_list(flag: str, *, allow_empty: bool = False,
             unique: bool = True) -> Callable[[str], list[int]]:
  """An argparse type: ``"0,1,2"`` -> ``[0, 1, 2]``, refusing anything else in one line.

  With ``unique`` a value given twice is refused: ``--seeds 0,0`` would count one seed twice.
  """
  def parse(text: str) -> list[int]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
      values = [int(t) for t in items]
    except ValueError:
      raise argparse.ArgumentTypeError(f"{flag} takes comma-separated integers, e.g. 0,1,2; "
                                       f"got {text!r}") from None
    if not values and not allow_empty:
      raise argparse.ArgumentTypeError(f"{flag} is empty; give at least one, e.g. 0")
    twice = [v for i, v in enumerate(values) if v in values[:i]]
    if unique and twice:
      raise argparse.ArgumentTypeError(
          f"{flag} names {twice[0]} twice ({text}); give each once, e.g. "
          f"{','.join(map(str, dict.fromkeys(values)))}")
    return values
  parse.__name__ = "integers"
  return parse


def float_list(flag: str, *, allow_empty: bool = True) -> Callable[[str], list[float]]:
  """An argparse type: ``"10,100"`` -> ``[10.0, 100.0]``."""
  def parse(text: str) -> list[float]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
      values = [float(t) for t in items]
    except ValueError:
      raise argparse.ArgumentTypeError(f"{flag} takes comma-separated numbers, e.g. 10,100; "
                                       f"got {text!r}") from None
    if not values and not allow_empty:
      raise argparse.ArgumentTypeError(f"{flag} is empty; give at least one number")
    return values
  parse.__name__ = "numbers"
  return parse


def name_list(flag: str) -> Callable[[str], list[str]]:
  """An argparse type: ``"a,b"`` -> ``["a", "b"]``; empty is refused."""
  def parse(text: str) -> list[str]:
    values = [t.strip() for t in str(text).split(",") if t.strip()]
    if not values:
      raise argparse.ArgumentTypeError(f"{flag} is empty; name at least one")
    return values
  parse.__name__ = "names"
  return parse


def out_dir(flag: str = "--out") -> Callable[[str], Path]:
  """An argparse type: a directory the script can create and write into."""
  def parse(text: str) -> Path:
    from jaxunlearn import workdir
    if not str(text).strip():
      raise argparse.ArgumentTypeError(f"{flag} is empty; name an output folder")
    path = Path(text).expanduser()   # --out=~/x: the home folder's, as a shell reads it
    if path.exists() and not path.is_dir():
      raise argparse.ArgumentTypeError(f"{flag} {text} is a file; name a folder")
    probe = path if path.exists() else next(p for p in path.absolute().parents if p.exists())
    if not probe.is_dir() or not workdir.can_write(probe):
      raise argparse.ArgumentTypeError(f"{flag} {text} cannot be written ({probe} refuses new "
                                       "files); name another folder")
    return path
  parse.__name__ = "folder"
  return parse


def run(main: Callable[[], object]) -> None:
  """Runs a script's ``main``: bad input is one line and exit 2, a bug shows its traceback.

  A nonzero integer returned by ``main`` is the exit status.
  """
  prog = Path(sys.argv[0]).name
  try:
    rc = main()
  except JaxUnlearnError as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    sys.exit(e.exit_status)
  except OSError as e:
    from jaxunlearn import workdir
    if workdir.error_number(e) not in workdir.NO_SPACE:
      raise
    print(f"{prog}: error: {workdir.write_error(e.filename or '.', e)}", file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted; finished stages are saved, rerun to resume", file=sys.stderr)
    sys.exit(130)
  if isinstance(rc, int) and not isinstance(rc, bool) and rc:
    sys.exit(rc)


def unknown_field(field: str, *, name: str | None = None, guess: str | None = None,
                  note: str = "") -> ConfigError:
  """``--set FIELD=...`` naming a field the config lacks (``name``: the first missing part of
  its path, ``guess``: the nearest existing name)."""
  hint = f' (did you mean "{guess}"?)' if guess else f" ({note})" if note else ""
  return ConfigError(f"--set {field}=...: unknown config field {name or field!r}{hint}; "
                     "`jaxunlearn config --config FILE` lists every field")


def bad_value(field: str, value, current) -> ConfigError:
  """``--set FIELD=VALUE`` whose value is not of the field's type (``current``'s)."""
  kind = type(current).__name__
  article = "an" if kind[:1] in "aeiou" else "a"
  return ConfigError(f"--set {field}={value}: bad value {value!r} for config field {field}: "
                     f"expected {article} {kind} (the config has {current!r})")
