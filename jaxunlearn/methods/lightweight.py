"""The paper's Algorithm 1 (Chen, Wang, Huang): KL to a reference model on D_f + CE on D_r.

Each step minimises

    lam * KL(P_ref(x_f) || P_theta(x_f)) + (1 - lam) * CE(f_theta(x_r), y_r)

where ``P_ref`` are the reference model's (fixed) softmax outputs on D_f.
``lam`` is read from ``unlearn.lam``; ``lam = 1`` is the pure KL term.

``unlearn.kl_reduction`` picks how the KL term covers a forget batch:
``mean`` averages it over the batch; ``sum`` adds it up, the literal eq. (1)
of the paper (``L_KL = sum over x in D_f``), which is ``forget_batch_size``
times stronger at the same ``lam``. The CE term is a mean either way (eq. 2
is per example). ``docs/paper_fidelity.md`` says which one the paper configs
use and why.
"""

from __future__ import annotations

import jax

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base


def lightweight_loss(params, apply_fn, batch: base.Batch, lam, kl_reduction: str = "mean"):
  """The loss of Algorithm 1; returns ``(loss, {'kl', 'ce'})``.

  ``kl_reduction``: ``"mean"`` (over the forget batch) or ``"sum"`` (eq. 1).
  """
  kl = base.kl_per_example(jax.lax.stop_gradient(batch.ref_probs),
                           apply_fn(params, batch.x_forget))
  kl = kl.sum() if kl_reduction == "sum" else kl.mean()
  ce = base.cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain)
  return lam * kl + (1.0 - lam) * ce, {"kl": kl, "ce": ce}


def validate_lam(lam) -> None:
  if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 < float(lam) <= 1.0:
    raise ConfigError(f"unlearn.lam must be in (0, 1], got {lam!r}; e.g. --config.unlearn.lam=0.01")


@base.register("lightweight")
class Lightweight(base.Method):
  """The paper's method: match the reference model's posteriors on D_f, keep accuracy on D_r."""
  description = "the paper's method: lam * KL(reference || model) on D_f + (1 - lam) * CE on D_r"
  inputs = ("x_forget", "ref_probs", "x_remain", "y_remain")
  hparams = {"lam": 0.01}
  options = {"kl_reduction": ("mean", "sum")}
  shared_hparams = ("lam", "kl_reduction")
  search_space = {"learning_rate": (5e-3, 1e-2, 2e-2, 5e-2), "lam": (0.05, 0.1, 0.2, 0.5)}

  def validate(self, hp):
    super().validate(hp)
    validate_lam(hp["lam"])

  def loss(self, params, apply_fn, batch, hp, extra):
    return lightweight_loss(params, apply_fn, batch, hp["lam"], self.opts["kl_reduction"])
