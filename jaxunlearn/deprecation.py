"""Old public names that still work, each with one deprecation line per process.

Internal to the library: moved names keep working through it, so it declares no public
names.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable

__all__ = []

_TOLD: set = set()


def note(old: str, new: str) -> None:
  """Prints once per process that ``old`` is now ``new`` (as config fields' renames do)."""
  if old in _TOLD:
    return
  _TOLD.add(old)
  print(f"jaxunlearn: note: {old} is now {new}; the old name still works for now",
        file=sys.stderr)


def module_getattr(module: str, moved: dict[str, str]) -> Callable[[str], object]:
  """A module ``__getattr__`` that serves ``moved`` names (``{old: "pkg.mod.new"}``).

  Each old name resolves to its new home on use, with one :func:`note`.
  """
  def __getattr__(name: str):
    if name not in moved:
      raise AttributeError(f"module {module!r} has no attribute {name!r}")
    where, _, new = moved[name].rpartition(".")
    note(f"{module}.{name}", f"{where}.{new}")
    return getattr(importlib.import_module(where), new)
  return __getattr__
