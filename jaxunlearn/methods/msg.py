"""MSG, "masked small gradients" (NeurIPS 2023 unlearning competition, 2nd place).

1. At the original weights, ``g = grad [CE(S) - CE(D_f)]`` with ``S`` a random
   subset of D_r of ``|D_f|`` rows, drawn afresh in every run.
2. In every conv kernel, the ``round(init_rate * n)`` entries (of its ``n``)
   with the smallest ``|g|``, ranked within the kernel, are re-initialised:
   they take the values of a freshly initialised model (``env.init_fn`` with
   the run's key). The other entries keep the original's values.
3. Repair: CE on D_r (an epoch is a pass over D_r). The gradient of the
   kept entries of those kernels is multiplied by ``keep_scale`` (0.1); the
   re-initialised entries and every other parameter get the full gradient,
   and the optimizer's weight decay is not scaled.
4. The learning rate rises linearly and falls again, per epoch, as the
   entry's ``LinearAnnealingLR``: epoch ``e`` of ``E`` runs at ``c / A`` times
   ``unlearn.learning_rate`` for ``c = e + 1 <= A = (E + 1) // 2``, else at
   ``(E + 1 - c) / (E + 1 - A)`` (five epochs: 1/3, 2/3, 1, 2/3, 1/3; two:
   1, 1/2). It multiplies the optimizer's updates, which for SGD with
   momentum and for Adam is the same as scaling the rate; keep
   ``unlearn.schedule = "constant"`` so the two do not compound.

Entry's recipe: init rate 0.3, gradient scale 0.1, 5 epochs of SGD lr 1e-3,
momentum 0.9, weight decay 5e-4, batch 64. Source:
``xcadet/deepunlearn:munl/unlearning/kgltop2.py`` (``get_grads_for_snip``,
``re_init_model_snip_ver2_little_grad``, ``MaskConv2d``, ``LinearAnnealingLR``).

Deviations:

* ``g`` uses the mean CE over all of ``S`` and of D_f; the entry sums the
  per-batch means of batches of 64, which ranks entries the same when both
  sets have the same number of batches (they have the same size).
* The gradient is taken in eval mode (batch norm with running statistics);
  the entry's network was in whatever mode it was handed in.
* Conv biases keep the original's values. The entry builds a new conv layer,
  copies the kept kernel entries into it and leaves its freshly initialised
  bias in place (ResNet-18, its model, has no conv biases).
* Fresh values come from the model's own initialisers (``env.init_fn``); the
  entry draws Kaiming-normal (fan-out) values, which is what this library's
  ResNets and VGG use for their convs too.
* On a model without conv layers (e.g. the MLP) the same is done to every
  dense kernel instead, the entry itself being defined for conv nets only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.methods import base, erase, helpers, salun


def target_kernels(params) -> dict:
  """Which leaves MSG treats: every conv kernel, or every dense kernel if there is none."""
  convs = erase.select(params, erase.is_conv_kernel)
  return convs if erase.any_selected(convs) else erase.select(params, erase.is_dense_kernel)


def small_gradient_mask(grads, targets, rate):
  """1.0 on the ``round(rate * n)`` entries of smallest ``|grad|`` of each target leaf.

  Ranked within each leaf; ties go to the earlier position (flattened order).
  Non-target leaves get all zeros.
  """
  def one(g, is_target):
    if not is_target:
      return jnp.zeros(g.shape, jnp.float32)
    flat = jnp.abs(g).ravel()
    order = jnp.argsort(flat, stable=True)
    ranks = jnp.zeros_like(order).at[order].set(jnp.arange(flat.size))
    k = jnp.round(rate * flat.size).astype(jnp.int32)
    return (ranks < k).astype(jnp.float32).reshape(g.shape)
  return jax.tree.map(one, grads, targets)


def grad_scale(mask, targets, keep_scale):
  """Gradient multipliers: 1 on re-initialised entries, ``keep_scale`` on the kept
  entries of target leaves, 1 on every other leaf."""
  return jax.tree.map(lambda m, t: m + (1.0 - m) * keep_scale if t else jnp.ones_like(m),
                      mask, targets)


def snip_gradient(params, apply_fn, x_subset, y_subset, x_forget, y_forget):
  """``grad [mean CE(subset) - mean CE(D_f)]`` at ``params``."""
  g_subset = salun.forget_gradient(params, apply_fn, x_subset, y_subset)   # grad of -CE(S)
  g_forget = salun.forget_gradient(params, apply_fn, x_forget, y_forget)   # grad of -CE(D_f)
  return jax.tree.map(lambda s, f: f - s, g_subset, g_forget)


@base.register("msg")
class MaskedSmallGradients(base.Method):
  """Re-initialise the conv weights with the smallest |grad|, then repair them on D_r."""
  description = ("MSG: re-initialise the init_rate share of each conv kernel with the smallest "
                 "|grad (CE on a D_r subset - CE on D_f)|, then CE on D_r with kept weights' "
                 "gradients scaled by keep_scale, linear warm-up and decay")
  inputs = ("x_forget", "y_forget", "x_remain", "y_remain")
  hparams = {"init_rate": 0.3, "keep_scale": 0.1}
  hparam_docs = {"init_rate": "share of each conv (dense) kernel re-initialised: the smallest "
                              "|gradient|",
                 "keep_scale": "gradient scale of the kept weights during the repair"}
  epoch_over = "remain"
  search_space = {"learning_rate": (3e-4, 1e-3, 3e-3, 1e-2), "init_rate": (0.1, 0.3, 0.5, 0.7)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "init_rate", 0.0, 1.0, method="msg")
    helpers.validate_range(hp, "keep_scale", 0.0, 1.0, method="msg")

  def cost(self, shape, hp):
    # CE steps on D_r only, plus the gradients over a |D_f|-row subset of D_r and over D_f.
    subset = min(shape.n_forget, shape.n_remain)
    return float(shape.epochs * shape.steps_per_epoch * shape.remain_batch_size
                 + salun.forget_gradient_rows(subset) + salun.forget_gradient_rows(shape.n_forget))

  def make(self, env):
    inp, hp = env.inputs, env.hparams
    n_forget, n_remain = inp.x_forget.shape[0], inp.x_remain.shape[0]

    def erase_fn(params):
      fresh = erase.fresh_params(env, "msg")
      rows = jax.random.permutation(jax.random.fold_in(env.key, erase.TAG_SUBSET),
                                    n_remain)[:min(n_forget, n_remain)]
      grads = snip_gradient(params, env.apply_fn, inp.x_remain[rows], inp.y_remain[rows],
                            inp.x_forget, inp.y_forget)
      targets = target_kernels(params)
      mask = small_gradient_mask(grads, targets, hp["init_rate"])
      params = jax.tree.map(lambda p, f, m: jnp.where(m > 0, f, p), params, fresh, mask)
      return params, {"scale": grad_scale(mask, targets, hp["keep_scale"]),
                      "reinit_fraction": _fraction(mask, targets)}

    def summary(state):
      return {"reinit_fraction": state.extra["reinit_fraction"]}

    m = erase.repair_method(
        env, erase_fn, erase.remain_ce(env), grad_scale_of=lambda extra: extra["scale"],
        rate_of=lambda state, batch: erase.linear_warmup_decay(batch.epoch, env.epochs))
    return m._replace(summary=summary)


def _fraction(mask, targets):
  """Share of the target leaves' entries that ``mask`` selects."""
  picked = [m for m, t in zip(jax.tree.leaves(mask), jax.tree.leaves(targets)) if t]
  return sum(jnp.sum(m) for m in picked) / sum(m.size for m in picked)
