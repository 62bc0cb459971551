"""The public API: each module's ``__all__``, listed in README's "Public API" section.

README's list is generated from the modules' ``__all__``; after changing one, rewrite it with::

    PYTHONPATH=. .venv/bin/python tests/test_public_api.py

The tests import every listed name, and check that each module's ``__all__`` is README's list
and names only what the module itself holds: a deprecated alias (served by a module
``__getattr__`` with one deprecation line) keeps working and is never listed.
"""

import importlib
import pkgutil
import re
import sys
from pathlib import Path

import jaxunlearn

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HEADING = "## Public API"
# Moved names that still resolve, each with one deprecation line: never public.
DEPRECATED = {"jaxunlearn.request": ["stage_key", "environment", "train_stage"],
              "jaxunlearn.pipeline": ["summarize", "write_results", "retrain_stage"],
              "jaxunlearn.auditor": ["config_in_use", "markdown"],
              "jaxunlearn.config": ["validate"],
              "jaxunlearn.plugins": ["validate", "load"]}

INTRO = """\
Each module's `__all__`: what a module exports. A name not listed here is internal, even without a
leading underscore; a name that moved keeps an alias that prints one deprecation line, and is not
listed. `tests/test_public_api.py` imports every name below and checks this list against the
modules (`PYTHONPATH=. .venv/bin/python tests/test_public_api.py` rewrites it from `__all__`)."""


def modules() -> list[str]:
  """The library's modules a user imports: the top-level modules and the plugin packages."""
  return sorted(f"{jaxunlearn.__name__}.{m.name}"
                for m in pkgutil.iter_modules(jaxunlearn.__path__))


def declared() -> dict[str, list[str] | None]:
  """``{module: its __all__}`` (``None`` for a module that declares none)."""
  out = {}
  for name in modules():
    names = getattr(importlib.import_module(name), "__all__", None)
    out[name] = None if names is None else list(names)
  return out


def _wrap(text: str, indent: str = "  ", width: int = 100) -> str:
  lines, line = [], ""
  for word in text.split(" "):
    if line and len(line) + 1 + len(word) > width:
      lines.append(line)
      line = indent + word
    else:
      line = f"{line} {word}" if line else word
  return "\n".join(lines + [line])


def render(api: dict[str, list[str] | None]) -> str:
  """README's Public API section (heading included) for ``api``."""
  entries = [_wrap(f"- `{m}`: " + ", ".join(f"`{n}`" for n in names))
             for m, names in api.items() if names]
  internal = [m for m, names in api.items() if names == []]
  out = [HEADING, "", INTRO, ""] + entries
  if internal:
    out += ["", _wrap("Internal, no public names: " + ", ".join(f"`{m}`" for m in internal)
                      + ".", indent="")]
  return "\n".join(out) + "\n"


def readme_section(text: str) -> str:
  """README's Public API section: from its heading to the next ``## `` heading."""
  start = text.index(f"\n{HEADING}\n") + 1
  end = text.find("\n## ", start + len(HEADING))
  return text[start:end] if end >= 0 else text[start:]


def parse(section: str) -> dict[str, list[str]]:
  """``{module: names}`` of the section's entries (an entry's lines after its first start with
  two spaces); the internal modules map to ``[]``."""
  entries, current = [], None
  for line in section.splitlines():
    if line.startswith("- `"):
      current = [line]
      entries.append(current)
    elif current is not None and line.startswith("  "):
      current.append(line)
    else:
      current = None
  out = {}
  for entry in entries:
    module, *names = re.findall(r"`([^`]+)`", " ".join(entry))
    out[module] = names
  internal = re.search(r"^Internal, no public names: (.*?)\.$", section, re.M | re.S)
  for module in re.findall(r"`([^`]+)`", internal.group(1) if internal else ""):
    out[module] = []
  return out


def _listed() -> dict[str, list[str]]:
  return parse(readme_section(README.read_text()))


def test_every_module_declares_its_public_names():
  api = declared()
  missing = sorted(m for m, names in api.items() if names is None)
  assert not missing, f"modules without __all__: {missing}"


def test_readme_lists_each_module_all():
  api = {m: names for m, names in declared().items() if names is not None}
  assert _listed() == api
  assert readme_section(README.read_text()) == render(api), (
      "README's Public API section is not the generated one: run "
      "`PYTHONPATH=. .venv/bin/python tests/test_public_api.py`")


def test_every_listed_name_imports():
  for module, names in _listed().items():
    mod = importlib.import_module(module)
    namespace = {}
    exec(f"from {module} import {', '.join(names)}" if names else f"import {module}", namespace)
    assert len(set(names)) == len(names), f"{module} lists a name twice"
    for name in names:
      assert not name.startswith("_"), f"{module}.{name} is private"
      # In the module's own namespace: not an alias served by a module __getattr__.
      assert name in vars(mod), f"{module}.{name} is not defined in {module}"


def test_deprecated_aliases_work_and_are_not_listed():
  listed = _listed()
  for module, old_names in DEPRECATED.items():
    mod = importlib.import_module(module)
    for name in old_names:
      assert name not in listed.get(module, []), f"{module}.{name} is deprecated"
      assert name not in vars(mod) and getattr(mod, name) is not None


def test_the_section_parses_as_it_renders():
  api = {"pkg.a": [f"name_{i}" for i in range(30)], "pkg.b": [], "pkg.c": ["h"]}
  assert render(api).count("\n  `name_") >= 2        # pkg.a's entry takes three lines
  assert parse(render(api)) == api


def main() -> None:
  """Rewrites README's Public API section from the modules' ``__all__``."""
  text = README.read_text()
  api = {m: names for m, names in declared().items() if names is not None}
  README.write_text(text.replace(readme_section(text), render(api)))
  print(f"{README}: Public API of {len(api)} modules", file=sys.stderr)


if __name__ == "__main__":
  main()
