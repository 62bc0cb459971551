"""Accuracy and loss of a model on the test set, D_f and D_r; the evaluator registry.

Evaluators are functions ``fn(ctx) -> dict`` of a finished pipeline context
(:class:`jaxunlearn.pipeline.Context`) whose output is merged into
``results.json``. They register by name with :func:`register`; the config
picks them with ``eval.evaluators`` (the ``backdoor`` evaluator is added
whenever ``backdoor.enabled``). Built in:

* ``mia``: membership inference on D_f (:mod:`jaxunlearn.mia`);
* ``distributions``: posteriors against the retrained model
  (:mod:`jaxunlearn.distributions`);
* ``backdoor``: attack success of a trigger planted in D_f
  (:mod:`jaxunlearn.backdoor`).
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from jaxunlearn import train as train_lib
from jaxunlearn.errors import ConfigError

EVALUATORS: dict[str, Callable] = {}
# Built-in evaluators live in the module of the same name, imported on first use.
BUILTIN_EVALUATORS = ("mia", "distributions", "backdoor")


def register(name: str) -> Callable[[Callable], Callable]:
  """Decorator: registers ``fn(ctx) -> dict`` as evaluator ``name``."""
  def decorator(fn: Callable) -> Callable:
    EVALUATORS[name] = fn
    return fn
  return decorator


def get_evaluator(name: str) -> Callable:
  """The evaluator registered as ``name``.

  Raises:
    ConfigError: no such evaluator.
  """
  if name not in EVALUATORS and name in BUILTIN_EVALUATORS:
    importlib.import_module(f"jaxunlearn.{name}")
  if name not in EVALUATORS:
    valid = sorted(set(EVALUATORS) | set(BUILTIN_EVALUATORS))
    raise ConfigError(f"unknown evaluator {name!r} in eval.evaluators; use some of {valid}")
  return EVALUATORS[name]


def evaluator_names(cfg) -> list[str]:
  """The evaluators a config asks for, in order; ``backdoor`` added when enabled."""
  names = list(cfg.eval.evaluators)
  backdoor = cfg.get("backdoor")
  if backdoor is not None and backdoor.get("enabled", False) and "backdoor" not in names:
    names.append("backdoor")
  return names


def log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
  return np.exp(log_softmax(logits))


def per_example_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Cross-entropy of each example (natural log)."""
  return -log_softmax(logits)[np.arange(labels.size), labels]


def accuracy_and_loss(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  acc = float(np.mean(np.argmax(logits, -1) == labels))
  loss = float(np.mean(per_example_loss(logits, labels)))
  return acc, loss


def model_metrics(apply_fn, params, data, splits, batch_size: int = 1000,
                  x_train=None, y_train=None) -> tuple[dict, dict]:
  """Figures of one model; also returns its logits by split for other evaluators.

  ``x_train`` / ``y_train`` override the dataset's training arrays (e.g. the
  poisoned copy when a backdoor is planted in D_f).
  """
  x_train = data.x_train if x_train is None else x_train
  y_train = data.y_train if y_train is None else y_train
  logits = {
      "test": train_lib.predict(apply_fn, params, data.x_test, batch_size),
      "forget": train_lib.predict(apply_fn, params, x_train[splits.forget_idx], batch_size),
      "remain": train_lib.predict(apply_fn, params, x_train[splits.remain_idx], batch_size),
  }
  labels = {"test": data.y_test, "forget": y_train[splits.forget_idx],
            "remain": y_train[splits.remain_idx]}
  figures = {}
  for part in ("test", "forget", "remain"):
    acc, loss = accuracy_and_loss(logits[part], labels[part])
    figures[f"acc_{part}"] = acc
    figures[f"loss_{part}"] = loss
  return figures, logits


def context_logits(ctx) -> dict:
  """``{model: {"test", "forget", "remain": logits}}`` of every model of a pipeline context.

  ``pipeline.summarize`` fills ``ctx.logits``; any model it has not seen is
  evaluated here (and kept), so evaluators also work on a context of their own.
  """
  for name, m in ctx.trained.items():
    if name not in ctx.logits:
      _, ctx.logits[name] = model_metrics(m.apply_fn, m.params, ctx.data, ctx.splits,
                                          ctx.cfg.eval.batch_size, ctx.x_train, ctx.y_train)
  return ctx.logits
