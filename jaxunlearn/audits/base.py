"""Audit statistics as plugins: the registry, the :class:`Statistic` interface, and what a
statistic gets (:class:`Audit`).

``jaxunlearn audit`` trains *populations* of models, N members each under one
``jax.vmap`` (:mod:`jaxunlearn.populations`): models retrained on D_r, the
original retrained with N seeds, N unlearning runs of each audited method,
and whatever games the statistics play. Every member records a few arrays on
the audited examples (D_f): the base record (:data:`RECORD`) is phi (the
logit-scaled confidence, :mod:`jaxunlearn.audits.phi`), accuracy on D_r and
on the test set. A statistic may add fields of its own
(:attr:`Statistic.record`), which every member then records too; the record's
schema is part of every population chunk's stage name, so chunks saved under
another schema are never reused. A statistic may also ask every member for phi on examples beside D_f
(:meth:`Statistic.probes`: fixed samples of D_r or of the test set, recorded
as ``phi_<name>``); without probes the schema, and every stage name, is as before.

A statistic is a class registered by name::

    from jaxunlearn import audits

    @audits.register("phi_shift")
    class PhiShift(audits.Statistic):
      title = "Median phi shift"
      def run(self, audit):
        retrain = audit.train_population(audits.RETRAIN, audit.remain_rows)
        return {label: float(np.median(audit.unlearn_population(label, label)["phi"])
                             - np.median(retrain["phi"])) for label in audit.labels}

It owns a config block (``config()``, under ``audit.<name>``), checks it
before anything is written (:meth:`Statistic.validate`), and renders its
section of ``audit.md`` (:meth:`Statistic.report`) and its figures
(:meth:`Statistic.plot`), and declares the sizes of the populations it trains
(:meth:`Statistic.population_sizes`), which the audit checks against memory
before anything is trained. Populations are cached by name within an audit,
so two statistics that ask for :data:`RETRAIN` share it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import ml_collections
import numpy as np

from jaxunlearn import report
from jaxunlearn.audits import phi as phi_lib
from jaxunlearn.errors import ConfigError
from jaxunlearn.registry import Registry, implementation, in_package, qualified_name

# A record field: ``field(logits, labels) -> [n]`` per audited example, from one member's
# float32 logits ``[n, C]`` on the audited examples and their labels ``[n]`` (as trained on).
RecordField = Callable[[Any, Any], Any]

# The populations every statistic may share, by name (``phi/<name>.npy``).
RETRAIN = "retrain"    # N models trained on D_r: the reference sample
ORACLE = "oracle"      # another N on D_r: what retraining itself scores
NONE = "none"          # N originals on all of D, each with its own seed: no unlearning


def per_seed(label: str) -> str:
  """The per-seed protocol's population of the method ``label``."""
  return f"{label}_per_seed"


class BaseField(NamedTuple):
  """One field of the base record."""
  name: str
  source: str          # what computes it: part of the record's schema (hashed into stage names)
  per_example: bool    # one value per audited example (``[n]``), else one per member


@dataclasses.dataclass(frozen=True)
class Record:
  """What every population member records, whatever the statistics.

  Attributes:
    base: the base fields, in the order of the record's schema.
    kept: what a member adds when its parameters are kept.
  """
  base: tuple[BaseField, ...]
  kept: tuple[str, ...]

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(f.name for f in self.base)

  @property
  def reserved(self) -> tuple[str, ...]:
    """Names a statistic's own record field may not take."""
    return self.names + self.kept

  def schema(self, fields: Mapping[str, RecordField]) -> list:
    """The record's field names and where each is computed, the statistics' ``fields`` after
    the base ones (hashed into population stage names: it must not change). A field computed
    outside the package also carries its implementation (its declared ``version`` or source
    hash, :func:`jaxunlearn.registry.implementation`): an edited field is another record.

    Raises:
      ConfigError: a field outside the package with neither a source file nor a version.
    """
    return ([[f.name, f.source] for f in self.base]
            + [[name, qualified_name(fn)] + ([] if in_package(fn) else [
                implementation(fn, f"audit record field {name!r}")])
               for name, fn in sorted(fields.items())])


# phi on the audited examples (D_f), accuracy on D_r and on the test set.
RECORD = Record(base=(BaseField("phi", qualified_name(phi_lib.logit_confidence), True),
                      BaseField("remain_acc", "accuracy", False),
                      BaseField("test_acc", "accuracy", False)),
                kept=("params", "batch_stats"))


class PopulationSize(NamedTuple):
  """The largest population a statistic trains, and the config field that sets it: ``members``
  is ``per_value`` times the field's value (U-LiRA: ``forget_sets_per_original`` models per
  original)."""
  members: int
  field: str
  per_value: int = 1


class Need(NamedTuple):
  """Host memory and work of a statistic's own computation that grow with its settings.

  ``cost(values)`` gives ``(bytes, work)`` at any values of ``fields`` (the
  others as configured), and grows with each. The audit evaluates it at the
  configured values before anything is drawn or trained, refuses it over
  ``audit.memory_fraction`` of the available host memory or over the work
  limit, and names the first field of ``fields`` (in order) for which a
  lower value fits, with the largest such value.
  """
  what: str                          # what grows, e.g. "the epsilon-score's N x N rule table"
  fields: Mapping[str, int]          # {config field: its value}, in the order to lower them
  cost: Callable[[Mapping[str, int]], tuple[int, int]]   # values -> (host bytes, work units)
  work_limit: tuple[str, int] | None = None   # (the limit field, its value): bounds ``work``
  work_unit: str = ""                # what one unit of work is, for the message
  minimum: Mapping[str, int] = {}    # each field's smallest valid value (default 1)


@dataclasses.dataclass(frozen=True)
class AuditInfo:
  """What :meth:`Statistic.validate` may check, before any model is trained."""
  n_forget: int
  n_remain: int
  num_classes: int
  labels: tuple              # the audited methods' labels
  n_test: int = 0            # test examples (probes of the test set draw from them)


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

  def add_population(self, name: str, record: dict,
                     masks: Mapping[str, np.ndarray] | None = None) -> dict:
    """A population derived from others (e.g. U-LiRA's identity control), saved like one."""
    raise NotImplementedError


class Statistic:
  """Base class of audit statistics: define :meth:`run`; the rest has defaults."""

  title: str = ""
  record: Mapping[str, RecordField] = {}   # fields every population member records
  field_docs: Mapping[str, str] = {}       # descriptions of its config block's fields
  # True: its unlearned members forget subsets of D_f that differ per member (a method that
  # reads a teacher fitted to the request's whole D_f cannot run in it).
  forgets_per_member: bool = False

  def config(self) -> ml_collections.ConfigDict | None:
    """Defaults of its block ``audit.<name>`` (None: no block)."""
    return None

  def validate(self, cfg, info: AuditInfo) -> None:
    """Raises ConfigError for settings that cannot work; called before anything is written.

    Runs before the sizes are checked (:meth:`needs`, :meth:`population_sizes`): it must not
    allocate or loop over anything that grows with the settings; such checks go in
    :meth:`validate_drawn`."""

  def validate_drawn(self, cfg, info: AuditInfo) -> None:
    """Checks that draw what grows with the settings (e.g. U-LiRA's mask game), called once
    the sizes passed, still before anything is written or trained."""

  def needs(self, cfg, info: AuditInfo) -> list[Need]:
    """Host memory and work of its own computation that grow with its settings (:class:`Need`;
    the populations it trains are :meth:`population_sizes`). Default: none."""
    return []

  def population_sizes(self, cfg) -> dict[str, PopulationSize]:
    """The largest population it trains, per kind, with the config field that sets its size:
    the audit refuses one that would not fit in memory, naming the field to lower, before
    anything is trained.

    Default: populations of ``audit.num_models`` members, the size of every population
    :meth:`Audit.train_population` and :meth:`Audit.unlearn_population` train from shared
    rows. A statistic that trains other sizes (per-member rows) declares them instead.
    """
    return {"audit": PopulationSize(int(cfg.audit.num_models), "audit.num_models")}

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


def per_protocol(audit: Audit, base_rows: Mapping[str, Any],
                 entry: Callable[[dict], Any]) -> dict:
  """``{protocol: {**base_rows, label: entry(record)}}``: each audited method's row under each
  protocol of ``audit.protocols`` (``single``: runs from the work dir's original; ``per_seed``:
  run i from original i), after the rows every protocol shares (the controls)."""
  out = {}
  for protocol in audit.protocols:
    rows = dict(base_rows)
    for label in audit.labels:
      pop = (audit.unlearn_population(label, label) if protocol == "single"
             else audit.per_seed_population(label))
      rows[label] = entry(pop)
    out[protocol] = rows
  return out


def _check(name: str, cls) -> None:
  for field in cls.record:
    if not field.isidentifier() or field in RECORD.reserved:
      raise ConfigError(f"audit statistic {name!r}: record field {field!r} must be an "
                        f"identifier other than {RECORD.reserved}")

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
