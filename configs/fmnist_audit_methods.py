"""Method settings for ``compare_methods --audit`` on fmnist_audit, step counts from its schedule.

    python experiments/compare_methods.py --audit --config configs/fmnist_audit.py \
        --settings configs/fmnist_audit_methods.py \
        --methods importance_retrain,lightweight,neggrad_plus,finetune --seeds 0 \
        --out out/fmnist_audit_methods

``configs/audit_methods.py`` (hold-out 0.05, the authors' optimisers, learning
rates tuned on quick_audit's MLP) for the four methods the Fashion-MNIST audit
compares, with two changes for this setting:

* ``lightweight`` keeps fmnist_audit's ``unlearn`` block, the paper's
  Fashion-MNIST setting (lam 0.01, 10 epochs over D_f, lr 0.01), not the
  values tuned on mnist5k;
* ``importance_retrain`` runs retraining's step count on *this* D_r: 60,000
  images less the hold-out (3,000) and D_f (600), 20 x (56,400 // 64) =
  17,620 steps (``fmnist_audit.retrain_steps``), not mnist5k's 1,140.

``finetune`` (20 epochs of D_f's steps) and ``neggrad_plus`` (2 passes over
D_r) count their steps from this setting's D_f and D_r by themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

METHODS = ("importance_retrain", "lightweight", "neggrad_plus", "finetune")


def _config_module(name: str):
  # Loaded by path: compare_methods loads this file by path, outside the configs package.
  spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_audit_methods = _config_module("audit_methods")
_fmnist_audit = _config_module("fmnist_audit")
_quick_methods = _config_module("quick_methods")

HOLDOUT = _audit_methods.HOLDOUT
SELECTION_SEED = _audit_methods.SELECTION_SEED
HOLDOUT_IMAGES = int(HOLDOUT * _fmnist_audit.N_TRAIN)


def unlearn_settings(method: str, tuned: bool = True) -> dict:
  """The ``unlearn`` fields (dotted, relative to ``unlearn``) of ``method`` on this setting."""
  if method not in METHODS:
    from jaxunlearn.errors import ConfigError
    raise ConfigError(f"configs/fmnist_audit_methods.py has settings for {', '.join(METHODS)} "
                      f"only, not {method!r}; use configs/audit_methods.py for the others "
                      "(their step counts are mnist5k's)")
  if method == "lightweight":
    return {}
  fields = _audit_methods.unlearn_settings(method, tuned)
  if method == "importance_retrain":
    fields["steps"] = _fmnist_audit.retrain_steps(_fmnist_audit.get_config(),
                                                  holdout=HOLDOUT_IMAGES)
  return fields


def apply(c, method: str, tuned: bool = True):
  """Sets ``c.unlearn.method = method``, the hold-out and the method's settings on ``c``."""
  return _quick_methods.set_unlearn_fields(c, method, unlearn_settings(method, tuned))


def get_config(method: str = "lightweight"):
  return apply(_fmnist_audit.get_config(), method or "lightweight")
