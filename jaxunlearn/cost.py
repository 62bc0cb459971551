"""The cost of unlearning in examples processed, against retraining from scratch.

The unit is a training-step equivalent, the same on any hardware: one
example through forward and backward counts 1, one example through a forward
pass alone (a teacher's logits, a loss evaluated without its gradient)
counts 1/3 (:data:`jaxunlearn.methods.base.FORWARD_ONLY`). Each method
declares what one run costs (:meth:`jaxunlearn.methods.Method.cost`)::

    shape = plan.run_shape(n_forget=100, n_remain=3900)
    c = cost.request_cost(plan.method, shape, plan.hparams, train_epochs=20,
                          train_batch_size=64, reference_source="remain", n_reference=400,
                          reference_epochs=50)
    c["fraction_of_retrain"]

Training (the original, retraining, the reference model) walks its rows in
whole batches and drops the last partial one (:func:`jaxunlearn.train.fit`),
so ``epochs`` passes over ``n`` rows at batch ``B`` cost
``epochs * floor(n / min(B, n)) * min(B, n)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

from jaxunlearn import unlearn as unlearn_lib
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base
from jaxunlearn.methods.base import FORWARD_ONLY, RunShape

__all__ = ["FORWARD_ONLY", "RunShape", "monitor_cost", "plan_cost", "reference_cost",
           "request_cost", "retrain_cost", "run_cost", "run_shape", "schedule_shape",
           "training_cost"]

REFERENCE_SOURCES = ("remain", "holdout")


def _count(name: str, value, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) \
      or not float(value).is_integer() or value < low:
    raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
  return int(value)


def run_shape(*, n_forget: int, n_remain: int, forget_batch_size: int, remain_batch_size: int,
              epochs: int, steps_per_epoch: int, n_heldout: int = 0) -> RunShape:
  """A :class:`RunShape` from ``(epochs, steps_per_epoch)`` as the run computes them.

  The forget batch is clipped to ``n_forget``, as :func:`make_unlearn_fn` does.
  Every RunShape is built here (:func:`schedule_shape` and
  :meth:`jaxunlearn.plan.UnlearnPlan.run_shape` come through it).

  Raises:
    ConfigError: a size that is not a positive integer (``n_heldout``: >= 0).
  """
  n_forget = _count("n_forget", n_forget, 1)
  return RunShape(
      n_forget=n_forget, n_remain=_count("n_remain", n_remain, 1),
      forget_batch_size=min(_count("forget_batch_size", forget_batch_size, 1), n_forget),
      remain_batch_size=_count("remain_batch_size", remain_batch_size, 1),
      epochs=_count("epochs", epochs, 1),
      steps_per_epoch=_count("steps_per_epoch", steps_per_epoch, 1),
      n_heldout=_count("n_heldout", n_heldout, 0))


def _never_applied(params, x):
  raise AssertionError("schedule_shape builds a run to read its schedule and never runs it")


def schedule_shape(method, *, n_forget: int, n_remain: int, forget_batch_size: int,
                   remain_batch_size: int, n_heldout: int = 0, **schedule) -> RunShape:
  """The :class:`RunShape` of a run of ``method``, with the epochs and steps per epoch that
  :func:`jaxunlearn.unlearn.make_unlearn_fn` computes for the same arguments.

  ``schedule`` is passed to ``make_unlearn_fn`` as is (``epochs=...`` and any
  other field that changes the schedule); the run is built, never traced.
  """
  sizes = {"n_forget": _count("n_forget", n_forget, 1),
           "n_remain": _count("n_remain", n_remain, 1),
           "forget_batch_size": _count("forget_batch_size", forget_batch_size, 1),
           "remain_batch_size": _count("remain_batch_size", remain_batch_size, 1)}
  fn = unlearn_lib.make_unlearn_fn(base.as_method(method), _never_applied, **sizes, **schedule)
  return run_shape(**sizes, epochs=fn.epochs, steps_per_epoch=fn.steps_per_epoch,
                   n_heldout=n_heldout)


def run_cost(method, shape: RunShape, hp: Mapping[str, float]) -> float:
  """Examples one whole run of ``method`` processes (:meth:`Method.cost`).

  ``method``: a registered name, a Method class or instance; ``hp``: its
  hyperparameters (missing ones take the method's defaults).
  """
  return float(base.as_method(method).cost(shape, hp))


def monitor_cost(shape: RunShape, *, needs: Iterable[str] = (), stop: str = "epochs",
                 calibrate_every: int = 1, bn_train: bool = False) -> float:
  """Forward passes the run makes beside the method's own (:func:`make_unlearn_fn`).

  * ``kl_forget`` after every epoch when the run has ``ref_probs``: D_f;
  * ``stop="kl_tol"``: its KL on D_f after every epoch;
  * ``stop="calibrated"``: losses on D_f and the ``n_heldout`` held-out
    examples at the start, every ``calibrate_every`` steps and after the last;
  * ``bn_train`` (``bn_mode="train"`` on a model with batch norm): the
    running statistics after every step, on the forget batch if the run has
    ``x_forget`` and on the remain batch if it has ``x_remain``.

  Args:
    needs: the run's input arrays (:attr:`UnlearnPlan.needs`).
  """
  needs = set(needs)
  steps = shape.epochs * shape.steps_per_epoch
  rows = 0
  if "ref_probs" in needs:
    rows += shape.epochs * shape.n_forget
  if stop == "kl_tol":
    rows += shape.epochs * shape.n_forget
  elif stop == "calibrated":
    checks = 1 + -(-steps // _count("calibrate_every", calibrate_every, 1))
    rows += checks * (shape.n_forget + shape.n_heldout)
  elif stop != "epochs":
    raise ConfigError(f"unknown stop rule {stop!r}; use one of ('epochs', 'kl_tol', "
                      "'calibrated')")
  if bn_train:
    per_step = (shape.forget_batch_size if "x_forget" in needs else 0) \
        + (shape.remain_batch_size if "x_remain" in needs else 0)
    rows += steps * per_step
  return FORWARD_ONLY * rows


def training_cost(n: int, epochs: int, batch_size: int) -> float:
  """Examples ``epochs`` passes of training over ``n`` rows process: whole batches of
  ``min(batch_size, n)``, the last partial batch dropped (:func:`jaxunlearn.train.fit`)."""
  n = _count("n", n, 1)
  b = min(_count("batch_size", batch_size, 1), n)
  return float(_count("epochs", epochs, 1) * (n // b) * b)


def retrain_cost(n_remain: int, train_epochs: int, train_batch_size: int) -> float:
  """Examples retraining from scratch on D_r processes (``train.epochs``, ``train.batch_size``)."""
  return training_cost(n_remain, train_epochs, train_batch_size)


def reference_cost(n_reference: int, reference_epochs: int, reference_batch_size: int) -> float:
  """Examples training the reference model on D_s processes (``reference.epochs``; the
  reference trains at ``train.batch_size``, as every model of a request)."""
  return training_cost(n_reference, reference_epochs, reference_batch_size)


def request_cost(method, shape: RunShape, hp: Mapping[str, float], *, train_epochs: int,
                 train_batch_size: int, reference_source: str = "remain", n_reference: int = 0,
                 reference_epochs: int = 0, reference_batch_size: int | None = None,
                 monitor: float = 0.0) -> dict:
  """The cost of one unlearning request, and its share of retraining's.

  A reference model drawn from D_r for each request (``reference_source=
  "remain"``) is paid by every request; one trained once on held-out data
  (``"holdout"``) is paid once (``reference_one_off``) and costs a request
  nothing. A method without a reference model has no reference cost.

  Args:
    method: a registered name, a Method class or instance.
    shape: the run's sizes (:func:`run_shape`); ``n_remain`` is also what retraining trains on.
    hp: the method's hyperparameters.
    train_epochs, train_batch_size: the ``train`` block (retraining's schedule).
    reference_source, n_reference, reference_epochs: the ``reference`` block and |D_s|.
    reference_batch_size: default ``train_batch_size``.
    monitor: the run's passes beside the method's (:func:`monitor_cost`).

  Returns:
    ``{"unlearn", "monitor", "reference_per_request", "reference_one_off",
    "per_request", "retrain", "fraction_of_retrain"}`` in examples;
    ``per_request = unlearn + monitor + reference_per_request`` and
    ``fraction_of_retrain = per_request / retrain``.
  """
  method = base.as_method(method)
  unlearn = run_cost(method, shape, hp)
  per_request = one_off = 0.0
  if method.needs_reference:
    if reference_source not in REFERENCE_SOURCES:
      raise ConfigError(f"reference_source must be one of {REFERENCE_SOURCES}, got "
                        f"{reference_source!r}")
    if not n_reference:
      raise ConfigError(f"method {type(method).__name__} uses a reference model: give its "
                        "training set size n_reference and reference_epochs")
    ref = reference_cost(n_reference, reference_epochs,
                         train_batch_size if reference_batch_size is None else reference_batch_size)
    per_request, one_off = (ref, 0.0) if reference_source == "remain" else (0.0, ref)
  retrain = retrain_cost(shape.n_remain, train_epochs, train_batch_size)
  total = unlearn + float(monitor) + per_request
  return {"unlearn": unlearn, "monitor": float(monitor), "reference_per_request": per_request,
          "reference_one_off": one_off, "per_request": total, "retrain": retrain,
          "fraction_of_retrain": total / retrain}


def plan_cost(plan, *, n_forget: int, n_remain: int, n_heldout: int = 0, batch_norm: bool = False,
              **request) -> dict:
  """:func:`request_cost` of an :class:`~jaxunlearn.plan.UnlearnPlan` on these split sizes,
  with the run's passes beside the method's (:func:`monitor_cost`).

  Args:
    batch_norm: the model has batch norm (``bn_mode="train"`` then updates statistics).
    request: :func:`request_cost`'s keyword arguments (train, reference), ``monitor`` aside.
  """
  shape = plan.run_shape(n_forget, n_remain, n_heldout)
  bn_train = batch_norm and plan.block.get("bn_mode", "eval") == "train"
  monitor = monitor_cost(shape, needs=plan.needs, stop=plan.stop,
                         calibrate_every=int(plan.block.get("calibrate_every", 1)),
                         bn_train=bn_train)
  return request_cost(plan.method, shape, plan.hparams, monitor=monitor, **request)
