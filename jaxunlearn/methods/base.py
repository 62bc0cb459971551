"""The method registry, the method interface and the inputs vocabulary.

An unlearning method is a class registered by name::

    from jaxunlearn import methods

    @methods.register("my_ga")
    class GradientAscent(methods.Method):
      inputs = ("x_forget", "y_forget")
      hparams = {"scale": 1.0}

      def loss(self, params, apply_fn, batch, hp, extra):
        ce = methods.cross_entropy(apply_fn(params, batch.x_forget), batch.y_forget)
        return -hp["scale"] * ce, {"ce_forget": ce}

:func:`make_unlearn_fn` turns a method into one pure function of a whole
unlearning run; this module imports no method (the package ``__init__``
imports the built-in ones), so a method file can import it freely.

What a method declares:

* ``inputs``: the arrays it needs, from :data:`INPUTS`. The pipeline builds
  only those (a method that lists no ``ref_probs`` gets no reference model).
* ``hparams``: its hyperparameters and their defaults. They reach the run as
  arrays (``hp[name]``), so a grid of them is a ``jax.vmap``. The config block
  ``unlearn.<method name>`` holds them; names in ``shared_hparams`` are read
  from ``unlearn.<name>`` instead (``unlearn.lam`` for the paper's method).
* ``epoch_over``: what one epoch passes over, ``"forget"`` (the paper's
  unit) or ``"remain"``; ``"steps"``: a method that draws its own rows and
  counts its run in steps: ``unlearn.steps`` steps in one epoch (0: passes
  over D_r, as ``"remain"``).

and either ``loss(...)`` (a plain gradient step on it is then built) or
``make(env)`` returning an optax-shaped :class:`UpdateRule`. A method whose
run does more or less than a gradient step on its batches each step (phases,
passes over whole sets in ``init``) also overrides :meth:`Method.cost`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.errors import ConfigError
from jaxunlearn.registry import Registry, guard
from jaxunlearn.train import cross_entropy  # noqa: F401  (re-exported for methods)

__all__ = ["register", "get", "names", "as_method", "Method", "MethodEnv", "UpdateRule",
           "UnlearnState", "with_defaults", "Inputs", "Batch", "RunShape", "INPUTS",
           "TEACHER_INPUTS", "EPOCH_UNITS",
           "FORWARD_ONLY", "resolve_method", "resolve_hparams", "kl_per_example", "kl_divergence",
           "steps_per_epoch", "cycled_rows", "FORGET_ROWS", "REMAIN_ROWS"]

# The arrays a method may ask for. Forget and remain inputs are batched per
# step; the others are given whole to ``init`` / ``epoch_end`` / ``finish``.
INPUTS = (
    "x_forget", "y_forget",          # D_f inputs and labels (as trained on)
    "x_remain", "y_remain",          # D_r inputs and labels
    "ref_probs",                     # reference model's softmax on D_f
    "orig_logits_forget",            # the original model's logits on D_f
    "orig_logits_remain",            # the original model's logits on D_r
    "x_heldout", "y_heldout",        # held-out examples of D_f's classes
    "teacher_target",                # [n_f, C] per-example target logits on D_f (a teacher)
    "teacher_residuals",             # [K, n_f, C] the teacher's per-model residuals, to draw
    "teacher_remain_target",         # [n_r, C] the teacher's target logits on D_r
    "teacher_remain_residuals",      # [K, n_r, C] its per-model residuals on D_r
    "teacher_own_effect",            # [n_f] each D_f row's own-membership effect on phi
)
# The inputs a teacher gives (jaxunlearn.attribution.request_teacher), by field name.
TEACHER_INPUTS = ("teacher_target", "teacher_residuals", "teacher_remain_target",
                  "teacher_remain_residuals", "teacher_own_effect")
FORGET_ROWS = ("x_forget", "y_forget", "ref_probs", "orig_logits_forget")
REMAIN_ROWS = ("x_remain", "y_remain", "orig_logits_remain")
EPOCH_UNITS = ("forget", "remain", "steps")
# Cost of one example through a forward pass alone, in forward+backward equivalents.
FORWARD_ONLY = 1.0 / 3.0


class Inputs(NamedTuple):
  """Every array of one unlearning request; fields a method did not ask for are None."""
  x_forget: Any = None
  y_forget: Any = None
  x_remain: Any = None
  y_remain: Any = None
  ref_probs: Any = None
  orig_logits_forget: Any = None
  orig_logits_remain: Any = None
  x_heldout: Any = None
  y_heldout: Any = None
  forget_target_loss: Any = None   # per-example target losses on D_f (calibrated stop)
  teacher_target: Any = None       # [n_f, C] target logits on D_f (attribution.teacher)
  teacher_residuals: Any = None    # [K, n_f, C] the teacher fit's residuals, one per model
  teacher_remain_target: Any = None     # [n_r, C] target logits on D_r (attribution.retain_teacher)
  teacher_remain_residuals: Any = None  # [K, n_r, C] that fit's residuals
  teacher_own_effect: Any = None   # [n_f] own-membership coefficient of each row's phi fit


class Batch(NamedTuple):
  """One step's rows of the forget and remain arrays, and where the run is."""
  x_forget: Any = None
  y_forget: Any = None
  ref_probs: Any = None
  orig_logits_forget: Any = None
  x_remain: Any = None
  y_remain: Any = None
  orig_logits_remain: Any = None
  epoch: Any = None          # int32 scalar, 0-based
  progress: Any = None       # float32 scalar, step / total steps, in [0, 1)
  forget_index: Any = None   # int32 [forget batch]: the step's rows' positions in D_f
  remain_index: Any = None   # int32 [remain batch]: the step's rows' positions in D_r


class RunShape(NamedTuple):
  """The sizes one unlearning run's cost depends on (:meth:`Method.cost`)."""
  n_forget: int
  n_remain: int
  forget_batch_size: int   # already clipped to n_forget
  remain_batch_size: int
  epochs: int
  steps_per_epoch: int
  n_heldout: int = 0       # held-out examples of D_f's classes the run is given


class UnlearnState(NamedTuple):
  step: jax.Array
  params: Any
  opt_state: Any
  extra: Any = ()            # whatever else a method carries (masks, a teacher, ...)


class UpdateRule(NamedTuple):
  """Optax-shaped: ``init(params) -> state``; ``step(state, batch) -> (state, metrics)``.

  ``epoch_end(state) -> state`` runs after every epoch and ``finish(state) ->
  params`` once at the end (default: ``state.params``). ``summary(state) ->
  {name: scalar}``, if given, describes the whole run from the final state
  (e.g. the epoch SCRUB+R rewinds to); the host driver records it.
  ``finished(state) -> bool``, if given, is true once no later step can
  change what ``finish`` returns; the host driver then stops early.

  A state has ``params``: the model as it stands (what ``finish`` returns by
  default and what stop rules judge). A wrapper (:mod:`jaxunlearn.stop`,
  ``bn_mode="train"``) takes a rule and returns one whose state nests the
  inner state, as optax wrappers do; :func:`with_defaults` gives it hooks to
  call whether or not the inner rule defines them.
  """
  init: Callable[[Any], UnlearnState]
  step: Callable[[UnlearnState, Batch], tuple[UnlearnState, dict]]
  epoch_end: Callable[[UnlearnState], UnlearnState] | None = None
  finish: Callable[[UnlearnState], Any] | None = None
  summary: Callable[[UnlearnState], dict] | None = None
  finished: Callable[[UnlearnState], jax.Array] | None = None


def with_defaults(rule: UpdateRule) -> UpdateRule:
  """``rule`` with every optional hook filled in: ``epoch_end`` keeps the state,
  ``finish`` returns ``state.params``, ``summary`` is ``{}`` and ``finished`` false."""
  return rule._replace(
      epoch_end=rule.epoch_end or (lambda state: state),
      finish=rule.finish or (lambda state: state.params),
      summary=rule.summary or (lambda state: {}),
      finished=rule.finished or (lambda state: jnp.asarray(False)))


class MethodEnv(NamedTuple):
  """What :meth:`Method.make` gets: everything is fixed for one run."""
  apply_fn: Callable         # apply_fn(params, x) -> logits (bn_mode: eval or train)
  init_fn: Callable | None   # init_fn(key) -> freshly initialised params of the same model
  optimizer: optax.GradientTransformation
  hparams: Mapping[str, jax.Array]
  inputs: Inputs
  key: jax.Array             # the method's own key (e.g. random labels, a random teacher)
  epochs: int
  steps_per_epoch: int
  # init_variables_fn(key) -> (params, batch_stats) of a fresh model, its own statistics too
  init_variables_fn: Callable | None = None
  # apply_with_stats(params, batch_stats, x) -> logits in eval mode with the given statistics
  apply_with_stats: Callable | None = None
  batch_stats: Any = None    # the original's running batch statistics ({} without batch norm)
  bn_mode: str = "eval"      # "train": forward passes use their batch's statistics


class Method:
  """Base class of unlearning methods: set the class attributes, define ``loss`` or ``make``.

  ``options`` are static choices (strings), each with its allowed values, the
  first the default; an instance is made with them: ``Method(kl_reduction="sum")``.
  Like hyperparameters they come from ``unlearn.<method name>.<option>``, or
  ``unlearn.<option>`` for names in ``shared_hparams``.
  """

  inputs: tuple[str, ...] = ()
  hparams: Mapping[str, float] = {}
  options: Mapping[str, tuple] = {}
  shared_hparams: tuple[str, ...] = ()
  # The hyperparameter with which the method scales its output layer at the end, if it does
  # (then unlearn.output_temperature, the generic wrapper for every other method, is off).
  output_scale: str = ""
  hparam_docs: Mapping[str, str] = {}  # one line per hyperparameter or option (jaxunlearn config)
  renamed: Mapping[str, str] = {}    # old hyperparameter name -> new: the old one is still
                                     # accepted, with one deprecation line
  epoch_over: str = "forget"
  description: str = ""
  uses_learning_rate: bool = True    # False: no gradient step (e.g. SSD); tuning ignores the rate
  # True: each step's Batch carries forget_index and remain_index, the positions in D_f and D_r
  # of its rows (for a method's own per-example state, e.g. targets drawn once per run).
  reads_forget_index: bool = False
  # Options added after results were cached: they enter a run's cache key only when set to
  # other than their default (the first allowed value), so every earlier result keeps its key.
  keyed_when_set: tuple = ()
  search_space: Mapping[str, tuple] = {}
  """The grid :func:`jaxunlearn.tuning.tune` searches: ``{name: values}`` over
  ``learning_rate`` and the method's hyperparameters, at most
  :data:`jaxunlearn.tuning.MAX_POINTS` points in all (e.g. the learning rate
  and the method's main knob, four values each). Empty: the method cannot be
  tuned."""

  def __init__(self, **options):
    for name, value in options.items():
      if name not in self.options:
        raise ConfigError(f"{type(self).__name__} has no option {name!r}; it has "
                          f"{sorted(self.options) or 'none'}")
      allowed = self.options[name]
      if value not in allowed or (isinstance(value, bool) and
                                  not any(isinstance(a, bool) for a in allowed)):
        raise ConfigError(f"option {name!r} must be one of {allowed}, got {value!r}")
      # The allowed spelling of an equal value (3 -> 3.0, 64.0 -> 64): one run, one cache key.
      options[name] = allowed[allowed.index(value)]
    self.opts = {name: options.get(name, allowed[0]) for name, allowed in self.options.items()}

  def used_inputs(self) -> tuple:
    """The inputs this instance reads with its options: :attr:`inputs` (a method whose options
    leave some unread overrides this, so no run builds them)."""
    return tuple(self.inputs)

  @property
  def needs_reference(self) -> bool:
    return "ref_probs" in self.inputs

  @property
  def needs_teacher(self) -> bool:
    """Reads per-example targets from an attribution store (``teacher_*`` inputs)."""
    return "teacher_target" in self.inputs

  def teacher_spec(self) -> dict:
    """For a method whose ``inputs`` read a teacher (``teacher_target``): its attribution
    store and fit, ``{"num_models", "keep_fraction", "degree"}``
    (:func:`jaxunlearn.attribution.request_teacher`)."""
    raise ConfigError(f"method {type(self).__name__} reads a teacher and does not say which "
                      "store makes it: define its teacher_spec()")

  def step_cost(self, forget_batch_size: int, remain_batch_size: int) -> float:
    """What one step costs in examples, for ``unlearn.retrain_fraction``'s step count
    (:func:`jaxunlearn.plan.retrain_steps`); default: its remain rows."""
    del forget_batch_size
    return float(remain_batch_size)

  def validate(self, hp: Mapping[str, float]) -> None:
    """Raises ConfigError for a bad hyperparameter value (default: finite numbers)."""
    for name, value in hp.items():
      if isinstance(value, bool) or not isinstance(value, (int, float)) \
          or not math.isfinite(value):
        raise ConfigError(f"hyperparameter {name!r} must be a finite number, got {value!r}")

  def cost(self, shape: RunShape, hp: Mapping[str, float]) -> float:
    """Examples processed by one whole run of ``shape`` (every step; no early stop).

    The unit is a training-step equivalent: one example through forward and
    backward counts 1, through a forward pass alone (a teacher's logits, a
    loss evaluated without its gradient) :data:`FORWARD_ONLY` = 1/3. Rows of
    padding the code computes on count too; re-initialising weights counts 0.

    The default, for a method that takes one gradient step on its batches
    each step: each of ``epochs * steps_per_epoch`` steps counts
    ``forget_batch_size`` if ``inputs`` has a per-step forget row (x_forget,
    y_forget, ref_probs, orig_logits_forget), plus ``remain_batch_size`` if it
    has x_remain or y_remain. The forward passes that make the inputs count
    once: ``ref_probs`` (the reference on D_f) and ``orig_logits_forget``
    ``n_forget / 3`` each, ``orig_logits_remain`` ``n_remain / 3``. Training
    the reference model is the caller's cost (:mod:`jaxunlearn.cost`), and so
    are the driver's own passes (stop rules, ``kl_forget``).
    Override for phases, passes over whole sets, or steps that skip a batch.

    Args:
      shape: the run's sizes (:func:`jaxunlearn.cost.run_shape`).
      hp: the run's hyperparameters; missing ones take the method's defaults.
    """
    del hp
    steps = shape.epochs * shape.steps_per_epoch
    per_step = 0
    if any(f in self.inputs for f in FORGET_ROWS):
      per_step += shape.forget_batch_size
    if "x_remain" in self.inputs or "y_remain" in self.inputs:
      per_step += shape.remain_batch_size
    inputs_made = sum(shape.n_forget for f in ("ref_probs", "orig_logits_forget")
                      if f in self.inputs)
    if "orig_logits_remain" in self.inputs:
      inputs_made += shape.n_remain
    return float(steps * per_step) + FORWARD_ONLY * inputs_made

  def _hparam(self, hp: Mapping[str, float], name: str) -> float:
    """``hp[name]``, else the method's default (for :meth:`cost`)."""
    return float(hp[name] if name in hp else self.hparams[name])

  def loss(self, params, apply_fn, batch: Batch, hp, extra) -> tuple[jax.Array, dict]:
    raise NotImplementedError(f"{type(self).__name__} defines neither loss() nor make()")

  def init_extra(self, params, env: MethodEnv) -> Any:
    """The method's own state beside the parameters (default: none)."""
    return ()

  def make(self, env: MethodEnv) -> UpdateRule:
    """A gradient step on :meth:`loss` (override for other update rules)."""
    def init(params):
      return UnlearnState(jnp.zeros((), jnp.int32), params, env.optimizer.init(params),
                          self.init_extra(params, env))

    def step(state: UnlearnState, batch: Batch):
      (loss, aux), grads = jax.value_and_grad(self.loss, has_aux=True)(
          state.params, env.apply_fn, batch, env.hparams, state.extra)
      updates, opt_state = env.optimizer.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      return state._replace(step=state.step + 1, params=params, opt_state=opt_state), \
          {"loss": loss, **aux}
    return UpdateRule(init, step)


def _check_method(name: str, cls: type) -> None:
  for field in cls.inputs:
    if field not in INPUTS:
      raise ConfigError(f"method {name!r} asks for unknown input {field!r}; use some of {INPUTS}")
  if cls.epoch_over not in EPOCH_UNITS:
    raise ConfigError(f"method {name!r}: epoch_over must be one of {EPOCH_UNITS}")
  for pair in (("teacher_target", "teacher_residuals"),
               ("teacher_remain_target", "teacher_remain_residuals")):
    teacher = set(pair) & set(cls.inputs)
    if len(teacher) == 1:
      raise ConfigError(f"method {name!r} asks for {teacher.pop()!r} alone; a teacher is "
                        f"{pair[0]} and {pair[1]} together")
  extra = [f for f in TEACHER_INPUTS[2:] if f in cls.inputs]
  if extra and "teacher_target" not in cls.inputs:
    raise ConfigError(f"method {name!r} asks for {extra[0]!r} without a teacher on D_f; the "
                      "store's fit is D_f's, so add teacher_target and teacher_residuals")


_REGISTRY = Registry("unlearning method", Method, "unlearn.method", _check_method)
# register(name) is a decorator; register("my_ft")(get("finetune")) registers an
# existing method again under another name.
register, get, names = _REGISTRY.register, _REGISTRY.get, _REGISTRY.names
# implementation(name): None for the package's own method, else what tells it from any other
# (hashed into stage and population names; internal).
implementation = _REGISTRY.implementation


def as_method(method: str | type | Method) -> Method:
  """A method instance from a registered name, a :class:`Method` class (its
  default options) or an instance (returned as is)."""
  if isinstance(method, str):
    return get(method)()
  if isinstance(method, type):
    return method()
  return method


def _from_config(cls, names_defaults, unlearn_cfg, name) -> dict:
  block = unlearn_cfg.get(name) if hasattr(unlearn_cfg, "get") else None
  out = {}
  for h, default in names_defaults.items():
    if h in cls.shared_hparams and h in unlearn_cfg:
      out[h] = unlearn_cfg[h]
    elif block is not None and h in block:
      out[h] = block[h]
    else:
      out[h] = default
  return out


def resolve_hparams(name: str, unlearn_cfg) -> dict[str, float]:
  """A method's hyperparameters from the ``unlearn`` config block, validated.

  Each is read from ``unlearn.<name>.<hparam>`` (``unlearn.<hparam>`` for the
  method's ``shared_hparams``), else its default.
  """
  cls = get(name)
  hp = _from_config(cls, cls.hparams, unlearn_cfg, name)
  with guard("unlearning method", name, cls, "validate"):
    cls().validate(hp)
  return hp


def resolve_method(name: str, unlearn_cfg) -> Method:
  """An instance of method ``name`` with its options from the ``unlearn`` config block."""
  cls = get(name)
  opts = _from_config(cls, {k: v[0] for k, v in cls.options.items()}, unlearn_cfg, name)
  for opt, value in opts.items():
    if value not in cls.options[opt]:
      field = f"unlearn.{opt}" if opt in cls.shared_hparams else f"unlearn.{name}.{opt}"
      raise ConfigError(f"{field} must be one of {cls.options[opt]}, got {value!r}")
  with guard("unlearning method", name, cls, "construction"):
    return cls(**opts)


# --- losses shared by methods ---------------------------------------------------


def kl_per_example(p_ref, logits):
  """``KL(p_ref || softmax(logits))`` of each row; terms with ``p_c = 0`` give 0."""
  log_q = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  p_ref = p_ref.astype(jnp.float32)
  return jnp.sum(jax.scipy.special.xlogy(p_ref, p_ref) - p_ref * log_q, axis=-1)


def kl_divergence(p_ref, logits):
  """Mean over the batch of ``KL(p_ref || softmax(logits))``."""
  return kl_per_example(p_ref, logits).mean()


# --- one pure function of a whole run -------------------------------------------


def steps_per_epoch(epoch_over: str, n_forget: int, n_remain: int, forget_batch_size: int,
                    remain_batch_size: int) -> int:
  """Steps in one epoch: ceil(|D_f| / B_f), or ceil(|D_r| / B_r) for remain (and steps) epochs."""
  if epoch_over == "forget":
    return -(-n_forget // min(forget_batch_size, n_forget))
  return -(-n_remain // min(remain_batch_size, n_remain))


def cycled_rows(key, n: int, batch_size: int, steps: int):
  """``steps`` rows of ``batch_size`` from a permutation of ``range(n)``, wrapped around."""
  perm = jax.random.permutation(key, n)
  reps = -(-steps * batch_size // n)
  return jnp.tile(perm, reps)[: steps * batch_size].reshape(steps, batch_size)
