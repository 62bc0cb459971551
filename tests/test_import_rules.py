"""Import rules inside the library: plugins stay below the orchestration, no circle, no private
name crosses a module boundary.

``jaxunlearn/`` is read with ``ast`` (lazy imports in functions included), nothing is imported.
The graph and the private-name reader are :mod:`tests.test_layering`'s, which checks the same for
``experiments/`` and ``benchmarks/``; the helpers here add what only the library needs (the
plugin layer, relative imports, a module's own names). They move to ``tests/support/`` with the
other shared helpers.
"""

import ast
from pathlib import Path

from tests.test_layering import LIBRARY, ROOT, circles, import_edges, private_uses

# Plugins: each file is one method, evaluator, audit statistic or dataset, found by name.
PLUGIN_PACKAGES = tuple(f"{LIBRARY}.{p}" for p in ("methods", "evaluators", "audits", "datasets"))
# What runs the plugins: a plugin that imported one of these would climb back up the floors.
ORCHESTRATION = tuple(f"{LIBRARY}.{m}" for m in
                      ("request", "stages", "pipeline", "results", "auditor", "cli"))
# A NamedTuple's API starts with one underscore and is public all the same.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_field_defaults", "_make"}




def _is_plugin(module: str) -> bool:
  return module.startswith(tuple(p + "." for p in PLUGIN_PACKAGES)) or module in PLUGIN_PACKAGES


def layer_breaks(edges: dict[str, set[str]]) -> list[str]:
  """``'plugin imports orchestration'`` entries, for each plugin module that imports upwards."""
  return sorted(f"{m} imports {t}" for m, ts in edges.items() if _is_plugin(m)
                for t in ts if t in ORCHESTRATION)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
  """The absolute module an ``ImportFrom`` names (``from .base import x`` in ``pkg.y``: ``pkg.base``)."""
  if not node.level:
    return node.module or ""
  base = module if is_package else module.rpartition(".")[0]
  for _ in range(node.level - 1):
    base = base.rpartition(".")[0]
  return f"{base}.{node.module}" if node.module else base


def crossings(path: Path, root: Path = ROOT) -> list[str]:
  """Where library module ``path`` reaches another library module's private name.

  :func:`tests.test_layering.private_uses` reads absolute imports and ``alias._name``; relative
  imports (``from .base import _x``) are read here. A NamedTuple's ``_replace`` and friends are
  public API.
  """
  found = [use for use in private_uses(path, set())
           if not any(f".{name}" in use.split(":", 1)[1] for name in NAMEDTUPLE_API)]
  parts = path.relative_to(root).with_suffix("").parts
  module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.level:
      source = _absolute(module, path.name == "__init__.py", node)
      for a in node.names:
        if a.name.startswith("_") and not a.name.startswith("__"):
          found.append(f"{node.lineno}: from {source} import {a.name}")
  return found


def test_plugins_import_no_orchestration():
  edges = import_edges((LIBRARY,))
  assert f"{LIBRARY}.methods.lightweight" in edges and f"{LIBRARY}.audits.klom" in edges
  assert not layer_breaks(edges), layer_breaks(edges)


def test_the_library_imports_in_no_circle():
  edges = import_edges((LIBRARY,))
  assert not circles(edges), circles(edges)


def test_no_private_name_crosses_a_module_boundary():
  found = {str(f.relative_to(ROOT)): [u.split(": ", 1)[1] for u in uses]
           for f in sorted((ROOT / LIBRARY).rglob("*.py")) if (uses := crossings(f))}
  assert not found, f"private names read from another module: {found}"


def test_the_layer_check_finds_a_plugin_that_climbs():
  edges = {f"{LIBRARY}.methods.mine": {f"{LIBRARY}.stages", f"{LIBRARY}.train"},
           f"{LIBRARY}.audits": {f"{LIBRARY}.auditor"},
           f"{LIBRARY}.pipeline": {f"{LIBRARY}.stages"}}
  assert layer_breaks(edges) == [f"{LIBRARY}.audits imports {LIBRARY}.auditor",
                                 f"{LIBRARY}.methods.mine imports {LIBRARY}.stages"]


def test_the_crossing_check_finds_each_way_in(tmp_path):
  package = tmp_path / LIBRARY / "methods"
  package.mkdir(parents=True)
  module = package / "mine.py"
  module.write_text("from jaxunlearn.methods import base\n"
                    "from jaxunlearn.unlearn import _as_method\n"
                    "from .base import _FORGET_ROWS, INPUTS\n"
                    "import jaxunlearn.stop as stop_lib\n"
                    "def f(state):\n"
                    "  return (base._FORGET_ROWS, stop_lib._rule, base.Inputs._replace,\n"
                    "          state._private, _local)\n")
  found = crossings(module, root=tmp_path)
  assert sorted(x.split(":")[0] for x in found) == ["2", "3", "6", "6"], found
