"""Layer reset and distillation (NeurIPS 2023 unlearning competition, 7th on the private board).

1. Re-initialise the first layer (the first top-level conv, or the first
   top-level dense layer of a model without convs) and the output layer (the
   last top-level dense layer), kernel and bias, from a freshly initialised
   model (``env.init_fn`` with the run's key). Everything else keeps the
   original's values.
2. Distil: for the first ``ceil(E / 2)`` epochs, minimise
   ``KL(softmax(t/T) || softmax(s/T))`` (mean over the batch, no ``T^2``),
   ``t`` the original's logits (``orig_logits_remain``), ``s`` the model's.
3. Remain: for the other epochs, minimise
   ``CE(s, y) + H(softmax(t/T), softmax(s/T)) + KL(softmax(t/T) || softmax(s/T))``,
   the entry's CE + soft cross-entropy + KL (the soft CE is the KL plus the
   teacher's entropy, a constant, so the gradient is that of CE + 2 KL). At
   the switch the optimizer starts afresh (zero momentum), as the entry
   builds a new one, and the learning rate follows the entry's per-epoch
   cosine over the remain epochs, ``(1 + cos(pi j / R)) / 2`` for its epoch
   ``j`` of ``R``, as a multiplier on the updates (keep
   ``unlearn.schedule = "constant"``).

An epoch is a pass over D_r. Entry's recipe: T = 5; 3 distillation epochs
of SGD lr 9e-4, then 3 remain epochs of SGD lr 1e-3 with the cosine, both
momentum 0.9 and weight decay 5e-4, batch 64. Source:
``xcadet/deepunlearn:munl/unlearning/kgltop6.py`` (adapted there from the
Kaggle notebook "unlearning-by-resetting-layers-7th-on-private-lb"), which
resets ``conv1`` and ``fc`` with ``reset_parameters``.

Deviations:

* The distillation epochs pass over D_r; the entry's code distils on its
  validation loader (data outside the training set), which this interface
  does not hand to methods.
* One learning rate for both helpers (the entry's are 9e-4 and 1e-3).
* Fresh values come from the model's own initialisers, not PyTorch's
  ``reset_parameters``; batch-norm running statistics stay the original's,
  where the entry's train mode re-estimates them after the reset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base, erase, helpers


def reset_layers(params) -> tuple[str, str]:
  """The names of the first and the output layer, as top-level module names."""
  layers = erase.top_level_layers(params)
  if not layers["Dense"]:
    raise ConfigError("method 'reset_distill' resets the first and the output layer and finds "
                      "no top-level Dense layer (Dense_<i>) for the output; use a model whose "
                      "output layer is a top-level nn.Dense")
  first = (layers["Conv"] or layers["Dense"])[0]
  return first, layers["Dense"][-1]


def reset(params, fresh, names):
  """``params`` with the modules in ``names`` taken from ``fresh``."""
  return type(params)({k: (fresh[k] if k in names else v) for k, v in params.items()})


def distill_kl(student_logits, teacher_logits, temperature):
  """``KL(softmax(t/T) || softmax(s/T))``, mean over the batch (``batchmean``)."""
  p_t = jax.nn.softmax(teacher_logits.astype(jnp.float32) / temperature, -1)
  return base.kl_divergence(p_t, student_logits / temperature)


def soft_cross_entropy(student_logits, teacher_logits, temperature):
  """``H(softmax(t/T), softmax(s/T))``, mean over the batch."""
  p_t = jax.nn.softmax(teacher_logits.astype(jnp.float32) / temperature, -1)
  log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, -1)
  return -jnp.mean(jnp.sum(p_t * log_q, -1))


def remain_loss(student_logits, teacher_logits, labels, temperature):
  """The remain phase's ``CE + soft CE + KL``."""
  return (base.cross_entropy(student_logits, labels)
          + soft_cross_entropy(student_logits, teacher_logits, temperature)
          + distill_kl(student_logits, teacher_logits, temperature))


def distill_epochs(epochs: int) -> int:
  """Epochs of the distillation phase: the first half, rounded up."""
  return (epochs + 1) // 2


@base.register("reset_distill")
class ResetDistill(base.Method):
  """Reset the first and the output layer, distil the original, then remain CE + KL."""
  description = ("layer reset: re-initialise the first and the output layer, distil the "
                 "original on D_r (KL at T) for half the epochs, then CE + soft CE + KL")
  inputs = ("x_remain", "y_remain", "orig_logits_remain")
  hparams = {"temperature": 5.0}
  hparam_docs = {"temperature": "distillation temperature T"}
  epoch_over = "remain"
  search_space = {"learning_rate": (3e-4, 1e-3, 3e-3, 1e-2), "temperature": (1.0, 2.0, 5.0, 10.0)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "temperature", 0.0, float("inf"), low_open=True,
                          method="reset_distill")

  def make(self, env):
    temp = env.hparams["temperature"]
    n_distill = distill_epochs(env.epochs)
    n_remain_epochs = env.epochs - n_distill

    def erase_fn(params):
      names = reset_layers(params)
      return reset(params, erase.fresh_params(env, "reset_distill"), names), ()

    def loss_fn(params, state, batch):
      s = env.apply_fn(params, batch.x_remain)
      t = jax.lax.stop_gradient(batch.orig_logits_remain)
      distill = batch.epoch < n_distill
      loss = jax.lax.cond(distill, lambda: distill_kl(s, t, temp),
                          lambda: remain_loss(s, t, batch.y_remain, temp))
      return loss, {"distill": distill.astype(jnp.float32)}

    def rate_of(state, batch):
      j = batch.epoch - n_distill
      return jnp.where(batch.epoch < n_distill, 1.0, erase.cosine_epochs(j, n_remain_epochs))

    def reset_opt_of(state, batch):
      return state.step == n_distill * env.steps_per_epoch

    return erase.repair_method(env, erase_fn, loss_fn, rate_of=rate_of,
                               reset_opt_of=reset_opt_of)
