"""Random masks (a NeurIPS 2023 unlearning competition entry): zero a random half, then repair.

1. In every parameter tensor outside the normalisation layers, each entry is
   zeroed with probability ``ratio`` (0.5), independently, with a mask drawn
   afresh in every run from the run's key. Biases count as tensors, as in the
   entry (it masks every parameter whose name lacks ``bn``, the output
   layer's bias included). With the option ``fill="reinit"`` the masked
   entries take the values of a freshly initialised model (``env.init_fn``)
   instead of zero.
2. Repair: CE on D_r (an epoch is a pass over D_r).

Entry's recipe: ratio 0.5, 5 epochs of Adam lr 1e-4 with (L2) weight decay
1e-4, cosine decay per step to 0.1 x lr, batch 64, on a torchvision
ResNet-18. Source: ``songxinkuan/Machine-unlearning-random-mask:
run-unlearn-finetune-random-mask-bn-no-mask.ipynb`` (``random_mask_params``,
``unlearning``).

Deviations:

* Every normalisation layer is left alone. The entry skips parameters whose
  name contains ``bn``, so the batch norms of ResNet-18's downsampling
  shortcuts (``downsample.1``) are masked there: an accident of naming, its
  README says "without bn layer".
* The entry fine-tunes in train mode, so batch-norm running statistics adapt
  to the masked weights; here they stay the original's (methods update
  parameters only).
* ``unlearn.schedule = "cosine"`` decays to 0, not to 0.1 x lr.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.methods import base, erase, helpers


def random_masks(key, params, ratio):
  """A 0/1 float mask per leaf: 1 (erase) with probability ``ratio``; normalisation
  leaves get all zeros."""
  keys = erase.leaf_keys(key, params)
  norms = erase.select(params, lambda names, leaf: erase.is_norm(names))
  return jax.tree.map(
      lambda p, k, is_norm: jnp.zeros(p.shape, jnp.float32) if is_norm
      else jax.random.bernoulli(k, ratio, p.shape).astype(jnp.float32),
      params, keys, norms)


def apply_masks(params, masks, fill=None):
  """``params`` with masked entries set to 0 (``fill=None``) or to ``fill``'s values."""
  if fill is None:
    return jax.tree.map(lambda p, m: jnp.where(m > 0, jnp.zeros_like(p), p), params, masks)
  return jax.tree.map(lambda p, f, m: jnp.where(m > 0, f.astype(p.dtype), p),
                      params, fill, masks)


@base.register("random_reinit")
class RandomReinit(base.Method):
  """Zero (or re-initialise) a random share of every non-normalisation tensor, then repair."""
  description = ("random masks: zero (fill=reinit: re-initialise) a fresh random share ratio of "
                 "every non-normalisation tensor, then CE on D_r")
  inputs = ("x_remain", "y_remain")
  hparams = {"ratio": 0.5}
  options = {"fill": ("zero", "reinit")}
  hparam_docs = {"ratio": "share of every non-normalisation tensor reset, fresh per run",
                 "fill": "zero | reinit: what the reset entries become"}
  epoch_over = "remain"
  search_space = {"learning_rate": (3e-5, 1e-4, 3e-4, 1e-3), "ratio": (0.1, 0.3, 0.5, 0.7)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "ratio", 0.0, 1.0, method="random_reinit")

  def make(self, env):
    reinit = self.opts["fill"] == "reinit"

    def erase_fn(params):
      masks = random_masks(jax.random.fold_in(env.key, erase.TAG_MASK), params,
                           env.hparams["ratio"])
      fill = erase.fresh_params(env, "random_reinit") if reinit else None
      leaves = jax.tree.leaves(masks)
      fraction = sum(jnp.sum(m) for m in leaves) / sum(m.size for m in leaves)
      return apply_masks(params, masks, fill), {"erased_fraction": fraction}

    m = erase.repair_method(env, erase_fn, erase.remain_ce(env))
    return m._replace(summary=lambda state: {"erased_fraction": state.extra["erased_fraction"]})
