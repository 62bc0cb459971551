"""The logit-scaled confidence phi that both per-example audits are built on.

For a model's logits ``z`` on an example with label ``y``,

    phi = log p_y - log(sum_{k != y} p_k) = log(p_y / (1 - p_y)),

the statistic of LiRA and of the NeurIPS-2023 unlearning challenge
(docs/audits.md). The softmax normaliser cancels in the difference, so
phi is computed as ``z_y - logsumexp(z_k for k != y)``: the true class is
masked with ``-inf`` and the log-sum-exp is shifted by its own maximum. This
is the stable form of the organisers' recipe (softmax in float64, then
``log(p_y + 1e-45) - log(p_wrong + 1e-45)``) without the ``1e-45`` floor: it
stays finite and exact for ``p_y`` rounding to 0 or 1, where the recipe
saturates near +-103.

One formula serves two callers: :func:`logit_confidence` in JAX (jittable,
``vmap``-able over models) and :func:`logit_confidence_numpy` in numpy
float64 (used by :mod:`jaxunlearn.membership`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.errors import ConfigError


def _phi(xp, logits, labels):
  """``z_y - logsumexp(z_{k != y})`` along the last axis, in array module ``xp``."""
  num_classes = logits.shape[-1]
  is_true = labels[..., None] == xp.arange(num_classes)
  z_true = xp.sum(xp.where(is_true, logits, 0), axis=-1)
  z_other = xp.where(is_true, -xp.inf, logits)
  shift = xp.max(z_other, axis=-1, keepdims=True)
  lse = shift[..., 0] + xp.log(xp.sum(xp.exp(z_other - shift), axis=-1))
  return z_true - lse


def _check_shapes(logits_shape, labels_shape) -> None:
  if len(logits_shape) < 2:
    raise ConfigError(f"logits must have shape [..., n, C], got {tuple(logits_shape)}")
  if logits_shape[-1] < 2:
    raise ConfigError(f"phi needs at least 2 classes, got logits of shape "
                      f"{tuple(logits_shape)}")
  batch = tuple(logits_shape[:-1])
  labels_shape = tuple(labels_shape)
  if not labels_shape or batch[len(batch) - len(labels_shape):] != labels_shape:
    raise ConfigError(f"labels of shape {labels_shape} do not match logits of shape "
                      f"{tuple(logits_shape)}; expected [n] or [..., n] with n = "
                      f"{batch[-1]}")


def _check_label_values(labels, num_classes: int) -> None:
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ConfigError(f"labels must be integers, got dtype {labels.dtype}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ConfigError(f"labels must lie in [0, {num_classes}), got values in "
                      f"[{labels.min()}, {labels.max()}]")


def logit_confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """phi of the true class, in JAX; jittable and ``vmap``-able.

  Args:
    logits: ``[..., n, C]`` logits, e.g. ``[N, n, C]`` for ``N`` models on
      ``n`` examples.
    labels: ``[n]`` (or ``[..., n]``, broadcast against ``logits``) integer
      labels in ``[0, C)``. Their values are checked when they are concrete;
      under ``jit`` an out-of-range label gives a wrong phi, not an error.

  Returns:
    ``logits.shape[:-1]`` array of ``log(p_y / (1 - p_y))`` in the dtype of
    ``logits`` (float32 unless ``jax_enable_x64`` is on). Finite for finite
    logits.

  Raises:
    ConfigError: the shapes do not match, ``C < 2``, or concrete labels are not
      integers in ``[0, C)``.
  """
  logits = jnp.asarray(logits)
  _check_shapes(logits.shape, jnp.shape(labels))
  if not isinstance(labels, jax.core.Tracer):
    _check_label_values(labels, logits.shape[-1])
  return _phi(jnp, logits, jnp.asarray(labels))


def logit_confidence_numpy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """phi of the true class in numpy float64 (same formula as :func:`logit_confidence`).

  Args:
    logits: ``[..., n, C]`` logits.
    labels: ``[n]`` or ``[..., n]`` integer labels in ``[0, C)``.

  Returns:
    float64 array of shape ``logits.shape[:-1]``.

  Raises:
    ConfigError: the shapes do not match, ``C < 2``, or labels are not integers
      in ``[0, C)``.
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  _check_shapes(logits.shape, labels.shape)
  _check_label_values(labels, logits.shape[-1])
  return _phi(np, logits, labels)
