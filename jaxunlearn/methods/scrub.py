"""SCRUB (Kurmanji, Triantafillou, Hayes, Triantafillou, NeurIPS 2023).

Teacher: the frozen original; student: starts at the original. With the
distillation distance ``d(x) = T^2 * KL(softmax(t(x)/T) || softmax(s(x)/T))``
(mean over the batch; ``DistillKL``), each epoch ``e`` (0-based):

* a *max* pass over D_f minimising ``-d(x_f)``, only while ``e < msteps``;
* a *min* pass over D_r minimising ``gamma * CE(s(x_r), y_r) + alpha * d(x_r)``.

An epoch is a pass over D_r whose first ``ceil(|D_f| / B_f)`` steps are the
max pass (in epochs ``>= msteps`` every step is a min step). Sources:
``meghdadk/SCRUB:thirdparty/repdistiller/helper/loops.py::train_distill`` and
``distiller_zoo/KD.py``; defaults from the selective-forgetting notebook
(``MIA_experiments.ipynb``: alpha 0.5, gamma 1, msteps 3, T 4). The authors'
step decay of the learning rate is left to ``unlearn.schedule``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxunlearn.methods import base, helpers


def distill_kl(student_logits, teacher_logits, temperature):
  """``T^2 * mean_batch KL(softmax(t/T) || softmax(s/T))`` (SCRUB's ``DistillKL``)."""
  p_t = jax.nn.softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
  return base.kl_divergence(p_t, student_logits / temperature) * temperature ** 2


def scrub_max_loss(params, apply_fn, teacher, batch: base.Batch, temperature):
  """``-d(x_f)``: move away from the teacher on D_f."""
  t = jax.lax.stop_gradient(apply_fn(teacher, batch.x_forget))
  return -distill_kl(apply_fn(params, batch.x_forget), t, temperature)


def scrub_min_loss(params, apply_fn, teacher, batch: base.Batch, hp):
  """``gamma * CE(x_r) + alpha * d(x_r)``: stay close to the teacher and accurate on D_r."""
  s = apply_fn(params, batch.x_remain)
  t = jax.lax.stop_gradient(apply_fn(teacher, batch.x_remain))
  return hp["gamma"] * base.cross_entropy(s, batch.y_remain) \
      + hp["alpha"] * distill_kl(s, t, hp["temperature"])


def scrub_loss_fn(name: str, env: base.MethodEnv, teacher_of):
  """``loss_fn(params, state, batch)`` of SCRUB; ``teacher_of(extra)`` gives the teacher."""
  n_forget = env.inputs.x_forget.shape[0]
  hp = env.hparams

  def loss_fn(params, state, batch):
    k = helpers.forget_steps(n_forget, batch.x_forget.shape[0], env.steps_per_epoch, name)
    max_step = helpers.in_forget_phase(state.step, env.steps_per_epoch, k) \
        & (batch.epoch.astype(jnp.float32) < hp["msteps"])
    teacher = teacher_of(state.extra)
    loss = jax.lax.cond(
        max_step,
        lambda p: scrub_max_loss(p, env.apply_fn, teacher, batch, hp["temperature"]),
        lambda p: scrub_min_loss(p, env.apply_fn, teacher, batch, hp),
        params)
    return loss, {"max_step": max_step.astype(jnp.float32)}

  return loss_fn


def scrub_cost(shape: base.RunShape, msteps: float, name: str) -> float:
  """Examples of SCRUB's steps: in epochs ``e < msteps`` the first ``ceil(n_f / B_f)`` steps
  are max steps on a forget batch, every other step a min step on a remain batch; each row
  goes forward and backward through the student and forward through the teacher."""
  k = helpers.forget_steps(shape.n_forget, shape.forget_batch_size, shape.steps_per_epoch, name)
  return (1.0 + base.FORWARD_ONLY) * helpers.phase_cost(shape, k, math.ceil(msteps))


def validate_scrub(hp, name: str) -> None:
  for h in ("alpha", "gamma", "msteps"):
    helpers.validate_range(hp, h, 0.0, float("inf"), method=name)
  helpers.validate_range(hp, "temperature", 0.0, float("inf"), low_open=True, method=name)


@base.register("scrub")
class Scrub(base.Method):
  """Max steps away from the original on D_f (first msteps epochs), min steps on D_r."""
  description = ("SCRUB: max KL to the original on D_f for msteps epochs, min "
                 "gamma*CE + alpha*KL on D_r, temperature T")
  inputs = ("x_forget", "x_remain", "y_remain")
  hparams = {"alpha": 0.5, "gamma": 1.0, "msteps": 3.0, "temperature": 4.0}
  hparam_docs = {"alpha": "weight of the distillation term on D_r",
                 "gamma": "weight of CE on D_r", "msteps": "epochs with a max step on D_f",
                 "temperature": "distillation temperature T"}
  epoch_over = "remain"
  search_space = {"learning_rate": (5e-4, 2e-3, 5e-3, 2e-2), "msteps": (1.0, 2.0, 3.0)}

  def validate(self, hp):
    super().validate(hp)
    validate_scrub(hp, "scrub")

  def cost(self, shape, hp):
    # Max steps on D_f in epochs < msteps, min steps on D_r; every row also through the teacher.
    return scrub_cost(shape, self._hparam(hp, "msteps"), "scrub")

  def make(self, env):
    return helpers.gradient_method(env, scrub_loss_fn("scrub", env, lambda extra: extra),
                                  init_extra=lambda params: params)
