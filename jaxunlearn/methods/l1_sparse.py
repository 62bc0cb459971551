"""l1-sparse unlearning (Jia et al., NeurIPS 2023): fine-tune on D_r with a decaying l1 penalty.

Epoch ``t`` (0-based) of ``E`` minimises

    CE(f(x_r), y_r) + alpha * (1 - t / E) * ||theta||_1

over all parameters (``no_l1_epochs = 0``, the authors' default, so the
penalty decays linearly to about 0). An epoch is a pass over D_r. Source:
``OPTML-Group/Unlearn-Saliency:Classification/unlearn/FT.py::FT_iter`` with
``with_l1=True``. The authors' READMEs leave alpha open; 5e-4 is a guess
(search [1e-5, 1e-3]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.methods import base, helpers


def l1_norm(params):
  """Sum of absolute values of every parameter."""
  return sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))


def l1_sparse_loss(params, apply_fn, batch: base.Batch, alpha, epochs: int):
  """CE on D_r plus the epoch's l1 term; returns ``(loss, {'ce', 'l1', 'alpha_t'})``."""
  ce = base.cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain)
  alpha_t = alpha * (1.0 - batch.epoch.astype(jnp.float32) / epochs)
  l1 = l1_norm(params)
  return ce + alpha_t * l1, {"ce": ce, "l1": l1, "alpha_t": alpha_t}


@base.register("l1_sparse")
class L1Sparse(base.Method):
  """Fine-tuning on D_r with an l1 penalty decaying linearly over the epochs."""
  description = "l1-sparse: fine-tune on D_r + alpha * (1 - epoch/E) * ||theta||_1"
  inputs = ("x_remain", "y_remain")
  hparams = {"alpha": 5e-4}
  hparam_docs = {"alpha": "l1 weight at the start; it decays linearly to 0"}
  epoch_over = "remain"
  search_space = {"learning_rate": (3e-3, 1e-2, 3e-2, 1e-1), "alpha": (1e-5, 1e-4, 5e-4, 1e-3)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "alpha", 0.0, float("inf"), method="l1_sparse")

  def make(self, env):
    return helpers.gradient_method(env, lambda p, state, batch: l1_sparse_loss(
        p, env.apply_fn, batch, env.hparams["alpha"], env.epochs))
