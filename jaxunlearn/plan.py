"""An unlearning plan: one method at one setting, validated, and everything a run of it needs.

Every place that runs a method (``jaxunlearn run``, the audit's populations,
tuning, comparisons) builds its run from an :class:`UnlearnPlan`:

* :func:`make_plan` checks an ``unlearn`` block as strictly wherever it comes
  from (the config's own block, an ``audit.methods`` entry, a comparison's row);
* :attr:`UnlearnPlan.needs` are the input arrays the run needs (the method's
  and the stop rule's), and :meth:`UnlearnPlan.build_inputs` builds exactly
  those, from host arrays or inside a traced population member alike;
* :meth:`UnlearnPlan.make_fn` is the pure run (:func:`unlearn.make_unlearn_fn`)
  with the plan's optimiser, stop rule, batch sizes and ``init_fn``;
* :meth:`UnlearnPlan.run_shape` is the sizes a run's cost depends on, with the
  steps :meth:`UnlearnPlan.make_fn`'s run takes (:mod:`jaxunlearn.cost`);
* :meth:`UnlearnPlan.spec` is everything the result depends on (hashed into
  stage and population names), the method's implementation included where it is
  not the package's own (a replaced or outside method: :attr:`UnlearnPlan.implementation`).

:func:`parse_spec` reads ``"[label=]method[:field=value,...]"`` entries (the
``audit.methods`` syntax) into labelled ``unlearn`` blocks.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import re
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import config as config_lib, cost as cost_lib, methods, models, registry
from jaxunlearn import stop as stop_lib
from jaxunlearn import unlearn as unlearn_lib
from jaxunlearn.errors import ConfigError

__all__ = ["UnlearnPlan", "make_plan", "parse_spec", "abstract_check", "retrain_steps",
           "heldout_rows", "entry_hints", "check_model_fit",
           "RUN_FIELDS"]

# Fields of the unlearn block a run depends on (beside the method's own block).
RUN_FIELDS = ("method", "epochs", "forget_batch_size", "remain_batch_size", "optimizer",
              "learning_rate", "momentum", "weight_decay", "schedule", "stop", "tol",
              "calibrate_every", "bn_mode")


@dataclasses.dataclass(frozen=True)
class UnlearnPlan:
  """One method at one setting (see the module docstring).

  Attributes:
    label: the plan's name in results (``unlearned`` for ``run``; an
      ``audit.methods`` label; a comparison's row).
    block: the ``unlearn`` block it was made from (frozen).
    method: the method, with its options.
    hparams: ``{"learning_rate": ..., **the method's hyperparameters}`` (floats).
    stop: the stop rule's name.
    needs: the input arrays a run needs.
    retrain_schedule: ``(train.epochs, train.batch_size)``, retraining's
      schedule, with ``unlearn.retrain_fraction`` set (else None): each run's
      steps derive from it and the run's own |D_r| (:func:`retrain_steps`).
    implementation: None for the package's own method under its name; else
      what tells the registered class from any other (its module and qualified
      name, and outside the package its declared ``version`` or source hash).
  """
  label: str
  block: ml_collections.FrozenConfigDict
  method: methods.Method
  hparams: Mapping[str, float]
  stop: str
  needs: frozenset
  retrain_schedule: tuple[int, int] | None = None
  implementation: Mapping | None = None

  @property
  def name(self) -> str:
    return self.block.method

  @property
  def needs_reference(self) -> bool:
    return "ref_probs" in self.needs

  @property
  def needs_teacher(self) -> bool:
    """Per-example targets on D_f from an attribution store (:func:`jaxunlearn.attribution.teacher`)."""
    return "teacher_target" in self.needs

  @property
  def needs_retain_teacher(self) -> bool:
    """Per-example targets on D_r too (:func:`jaxunlearn.attribution.retain_teacher`)."""
    return "teacher_remain_target" in self.needs

  @property
  def needs_heldout(self) -> bool:
    return bool(self.needs & {"x_heldout", "y_heldout"})

  def spec(self) -> dict:
    """JSON-able: everything a run of this plan depends on (beside its data and key)."""
    u = self.block
    out = {k: u[k] for k in RUN_FIELDS if k in u}
    out["stop"] = self.stop
    if u.get("steps", 0):          # only when set: unchanged keys for every other run
      out["steps"] = int(u.steps)
      out.pop("epochs", None)
    if u.get("retrain_fraction", 0.0):      # the same: only when set
      out["retrain_fraction"] = float(u.retrain_fraction)
      out["retrain_schedule"] = list(self.retrain_schedule)
      out.pop("epochs", None)
    if self.stop != "calibrated":
      out.pop("calibrate_every", None)
    out["hparams"] = {k: v for k, v in self.hparams.items() if k != "learning_rate"}
    if not unlearn_lib.has_own_temperature(self.method) and \
        out["hparams"].get(unlearn_lib.GENERIC_TEMPERATURE) == 1.0:
      del out["hparams"][unlearn_lib.GENERIC_TEMPERATURE]   # unchanged keys at no scaling
    out["options"] = {k: v for k, v in self.method.opts.items()      # unchanged keys for runs
                      if k not in self.method.keyed_when_set        # with a newer option unset
                      or v != self.method.options[k][0]}
    if self.implementation is not None:     # only then: the built-ins' keys stay as they were
      out["implementation"] = dict(self.implementation)
    return out

  def hparam_arrays(self) -> dict:
    """The hyperparameters as float32 arrays (a grid of them is a ``jax.vmap``)."""
    return unlearn_lib.as_hparams(self.hparams)

  def shape_args(self, n_remain: int) -> dict:
    """The arguments of :func:`jaxunlearn.unlearn.make_unlearn_fn` that fix how many steps a
    run on a D_r of ``n_remain`` rows takes and on how many rows (:meth:`make_fn` and
    :meth:`run_shape` both pass them)."""
    u = self.block
    steps = int(u.get("steps", 0))
    if u.get("retrain_fraction", 0.0):
      steps = retrain_steps(float(u.retrain_fraction), n_remain, *self.retrain_schedule,
                            self.method.step_cost(int(u.forget_batch_size),
                                                  int(u.remain_batch_size)))
    return {"epochs": int(u.epochs), "forget_batch_size": int(u.forget_batch_size),
            "remain_batch_size": int(u.remain_batch_size), "steps": steps}

  def run_shape(self, n_forget: int, n_remain: int, n_heldout: int = 0) -> cost_lib.RunShape:
    """The sizes of a run of this plan on D_f and D_r of these sizes, for its cost
    (:func:`jaxunlearn.cost.schedule_shape`: the numbers :meth:`make_fn`'s run uses)."""
    return cost_lib.schedule_shape(self.method, n_forget=n_forget, n_remain=n_remain,
                                   n_heldout=n_heldout, **self.shape_args(n_remain))

  def make_fn(self, apply_fn: Callable, *, model, input_shape, batch_stats, n_forget: int,
              n_remain: int, mesh=None) -> unlearn_lib.UnlearnFn:
    """The pure run of this plan (:func:`jaxunlearn.unlearn.make_unlearn_fn`).

    ``batch_stats`` are the original's; with ``bn_mode="train"`` (and batch
    norm in the model) the run returns ``{"params", "batch_stats"}``.
    """
    u = self.block
    return unlearn_lib.make_unlearn_fn(
        self.method, apply_fn, n_forget=int(n_forget), n_remain=int(n_remain),
        **self.shape_args(n_remain), optimizer_cfg=u,
        init_fn=models.init_params_fn(model, input_shape), mesh=mesh, stop=self.stop,
        calibrate_every=int(u.calibrate_every), tol=float(u.tol),
        flax_model=unlearn_lib.FlaxModel(model, tuple(input_shape), batch_stats),
        bn_mode=u.get("bn_mode", "eval"))

  def build_inputs(self, *, x_forget, y_forget, x_remain, y_remain, heldout=(),
                   original_logits: Callable | None = None,
                   reference_probs: Callable | None = None,
                   teacher=None) -> methods.Inputs:
    """The input arrays the run needs, and only those.

    Works on host arrays and inside a traced population member alike.

    Args:
      x_forget, y_forget, x_remain, y_remain: D_f and D_r as trained on.
      heldout: ``(x, y)`` held-out examples of D_f's classes, or ``()``.
      original_logits: ``original_logits(x) -> logits`` of the original model.
      reference_probs: ``reference_probs(x) -> softmax`` of the reference model.
      teacher: for methods that read a teacher, ``{input field: array}``
        (:func:`jaxunlearn.attribution.request_teacher`: ``teacher_target [n_f, C]``,
        ``teacher_residuals [K, n_f, C]``, and the others of ``methods.TEACHER_INPUTS`` the
        plan needs); else ``None``.
    """
    want = self.needs
    fields = {"x_forget": x_forget, "y_forget": y_forget, "x_remain": x_remain,
              "y_remain": y_remain}
    fields = {k: v for k, v in fields.items() if k in want}
    if "ref_probs" in want:
      if reference_probs is None:
        raise ConfigError(f"method {self.name!r} needs a reference model")
      fields["ref_probs"] = reference_probs(x_forget)
    if "orig_logits_forget" in want:
      fields["orig_logits_forget"] = original_logits(x_forget)
    if "orig_logits_remain" in want:
      fields["orig_logits_remain"] = original_logits(x_remain)
    if self.needs_heldout:
      if not heldout:
        raise ConfigError(f"{self.label}: method {self.name!r} needs held-out examples of "
                          "D_f's classes; keep some out of training with "
                          "--config.holdout.size=0.05 (a fraction or a count)")
      fields["x_heldout"], fields["y_heldout"] = heldout
    if self.needs_teacher:
      teacher = dict(teacher or {})
      missing = [f for f in methods.TEACHER_INPUTS if f in want and f not in teacher]
      if missing:
        raise ConfigError(f"{self.label}: method {self.name!r} needs per-example targets from "
                          "an attribution store (attribution.request_teacher); the caller gave "
                          f"no {', '.join(missing)}")
      fields.update({f: teacher[f] for f in methods.TEACHER_INPUTS if f in want})
    return methods.Inputs(**{k: jnp.asarray(v) for k, v in fields.items()})


def retrain_steps(fraction: float, n_remain: int, train_epochs: int, train_batch_size: int,
                  remain_batch_size: float) -> int:
  """Steps of ``remain_batch_size`` rows that process ``fraction`` of retraining's examples.

  ``remain_batch_size`` is what one step costs in examples (:meth:`Method.step_cost`: the
  remain rows, or e.g. forget plus remain rows and forward passes for ``matching``).

  Retraining on ``n_remain`` rows processes ``train_epochs * floor(n_remain / B) * B``
  examples (``B = min(train_batch_size, n_remain)``, :func:`jaxunlearn.cost.retrain_cost`);
  the run takes the nearest whole number of steps to ``fraction`` of that, at least 1. E.g.
  |D_r| = 3,700, 20 epochs at 64: retraining processes 72,960 examples, so ``fraction`` 0.1 at
  64 rows per step is 114 steps (7,296 examples), at 12 rows per step 608.
  """
  retrain = cost_lib.retrain_cost(n_remain, train_epochs, train_batch_size)
  per_step = float(remain_batch_size)
  if not per_step > 0:
    raise ConfigError(f"a step must cost a positive number of examples, got {per_step!r}")
  return max(1, int(round(fraction * retrain / per_step)))


def make_plan(label: str, block, *, where: str = "", train=None, fields: str = "") -> UnlearnPlan:
  """A validated plan of an ``unlearn`` block.

  Args:
    label: the plan's name.
    block: an ``unlearn`` block (the config's, or an ``audit.methods`` override of it).
    where: how to name the block in errors (``""``: the config's own
      ``unlearn`` block; e.g. ``"audit.methods entry 'paper=lightweight:lam=0.01'"``).
    train: the ``train`` block (retraining's ``epochs`` and ``batch_size``); needed
      when the block sets ``retrain_fraction``.
    fields: how fix hints name the block's fields (``""``: ``unlearn.<field>``, set with
      ``--config.unlearn.<field>``; e.g. ``"audit.methods[2]"``: ``audit.methods[2].lam``).

  Raises:
    ConfigError: naming the field and how to fix it.
  """
  try:
    return _make_plan(label, block, where=where, train=train)
  except ConfigError as e:
    if not fields:
      raise
    raise ConfigError(entry_hints(str(e), fields, str(block.get("method", "")))) from None


def entry_hints(message: str, fields: str, method: str = "") -> str:
  """``message`` with its hints at the config's ``unlearn`` block (``unlearn.lam``,
  ``--config.unlearn.lam=0.01``, ``unlearn.<method>.<hparam>``) pointing at ``fields``
  instead (``audit.methods[2].lam``): an entry's fields are set in the entry."""
  own = rf"(?:{re.escape(method)}\.)?" if method else ""
  return re.sub(rf"(?:--config\.)?\bunlearn\.{own}(?=\w)", f"{fields}.", message)


def _make_plan(label: str, block, *, where: str = "", train=None) -> UnlearnPlan:
  try:
    config_lib.check_unlearn_block(block, where)
    name = block.method
    method = methods.resolve_method(name, block)
    hp = methods.resolve_hparams(name, block)
    implementation = methods.implementation(name)
  except ConfigError as e:
    if where and not str(e).startswith(where):
      raise ConfigError(f"{where}: {e}") from None
    raise
  steps = int(block.get("steps", 0))
  if steps and method.epoch_over != "steps":
    field = f"{where}: steps" if where else "unlearn.steps"
    raise ConfigError(f"{field}={steps} applies to methods that count their run in steps "
                      f"(epoch_over='steps', e.g. importance_retrain); {name!r} counts epochs: "
                      "set epochs instead and steps=0")
  schedule = None
  fraction = float(block.get("retrain_fraction", 0.0))
  if fraction:
    field = f"{where}: retrain_fraction" if where else "unlearn.retrain_fraction"
    if method.epoch_over != "steps":
      raise ConfigError(f"{field}={fraction:g} applies to methods that count their run in "
                        f"steps (epoch_over='steps', e.g. retrain_short); {name!r} counts "
                        "epochs: set epochs instead and retrain_fraction=0")
    if steps:
      raise ConfigError(f"{field}={fraction:g} derives the run's steps, and steps={steps} sets "
                        "them too: set one of them and the other to 0")
    if train is None:
      raise ConfigError(f"{field}={fraction:g} derives the run's steps from retraining's "
                        "schedule: make the plan with the train block (make_plan(..., "
                        "train=cfg.train))")
    schedule = (int(train.epochs), int(train.batch_size))
  stop = stop_lib.resolve(block)
  needs = set(method.used_inputs())
  if stop == "calibrated":
    needs |= set(stop_lib.CALIBRATION_INPUTS)
  if stop == "kl_tol" and "ref_probs" not in needs:
    field = f"{where}: tol" if where else "unlearn.tol"
    raise ConfigError(f"{field} stops on the KL to a reference model, which method {name!r} "
                      "does not use; set tol=0 (--config.unlearn.tol=0)")
  temperature = float(block.get("output_temperature", 1.0))
  field = f"{where}: output_temperature" if where else "unlearn.output_temperature"
  if not (0.0 < temperature <= 100.0):
    raise ConfigError(f"{field}={temperature:g} must be in (0, 100]: the unlearned model's "
                      "logits are multiplied by it (1: unchanged)")
  if unlearn_lib.has_own_temperature(method):
    if temperature != 1.0:
      raise ConfigError(f"{field}={temperature:g}: method {name!r} scales its output with its "
                        f"own {method.output_scale}; set unlearn.{name}.{method.output_scale} instead "
                        "and leave unlearn.output_temperature at 1")
  else:
    hp = {**hp, unlearn_lib.GENERIC_TEMPERATURE: temperature}
  frozen = block if isinstance(block, ml_collections.FrozenConfigDict) else \
      ml_collections.FrozenConfigDict(block)
  return UnlearnPlan(label, frozen, method, {"learning_rate": float(block.learning_rate), **hp},
                     stop, frozenset(needs), schedule, implementation)


def parse_spec(spec: str, unlearn_block, *, reserved=()) -> tuple[str, ml_collections.ConfigDict]:
  """``"[label=]method[:field=value,...]"`` -> ``(label, unlearn block)``.

  Fields are those of the ``unlearn`` block (``lam``, ``epochs``,
  ``learning_rate``, ``forget_batch_size``, ...) or the method's own
  hyperparameters and options. ``method`` itself cannot be overridden.

  Raises:
    ConfigError: naming the entry, the field and how to fix it.
  """
  where = f"audit.methods entry {spec!r}"
  if not isinstance(spec, str):
    raise ConfigError(f"audit.methods entries must be strings like "
                      f"'paper=lightweight:lam=0.01', got {spec!r}")
  head, _, tail = spec.partition(":")
  label, _, name = head.rpartition("=")
  name, label = name.strip(), label.strip() or name.strip()
  if not label.isidentifier() or label in reserved or label.startswith("ulira"):
    raise ConfigError(f"{where} needs a label made of letters, digits and _ other than "
                      f"{tuple(reserved)}; e.g. 'paper=lightweight:lam=0.01'")
  try:
    cls = methods.get(name)
  except ConfigError:
    raise ConfigError(f"{where}: unknown method {name!r}; use one of {methods.names()} (or "
                      "register your own and name its module in config.plugins)") from None
  u = copy.deepcopy(unlearn_block)
  renamed = dict(cls.renamed)
  with u.unlocked():
    u.method = name
    own = {**cls.hparams, **{o: v[0] for o, v in cls.options.items()}}
    for item in filter(None, (t.strip() for t in tail.split(","))):
      field, eq, text = item.partition("=")
      field = renamed.get(field.strip(), field.strip())
      if not eq or not field:
        raise ConfigError(f"{where}: {item!r} is not field=value")
      try:
        value = ast.literal_eval(text.strip())
      except (ValueError, SyntaxError):
        try:
          value = float(text.strip())     # nan, inf: numbers, refused as not finite below
        except ValueError:
          value = text.strip()
      if field == "method":
        raise ConfigError(f"{where}: the method is named before ':'; write "
                          f"'label={value}:...' instead of method={value}")
      if field in own and field not in cls.shared_hparams:
        if name not in u:
          u[name] = ml_collections.ConfigDict()
        if field in cls.hparams:
          if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {field} must be a number, got {text.strip()!r}")
          value = float(value)
        u[name][field] = value
      elif field in u and not isinstance(u[field], ml_collections.ConfigDict):
        default = u[field]
        if isinstance(default, float) and isinstance(value, int) and \
            not isinstance(value, bool):
          value = float(value)
        config_lib.check_value(field, value, default, where=f"{where}: field")
        u[field] = value
      else:
        raise ConfigError(f"{where}: unknown field {field!r}; use fields of the unlearn block "
                          f"or of the method ({sorted(own)})")
  return label, u


def check_model_fit(plan: UnlearnPlan, batch_stats, *, fields: str = "") -> list[str]:
  """Refuses settings of ``plan`` that cannot apply to the model; returns notes on settings that
  are accepted but do less than they say (one ``jaxunlearn: note:`` line each).

  ``batch_stats``: the model's (abstract) batch statistics, empty without batch norm;
  ``fields``: how hints name the plan's fields (:func:`make_plan`).

  Raises:
    ConfigError: ``bn_mode='train'`` on a model without batch norm (it would do nothing).
  """
  u = plan.block
  if u.get("bn_mode", "eval") == "train" and not jax.tree.leaves(batch_stats):
    message = (f"{plan.label}: unlearn.bn_mode='train' updates batch-norm statistics, and "
               "this model has no batch norm; set --config.unlearn.bn_mode=eval (the default)")
    raise ConfigError(entry_hints(message, fields, plan.name) if fields else message)
  notes = []
  msteps = plan.hparams.get("msteps")
  if msteps is not None and plan.method.epoch_over != "steps" and msteps > int(u.epochs):
    notes.append(f"{plan.label}: unlearn.{plan.name}.msteps={msteps:g} is more than "
                 f"unlearn.epochs={int(u.epochs)}, so every epoch takes max steps on D_f and "
                 f"the last {msteps - int(u.epochs):g} never run; set msteps <= epochs")
  return [entry_hints(n, fields, plan.name) for n in notes] if fields else notes


def heldout_rows(holdout_idx, y_train, forget_idx) -> np.ndarray:
  """Held-out rows whose class appears in D_f (SCRUB+R's forget-validation set)."""
  h = np.asarray(holdout_idx)
  return h[np.isin(np.asarray(y_train)[h], np.asarray(y_train)[np.asarray(forget_idx)])]


def abstract_check(plan: UnlearnPlan, params, batch_stats, *, model, input_shape,
                   n_forget: int, n_remain: int, num_classes: int, n_heldout: int = 0) -> None:
  """Traces one run of ``plan`` on abstract arrays (no compile, no data): a method that cannot
  run on this model, or returns parameters of another structure or shape, is refused here,
  before anything is trained."""
  from jaxunlearn import train as train_lib
  f32 = jnp.float32
  spec = lambda shape, dtype=f32: jax.ShapeDtypeStruct(shape, dtype)  # noqa: E731
  fields = {"x_forget": spec((n_forget, *input_shape)), "y_forget": spec((n_forget,), jnp.int32),
            "x_remain": spec((n_remain, *input_shape)), "y_remain": spec((n_remain,), jnp.int32),
            "ref_probs": spec((n_forget, num_classes)),
            "orig_logits_forget": spec((n_forget, num_classes)),
            "orig_logits_remain": spec((n_remain, num_classes)),
            "x_heldout": spec((max(n_heldout, 1), *input_shape)),
            "y_heldout": spec((max(n_heldout, 1),), jnp.int32),
            # a stand-in store of 8 models: the trace only needs the shapes' ranks
            "teacher_target": spec((n_forget, num_classes)),
            "teacher_residuals": spec((8, n_forget, num_classes)),
            "teacher_remain_target": spec((n_remain, num_classes)),
            "teacher_remain_residuals": spec((8, n_remain, num_classes)),
            "teacher_own_effect": spec((n_forget,))}
  inputs = methods.Inputs(**{k: v for k, v in fields.items() if k in plan.needs})
  hp = {k: spec(()) for k in plan.hparams}

  def run(params, batch_stats, inputs, key, hp):
    fn = plan.make_fn(train_lib.eval_apply_fn(model, batch_stats), model=model,
                      input_shape=input_shape, batch_stats=batch_stats, n_forget=n_forget,
                      n_remain=n_remain)
    out, _ = fn(params, inputs, key, hp)
    return out["params"] if fn.bn_train else out

  try:
    with registry.guard("unlearning method", plan.name, plan.method, "a trace of its run"):
      out = jax.eval_shape(run, params, batch_stats, inputs, jax.random.key(0), hp)
  except ConfigError as e:
    raise ConfigError(f"{plan.label}: {e}" if plan.label not in str(e) else str(e)) from None
  temperature = float(plan.block.get("output_temperature", 1.0))
  if temperature != 1.0 and unlearn_lib.output_layer(params) is None:
    raise ConfigError(f"{plan.label}: unlearn.output_temperature={temperature:g} scales the output "
                      "layer, and this model has no top-level Dense layer (Dense_<i>); use a "
                      "model whose output layer is a top-level nn.Dense, or set "
                      "unlearn.output_temperature=1")
  want = jax.tree.map(lambda a: (a.shape, a.dtype), params)
  got = jax.tree.map(lambda a: (a.shape, a.dtype), out)
  if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
    raise ConfigError(f"{plan.label}: method {plan.name!r} returns parameters of another "
                      "structure or shape than the model's; a method must return parameters "
                      "of the model it was given")
