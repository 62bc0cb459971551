"""Stop rules: wrappers around an unlearning run, each with its own named state.

A stop rule watches a run and decides which parameters it returns, the way an
optax transform wraps an update: :class:`StopRule` is a tuple of pure
functions over its own state (a NamedTuple whose fields have names), so the
pure run (:func:`jaxunlearn.unlearn.make_unlearn_fn`) and the host driver
(:func:`jaxunlearn.unlearn.unlearn`) apply the same rule, and the driver
reads the state by field name (``finished``), never by position.

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

RULES = ("epochs", "kl_tol", "calibrated")
CALIBRATION_INPUTS = ("x_forget", "y_forget", "x_heldout", "y_heldout")


class StopRule(NamedTuple):
  """A stop rule's pure functions (``state`` is the rule's own NamedTuple).

  Attributes:
    name: ``epochs``, ``kl_tol`` or ``calibrated``.
    needs: input arrays the rule reads (beside the method's).
    init: ``init(params, inputs) -> state``.
    after_step: ``after_step(state, params, inputs, steps_done) -> state``.
    after_epoch: ``after_epoch(state, params, inputs) -> state``.
    result: ``result(state, final_params) -> params`` the run returns.
    finished: ``finished(state) -> bool``: no later step can change the result.
    step_metrics: ``step_metrics(state) -> {name: scalar}`` recorded every step.
    summary: ``summary(state) -> {name: scalar}`` for the run's record.
  """
  name: str
  needs: tuple
  init: Callable
  after_step: Callable
  after_epoch: Callable
  result: Callable
  finished: Callable
  step_metrics: Callable
  summary: Callable


class EpochsState(NamedTuple):
  pass


def epochs() -> StopRule:
  """Every epoch runs; the last state is returned."""
  return StopRule(
      "epochs", (), init=lambda params, inputs: EpochsState(),
      after_step=lambda state, params, inputs, done: state,
      after_epoch=lambda state, params, inputs: state,
      result=lambda state, final: final,
      finished=lambda state: jnp.asarray(False),
      step_metrics=lambda state: {}, summary=lambda state: {})


class KLTolState(NamedTuple):
  kept_params: Any          # the state at the end of the first epoch with KL < tol
  stopped: jax.Array        # that epoch was seen
  kl_forget: jax.Array      # mean KL to the reference on D_f at the last epoch's end


def kl_tol(apply_fn: Callable, tol: float) -> StopRule:
  """Keeps the first epoch-end state whose mean KL to the reference on D_f is below ``tol``."""
  if not tol > 0:
    raise ConfigError("stop='kl_tol' needs a tolerance tol > 0")

  def init(params, inputs):
    if inputs.ref_probs is None:
      raise ConfigError("the kl_tol stop compares with the reference model, which this method "
                        "does not use")
    return KLTolState(params, jnp.asarray(False), jnp.asarray(jnp.inf, jnp.float32))

  def after_epoch(state, params, inputs):
    kl = base.kl_divergence(inputs.ref_probs, apply_fn(params, inputs.x_forget))
    now = jnp.logical_and(~state.stopped, kl < tol)
    kept = jax.tree.map(lambda new, old: jnp.where(now, new, old), params, state.kept_params)
    return KLTolState(kept, jnp.logical_or(state.stopped, now), kl)

  def result(state, final):
    return jax.tree.map(lambda kept, f: jnp.where(state.stopped, kept, f),
                        state.kept_params, final)

  return StopRule("kl_tol", ("ref_probs", "x_forget"), init,
                  after_step=lambda state, params, inputs, done: state,
                  after_epoch=after_epoch, result=result,
                  finished=lambda state: state.stopped,
                  step_metrics=lambda state: {}, summary=lambda state: {})


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


class CalibratedState(NamedTuple):
  best_params: Any
  best_gap: jax.Array       # mean |log L_forget - log L_target| of best_params
  best_step: jax.Array      # steps taken when best_params was seen (0: the original)
  crossed: jax.Array        # mean log L_forget >= mean log L_target was seen: D_f looks unseen
  forget_loss: jax.Array    # at the last check (means)
  target_loss: jax.Array


def _check(apply_fn, params, inputs, step, state: CalibratedState | None) -> CalibratedState:
  l_f, l_t = calibration_losses(apply_fn, params, inputs)
  log_f, log_t = jnp.log(jnp.maximum(l_f, 1e-30)), jnp.log(jnp.maximum(l_t, 1e-30))
  gap = jnp.mean(jnp.abs(log_f - log_t))
  crossed = jnp.mean(log_f) >= jnp.mean(log_t)
  l_f, l_t = jnp.mean(l_f), jnp.mean(l_t)
  if state is None:
    return CalibratedState(params, gap, jnp.int32(0), crossed, l_f, l_t)
  better = jnp.logical_and(~state.crossed, gap < state.best_gap)
  pick = lambda new, old: jnp.where(better, new, old)  # noqa: E731
  return CalibratedState(jax.tree.map(pick, params, state.best_params),
                         pick(gap, state.best_gap), pick(step, state.best_step),
                         jnp.logical_or(state.crossed, crossed), l_f, l_t)


def calibrated(apply_fn: Callable, every: int, total_steps: int) -> StopRule:
  """Keeps the state closest to looking unseen, up to the first check where D_f looks unseen.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    every: steps between two checks (the last step is always checked).
    total_steps: steps of the whole run.
  """
  every = int(every)

  def init(params, inputs):
    if any(getattr(inputs, f) is None for f in CALIBRATION_INPUTS) and not (
        inputs.forget_target_loss is not None and inputs.y_forget is not None):
      raise ConfigError(f"the calibrated stop needs inputs {CALIBRATION_INPUTS} (or "
                        "x_forget, y_forget and forget_target_loss)")
    return _check(apply_fn, params, inputs, 0, None)

  def after_step(state, params, inputs, done):
    return jax.lax.cond(jnp.logical_or(done % every == 0, done == total_steps),
                        lambda s: _check(apply_fn, params, inputs, done, s), lambda s: s, state)

  return StopRule(
      "calibrated", CALIBRATION_INPUTS, init, after_step,
      after_epoch=lambda state, params, inputs: state,
      result=lambda state, final: state.best_params,
      finished=lambda state: state.crossed,
      step_metrics=lambda state: {"calib_forget_loss": state.forget_loss,
                                  "calib_target_loss": state.target_loss},
      summary=lambda state: {"calibrated_step": state.best_step})


def make(name: str, apply_fn: Callable, *, tol: float = 0.0, every: int = 1,
         total_steps: int = 1) -> StopRule:
  """The stop rule ``name`` (one of :data:`RULES`)."""
  if name == "epochs":
    return epochs()
  if name == "kl_tol":
    return kl_tol(apply_fn, tol)
  if name == "calibrated":
    return calibrated(apply_fn, every, total_steps)
  raise ConfigError(f"unknown stop rule {name!r}; use one of {RULES}")


def resolve(unlearn_cfg) -> str:
  """The stop rule of an ``unlearn`` block: ``tol > 0`` with ``stop='epochs'`` means ``kl_tol``."""
  stop = unlearn_cfg.get("stop", "epochs")
  return "kl_tol" if stop == "epochs" and unlearn_cfg.get("tol", 0.0) > 0 else stop
