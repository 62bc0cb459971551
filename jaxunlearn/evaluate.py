"""Accuracy and loss of a model on the test set, D_f and D_r."""

from __future__ import annotations

import numpy as np

from jaxunlearn import train as train_lib


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
