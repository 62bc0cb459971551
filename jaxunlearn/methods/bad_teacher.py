"""Bad Teacher / incompetent teacher (Chundawat et al., AAAI 2023).

The student starts at the original and is distilled towards two teachers on
a mixed set: on D_f a *randomly initialised* network of the same architecture
(the incompetent teacher), on a random ``remain_fraction`` (30 %) subset of
D_r the frozen original (the competent one). Each step takes the forget
batch and ``B_r`` rows drawn from the subset and minimises

    mean over rows of KL(target(x) || softmax(s(x)/T)) / C,
    target = softmax(u(x)/T) on D_f rows, softmax(t(x)/T) on D_r rows,

the authors' ``F.kl_div(..., reduction='mean')`` (averaged over rows *and*
the ``C`` classes). An epoch is a pass over D_f. Source:
``vikram2000b/bad-teaching-unlearning:unlearn.py::UnlearnerLoss``; defaults
T = 1, Adam lr 1e-4, 1 epoch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base, helpers


def bad_teacher_loss(student_logits, target_logits, temperature):
  """Mean over rows and classes of ``KL(softmax(target/T) || softmax(student/T))``."""
  p = jax.nn.softmax(jax.lax.stop_gradient(target_logits).astype(jnp.float32) / temperature, -1)
  return base.kl_divergence(p, student_logits / temperature) / student_logits.shape[-1]


def remain_subset_rows(key, step, n_remain: int, fraction, batch_size: int):
  """``batch_size`` row indices drawn from a fixed random ``fraction`` of ``range(n_remain)``."""
  subset = jax.random.permutation(jax.random.fold_in(key, 1), n_remain)
  n_sub = jnp.maximum(1, jnp.floor(fraction * n_remain).astype(jnp.int32))
  pos = jax.random.randint(jax.random.fold_in(jax.random.fold_in(key, 2), step),
                           (batch_size,), 0, n_sub)
  return subset[pos]


def teacher_logits(env, extra, x_forget, x_remain):
  """``(random teacher on x_forget, competent teacher on x_remain)`` logits.

  Both teachers run in eval mode, each with its own batch statistics: the
  random teacher with those of a fresh model (with the original's it is
  confidently wrong, not incompetent), the competent one with the original's.
  Without the model's statistics (a bare ``apply_fn``) both use ``env.apply_fn``.
  """
  if "bad_stats" in extra:
    return (env.apply_with_stats(extra["bad"], extra["bad_stats"], x_forget),
            env.apply_with_stats(extra["teacher"], env.batch_stats, x_remain))
  return env.apply_fn(extra["bad"], x_forget), env.apply_fn(extra["teacher"], x_remain)


@base.register("bad_teacher")
class BadTeacher(base.Method):
  """Distil a random teacher on D_f and the original on 30 % of D_r."""
  description = ("bad teacher: distil a randomly initialised teacher on D_f and the "
                 "original on a 30% subset of D_r (KL at temperature T)")
  inputs = ("x_forget", "x_remain")
  hparams = {"temperature": 1.0, "remain_fraction": 0.3}
  renamed = {"retain_fraction": "remain_fraction"}   # the old spelling, still accepted
  hparam_docs = {"temperature": "distillation temperature T",
                 "remain_fraction": "share of D_r distilled from the original"}
  search_space = {"learning_rate": (1e-5, 1e-4, 1e-3, 1e-2), "temperature": (1.0, 2.0, 4.0)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "temperature", 0.0, float("inf"), low_open=True,
                          method="bad_teacher")
    helpers.validate_range(hp, "remain_fraction", 0.0, 1.0, low_open=True, method="bad_teacher")

  def cost(self, shape, hp):
    # Student on B_f + B_r rows a step, each row also through one teacher (forward).
    steps = shape.epochs * shape.steps_per_epoch
    rows = shape.forget_batch_size + shape.remain_batch_size
    return (1.0 + base.FORWARD_ONLY) * steps * rows

  def make(self, env):
    if env.init_fn is None and env.init_variables_fn is None:
      raise ConfigError("method 'bad_teacher' needs init_fn (a fresh model of the same "
                        "architecture) in make_unlearn_fn")
    hp, x_remain = env.hparams, env.inputs.x_remain
    n_remain = x_remain.shape[0]
    own_stats = env.init_variables_fn is not None and env.apply_with_stats is not None

    def init_extra(params):
      bad_key = jax.random.fold_in(env.key, 0)
      if own_stats:
        bad, bad_stats = env.init_variables_fn(bad_key)
        return {"teacher": params, "bad": bad, "bad_stats": bad_stats}
      return {"teacher": params, "bad": env.init_fn(bad_key)}

    def loss_fn(params, state, batch):
      rows = remain_subset_rows(env.key, state.step, n_remain, hp["remain_fraction"],
                                batch.x_remain.shape[0])
      x_r = x_remain[rows]
      x = jnp.concatenate([batch.x_forget, x_r])
      target = jnp.concatenate(teacher_logits(env, state.extra, batch.x_forget, x_r))
      loss = bad_teacher_loss(env.apply_fn(params, x), target, hp["temperature"])
      return loss, {}

    return helpers.gradient_method(env, loss_fn, init_extra)
