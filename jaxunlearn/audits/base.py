"""Audit statistics as plugins: the registry, the :class:`Statistic` interface, and what a
statistic gets (:class:`Audit`).

``jaxunlearn audit`` trains *populations* of models, N members each under one
``jax.vmap`` (:mod:`jaxunlearn.populations`): models retrained on D_r, the
original retrained with N seeds, N unlearning runs of each audited method,
and whatever games the statistics play. Every member records a few arrays on
the audited examples (D_f): the base record is phi (the logit-scaled
confidence, :mod:`jaxunlearn.audits.phi`), accuracy on D_r and on the test
set. A statistic may add fields of its own (:attr:`Statistic.record`), which
every member then records too; the record's schema is part of every
population chunk's stage name, so chunks saved under another schema are never
reused. A statistic may also ask every member for phi on examples beside D_f
(:meth:`Statistic.probes`: fixed samples of D_r or of the test set, recorded
as ``phi_<name>``); without probes the schema, and every stage name, is as before.

A statistic is a class registered by name::

    from jaxunlearn import audits

    @audits.register("phi_shift")
    class PhiShift(audits.Statistic):
      title = "Median phi shift"
      def run(self, audit):
        retrain = audit.train_population("retrain", audit.remain_rows)
        return {label: float(np.median(audit.unlearn_population(label, label)["phi"])
                             - np.median(retrain["phi"])) for label in audit.labels}

It owns a config block (``config()``, under ``audit.<name>``), checks it
before anything is written (:meth:`Statistic.validate`), and renders its
section of ``audit.md`` (:meth:`Statistic.report`) and its figures
(:meth:`Statistic.plot`). Populations are cached by name within an audit,
so two statistics that ask for ``"retrain"`` share it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import ml_collections
import numpy as np

from jaxunlearn import report
from jaxunlearn.errors import ConfigError
from jaxunlearn.registry import Registry

# A record field: ``field(logits, labels) -> [n]`` per audited example, from one member's
# float32 logits ``[n, C]`` on the audited examples and their labels ``[n]`` (as trained on).
RecordField = Callable[[Any, Any], Any]


@dataclasses.dataclass(frozen=True)
class AuditInfo:
  """What :meth:`Statistic.validate` may check, before any model is trained."""
  n_forget: int
  n_remain: int
  num_classes: int
  labels: tuple              # the audited methods' labels


class Audit:
  """What a statistic's :meth:`Statistic.run` gets (implemented by the audit runner).

  Attributes:
    cfg: the frozen config.
    labels: the audited methods' labels (``audit.methods``).
    n_audit: number of audited examples (D_f).
    forget_rows, remain_rows, train_rows: training-set rows of D_f, D_r and
      D_f ∪ D_r (what the original trained on).
    seed: the audit's seed.
    protocols: ``("single",)``, ``("per_seed",)`` or both (``audit.protocol``).
  """
  cfg: Any
  labels: tuple
  n_audit: int
  forget_rows: np.ndarray
  remain_rows: np.ndarray
  train_rows: np.ndarray
  seed: int
  protocols: tuple

  def train_population(self, name: str, rows: np.ndarray, *, keep_params: bool = False,
                       masks: Mapping[str, np.ndarray] | None = None) -> dict:
    """N models trained from scratch; ``rows`` ``[rows]`` shared or ``[N, rows]`` per member.

    Returns the record: ``phi`` ``[N, n_audit]``, ``remain_acc``, ``test_acc``
    ``[N]``, every statistic's fields, and ``params`` / ``batch_stats`` with
    ``keep_params``. ``masks`` are saved beside phi (``phi/<name>.masks.npz``).
    """
    raise NotImplementedError

  def unlearn_population(self, name: str, label: str, *, params=None, batch_stats=None,
                         f_rows=None, r_rows=None,
                         masks: Mapping[str, np.ndarray] | None = None) -> dict:
    """N unlearning runs of the method ``label``: from the work dir's original, or from
    per-member ``params`` / ``batch_stats`` with per-member rows ``f_rows`` / ``r_rows``.

    Each run's reference model (methods that use one) is drawn as ``jaxunlearn run`` would
    under ``reference.source``: with ``remain`` each run draws its own D_s from its D_r and
    trains it; with ``holdout`` runs from the work dir's original share its one reference
    (every request of the work dir reuses it) and runs from per-member originals (other
    work dirs, other seeds) each train their own on the held-out D_s.
    """
    raise NotImplementedError

  def per_seed_population(self, label: str) -> dict:
    """The per-seed protocol's population of ``label``: run i starts from original i (the
    ``none`` population's member i, trained on all of D with its own seed)."""
    raise NotImplementedError

  def population(self, name: str) -> dict:
    """A population this audit already ran (KeyError otherwise)."""
    raise NotImplementedError


class Statistic:
  """Base class of audit statistics: define :meth:`run`; the rest has defaults."""

  title: str = ""
  record: Mapping[str, RecordField] = {}   # fields every population member records
  field_docs: Mapping[str, str] = {}       # descriptions of its config block's fields

  def config(self) -> ml_collections.ConfigDict | None:
    """Defaults of its block ``audit.<name>`` (None: no block)."""
    return None

  def validate(self, cfg, info: AuditInfo) -> None:
    """Raises ConfigError for settings that cannot work; called before anything is written."""

  def probes(self, cfg) -> Mapping[str, tuple[str, int]]:
    """Examples beside D_f that every member also records phi on: ``{name: (source, size)}``.

    ``source`` is ``"remain"`` (D_r) or ``"test"``; the audit draws ``size``
    of its rows once (fewer if it has fewer), and each record then holds
    ``phi_<name>`` ``[N, size]``. Default: none, and the record is unchanged.
    """
    return {}

  def run(self, audit: Audit) -> dict:
    """Trains the populations it needs through ``audit`` and returns its section of audit.json."""
    raise NotImplementedError

  def report(self, section: dict) -> str:
    """Its section of audit.md (default: tables of the figures)."""
    return report.section(section)

  def plot(self, section: dict, audit: Audit, out_dir) -> dict[str, str]:
    """Writes its figures into ``out_dir``; returns ``{figure name: file name}``."""
    return {}

  def summary(self, section: dict) -> str | None:
    """A few words for the command line's summary line."""
    return None


def _check(name: str, cls) -> None:
  for field in cls.record:
    if not field.isidentifier() or field in BASE_RECORD:
      raise ConfigError(f"audit statistic {name!r}: record field {field!r} must be an "
                        f"identifier other than {BASE_RECORD}")


BASE_RECORD = ("phi", "remain_acc", "test_acc", "params", "batch_stats")

_REGISTRY = Registry("audit statistic", Statistic, "audit.statistics", _check)
register, get, names = _REGISTRY.register, _REGISTRY.get, _REGISTRY.names


def selected(cfg) -> list[str]:
  """The statistics a config computes, in the order listed."""
  listed = list(cfg.audit.statistics)
  for name in listed:
    get(name)
  if len(set(listed)) != len(listed):
    raise ConfigError(f"audit.statistics lists a statistic twice: {listed}")
  return listed


PROBE_SOURCES = ("remain", "test")


def probe_sets(cfg, statistics) -> dict[str, tuple[str, int]]:
  """The probes (:meth:`Statistic.probes`) of the given statistics; one name, one definition."""
  out: dict[str, tuple[str, int]] = {}
  for name in statistics:
    for probe, (source, size) in get(name)().probes(cfg).items():
      if not probe.isidentifier() or source not in PROBE_SOURCES or int(size) < 1:
        raise ConfigError(f"audit statistic {name!r}: probe {probe!r} must be an identifier with "
                          f"a source in {PROBE_SOURCES} and a size >= 1, got {(source, size)}")
      if probe in out and out[probe] != (source, int(size)):
        raise ConfigError(f"audit statistics define probe {probe!r} twice, as {out[probe]} and "
                          f"{(source, size)}; rename one")
      out[probe] = (source, int(size))
  return out


def record_fields(statistics) -> dict[str, RecordField]:
  """The record fields of the given statistics (names must not clash between them)."""
  out: dict[str, RecordField] = {}
  for name in statistics:
    for field, fn in get(name).record.items():
      if field in out and out[field] is not fn:
        raise ConfigError(f"audit statistics define record field {field!r} twice; rename one")
      out[field] = fn
  return out
