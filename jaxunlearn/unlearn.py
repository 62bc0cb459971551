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

The run's update rule is composed the way optax chains wrappers: the
method's rule, under :func:`running_batch_stats` with ``bn_mode="train"``,
under the stop rule (``stop``: ``epochs``, ``kl_tol`` or ``calibrated``,
:mod:`jaxunlearn.stop`). Each wrapper's state nests the inner one; the pure
run applies the composed rule, and the host driver stops early once its
``finished`` says no later step can change the result.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import models, parallel, stop as stop_lib, train as train_lib
from jaxunlearn.errors import ConfigError, NonFiniteError
from jaxunlearn.methods import base, erase
from jaxunlearn.methods.base import Batch, Inputs

__all__ = ["make_unlearn_fn", "unlearn", "UnlearnResult", "UnlearnFn", "RunState", "FlaxModel",
           "BN_MODES", "BatchStatsState", "running_batch_stats", "run_length", "default_hparams",
           "as_hparams", "with_temperature", "scale_output", "has_own_temperature", "output_layer",
           "GENERIC_TEMPERATURE"]

# fold_in tag of the method's own key (epochs use fold_in(key, epoch)).
_METHOD_KEY_TAG = 0x6D657468


class RunState(NamedTuple):
  """The carry of a run: the composed update rule's state and the run's key."""
  rule: Any
  key: jax.Array


class FlaxModel(NamedTuple):
  """The flax module behind ``apply_fn``, for what a bare apply function cannot give: fresh
  models with their own batch statistics, and ``bn_mode="train"``."""
  model: Any
  input_shape: tuple
  batch_stats: Any            # the original's running statistics ({} without batch norm)


BN_MODES = ("eval", "train")


class BatchStatsState(NamedTuple):
  inner: Any                # the wrapped rule's state
  batch_stats: Any          # the running batch statistics

  @property
  def params(self):
    return {"params": self.inner.params, "batch_stats": self.batch_stats}


GENERIC_TEMPERATURE = "output_temperature"


def has_own_temperature(method) -> bool:
  """Whether ``method`` scales its output itself (its class names the hyperparameter in
  ``output_scale``, as ``importance_retrain`` and ``retrain_short`` do with
  ``temperature``): then the generic wrapper is off."""
  return bool(getattr(type(method), "output_scale", ""))


def output_layer(params) -> str | None:
  """The name of the output layer the temperature scales (the last top-level ``Dense``)."""
  dense = erase.top_level_layers(params)["Dense"]
  return dense[-1] if dense else None


def with_temperature(inner: base.UpdateRule, temperature) -> base.UpdateRule:
  """Any method's rule with its result's logits times ``temperature`` (``unlearn.output_temperature``).

  The wrapper changes nothing but ``finish``: the parameters the inner rule
  returns get their output layer (the last top-level ``Dense``, kernel and
  bias) times ``temperature``, so the model's logits are scaled by it; at 1 the
  result is the inner rule's, bit for bit. ``temperature`` may be a traced
  value (a tuning grid is a ``vmap`` over it). A model without a top-level
  ``Dense`` output layer is returned unscaled; the plan refuses a temperature
  other than 1 on such a model (:func:`jaxunlearn.plan.abstract_check`).
  """
  inner = base.with_defaults(inner)

  def finish(state):
    return scale_output(inner.finish(state), temperature)

  return inner._replace(finish=finish)


def scale_output(params, temperature):
  """``params`` (or ``{"params", "batch_stats"}``, or a stack of either) with the output
  layer times ``temperature``; unchanged where the model has no top-level ``Dense``."""
  if isinstance(params, dict) and set(params) == {"params", "batch_stats"}:
    return {**params, "params": scale_output(params["params"], temperature)}
  last = output_layer(params)
  if last is None:
    return params
  return type(params)({k: (jax.tree.map(lambda a: a * temperature, v) if k == last else v)
                       for k, v in params.items()})


def running_batch_stats(inner: base.UpdateRule, update_stats: Callable) -> base.UpdateRule:
  """``bn_mode="train"``: a rule over ``{"params", "batch_stats"}`` from a rule over params.

  After every step of ``inner`` the running statistics are updated once on
  the step's forget batch and once on its remain batch (those present), with
  the step's new parameters, as a PyTorch loop in train mode updates them.

  Args:
    inner: the rule to wrap (its forward passes normalise with their batch's statistics).
    update_stats: ``update_stats(params, batch_stats, x) -> batch_stats``.

  Returns:
    A rule whose ``init`` takes ``{"params", "batch_stats"}``, whose state's
    ``params`` and whose ``finish`` give them.
  """
  inner = base.with_defaults(inner)

  def init(variables):
    return BatchStatsState(inner.init(variables["params"]), variables["batch_stats"])

  def step(state: BatchStatsState, batch: Batch):
    inner_state, metrics = inner.step(state.inner, batch)
    batch_stats = state.batch_stats
    for x in (batch.x_forget, batch.x_remain):
      if x is not None:
        batch_stats = update_stats(inner_state.params, batch_stats, x)
    return BatchStatsState(inner_state, batch_stats), metrics

  def epoch_end(state: BatchStatsState):
    return state._replace(inner=inner.epoch_end(state.inner))

  def finish(state: BatchStatsState):
    return {"params": inner.finish(state.inner), "batch_stats": state.batch_stats}

  # No ``finished``: every step moves the statistics, so the result is final only at the end.
  return base.UpdateRule(init, step, epoch_end, finish,
                         summary=lambda state: inner.summary(state.inner))


@dataclasses.dataclass(frozen=True)
class UnlearnFn:
  """``run(params, inputs, key, hparams) -> (params, metrics)``, and its pieces.

  ``metrics`` holds per-step arrays of shape ``(epochs, steps_per_epoch)``
  and, for methods with a reference model, ``kl_forget`` of shape
  ``(epochs,)`` (the mean KL to the reference on D_f at each epoch's end).
  With ``bn_train`` (``bn_mode="train"``) the run returns ``{"params",
  "batch_stats"}`` instead of the parameters alone.
  The pieces (``start``, ``epoch``, ``finish``) are what the host driver
  jits one at a time; ``run`` is exactly ``start``, a scan of ``epoch`` and
  ``finish``. Each piece builds the run's composed update rule and applies
  one of its hooks to ``carry.rule``.
  """
  method: base.Method
  apply_fn: Callable
  stop: str                           # the stop rule's name (:data:`jaxunlearn.stop.RULES`)
  start: Callable
  epoch: Callable
  finish: Callable
  epochs: int
  steps_per_epoch: int
  summary: Callable | None = None    # summary(carry, inputs, hparams) -> {name: scalar}
  bn_train: bool = False
  # An epoch in pieces, for a host loop over steps (``epoch`` is exactly these, scanned):
  rows: Callable | None = None       # rows(carry, e) -> (forget rows, remain rows) [steps, batch]
  step: Callable | None = None       # step(carry, inputs, hparams, e, i, fr, rr) -> (carry, metrics)
  epoch_end: Callable | None = None  # epoch_end(carry, inputs, hparams) -> (carry, metrics)
  # finished(carry, inputs, hparams) -> bool: no later step can change the result
  finished: Callable | None = None

  def __call__(self, params, inputs: Inputs, key, hparams):
    carry = self.start(params, inputs, key, hparams)
    carry, metrics = jax.lax.scan(lambda c, e: self.epoch(c, inputs, hparams, e), carry,
                                  jnp.arange(self.epochs))
    return self.finish(carry, inputs, hparams), metrics


def make_unlearn_fn(method, apply_fn: Callable, *, epochs: int, n_forget: int, n_remain: int,
                    forget_batch_size: int, remain_batch_size: int, optimizer_cfg=None,
                    init_fn: Callable | None = None, mesh=None, stop: str = "epochs",
                    calibrate_every: int = 1, tol: float = 0.0,
                    flax_model: FlaxModel | None = None, bn_mode: str = "eval",
                    steps: int = 0) -> UnlearnFn:
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
    flax_model: the module behind ``apply_fn`` (:class:`FlaxModel`): gives
      methods fresh models with their own batch statistics
      (``MethodEnv.init_variables_fn``, ``apply_with_stats``) and allows
      ``bn_mode="train"``.
    bn_mode: ``"eval"``: batch statistics stay the original's and only
      weights move. ``"train"`` (a model with batch norm): every forward pass
      a method makes normalises with its batch's own statistics (as a PyTorch
      reference in train mode), and after every step the running statistics
      are updated once on the step's forget batch and once on its remain
      batch (those the method reads); stop rules, ``kl_forget`` and the
      result use the running statistics, and the run returns ``{"params",
      "batch_stats"}``.
    mesh: split every batch over the mesh's ``'data'`` axis (host driver).
    stop: ``"epochs"``, ``"kl_tol"`` or ``"calibrated"`` (:mod:`jaxunlearn.stop`).
    calibrate_every: steps between two calibration checks.
    tol: the KL tolerance of ``stop="kl_tol"``.
    steps: for methods with ``epoch_over="steps"`` only: the run is one epoch
      of exactly ``steps`` steps (``epochs`` is then unused); 0: ``epochs``
      passes over D_r.

  Returns:
    An :class:`UnlearnFn`; call it as ``run(params, inputs, key, hparams)``.
  """
  method = base.as_method(method)
  if n_forget < 1:
    raise ConfigError("the forget set is empty; nothing to unlearn")
  if n_remain < 1:
    raise ConfigError("the remain set is empty; unlearning needs remaining data")
  fbs, rbs = min(int(forget_batch_size), n_forget), int(remain_batch_size)
  steps, epochs = run_length(method, epochs, steps, n_forget, n_remain, fbs, rbs)
  total = epochs * steps
  if bn_mode not in BN_MODES:
    raise ConfigError(f"unknown bn_mode {bn_mode!r}; use one of {BN_MODES}")
  fm = flax_model
  bn = fm if bn_mode == "train" and fm is not None and jax.tree.leaves(fm.batch_stats) else None
  if bn_mode == "train" and fm is None:
    raise ConfigError("bn_mode='train' needs the flax model (flax_model=FlaxModel(...))")
  init_variables_fn = apply_with_stats = None
  if fm is not None:
    def init_variables_fn(key):
      return models.init_variables(fm.model, key, fm.input_shape)

    def apply_with_stats(params, batch_stats, x):
      return train_lib.apply_model(fm.model, params, batch_stats, x, train=False)[0]
    if init_fn is None:
      init_fn = lambda key: init_variables_fn(key)[0]  # noqa: E731
  if bn is None:
    method_apply, judge_apply = apply_fn, apply_fn
  else:
    def method_apply(params, x):   # the batch's own statistics: the running ones are unused
      return train_lib.apply_model(bn.model, params, bn.batch_stats, x, train=True)[0]

    def judge_apply(variables, x):
      return train_lib.apply_model(bn.model, variables["params"], variables["batch_stats"], x,
                                   train=False)[0]

    def update_stats(params, batch_stats, x):
      return train_lib.apply_model(bn.model, params, batch_stats, x, train=True)[1]

  wrap_stop = stop_lib.make(stop, judge_apply, tol=tol, every=calibrate_every,
                            total_steps=total)
  opt_cfg = optimizer_cfg if optimizer_cfg is not None else {"optimizer": "sgd"}

  def build(inputs, key, hparams) -> base.UpdateRule:
    """The run's rule: the method's, under the output temperature's wrapper, the batch
    statistics' wrapper and the stop rule."""
    optimizer = train_lib.make_optimizer(opt_cfg, total, learning_rate=hparams["learning_rate"])
    env = base.MethodEnv(method_apply, init_fn, optimizer, hparams, inputs,
                         jax.random.fold_in(key, _METHOD_KEY_TAG), epochs, steps,
                         init_variables_fn, apply_with_stats,
                         {} if fm is None else fm.batch_stats,
                         "train" if bn is not None else "eval")
    rule = method.make(env)
    if GENERIC_TEMPERATURE in hparams and not has_own_temperature(method):
      rule = with_temperature(rule, hparams[GENERIC_TEMPERATURE])
    if bn is not None:
      rule = running_batch_stats(rule, update_stats)
    return base.with_defaults(wrap_stop(rule, inputs))

  def start(params, inputs, key, hparams):
    # The model the rule starts from, in the form it returns: variables in train mode.
    model = params if bn is None else {"params": params, "batch_stats": bn.batch_stats}
    return RunState(build(inputs, key, hparams).init(model), key)

  def rows(carry: RunState, e):
    """Epoch ``e``'s forget and remain rows, ``[steps, batch]`` each."""
    fkey, rkey = jax.random.split(jax.random.fold_in(carry.key, e))
    if method.epoch_over == "forget":
      f_rows = base.cycled_rows(fkey, n_forget, fbs, steps)
      r_rows = jax.vmap(lambda i: jax.random.randint(
          jax.random.fold_in(rkey, i), (rbs,), 0, n_remain))(jnp.arange(steps))
    else:
      r_rows = base.cycled_rows(rkey, n_remain, rbs, steps)
      f_rows = base.cycled_rows(fkey, n_forget, fbs, steps)
    return f_rows, r_rows

  def step(carry: RunState, inputs, hparams, e, i, fr, rr):
    """Step ``i`` of epoch ``e`` on forget rows ``fr`` and remain rows ``rr``."""
    rule = build(inputs, carry.key, hparams)
    fields = {f: getattr(inputs, f)[fr] for f in base.FORGET_ROWS
              if getattr(inputs, f) is not None}
    fields.update({f: getattr(inputs, f)[rr] for f in base.REMAIN_ROWS
                   if getattr(inputs, f) is not None})
    if method.reads_forget_index:   # a per-example state of the method's (e.g. run targets)
      fields["forget_index"], fields["remain_index"] = fr, rr
    if mesh is not None:
      fields = {k: parallel.shard_batch(v, mesh) for k, v in fields.items()}
    progress = (e * steps + i).astype(jnp.float32) / total
    state, metrics = rule.step(carry.rule, Batch(**fields, epoch=e.astype(jnp.int32),
                                                 progress=progress))
    return RunState(state, carry.key), metrics

  def epoch_end(carry: RunState, inputs, hparams):
    """After an epoch's steps: the rule's epoch end, and ``kl_forget``."""
    state = build(inputs, carry.key, hparams).epoch_end(carry.rule)
    metrics = {}
    if inputs.ref_probs is not None:
      metrics["kl_forget"] = base.kl_divergence(inputs.ref_probs,
                                                judge_apply(state.params, inputs.x_forget))
    return RunState(state, carry.key), metrics

  def epoch(carry: RunState, inputs, hparams, e):
    f_rows, r_rows = rows(carry, e)

    def body(c, inp):
      i, fr, rr = inp
      return step(c, inputs, hparams, e, i, fr, rr)

    carry, metrics = jax.lax.scan(body, carry, (jnp.arange(steps), f_rows, r_rows))
    carry, end_metrics = epoch_end(carry, inputs, hparams)
    return carry, {**metrics, **end_metrics}

  def finish(carry: RunState, inputs, hparams):
    return build(inputs, carry.key, hparams).finish(carry.rule)

  def summary(carry: RunState, inputs, hparams):
    return build(inputs, carry.key, hparams).summary(carry.rule)

  def finished(carry: RunState, inputs, hparams):
    return build(inputs, carry.key, hparams).finished(carry.rule)

  return UnlearnFn(method, apply_fn, stop, start, epoch, finish, int(epochs), steps, summary,
                   bn_train=bn is not None, rows=rows, step=step, epoch_end=epoch_end,
                   finished=finished)


def run_length(method, epochs: int, steps: int, n_forget: int, n_remain: int,
               forget_batch_size: int, remain_batch_size: int) -> tuple[int, int]:
  """``(steps per epoch, epochs)`` of a run, as :func:`make_unlearn_fn` takes them.

  ``steps > 0`` (methods with ``epoch_over="steps"`` only) is one epoch of
  ``steps`` steps; otherwise ``epochs`` epochs of :func:`base.steps_per_epoch`.
  """
  method = base.as_method(method)
  if int(steps) < 0:
    raise ConfigError(f"unlearn.steps must be >= 0, got {steps}")
  if steps and method.epoch_over != "steps":
    raise ConfigError(f"unlearn.steps={steps} applies to methods that count their run in steps "
                      f"(epoch_over='steps'); {type(method).__name__} counts epochs over "
                      f"{method.epoch_over!r}: set unlearn.epochs instead and unlearn.steps=0")
  batch = min(int(forget_batch_size), n_forget) + int(remain_batch_size)
  if steps:
    # An epoch holds its row indices ([steps, batch], int32) and per-step metrics at once.
    if int(steps) * batch > MAX_EPOCH_ROWS:
      raise ConfigError(
          f"unlearn.steps={steps} makes one epoch of {steps} steps x {batch} rows, over the "
          f"{MAX_EPOCH_ROWS} row indices an epoch can hold (int32); set "
          f"unlearn.steps<={MAX_EPOCH_ROWS // batch} (unlearn.retrain_fraction: a smaller "
          "fraction)")
    return int(steps), 1
  per_epoch = base.steps_per_epoch(method.epoch_over, n_forget, n_remain,
                                   min(int(forget_batch_size), n_forget),
                                   int(remain_batch_size))
  if int(epochs) * per_epoch > MAX_EPOCH_ROWS:
    raise ConfigError(f"unlearn.epochs={epochs} makes {int(epochs) * per_epoch} steps, over the "
                      f"{MAX_EPOCH_ROWS} a run can count (int32); set "
                      f"unlearn.epochs<={MAX_EPOCH_ROWS // per_epoch}")
  return per_epoch, int(epochs)


# Row indices and step counters are int32: an epoch's rows and a run's steps stay below this.
MAX_EPOCH_ROWS = 2**31 - 1


def default_hparams(method, learning_rate: float, **overrides) -> dict:
  """``{"learning_rate": ..., **the method's defaults}`` with ``overrides``, as float32 arrays."""
  method = base.as_method(method)
  hp = {**method.hparams, **overrides}
  method.validate(hp)
  return as_hparams({"learning_rate": learning_rate, **hp})


def as_hparams(hp: dict) -> dict:
  return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}


@dataclasses.dataclass
class UnlearnResult:
  params: Any
  history: list[dict]      # per epoch: batch means of the step metrics (+ kl_forget, reference)
  run_s: float
  compile_s: float
  stopped_early: bool
  calibrated_step: int | None = None   # calibrated stop: steps taken by the returned params
  summary: dict = dataclasses.field(default_factory=dict)  # the method's summary of the run
  batch_stats: Any = None              # bn_mode="train": the updated batch statistics


def unlearn(fn: UnlearnFn, params, inputs: Inputs, hparams: dict, *, key, mesh=None,
            progress: bool = True, driver: str = "auto") -> UnlearnResult:
  """Runs ``fn`` epoch by epoch from the host.

  The result equals ``fn(params, inputs, key, hparams)``; the driver adds a
  progress bar, timing, non-finite checks and an early stop once ``fn``'s
  stop rule says no later epoch can change the result.

  Args:
    fn: from :func:`make_unlearn_fn` (built with the same ``mesh``).
    params: the original model's parameters (not modified).
    inputs: the arrays the method asked for.
    hparams: ``{"learning_rate": ..., **method hparams}`` (numbers or arrays).
    key: PRNG key (the same key gives the same result as ``fn(...)``).
    mesh: replicate state and data on its devices; batches are split over them.
    progress: show a progress bar.
    driver: ``"scan"`` (an epoch is one compiled ``lax.scan``), ``"loop"`` (a
      host loop over the compiled step, as training's ``loop`` driver; faster
      on a small CPU) or ``"auto"`` (training's choice:
      :func:`jaxunlearn.train.resolve_driver`). Both run the same step.

  Returns:
    :class:`UnlearnResult`. Every device computation of the run is run time
    (its start, each step, its finish); compilation, done first for every
    piece, is timed apart.
  """
  if inputs.ref_probs is not None and inputs.ref_probs.shape[0] != inputs.x_forget.shape[0]:
    raise ConfigError(f"ref_probs has {inputs.ref_probs.shape[0]} rows for "
                      f"{inputs.x_forget.shape[0]} forget examples")
  hparams = as_hparams(hparams)
  # Copy: the epoch donates its carry, and the caller keeps the original params.
  params = jax.tree.map(jnp.array, params)
  if mesh is not None:
    params, inputs, hparams = parallel.replicate((params, inputs, hparams), mesh)
  driver = train_lib.resolve_driver(driver, mesh)
  t0 = time.perf_counter()
  start = parallel.jit(fn.start, mesh).lower(params, inputs, key, hparams).compile()
  carry_shape = jax.eval_shape(fn.start, params, inputs, key, hparams)
  e0 = jnp.int32(0)
  if driver == "scan":
    run_epoch = parallel.jit(fn.epoch, mesh, donate_argnums=(0,))
    run_epoch = run_epoch.lower(carry_shape, inputs, hparams, e0).compile()
  else:
    rows_fn = parallel.jit(fn.rows, mesh).lower(carry_shape, e0).compile()
    fr_shape, rr_shape = jax.eval_shape(fn.rows, carry_shape, e0)
    step_fn = parallel.jit(fn.step, mesh, donate_argnums=(0,)).lower(
        carry_shape, inputs, hparams, e0, e0,
        jax.ShapeDtypeStruct(fr_shape.shape[1:], fr_shape.dtype),
        jax.ShapeDtypeStruct(rr_shape.shape[1:], rr_shape.dtype)).compile()
    end_fn = parallel.jit(fn.epoch_end, mesh, donate_argnums=(0,)).lower(
        carry_shape, inputs, hparams).compile()

    def run_epoch(carry, inputs, hparams, e):
      # Rows and metrics go through the host once an epoch; no sync between steps.
      f_rows, r_rows = (np.asarray(a) for a in rows_fn(carry, e))
      per_step = []
      for i in range(fn.steps_per_epoch):
        carry, m = step_fn(carry, inputs, hparams, e, np.int32(i), f_rows[i], r_rows[i])
        per_step.append(m)
      carry, end = end_fn(carry, inputs, hparams)
      metrics = jax.tree.map(lambda *a: np.stack(a), *jax.device_get(per_step))
      return carry, {**metrics, **end}
  finish = parallel.jit(fn.finish, mesh).lower(carry_shape, inputs, hparams).compile()
  finished = parallel.jit(fn.finished, mesh).lower(carry_shape, inputs, hparams).compile()
  summarize = None
  if fn.summary is not None:
    summarize = parallel.jit(fn.summary, mesh).lower(carry_shape, inputs, hparams).compile()
  compile_s = time.perf_counter() - t0

  bar = None
  if progress and jax.process_index() == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=fn.epochs, desc="   unlearn", unit="epoch")
  history, stopped = [], False
  t0 = time.perf_counter()     # run time: from the start to the finished parameters
  carry = start(params, inputs, key, hparams)
  for e in range(fn.epochs):
    carry, metrics = run_epoch(carry, inputs, hparams, jnp.int32(e))
    metrics = jax.device_get(metrics)
    record = {"epoch": e + 1, **{k: float(np.mean(v)) for k, v in metrics.items()}}
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
    if e + 1 < fn.epochs and bool(finished(carry, inputs, hparams)):
      stopped = True     # later epochs cannot change the result
      break
  params = jax.block_until_ready(finish(carry, inputs, hparams))
  run_s = time.perf_counter() - t0
  if bar is not None:
    bar.close()
  batch_stats = None
  if fn.bn_train:
    params, batch_stats = params["params"], params["batch_stats"]
  # A description of the run, not part of it: not timed.
  summary = {} if summarize is None else jax.device_get(summarize(carry, inputs, hparams))
  # The calibrated stop's record has a field of its own; the rest is the method's.
  calibrated_step = summary.pop("calibrated_step", None)
  return UnlearnResult(params=params, history=history, run_s=run_s,
                       compile_s=compile_s, stopped_early=stopped,
                       calibrated_step=None if calibrated_step is None else int(calibrated_step),
                       summary={k: float(v) for k, v in summary.items()},
                       batch_stats=batch_stats)
