"""Command-line plumbing of the scripts in ``experiments/`` and ``benchmarks/``.

Bad input to a script ends the way it ends for ``jaxunlearn``: one line on
stderr and exit status 2, never a traceback; a failure during work (a full
disk) one line and status 1; a plugin that raises
(:class:`~jaxunlearn.errors.PluginError`) one line and status 1; an interrupt
the line to resume and status 130. Every script takes ``--debug``, which adds
the traceback. A bug (anything that is not a
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
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable

from jaxunlearn.errors import ConfigError, JaxUnlearnError, PluginError

__all__ = ["parser", "OneLineParser", "run", "out_dir", "int_list", "float_list", "name_list",
           "unknown_field", "bad_value", "exit_now"]


class OneLineParser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors are one line and exit 2."""

  def error(self, message: str):
    print(f"{self.prog}: error: {message} (--help lists the flags)", file=sys.stderr)
    sys.exit(2)


def parser(description: str) -> OneLineParser:
  """A script's argument parser: errors in one line (exit 2), and ``--debug``."""
  p = OneLineParser(description=description)
  p.add_argument("--debug", action="store_true",
                 help="on an error, print its traceback too (e.g. of a plugin that raises)")
  return p


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


def out_dir(flag: str = "--out", *, optional: bool = False) -> Callable[[str], Path]:
  """An argparse type: a directory the script can create and write into.

  With ``optional``, an empty value is ``""`` (the script writes no files), so a flag
  with ``default=""`` is checked before any work, not at the first write.
  """
  def parse(text: str) -> Path:
    from jaxunlearn import workdir
    if not str(text).strip():
      if optional:
        return ""
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


def exit_now(code: int) -> None:
  """Flushes stdout and stderr and ends the process at once with ``code``.

  After an interrupt, ending the interpreter normally can crash (a segmentation
  fault) while JAX/XLA or Orbax threads still run; this skips the interpreter's
  clean-up. Call it only once the work is unwound (locks released).
  """
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # pylint: disable=broad-except
      pass
  os._exit(code)


def _first_interrupt(signum, frame):
  # The first Ctrl-C interrupts; a second one while the work unwinds (the lock released, the
  # line printed) is ignored instead of cutting that short with a traceback.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  raise KeyboardInterrupt


def interrupt_once() -> Callable[[], None]:
  """Makes a second Ctrl-C, while the first one's interrupt unwinds, be ignored (where Python
  handles SIGINT, in the main thread); returns the function that puts the old handler back."""
  previous = signal.getsignal(signal.SIGINT)
  if previous is not signal.default_int_handler or \
      threading.current_thread() is not threading.main_thread():
    return lambda: None
  signal.signal(signal.SIGINT, _first_interrupt)
  return lambda: signal.signal(signal.SIGINT, previous)


def run(main: Callable[..., object], argv: list[str] | None = None) -> None:
  """Runs a script's ``main`` (``main(argv)`` when ``argv`` is given, else ``main()`` on
  ``sys.argv``): bad input is one line and exit 2, a plugin that raises one line and exit 1,
  an interrupt exit 130, a closed stdout (``| head``) exit 1 quietly, a bug shows its
  traceback. ``--debug`` prints every traceback.

  A nonzero integer returned by ``main`` is the exit status.
  """
  prog = Path(sys.argv[0]).name
  debug = "--debug" in (sys.argv[1:] if argv is None else argv)

  def error(e: BaseException, text: str) -> None:
    if debug:
      traceback.print_exception(e, file=sys.stderr)
    print(f"{prog}: error: {text}", file=sys.stderr)

  restore = interrupt_once()
  try:
    rc = main() if argv is None else main(argv)
  except PluginError as e:
    error(e, f"{e}" + ("" if debug else "; --debug shows the traceback"))
    sys.exit(1)
  except JaxUnlearnError as e:
    error(e, str(e))
    sys.exit(e.exit_status)
  except BrokenPipeError:
    # The reader of stdout went away (`... | head`): nothing is left to tell it. Point stdout at
    # /dev/null so that the interpreter's last flush is quiet too, and exit 1 without a trace.
    try:
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
      pass
    sys.exit(1)
  except OSError as e:
    from jaxunlearn import workdir
    if workdir.error_number(e) not in workdir.NO_SPACE:
      raise
    error(e, str(workdir.write_error(e.filename or '.', e)))
    sys.exit(1)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted; finished stages are saved, rerun to resume", file=sys.stderr)
    exit_now(130)
  finally:
    restore()
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
