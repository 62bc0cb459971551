"""One registry of named plugins, shared by unlearning methods and evaluators."""

from __future__ import annotations

from typing import Callable

from jaxunlearn.errors import ConfigError


class Registry:
  """Subclasses of ``base`` registered by name with a decorator.

  Args:
    kind: what a plugin is called in messages ("unlearning method").
    base: the class every plugin subclasses.
    where: the config field that names plugins, for error messages.
    check: optional ``check(name, cls)`` raising ConfigError for a bad plugin.
  """

  def __init__(self, kind: str, base: type, where: str,
               check: Callable[[str, type], None] | None = None):
    self.kind, self.base, self.where, self.check = kind, base, where, check
    self._plugins: dict[str, type] = {}

  def register(self, name: str) -> Callable[[type], type]:
    """Decorator: registers a subclass of the base class as ``name``."""
    if not isinstance(name, str) or not name.isidentifier():
      raise ConfigError(f"a {self.kind} name must be a Python identifier, got {name!r}")

    def decorator(cls):
      if not (isinstance(cls, type) and issubclass(cls, self.base)):
        raise TypeError(f"registering {self.kind} {name!r} needs a subclass of "
                        f"{self.base.__module__}.{self.base.__name__}, got {cls!r}")
      if self.check is not None:
        self.check(name, cls)
      self._plugins[name] = cls
      return cls
    return decorator

  def get(self, name: str) -> type:
    """The class registered as ``name``; ConfigError naming the valid ones otherwise."""
    if name not in self._plugins:
      raise ConfigError(f"unknown {self.kind} {name!r} in {self.where}; use one of "
                        f"{self.names()} (or register your own and name its module in "
                        "config.plugins)")
    return self._plugins[name]

  def names(self) -> list[str]:
    """The registered names, sorted."""
    return sorted(self._plugins)
