"""Divergences between two models' posteriors (numpy, nats).

* ``KL(P || Q) = sum_c p_c (log p_c - log q_c)``;
* ``JS(P, Q) = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2`` (at most ``log 2``).

The ``distributions`` evaluator (:mod:`jaxunlearn.evaluators.distributions`)
reports them between each model and the retrained one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kl", "js"]


def _xlogy(x, y):
  return np.where(x > 0, x * np.log(np.where(x > 0, y, 1.0)), 0.0)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """``KL(p || q)`` per row of two ``(n, C)`` probability arrays (nats).

  Terms with ``p_c = 0`` contribute 0; ``q`` is floored at the smallest
  positive float64 so a zero where ``p > 0`` gives a large finite value.
  """
  p = np.asarray(p, np.float64)
  q = np.maximum(np.asarray(q, np.float64), np.finfo(np.float64).tiny)
  return np.sum(_xlogy(p, p) - _xlogy(p, q), axis=-1)


def js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """Jensen-Shannon divergence per row (nats, in ``[0, log 2]``)."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  m = 0.5 * (p + q)
  return 0.5 * (kl(p, m) + kl(q, m))

