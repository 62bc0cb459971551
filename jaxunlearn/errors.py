"""Exceptions raised for bad input.

Every error a user can cause derives from :class:`JaxUnlearnError`, so the CLI
prints its message as one line and exits non-zero, and API callers can catch a
specific type.
"""

__all__ = ["JaxUnlearnError", "ConfigError", "DataError", "SplitError", "CheckpointError",
           "WorkdirError", "NonFiniteError", "PluginError"]


class JaxUnlearnError(ValueError):
  """Base class of every error caused by bad input or bad state on disk."""


class ConfigError(JaxUnlearnError):
  """A config field is unknown, of the wrong type or out of range."""


class DataError(JaxUnlearnError):
  """A dataset cannot be loaded or its arrays are malformed."""


class SplitError(JaxUnlearnError):
  """A forget / remain / reference index list is invalid."""


class CheckpointError(JaxUnlearnError):
  """A checkpoint is missing, incomplete, corrupted or would be overwritten."""


class WorkdirError(JaxUnlearnError):
  """The work directory cannot be used (not writable, holds another run)."""


class NonFiniteError(JaxUnlearnError):
  """A loss became NaN or infinite during a stage."""


class PluginError(JaxUnlearnError):
  """A plugin (method, evaluator, audit statistic, dataset, model or transform) raised.

  Its message names the plugin, where it is defined and the exception; the
  exception itself is ``__cause__``. A plugin that raises a
  :class:`JaxUnlearnError` on purpose (a refusal) is not wrapped.

  Attributes:
    kind: what the plugin is ("unlearning method", "evaluator", ...).
    name: the name it is registered under.
    where: ``module.qualname`` of its class or function.
  """

  def __init__(self, message: str, *, kind: str = "", name: str = "", where: str = ""):
    super().__init__(message)
    self.kind, self.name, self.where = kind, name, where
