"""Layering outside the library: scripts use only its public names, and do not import in a circle.

``experiments/`` and ``benchmarks/`` are read with ``ast`` (lazy imports in
functions included), nothing is imported. A name that starts with one
underscore is private to its module or class: code outside ``jaxunlearn/``
that needs one asks for a public name instead.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = "jaxunlearn"
SCRIPTS = ("experiments", "benchmarks")


def _private(name: str) -> bool:
  return name.startswith("_") and not name.startswith("__")


def _files(*dirs):
  return sorted(f for d in dirs for f in (ROOT / d).rglob("*.py"))


def _module_name(path: Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_private_members() -> set[str]:
  """Private names the library's classes define (methods and ``self._x`` attributes): read on
  an instance, e.g. ``auditor._run``, they are as private as a module's."""
  names = set()
  for f in _files(LIBRARY):
    for cls in (n for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.ClassDef)):
      for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(node.name):
          names.add(node.name)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id == "self"
              and _private(node.attr)):
          names.add(node.attr)
  return names


def _script_defined_names() -> set[str]:
  """Private names the scripts define themselves (their own, not the library's)."""
  names = set()
  for f in _files(*SCRIPTS):
    for node in ast.walk(ast.parse(f.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
      elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
        names.add(node.attr)
  return names


def private_uses(path: Path, instance_private: set[str]) -> list[str]:
  """Where ``path`` reaches a private name of the library: ``'line: what'`` entries."""
  tree = ast.parse(path.read_text())
  library_aliases = set()          # local names bound to a library module or object
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.split(".")[0] == LIBRARY:
          if any(_private(p) for p in a.name.split(".")):
            found.append(f"{node.lineno}: import {a.name}")
          library_aliases.add(a.asname or LIBRARY)
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == LIBRARY:
      for part in node.module.split("."):
        if _private(part):
          found.append(f"{node.lineno}: from {node.module} import ...")
      for a in node.names:
        if _private(a.name):
          found.append(f"{node.lineno}: from {node.module} import {a.name}")
        library_aliases.add(a.asname or a.name)
  for node in ast.walk(tree):
    if not isinstance(node, ast.Attribute) or not _private(node.attr):
      continue
    base = node.value
    while isinstance(base, ast.Attribute):
      base = base.value
    if isinstance(base, ast.Name) and base.id in library_aliases:
      found.append(f"{node.lineno}: {ast.unparse(node)}")
    elif (node.attr in instance_private
          and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
      found.append(f"{node.lineno}: {ast.unparse(node)} (a private member of a library class)")
  return found


def import_edges(dirs) -> dict[str, set[str]]:
  """``{module: modules of dirs it imports}`` among the modules under ``dirs``."""
  files = {_module_name(f): f for f in _files(*dirs)}
  edges = {m: set() for m in files}

  def known(name):
    while name and name not in files:
      name = name.rpartition(".")[0]
    return name

  for mod, path in files.items():
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          up = package
          for _ in range(node.level - 1):
            up = up.rpartition(".")[0]
          base = f"{up}.{base}" if base else up
        targets = [f"{base}.{a.name}" for a in node.names]
      for t in targets:
        t = known(t)
        if t and t != mod:
          edges[mod].add(t)
  return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
  """The import circles (strongly connected components of two or more modules)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  return out


def test_scripts_reach_no_private_name_of_the_library():
  instance_private = _library_private_members() - _script_defined_names()
  found = {str(f.relative_to(ROOT)): uses for f in _files(*SCRIPTS)
           if (uses := private_uses(f, instance_private))}
  assert not found, f"private library names used outside the library: {found}"


def test_the_private_name_check_finds_each_way_in(tmp_path):
  script = tmp_path / "script.py"
  script.write_text("import jaxunlearn.populations as pops\n"
                    "from jaxunlearn import auditor as auditor_lib\n"
                    "from jaxunlearn.auditor import _key\n"
                    "pops._apply(1, 2)\n"
                    "auditor_lib._member(1, 2)\n"
                    "def f(a):\n"
                    "  return a._run(1), a.run(1), pops.eval_apply, a._mine\n")
  found = private_uses(script, {"_run"})
  assert sorted(x.split(":")[0] for x in found) == ["3", "4", "5", "7"], found


def test_scripts_import_in_no_circle():
  edges = import_edges(SCRIPTS)
  assert "experiments.compare_methods" in edges and "benchmarks.common" in edges
  assert not circles(edges), circles(edges)


def test_the_circle_check_finds_a_lazy_circle():
  edges = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
  assert circles(edges) == [["a", "b"]]
