"""A whole unlearning run as one pure function, and the host driver around it.

:func:`make_unlearn_fn` returns ``run(params, inputs, key, hparams) ->
(params, metrics)``: initialisation, every epoch under ``lax.scan`` and the
method's final choice, all traced once. Hyperparameters (the learning rate
and the method's own, e.g. ``lam``) are arrays, so::

    run = make_unlearn_fn("lightweight", apply_fn, epochs=5, n_forget=40, ...)
    jax.vmap(run, in_axes=(None, None, 0, None))(params, inputs, keys, hp)   # N seeds
    jax.vmap(run, in_axes=(None, None, None, {"lam": 0, "learning_rate": None}))(...)

runs N unlearning runs in one compiled call. :func:`unlearn` is the host
driver: the same pieces jitted one epoch at a time, with a progress bar,
timing, the ``tol`` stop and non-finite checks.

Epoch ``e`` draws its batches from ``fold_in(key, e)``: D_f is walked in a
fresh permutation (wrapped around to full batches) and a remain batch is
drawn at random for every step (for ``epoch_over="remain"`` methods the roles
swap: D_r is walked, D_f cycled).

Stop rules (``stop``):

* ``epochs``: run every epoch;
* ``kl_tol``: stop after the first epoch whose mean KL to the reference on
  D_f is below ``tol``, the paper's "until the two posterior distributions
  are almost the same" (the pure run keeps that epoch's state; the host
  driver stops there);
* ``calibrated``: every ``calibrate_every`` steps, compare the model's mean
  loss on D_f with its loss on held-out examples of D_f's classes, weighted to
  D_f's class histogram: what a model that never saw D_f would show. Keep the
  state where ``|log L_forget - log L_heldout|`` is smallest, up to the first
  check where ``L_forget >= L_heldout`` (D_f looks unseen); later steps change
  nothing (the host driver stops there). Needs ``x_forget``, ``y_forget``,
  ``x_heldout``, ``y_heldout`` in the inputs; the method's own ``finish`` is
  not applied. With ``forget_target_loss`` (a per-example target, e.g. the
  mean loss of a population of retrained models on each D_f example) the
  comparison is per example: the mean of ``|log l_i - log t_i|``, crossed once
  the mean of ``log l_i`` reaches the mean of ``log t_i``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import parallel, train as train_lib
from jaxunlearn.errors import ConfigError, NonFiniteError
from jaxunlearn.methods import base
from jaxunlearn.methods.base import Batch, Inputs

# fold_in tag of the method's own key (epochs use fold_in(key, epoch)).
_METHOD_KEY_TAG = 0x6D657468


def _as_method(method) -> base.Method:
  if isinstance(method, str):
    return base.get(method)()
  if isinstance(method, type):
    return method()
  return method


@dataclasses.dataclass(frozen=True)
class UnlearnFn:
  """``run(params, inputs, key, hparams) -> (params, metrics)``, and its pieces.

  ``metrics`` holds per-step arrays of shape ``(epochs, steps_per_epoch)``.
  The pieces (``start``, ``epoch``, ``finish``) are what the host driver
  jits one at a time; ``run`` is exactly ``start``, a scan of ``epoch`` and
  ``finish``.
  """
  method: base.Method
  apply_fn: Callable
  stop: str
  start: Callable
  epoch: Callable
  finish: Callable
  epochs: int
  steps_per_epoch: int
  summary: Callable | None = None    # summary(carry, inputs, hparams) -> {name: scalar}

  def __call__(self, params, inputs: Inputs, key, hparams):
    carry = self.start(params, inputs, key, hparams)
    carry, metrics = jax.lax.scan(lambda c, e: self.epoch(c, inputs, hparams, e), carry,
                                  jnp.arange(self.epochs))
    return self.finish(carry, inputs, hparams), metrics


STOP_RULES = ("epochs", "kl_tol", "calibrated")
CALIBRATION_INPUTS = ("x_forget", "y_forget", "x_heldout", "y_heldout")


def calibration_losses(apply_fn, params, inputs: Inputs):
  """``(L_forget, L_target)``, both ``(n_forget,)`` or scalars.

  With ``inputs.forget_target_loss`` (per-example targets, e.g. the mean loss
  of retrained models on each D_f example): the per-example CE on D_f and
  those targets. Otherwise the mean CE on D_f and on the held-out examples,
  weighted so that their class histogram is D_f's.
  """
  import optax
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


class KLStop(NamedTuple):
  kept_params: Any          # the state at the end of the first epoch with KL < tol
  stopped: jax.Array


class Calibration(NamedTuple):
  best_params: Any
  best_gap: jax.Array       # mean |log L_forget - log L_target| of best_params
  best_step: jax.Array      # steps taken when best_params was seen (0: the original)
  crossed: jax.Array        # mean log L_forget >= mean log L_target was seen: D_f looks unseen
  forget_loss: jax.Array    # at the last check (means)
  target_loss: jax.Array


def _calibration_check(apply_fn, params, inputs, step, calib: Calibration | None) -> Calibration:
  l_f, l_t = calibration_losses(apply_fn, params, inputs)
  log_f, log_t = jnp.log(jnp.maximum(l_f, 1e-30)), jnp.log(jnp.maximum(l_t, 1e-30))
  gap = jnp.mean(jnp.abs(log_f - log_t))
  crossed = jnp.mean(log_f) >= jnp.mean(log_t)
  l_f, l_t = jnp.mean(l_f), jnp.mean(l_t)
  if calib is None:
    return Calibration(params, gap, jnp.int32(0), crossed, l_f, l_t)
  better = jnp.logical_and(~calib.crossed, gap < calib.best_gap)
  pick = lambda new, old: jnp.where(better, new, old)
  return Calibration(jax.tree.map(pick, params, calib.best_params), pick(gap, calib.best_gap),
                     pick(step, calib.best_step), jnp.logical_or(calib.crossed, crossed),
                     l_f, l_t)


def make_unlearn_fn(method, apply_fn: Callable, *, epochs: int, n_forget: int, n_remain: int,
                    forget_batch_size: int, remain_batch_size: int, optimizer_cfg=None,
                    init_fn: Callable | None = None, mesh=None, stop: str = "epochs",
                    calibrate_every: int = 1, tol: float = 0.0) -> UnlearnFn:
  """Builds the pure function of one whole unlearning run.

  Args:
    method: a registered name, a :class:`~jaxunlearn.methods.Method` class or instance.
    apply_fn: ``apply_fn(params, x) -> logits`` of the original model (eval mode).
    epochs: passes over D_f (over D_r for ``epoch_over="remain"`` methods).
    n_forget, n_remain: sizes of D_f and D_r (static: they fix the batch grid).
    forget_batch_size, remain_batch_size: per-step batch sizes (the forget
      batch is clipped to ``n_forget``).
    optimizer_cfg: ``optimizer``, ``momentum``, ``weight_decay``, ``schedule``
      (e.g. the ``unlearn`` config block); default plain SGD. The learning
      rate comes from ``hparams["learning_rate"]``.
    init_fn: ``init_fn(key) -> params`` of a fresh model (methods that need
      a randomly initialised network, e.g. a bad teacher).
    mesh: split every batch over the mesh's ``'data'`` axis (host driver).
    stop: ``"epochs"``, ``"kl_tol"`` or ``"calibrated"`` (see the module docstring).
    calibrate_every: steps between two calibration checks.
    tol: the KL tolerance of ``stop="kl_tol"``.

  Returns:
    An :class:`UnlearnFn`; call it as ``run(params, inputs, key, hparams)``.
  """
  method = _as_method(method)
  if stop not in STOP_RULES:
    raise ConfigError(f"unknown stop rule {stop!r}; use one of {STOP_RULES}")
  calibrated = stop == "calibrated"
  kl_stop = stop == "kl_tol"
  if kl_stop and not tol > 0:
    raise ConfigError("stop='kl_tol' needs a tolerance tol > 0")
  every = int(calibrate_every)
  if n_forget < 1:
    raise ConfigError("the forget set is empty; nothing to unlearn")
  if n_remain < 1:
    raise ConfigError("the remain set is empty; unlearning needs remaining data")
  fbs, rbs = min(int(forget_batch_size), n_forget), int(remain_batch_size)
  steps = base.steps_per_epoch(method.epoch_over, n_forget, n_remain, fbs, rbs)
  total = epochs * steps
  opt_cfg = optimizer_cfg if optimizer_cfg is not None else {"optimizer": "sgd"}

  def build(inputs, key, hparams):
    optimizer = train_lib.make_optimizer(opt_cfg, total, learning_rate=hparams["learning_rate"])
    env = base.MethodEnv(apply_fn, init_fn, optimizer, hparams, inputs,
                         jax.random.fold_in(key, _METHOD_KEY_TAG), epochs, steps)
    return method.make(env)

  def start(params, inputs, key, hparams):
    if calibrated and any(getattr(inputs, f) is None for f in CALIBRATION_INPUTS) and not (
        inputs.forget_target_loss is not None and inputs.y_forget is not None):
      raise ConfigError(f"the calibrated stop needs inputs {CALIBRATION_INPUTS} (or "
                        "x_forget, y_forget and forget_target_loss)")
    if kl_stop and inputs.ref_probs is None:
      raise ConfigError("the kl_tol stop compares with the reference model, which this method "
                        "does not use")
    calib = _calibration_check(apply_fn, params, inputs, 0, None) if calibrated else None
    if kl_stop:
      calib = KLStop(params, jnp.asarray(False))
    return build(inputs, key, hparams).init(params), key, calib

  def epoch(carry, inputs, hparams, e):
    state, key, calib = carry
    m = build(inputs, key, hparams)
    fkey, rkey = jax.random.split(jax.random.fold_in(key, e))
    if method.epoch_over == "forget":
      f_rows = base.cycled_rows(fkey, n_forget, fbs, steps)
      r_rows = jax.vmap(lambda i: jax.random.randint(
          jax.random.fold_in(rkey, i), (rbs,), 0, n_remain))(jnp.arange(steps))
    else:
      r_rows = base.cycled_rows(rkey, n_remain, rbs, steps)
      f_rows = base.cycled_rows(fkey, n_forget, fbs, steps)

    def body(carry, inp):
      state, calib = carry
      i, fr, rr = inp
      fields = {f: getattr(inputs, f)[fr] for f in base._FORGET_ROWS
                if getattr(inputs, f) is not None}
      fields.update({f: getattr(inputs, f)[rr] for f in base._REMAIN_ROWS
                     if getattr(inputs, f) is not None})
      if mesh is not None:
        fields = {k: parallel.shard_batch(v, mesh) for k, v in fields.items()}
      progress = (e * steps + i).astype(jnp.float32) / total
      state, metrics = m.step(state, Batch(**fields, epoch=e.astype(jnp.int32),
                                           progress=progress))
      if calibrated:  # (kl_tol is checked once an epoch, below)
        done = e * steps + i + 1
        calib = jax.lax.cond(
            jnp.logical_or(done % every == 0, done == total),
            lambda c: _calibration_check(apply_fn, state.params, inputs, done, c),
            lambda c: c, calib)
        metrics = {**metrics, "calib_forget_loss": calib.forget_loss,
                   "calib_target_loss": calib.target_loss}
      return (state, calib), metrics

    (state, calib), metrics = jax.lax.scan(body, (state, calib),
                                           (jnp.arange(steps), f_rows, r_rows))
    if m.epoch_end is not None:
      state = m.epoch_end(state)
    if kl_stop:
      kl = base.kl_divergence(inputs.ref_probs, apply_fn(state.params, inputs.x_forget))
      now = jnp.logical_and(~calib.stopped, kl < tol)
      calib = KLStop(jax.tree.map(lambda new, old: jnp.where(now, new, old), state.params,
                                  calib.kept_params), jnp.logical_or(calib.stopped, now))
    return (state, key, calib), metrics

  def finish(carry, inputs, hparams):
    state, key, calib = carry
    if calibrated:
      return calib.best_params
    m = build(inputs, key, hparams)
    final = state.params if m.finish is None else m.finish(state)
    if kl_stop:
      return jax.tree.map(lambda kept, f: jnp.where(calib.stopped, kept, f),
                          calib.kept_params, final)
    return final

  def summary(carry, inputs, hparams):
    state, key, _ = carry
    m = build(inputs, key, hparams)
    return {} if m.summary is None else m.summary(state)

  return UnlearnFn(method, apply_fn, stop, start, epoch, finish, int(epochs), steps, summary)


def default_hparams(method, learning_rate: float, **overrides) -> dict:
  """``{"learning_rate": ..., **the method's defaults}`` with ``overrides``, as float32 arrays."""
  method = _as_method(method)
  hp = {**method.hparams, **overrides}
  method.validate(hp)
  return as_hparams({"learning_rate": learning_rate, **hp})


def as_hparams(hp: dict) -> dict:
  return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}


@dataclasses.dataclass
class UnlearnResult:
  params: Any
  history: list[dict]      # per epoch: batch means of the step metrics (+ kl_forget with a reference)
  run_s: float
  compile_s: float
  stopped_early: bool
  calibrated_step: int | None = None   # calibrated stop: steps taken by the returned params
  summary: dict = dataclasses.field(default_factory=dict)  # the method's summary of the run


def unlearn(fn: UnlearnFn, params, inputs: Inputs, hparams: dict, *, key, tol: float = 0.0,
            mesh=None, progress: bool = True) -> UnlearnResult:
  """Runs ``fn`` epoch by epoch from the host.

  Args:
    fn: from :func:`make_unlearn_fn` (built with the same ``mesh``).
    params: the original model's parameters (not modified).
    inputs: the arrays the method asked for.
    hparams: ``{"learning_rate": ..., **method hparams}`` (numbers or arrays).
    key: PRNG key (the same key gives the same result as ``fn(...)``).
    tol: stop after the first epoch whose mean KL to the reference over all of
      D_f is below ``tol`` (0 disables; needs ``inputs.ref_probs``).
    mesh: replicate state and data on its devices; batches are split over them.
    progress: show a progress bar.

  Returns:
    :class:`UnlearnResult` with compile time kept apart from run time.
  """
  if tol and inputs.ref_probs is None:
    raise ConfigError("unlearn.tol stops on the KL to the reference model, which this method "
                      "does not use; set --config.unlearn.tol=0")
  if inputs.ref_probs is not None and inputs.ref_probs.shape[0] != inputs.x_forget.shape[0]:
    raise ConfigError(f"ref_probs has {inputs.ref_probs.shape[0]} rows for "
                      f"{inputs.x_forget.shape[0]} forget examples")
  hparams = as_hparams(hparams)
  # Copy: the epoch donates its carry, and the caller keeps the original params.
  params = jax.tree.map(jnp.array, params)
  if mesh is not None:
    params, inputs, hparams = parallel.replicate((params, inputs, hparams), mesh)
  t0 = time.perf_counter()
  start = parallel.jit(fn.start, mesh).lower(params, inputs, key, hparams).compile()
  carry = start(params, inputs, key, hparams)
  run_epoch = parallel.jit(fn.epoch, mesh, donate_argnums=(0,))
  run_epoch = run_epoch.lower(carry, inputs, hparams, jnp.int32(0)).compile()
  finish = parallel.jit(fn.finish, mesh).lower(carry, inputs, hparams).compile()
  summarize = None
  if fn.summary is not None:
    summarize = parallel.jit(fn.summary, mesh).lower(carry, inputs, hparams).compile()
  forget_kl = None
  if inputs.ref_probs is not None:
    forget_kl = parallel.jit(lambda p, x, q: base.kl_divergence(q, fn.apply_fn(p, x)), mesh)
    forget_kl = forget_kl.lower(carry[0].params, inputs.x_forget, inputs.ref_probs).compile()
  compile_s = time.perf_counter() - t0

  bar = None
  if progress and jax.process_index() == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=fn.epochs, desc="   unlearn", unit="epoch")
  history, run_s, stopped = [], 0.0, False
  for e in range(fn.epochs):
    t0 = time.perf_counter()
    carry, metrics = run_epoch(carry, inputs, hparams, jnp.int32(e))
    metrics = jax.device_get(metrics)
    record = {"epoch": e + 1, **{k: float(np.mean(v)) for k, v in metrics.items()}}
    if forget_kl is not None:
      record["kl_forget"] = float(forget_kl(carry[0].params, inputs.x_forget, inputs.ref_probs))
    run_s += time.perf_counter() - t0
    losses = np.asarray(metrics["loss"])
    if not np.all(np.isfinite(losses)) or not np.isfinite(record.get("kl_forget", 0.0)):
      bad = int(np.flatnonzero(~np.isfinite(losses))[0]) if not np.all(np.isfinite(losses)) else 0
      raise NonFiniteError(
          f"stage 'unlearn': loss became non-finite at epoch {e + 1}, step "
          f"{e * losses.shape[0] + bad + 1}; lower unlearn.learning_rate")
    history.append(record)
    if bar is not None:
      bar.update(1)
      if "kl_forget" in record:
        bar.set_postfix(kl_forget=f"{record['kl_forget']:.4f}")
    if tol and record["kl_forget"] < tol:
      stopped = True
      break
    if fn.stop == "calibrated" and bool(carry[2].crossed) and e + 1 < fn.epochs:
      stopped = True     # D_f already looks unseen: later steps cannot change the result
      break
  if bar is not None:
    bar.close()
  t0 = time.perf_counter()
  params = jax.block_until_ready(finish(carry, inputs, hparams))
  run_s += time.perf_counter() - t0
  step = int(carry[2].best_step) if fn.stop == "calibrated" else None
  # A description of the run, not part of it: not timed.
  summary = {} if summarize is None else {
      k: float(v) for k, v in jax.device_get(summarize(carry, inputs, hparams)).items()}
  return UnlearnResult(params=params, history=history, run_s=run_s,
                       compile_s=compile_s, stopped_early=stopped, calibrated_step=step,
                       summary=summary)
