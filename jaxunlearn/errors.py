"""Exceptions raised for bad input.

Every error a user can cause derives from :class:`JaxUnlearnError`, so the CLI
prints its message as one line and exits with the error's ``exit_status`` (2: a
refusal before any work; 1: a failure during work), and API callers can catch a
specific type.
"""

__all__ = ["JaxUnlearnError", "ConfigError", "DataError", "SplitError", "CheckpointError",
           "WorkdirError", "NonFiniteError", "WriteError", "PluginError"]


class JaxUnlearnError(ValueError):
  """Base class of every error caused by bad input or bad state on disk."""
  exit_status = 2   # the command line's exit status: a refusal before any work


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
  exit_status = 1   # a failure during work: the stage ran and diverged


class WriteError(JaxUnlearnError):
  """A file could not be written during work: the disk is full, over quota, or refuses writes.

  The message names the path, and for a full disk the space the write needed
  and the space free there. What was half-written is removed or left unfinished
  (no completion marker), never taken for a finished stage.
  """
  exit_status = 1   # a failure during work, not a refusal of the input

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

  exit_status = 1   # a failure during work: the input was fine, the plugin's code was not

  def __init__(self, message: str, *, kind: str = "", name: str = "", where: str = ""):
    super().__init__(message)
    self.kind, self.name, self.where = kind, name, where
