"""SSD, Selective Synaptic Dampening (Foster, Schoepf, Brintrup, AAAI 2024).

1. Importances, for every parameter entry, on D = D_r ∪ D_f and on D_f:
   the mean over mini-batches of the squared gradient of the batch's mean CE,

       imp(X) = (1 / #batches) * sum over batches b of (grad mean_{x in b} CE(x))^2,

   in batches of :data:`IMPORTANCE_BATCH` (128) rows, in order and not
   shuffled (D is D_r's rows, then D_f's; the last batch may be short).
   This is the authors' ``calc_importance``: a per-batch diagonal Fisher,
   not a per-example one, so it depends on the batch size.
2. Where ``imp_f > alpha * imp_D`` the weight is multiplied by
   ``min(dampening * imp_D / imp_f, 1)``; elsewhere it is unchanged. Every
   parameter is treated, normalisation layers included.

Defaults alpha = 10 (``selection_weighting``) and dampening (lambda) = 1
(``dampening_constant``), ``exponent`` 1 and ``lower_bound`` 1, as the
authors run it on CIFAR (``forget_random_main.py``, ``ssd_tuning``). The
model is in eval mode. Source: ``if-loops/selective-synaptic-dampening:
src/ssd.py`` (``ParameterPerturber.calc_importance``, ``modify_weight``) and
``src/forget_random_strategies.py`` (``ssd_tuning``).

SSD is deterministic (the same original always gives the same result) and
trains nothing: everything happens in ``init``, the steps leave the state
unchanged and their ``loss`` metric is 0, so epochs only cost time (use
``--config.unlearn.epochs=1``) and the learning rate is unused. The run's
summary reports ``dampened_fraction``, the share of entries dampened.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.methods import base, helpers

IMPORTANCE_BATCH = 128


def importance(params, apply_fn, x, y, batch_size: int = IMPORTANCE_BATCH):
  """Mean over consecutive batches of ``batch_size`` rows of the squared gradient
  of the batch's mean CE (the last batch may be short)."""
  n = x.shape[0]
  b = min(batch_size, n)
  n_batches = -(-n // b)
  pad = n_batches * b - n
  valid = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(pad, jnp.float32)])
  if pad:
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
  xs, ys = x.reshape(n_batches, b, *x.shape[1:]), y.reshape(n_batches, b)
  ws = valid.reshape(n_batches, b)

  def batch_ce(p, xb, yb, wb):
    logits = apply_fn(p, xb).astype(jnp.float32)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=-1)[:, 0]
    return jnp.sum(ce * wb) / jnp.sum(wb)

  def body(acc, inp):
    g = jax.grad(batch_ce)(params, *inp)
    return jax.tree.map(lambda a, gi: a + gi * gi, acc, g), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  total, _ = jax.lax.scan(body, zeros, (xs, ys, ws))
  return jax.tree.map(lambda t: t / n_batches, total)


def importance_rows(n: int, batch_size: int = IMPORTANCE_BATCH) -> int:
  """Rows :func:`importance` runs forward and backward: ``n``, the last batch padded."""
  b = min(batch_size, n)
  return -(-n // b) * b


def dampen(params, imp_full, imp_forget, alpha, dampening):
  """The SSD update: ``(params, selected)`` with ``selected`` the 0/1 map of dampened entries."""
  def one(p, full, forget):
    selected = forget > alpha * full
    factor = jnp.minimum(dampening * full / jnp.where(selected, forget, 1.0), 1.0)
    return jnp.where(selected, p * factor.astype(p.dtype), p), selected.astype(jnp.float32)
  out = jax.tree.map(one, params, imp_full, imp_forget)
  is_pair = lambda t: isinstance(t, tuple)
  return (jax.tree.map(lambda t: t[0], out, is_leaf=is_pair),
          jax.tree.map(lambda t: t[1], out, is_leaf=is_pair))


@base.register("ssd")
class SelectiveSynapticDampening(base.Method):
  """Dampen the weights far more important to D_f than to D; no training."""
  description = ("SSD: dampen weights whose D_f importance exceeds alpha x their D importance "
                 "by min(dampening x imp_D / imp_f, 1); no training (deterministic)")
  inputs = ("x_forget", "y_forget", "x_remain", "y_remain")
  hparams = {"alpha": 10.0, "dampening": 1.0}
  hparam_docs = {"alpha": "dampen a weight whose forget importance exceeds alpha x its full "
                          "importance",
                 "dampening": "lambda: the weight is multiplied by min(lambda imp_D / imp_f, 1)"}
  # From the default alpha up: on quick, alpha <= 30 costs accuracy (configs/quick_methods.py).
  search_space = {"alpha": (10.0, 30.0, 100.0, 300.0), "dampening": (0.1, 0.3, 1.0, 3.0)}
  uses_learning_rate = False

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "alpha", 0.0, float("inf"), low_open=True, method="ssd")
    helpers.validate_range(hp, "dampening", 0.0, float("inf"), low_open=True, method="ssd")

  def cost(self, shape, hp):
    # Importance gradients over D_r + D_f, then over D_f again, in init; the steps do nothing.
    return float(importance_rows(shape.n_remain + shape.n_forget)
                 + importance_rows(shape.n_forget))

  def make(self, env):
    inp, hp = env.inputs, env.hparams

    def init(params):
      x_all = jnp.concatenate([inp.x_remain, inp.x_forget])
      y_all = jnp.concatenate([inp.y_remain, inp.y_forget])
      imp_full = importance(params, env.apply_fn, x_all, y_all)
      imp_forget = importance(params, env.apply_fn, inp.x_forget, inp.y_forget)
      params, selected = dampen(params, imp_full, imp_forget, hp["alpha"], hp["dampening"])
      leaves = jax.tree.leaves(selected)
      fraction = sum(jnp.sum(s) for s in leaves) / sum(s.size for s in leaves)
      return base.UnlearnState(jnp.zeros((), jnp.int32), params, (),
                               {"dampened_fraction": fraction})

    def step(state, batch):
      del batch
      return state, {"loss": jnp.zeros((), jnp.float32)}

    def summary(state):
      return {"dampened_fraction": state.extra["dampened_fraction"]}

    return base.UpdateRule(init, step, summary=summary)
