"""Random labels (RL): a pass over D_f with fresh random labels, then a pass over D_r.

Each epoch is a pass over D_r (``epoch_over = "remain"``); its first
``ceil(|D_f| / B_f)`` steps walk D_f with labels drawn uniformly from the
classes afresh for every batch and minimise CE to them, the rest minimise
CE on D_r (the OPTML CIFAR-10 path: the two losses applied one after the
other). Source: ``OPTML-Group/Unlearn-Saliency:Classification/unlearn/RL.py``
with ``mask=None``. :mod:`jaxunlearn.methods.salun` is this with a saliency
mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.methods import base, helpers


def random_labels(key, n: int, num_classes: int):
  """``n`` labels drawn uniformly from ``range(num_classes)``."""
  return jax.random.randint(key, (n,), 0, num_classes)


def random_label_loss(params, apply_fn, batch: base.Batch, labels, forget_phase):
  """CE to ``labels`` on the forget batch in the forget phase, else CE on the remain batch."""
  return jax.lax.cond(
      forget_phase,
      lambda p: base.cross_entropy(apply_fn(p, batch.x_forget), labels),
      lambda p: base.cross_entropy(apply_fn(p, batch.x_remain), batch.y_remain),
      params)


def make_random_label(name: str, env: base.MethodEnv, init_extra=None, mask_of=None):
  """The RL update rule (shared with SalUn, which passes a mask)."""
  n_forget = env.inputs.x_forget.shape[0]

  def loss_fn(params, state, batch):
    fbs = batch.x_forget.shape[0]
    k = helpers.forget_steps(n_forget, fbs, env.steps_per_epoch, name)
    forget = helpers.in_forget_phase(state.step, env.steps_per_epoch, k)
    num_classes = jax.eval_shape(env.apply_fn, params, batch.x_forget).shape[-1]
    labels = random_labels(jax.random.fold_in(env.key, state.step), fbs, num_classes)
    loss = random_label_loss(params, env.apply_fn, batch, labels, forget)
    return loss, {"forget_phase": forget.astype(jnp.float32)}

  return helpers.gradient_method(env, loss_fn, init_extra, mask_of)


def random_label_cost(shape: base.RunShape, name: str) -> float:
  """Examples of the RL loop: each epoch ``ceil(n_f / B_f)`` forget steps, then remain steps."""
  k = helpers.forget_steps(shape.n_forget, shape.forget_batch_size, shape.steps_per_epoch, name)
  return helpers.phase_cost(shape, k, shape.epochs)


@base.register("random_label")
class RandomLabel(base.Method):
  """CE to fresh random labels on D_f, then CE on D_r, every epoch."""
  description = "random labels: a D_f pass with fresh random labels, then a D_r pass, per epoch"
  inputs = ("x_forget", "x_remain", "y_remain")
  epoch_over = "remain"
  search_space = {"learning_rate": (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1)}

  def cost(self, shape, hp):
    # Per epoch: ceil(n_f/B_f) steps on a forget batch, the others on a remain batch.
    return random_label_cost(shape, "random_label")

  def make(self, env):
    return make_random_label("random_label", env)
