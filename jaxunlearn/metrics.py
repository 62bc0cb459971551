"""Per-example metrics on logits (numpy): log-softmax, cross-entropy, accuracy.

The evaluators (:mod:`jaxunlearn.evaluators`) build on these.
"""

from __future__ import annotations

import numpy as np

__all__ = ["log_softmax", "softmax", "per_example_loss", "accuracy_and_loss"]


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
