"""Output distributions: how close the unlearned model's posteriors are to retraining.

For each model, the mean over examples of

* ``KL(P_retrain || P_model) = sum_c p_c (log p_c - log q_c)`` and
* ``JS(P_retrain, P_model) = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``,

in nats (JS is at most ``log 2``), on D_f and on the test set; and a PNG of
the histograms of the logit-scaled confidence phi = log p_y - log sum_{k != y} p_k
on D_f (:mod:`jaxunlearn.audits.phi`) for the original, retrained, unlearned
and reference models. The paper's Fig. 13 and 16 plot the largest softmax
probability instead, which on MNIST is a spike at 1.0 for every model; phi
spreads the same outputs over a log-odds scale where they differ.
"""

from __future__ import annotations

import numpy as np

from jaxunlearn import evaluate as evaluate_lib


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


def max_prob(logits: np.ndarray) -> np.ndarray:
  return evaluate_lib.softmax(np.asarray(logits, np.float64)).max(axis=-1)


def plot_max_prob(max_probs: dict, path, title: str = "") -> None:
  """Histograms of the max-softmax of each model (one panel each) into a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(max_probs)
  fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), sharey=True,
                           squeeze=False)
  bins = np.linspace(0.0, 1.0, 21)
  for ax, name in zip(axes[0], names):
    ax.hist(max_probs[name], bins=bins, color="tab:blue", edgecolor="white")
    ax.set_title(name)
    ax.set_xlabel("max softmax probability")
  axes[0][0].set_ylabel("examples of D_f")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_phi(phis: dict, path, title: str = "") -> None:
  """Histograms of phi of each model (one panel each, shared bins) into a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(phis)
  fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), sharey=True,
                           squeeze=False)
  values = np.concatenate([np.asarray(v, np.float64).ravel() for v in phis.values()])
  lo, hi = float(np.min(values)), float(np.max(values))
  bins = np.linspace(lo, hi + 1e-6, 26)
  for ax, name in zip(axes[0], names):
    ax.hist(phis[name], bins=bins, color="tab:blue", edgecolor="white")
    ax.axvline(0.0, color="gray", lw=0.8)
    ax.set_title(name)
    ax.set_xlabel("phi = log(p_y / (1 - p_y))")
  axes[0][0].set_ylabel("examples of D_f")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
