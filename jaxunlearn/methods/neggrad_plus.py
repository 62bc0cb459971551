"""NegGrad+ (Kurmanji et al., NeurIPS 2023): descend on D_r, ascend on D_f, in one loss.

Each step pairs a D_r batch with the next batch of a cycled D_f walk
(``epoch_over = "remain"``) and minimises

    beta * CE(f(x_r), y_r) - (1 - beta) * CE(f(x_f), y_f)

Source: ``meghdadk/SCRUB:thirdparty/repdistiller/helper/loops.py::train_negrad``
(``beta`` is the authors' ``alpha``); DeepUnlearn's default beta is 0.95.
"""

from __future__ import annotations

from jaxunlearn.methods import base, helpers


def neggrad_plus_loss(params, apply_fn, batch: base.Batch, beta):
  """The NegGrad+ loss; returns ``(loss, {'ce_remain', 'ce_forget'})``."""
  ce_r = base.cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain)
  ce_f = base.cross_entropy(apply_fn(params, batch.x_forget), batch.y_forget)
  return beta * ce_r - (1.0 - beta) * ce_f, {"ce_remain": ce_r, "ce_forget": ce_f}


@base.register("neggrad_plus")
class NegGradPlus(base.Method):
  """beta * CE on D_r minus (1 - beta) * CE on D_f; an epoch is a pass over D_r."""
  description = "NegGrad+: beta * CE(D_r) - (1 - beta) * CE(D_f), one pass over D_r an epoch"
  inputs = ("x_forget", "y_forget", "x_remain", "y_remain")
  hparams = {"beta": 0.95}
  hparam_docs = {"beta": "weight of CE on D_r; (1 - beta) weighs -CE on D_f"}
  epoch_over = "remain"
  search_space = {"learning_rate": (1e-3, 3e-3, 1e-2, 3e-2), "beta": (0.9, 0.95, 0.99, 0.999)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "beta", 0.0, 1.0, method="neggrad_plus")

  def loss(self, params, apply_fn, batch, hp, extra):
    return neggrad_plus_loss(params, apply_fn, batch, hp["beta"])
