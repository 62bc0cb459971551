"""Fine-tuning on D_r alone (FT): the simplest baseline; D_f is never touched."""

from __future__ import annotations

import jax.numpy as jnp

from jaxunlearn.methods import base


@base.register("finetune")
class Finetune(base.Method):
  """Minimise CE on D_r from the original weights (one epoch = one pass over D_f's steps)."""
  description = "fine-tune on D_r only (no forget term)"
  inputs = ("x_remain", "y_remain")
  search_space = {"learning_rate": (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1)}

  def loss(self, params, apply_fn, batch, hp, extra):
    ce = base.cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain)
    return ce, {"kl": jnp.zeros(()), "ce": ce}
