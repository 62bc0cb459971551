"""Stop rules: wrappers around an update rule, each with its own named state.

A stop rule takes the run's :class:`~jaxunlearn.methods.UpdateRule` and
returns one, the way an optax wrapper takes a transform and returns one: its
state is a NamedTuple that nests the inner rule's state (``inner``) beside
its own fields. Its ``step``, ``epoch_end`` and ``summary`` call the inner
ones; its ``finish`` returns the model it kept (or the inner rule's result)
and its ``finished`` says when that model is final. The pure run
(:func:`jaxunlearn.unlearn.make_unlearn_fn`) and the host driver
(:func:`jaxunlearn.unlearn.unlearn`) apply the same wrapped rule; the driver
stops early once ``finished`` says no later step can change the result.

A rule judges the model its inner state holds (``state.params``: the
parameters, or ``{"params", "batch_stats"}`` under ``bn_mode="train"``) and
the model the run started from (the argument of ``init``).

* :func:`epochs`: run every epoch; return the last state.
* :func:`kl_tol`: keep the state at the end of the first epoch whose mean KL
  to the reference on D_f is below ``tol`` (the paper's "until the two
  posterior distributions are almost the same"); later epochs change nothing.
* :func:`calibrated`: every ``every`` steps, compare the model's mean loss on
  D_f with the loss a model that never saw D_f would show: its loss on
  held-out examples of D_f's classes, weighted to D_f's class histogram (or
  per-example targets, ``Inputs.forget_target_loss``). Keep the state where
  ``|log L_forget - log L_target|`` is smallest, up to the first check where
  ``L_forget >= L_target`` (D_f looks unseen); later steps change nothing.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base

__all__ = ["RULES", "make", "resolve", "epochs", "kl_tol", "KLTolState", "calibrated",
           "CalibratedState", "Calibration", "calibration_losses", "CALIBRATION_INPUTS"]

RULES = ("epochs", "kl_tol", "calibrated")
CALIBRATION_INPUTS = ("x_forget", "y_forget", "x_heldout", "y_heldout")


def epochs(inner: base.UpdateRule) -> base.UpdateRule:
  """Every epoch runs and the last state is returned: the inner rule, unchanged."""
  return inner


class KLTolState(NamedTuple):
  inner: Any                # the wrapped rule's state
  kept_params: Any          # the model at the end of the first epoch with KL < tol
  stopped: jax.Array        # that epoch was seen
  kl_forget: jax.Array      # mean KL to the reference on D_f at the last epoch's end

  @property
  def params(self):
    return self.inner.params


def _check_tol(tol: float) -> None:
  if not tol > 0:
    raise ConfigError("stop='kl_tol' needs a tolerance tol > 0")


def kl_tol(inner: base.UpdateRule, apply_fn: Callable, inputs: base.Inputs,
           tol: float) -> base.UpdateRule:
  """Keeps the first epoch-end model whose mean KL to the reference on D_f is below ``tol``.

  Args:
    inner: the rule to wrap.
    apply_fn: ``apply_fn(model, x) -> logits`` of the model the rule's state holds.
    inputs: the run's inputs (``ref_probs`` and ``x_forget`` are read).
    tol: the KL tolerance (> 0).
  """
  _check_tol(tol)
  inner = base.with_defaults(inner)

  def init(params):
    if inputs.ref_probs is None:
      raise ConfigError("the kl_tol stop compares with the reference model, which this method "
                        "does not use")
    return KLTolState(inner.init(params), params, jnp.asarray(False),
                      jnp.asarray(jnp.inf, jnp.float32))

  def step(state: KLTolState, batch):
    inner_state, metrics = inner.step(state.inner, batch)
    return state._replace(inner=inner_state), metrics

  def epoch_end(state: KLTolState):
    inner_state = inner.epoch_end(state.inner)
    model = inner_state.params
    kl = base.kl_divergence(inputs.ref_probs, apply_fn(model, inputs.x_forget))
    now = jnp.logical_and(~state.stopped, kl < tol)
    kept = jax.tree.map(lambda new, old: jnp.where(now, new, old), model, state.kept_params)
    return KLTolState(inner_state, kept, jnp.logical_or(state.stopped, now), kl)

  def finish(state: KLTolState):
    return jax.tree.map(lambda kept, f: jnp.where(state.stopped, kept, f),
                        state.kept_params, inner.finish(state.inner))

  return base.UpdateRule(init, step, epoch_end, finish,
                         summary=lambda state: inner.summary(state.inner),
                         finished=lambda state: state.stopped)


def calibration_losses(apply_fn, params, inputs: base.Inputs):
  """``(L_forget, L_target)``, both ``(n_forget,)`` or scalars.

  With ``inputs.forget_target_loss`` (per-example targets): the per-example
  CE on D_f and those targets. Otherwise the mean CE on D_f and on the
  held-out examples, weighted so that their class histogram is D_f's.
  """
  logits_f = apply_fn(params, inputs.x_forget).astype(jnp.float32)
  per_f = optax.softmax_cross_entropy_with_integer_labels(logits_f, inputs.y_forget)
  if inputs.forget_target_loss is not None:
    return per_f, inputs.forget_target_loss.astype(jnp.float32)
  logits_h = apply_fn(params, inputs.x_heldout).astype(jnp.float32)
  per = optax.softmax_cross_entropy_with_integer_labels(logits_h, inputs.y_heldout)
  c = logits_h.shape[-1]
  n_f = jnp.zeros(c).at[inputs.y_forget].add(1.0)
  n_h = jnp.zeros(c).at[inputs.y_heldout].add(1.0)
  w = n_f[inputs.y_heldout] / jnp.maximum(n_h[inputs.y_heldout], 1.0)
  return per_f.mean(), jnp.sum(w * per) / jnp.maximum(jnp.sum(w), 1e-12)


class Calibration(NamedTuple):
  """What the calibrated stop has seen (its state beside the inner one and the step count)."""
  best_params: Any
  best_gap: jax.Array       # mean |log L_forget - log L_target| of best_params
  best_step: jax.Array      # steps taken when best_params was seen (0: the original)
  crossed: jax.Array        # mean log L_forget >= mean log L_target was seen: D_f looks unseen
  forget_loss: jax.Array    # at the last check (means)
  target_loss: jax.Array


class CalibratedState(NamedTuple):
  inner: Any                # the wrapped rule's state
  steps_done: jax.Array     # int32: steps taken so far
  calibration: Calibration

  @property
  def params(self):
    return self.inner.params


def _check(apply_fn, params, inputs, step, seen: Calibration | None) -> Calibration:
  l_f, l_t = calibration_losses(apply_fn, params, inputs)
  log_f, log_t = jnp.log(jnp.maximum(l_f, 1e-30)), jnp.log(jnp.maximum(l_t, 1e-30))
  gap = jnp.mean(jnp.abs(log_f - log_t))
  crossed = jnp.mean(log_f) >= jnp.mean(log_t)
  l_f, l_t = jnp.mean(l_f), jnp.mean(l_t)
  if seen is None:
    return Calibration(params, gap, jnp.int32(0), crossed, l_f, l_t)
  better = jnp.logical_and(~seen.crossed, gap < seen.best_gap)
  pick = lambda new, old: jnp.where(better, new, old)  # noqa: E731
  return Calibration(jax.tree.map(pick, params, seen.best_params),
                     pick(gap, seen.best_gap), pick(step, seen.best_step),
                     jnp.logical_or(seen.crossed, crossed), l_f, l_t)


def calibrated(inner: base.UpdateRule, apply_fn: Callable, inputs: base.Inputs, every: int,
               total_steps: int) -> base.UpdateRule:
  """Keeps the model closest to looking unseen, up to the first check where D_f looks unseen.

  Args:
    inner: the rule to wrap.
    apply_fn: ``apply_fn(model, x) -> logits`` of the model the rule's state holds.
    inputs: the run's inputs (:data:`CALIBRATION_INPUTS`, or x_forget,
      y_forget and forget_target_loss).
    every: steps between two checks (the last step is always checked).
    total_steps: steps of the whole run.

  Its ``step`` adds ``calib_forget_loss`` and ``calib_target_loss`` (at the
  last check) to the metrics; its ``summary`` adds ``calibrated_step``.
  """
  every = int(every)
  inner = base.with_defaults(inner)

  def init(params):
    if any(getattr(inputs, f) is None for f in CALIBRATION_INPUTS) and not (
        inputs.forget_target_loss is not None and inputs.y_forget is not None):
      raise ConfigError(f"the calibrated stop needs inputs {CALIBRATION_INPUTS} (or "
                        "x_forget, y_forget and forget_target_loss)")
    seen = _check(apply_fn, params, inputs, 0, None)
    return CalibratedState(inner.init(params), jnp.zeros((), jnp.int32), seen)

  def step(state: CalibratedState, batch):
    inner_state, metrics = inner.step(state.inner, batch)
    done, model = state.steps_done + 1, inner_state.params
    seen = jax.lax.cond(jnp.logical_or(done % every == 0, done == total_steps),
                        lambda s: _check(apply_fn, model, inputs, done, s), lambda s: s,
                        state.calibration)
    return CalibratedState(inner_state, done, seen), \
        {**metrics, "calib_forget_loss": seen.forget_loss, "calib_target_loss": seen.target_loss}

  def epoch_end(state: CalibratedState):
    return state._replace(inner=inner.epoch_end(state.inner))

  def finish(state: CalibratedState):
    # The inner rule's own finish is not taken: the kept model is one the checks saw.
    return state.calibration.best_params

  return base.UpdateRule(
      init, step, epoch_end, finish,
      summary=lambda state: {**inner.summary(state.inner),
                             "calibrated_step": state.calibration.best_step},
      finished=lambda state: state.calibration.crossed)


def make(name: str, apply_fn: Callable, *, tol: float = 0.0, every: int = 1,
         total_steps: int = 1) -> Callable[[base.UpdateRule, base.Inputs], base.UpdateRule]:
  """The stop rule ``name`` (one of :data:`RULES`) as ``wrap(inner, inputs) -> rule``.

  Its settings are checked here, before any run is built.
  """
  if name == "epochs":
    return lambda inner, inputs: epochs(inner)
  if name == "kl_tol":
    _check_tol(tol)
    return lambda inner, inputs: kl_tol(inner, apply_fn, inputs, tol)
  if name == "calibrated":
    return lambda inner, inputs: calibrated(inner, apply_fn, inputs, every, total_steps)
  raise ConfigError(f"unknown stop rule {name!r}; use one of {RULES}")


def resolve(unlearn_cfg) -> str:
  """The stop rule of an ``unlearn`` block: ``tol > 0`` with ``stop='epochs'`` means ``kl_tol``."""
  stop = unlearn_cfg.get("stop", "epochs")
  return "kl_tol" if stop == "epochs" and unlearn_cfg.get("tol", 0.0) > 0 else stop
