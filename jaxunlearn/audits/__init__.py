"""Per-example unlearning audits: the statistics computed on populations of models.

Audit statistics are plugins (:mod:`jaxunlearn.audits.base`), one file each,
registered by name; ``audit.statistics`` picks them. Built in:

* ``epsilon`` (:mod:`~jaxunlearn.audits.epsilon`): the NeurIPS-2023
  challenge's per-example epsilon and forgetting quality;
* ``ulira`` (:mod:`~jaxunlearn.audits.ulira`): U-LiRA, the per-example
  likelihood-ratio unlearning membership attack;
* ``klom`` (:mod:`~jaxunlearn.audits.klom`): KLOM, the binned KL of each
  example's phi against retraining (Georgiev et al. 2024), with its floor.

:mod:`~jaxunlearn.audits.phi` holds the logit-scaled confidence phi every
population member records.
"""

from jaxunlearn.audits.base import (NONE, ORACLE, RECORD, RETRAIN, Audit,  # noqa: F401
                                    AuditInfo, BaseField, Need, PopulationSize, Record,
                                    RecordField, Statistic, get, names, per_protocol, per_seed,
                                    probe_sets, record_fields, register, selected)
from jaxunlearn.audits import epsilon, klom, phi, ulira  # noqa: F401,E402  (built-ins register)

__all__ = ["register", "get", "names", "Statistic", "Audit", "AuditInfo", "Record", "RecordField",
           "BaseField", "RECORD", "Need", "PopulationSize", "ORACLE", "NONE", "RETRAIN", "per_seed",
           "per_protocol", "probe_sets", "record_fields", "selected"]
