"""Gradient ascent on D_f (GA, "NegGrad"): minimise ``-CE(f(x_f), y_f)``.

The building block of NegGrad+; very sensitive to the learning rate (the
OPTML authors' default is 1e-4 for 5 epochs, class-wise forgetting). Source:
``OPTML-Group/Unlearn-Saliency:Classification/unlearn/GA.py``.
"""

from __future__ import annotations

from jaxunlearn.methods import base


def gradient_ascent_loss(params, apply_fn, batch: base.Batch):
  """``-CE`` on the forget batch; returns ``(loss, {'ce_forget'})``."""
  ce = base.cross_entropy(apply_fn(params, batch.x_forget), batch.y_forget)
  return -ce, {"ce_forget": ce}


@base.register("gradient_ascent")
class GradientAscent(base.Method):
  """Ascend the cross-entropy on D_f; D_r is never touched."""
  description = "gradient ascent on D_f: minimise -CE(D_f) (NegGrad)"
  inputs = ("x_forget", "y_forget")
  search_space = {"learning_rate": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)}

  def loss(self, params, apply_fn, batch, hp, extra):
    return gradient_ascent_loss(params, apply_fn, batch)
