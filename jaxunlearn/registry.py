"""One registry of named plugins: methods, evaluators, statistics, datasets, models, transforms.

A plugin registers under a name with a decorator::

    @methods.register("my_method")
    class MyMethod(methods.Method): ...

A name is taken once. Registering another plugin under a taken name is
refused unless the registration says it replaces the first one
(``register("lightweight", replace=True)``); a replaced built-in is then
listed by :func:`replaced` and named in ``results.json`` and in the command
line's summary. Registering the *same* plugin again (same module and
qualified name, as when a module is imported twice) is not a conflict.

A registered plugin has an identity (:meth:`Registry.implementation`): None
for the package's own plugin under its name, else the plugin's module and
qualified name and, for a plugin outside the package, the ``version`` it
declares or a hash of its source (:func:`implementation`). Stage and population
names carry it, so results made by one implementation are never served as
another's.

Internal to the library: a plugin registers through its package's ``register``
(``methods.register``, ``evaluators.register``, ``audits.register``, ``data.register``,
``models.register``, ``transforms.register``), so this module declares no public names.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable

from jaxunlearn.errors import ConfigError, JaxUnlearnError, PluginError

__all__ = []

_ALL: list["Registry"] = []
PACKAGE = __name__.partition(".")[0]         # "jaxunlearn"
# {id(obj): (obj, source hash)}: a plugin's source, hashed once per process (when registered).
_SOURCES: dict[int, tuple[Any, str | None]] = {}


def qualified_name(obj: Any) -> str:
  """``module.qualname`` of a class or function."""
  return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def in_package(obj: Any) -> bool:
  """Whether ``obj`` (a class or function) is defined in the library itself."""
  module = getattr(obj, "__module__", None) or ""
  return module == PACKAGE or module.startswith(PACKAGE + ".")


def declared_version(obj: Any) -> str | None:
  """The ``version`` a plugin declares (a class attribute, or a function's attribute): a
  string or a whole number; None if it declares none."""
  version = getattr(obj, "version", None)
  if isinstance(version, bool) or not isinstance(version, (str, int)):
    return None
  return str(version)


def _installed(module) -> bool:
  """A module of Python itself or of an installed package (not the user's own code)."""
  path = getattr(module, "__file__", None)
  if not path:
    return True          # built into the interpreter: not user code either
  roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
  resolved = Path(path).resolve()
  return any(resolved.is_relative_to(Path(r).resolve()) for r in roots if r)


def source_hash(obj: Any) -> str | None:
  """A short SHA-256 of the source of the file that defines ``obj`` and of the user's files
  its base classes come from (the library's and installed packages' files aside); None if a
  file cannot be read (a class made in an interactive session or by ``exec``).

  Hashed once per process (a plugin is hashed when it registers: the source it was imported
  from, not a later edit of the file)."""
  known = _SOURCES.get(id(obj))
  if known is not None and known[0] is obj:
    return known[1]
  digest = _hash_sources(obj)
  _SOURCES[id(obj)] = (obj, digest)
  return digest


def _hash_sources(obj: Any) -> str | None:
  modules = [getattr(obj, "__module__", None)]
  for base in getattr(obj, "__mro__", ())[1:]:
    if not in_package(base) and base.__module__ not in modules:
      module = sys.modules.get(base.__module__)
      if module is not None and not _installed(module):
        modules.append(base.__module__)
  h = hashlib.sha256()
  for name in modules:
    module = sys.modules.get(name) if name else None
    # inspect raises OSError or TypeError where there is no source, and may raise others on
    # odd objects: any of them means "no source", never a failed import of the plugin.
    try:
      text = inspect.getsource(module) if module is not None else inspect.getsource(obj)
    except Exception:  # pylint: disable=broad-except
      try:              # no file for the module: the object's own source, if known
        text = inspect.getsource(obj)
      except Exception:  # pylint: disable=broad-except
        return None
    h.update(name.encode() if name else b"?")
    h.update(text.encode())
  return h.hexdigest()[:12]


def implementation(obj: Any, what: str = "plugin") -> dict:
  """What tells this implementation of a plugin from any other, JSON-able (hashed into stage
  and population names): ``{"class": module.qualname}``, and for a plugin outside the
  package the ``"version"`` it declares or else the ``"source"`` hash of its files
  (:func:`source_hash`).

  Args:
    obj: the plugin (a class or function).
    what: how to name it in the error ("unlearning method 'lightweight'").

  Raises:
    ConfigError: a plugin outside the package that declares no version and whose source
      cannot be read: its results could not be told from another version's.
  """
  out = {"class": qualified_name(obj)}
  if not in_package(obj):
    version = declared_version(obj)
    if version is not None:
      out["version"] = version
    else:
      digest = source_hash(obj)
      if digest is None:
        raise ConfigError(
            f"{what} ({qualified_name(obj)}) has no source file to tell its versions apart, "
            "so its cached results could be another version's; declare one in the plugin, "
            "e.g. a class attribute version = \"1\" (change it whenever its results change)")
      out["source"] = digest
  return out

def _first_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = lines[0] if lines else ""
  return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def guard(kind: str, name: str, plugin: Any, action: str):
  """A call into a plugin: what it raises becomes a :class:`PluginError` naming it.

  The orchestration wraps its calls into plugins (a method traced or run, an
  evaluator, a statistic, a dataset loader, a model's first call, a transform)
  in this, so a bug in a plugin is one line on the command line, and a typed
  error with the original exception as ``__cause__`` through the API. A
  :class:`JaxUnlearnError` (a plugin refusing bad input on purpose) and
  ``KeyboardInterrupt`` pass through unchanged; so does a ``PluginError`` of a
  plugin called inside this one (the innermost plugin is named).

  Args:
    kind: what the plugin is, e.g. "unlearning method".
    name: its registered name.
    plugin: the plugin (class, instance or function), for its module.
    action: what was being done, e.g. "evaluate".
  """
  try:
    yield
  except JaxUnlearnError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if getattr(e, _LIBRARY_MARK, False):
      raise       # raised by library code the plugin called back into (a save, a population)
    # A plugin is user code: anything may go wrong in it.
    # A class or function names itself; an instance is named by its class.
    where = qualified_name(plugin if hasattr(plugin, "__qualname__") else type(plugin))
    raise PluginError(f"{kind} {name!r} ({where}) failed in {action}: {type(e).__name__}: "
                      f"{_first_line(e)}", kind=kind, name=name, where=where) from e


_LIBRARY_MARK = "_jaxunlearn_raised_by_the_library"


@contextlib.contextmanager
def library_call():
  """Library code that a plugin calls back into (saving a stage, running a population): what
  it raises is not blamed on the plugin by :func:`guard` (it keeps its traceback)."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, JaxUnlearnError):
      try:
        setattr(e, _LIBRARY_MARK, True)
      except AttributeError:
        pass
    raise


class Registry:
  """Plugins registered by name with a decorator.

  Args:
    kind: what a plugin is called in messages ("unlearning method").
    base: the class every plugin subclasses (None: any object).
    where: the config field that names plugins, for error messages.
    check: optional ``check(name, plugin)`` raising ConfigError for a bad plugin.
  """

  def __init__(self, kind: str, base: type | None, where: str,
               check: Callable[[str, Any], None] | None = None):
    self.kind, self.base, self.where, self.check = kind, base, where, check
    self._plugins: dict[str, Any] = {}
    self._replaced: dict[str, str] = {}
    self._builtin: dict[str, str] = {}     # {name: module.qualname} of the package's own
    _ALL.append(self)

  def register(self, name: str, *, replace: bool = False) -> Callable[[Any], Any]:
    """Decorator: registers a plugin as ``name``.

    Args:
      name: a Python identifier.
      replace: replace a different plugin already registered as ``name``.

    Raises:
      ConfigError: a bad name, or ``name`` is taken and ``replace`` is False.
    """
    if not isinstance(name, str) or not name.isidentifier():
      raise ConfigError(f"a {self.kind} name must be a Python identifier, got {name!r}")

    def decorator(plugin):
      if self.base is not None and not (isinstance(plugin, type)
                                        and issubclass(plugin, self.base)):
        raise TypeError(f"registering {self.kind} {name!r} needs a subclass of "
                        f"{self.base.__module__}.{self.base.__name__}, got {plugin!r}")
      if self.check is not None:
        self.check(name, plugin)
      old = self._plugins.get(name)
      if old is not None and qualified_name(old) != qualified_name(plugin):
        if not replace:
          raise ConfigError(
              f"{self.kind} {name!r} is already registered ({qualified_name(old)}); register "
              f"yours under another name, or replace it with register({name!r}, replace=True)")
        if self._builtin.get(name) == qualified_name(plugin):
          self._replaced.pop(name, None)     # the package's own, put back: nothing replaced
        else:
          self._replaced[name] = qualified_name(plugin)
      if old is None and in_package(plugin):
        self._builtin.setdefault(name, qualified_name(plugin))
      if not in_package(plugin):
        source_hash(plugin)   # the source as it is now, while its module is imported
      self._plugins[name] = plugin
      return plugin
    return decorator

  def get(self, name: str):
    """The plugin registered as ``name``; ConfigError naming the valid ones otherwise."""
    try:
      return self._plugins[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
      raise ConfigError(f"unknown {self.kind} {name!r} in {self.where}; use one of "
                        f"{self.names()} (or register your own and name its module in "
                        "config.plugins)") from None

  def names(self) -> list[str]:
    """The registered names, sorted."""
    return sorted(self._plugins)

  def __contains__(self, name) -> bool:
    return isinstance(name, str) and name in self._plugins

  def replaced(self) -> dict[str, str]:
    """``{name: module.qualname}`` of plugins that replaced another one under the same name."""
    return dict(self._replaced)

  def implementation(self, name: str) -> dict | None:
    """The identity of the plugin registered as ``name`` (:func:`implementation`), or None
    if it is the package's own plugin under that name (so the built-ins' stage names stay
    as they were)."""
    plugin = self.get(name)
    if self._builtin.get(name) == qualified_name(plugin):
      return None
    return implementation(plugin, f"{self.kind} {name!r}")


def replaced() -> dict[str, str]:
  """Every replacement across registries: ``{"<kind> <name>": "module.qualname"}``."""
  return {f"{r.kind} {name}": who for r in _ALL for name, who in r.replaced().items()}
