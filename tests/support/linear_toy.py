"""Linear models on 2-D points and NumPy references, for checking methods by hand.

Shared by the method tests (``test_baselines``, ``test_competition_methods``,
``test_importance_retrain``, ``test_tuning``): a 2-feature, 3-class linear
model as a plain ``{"w", "b"}`` dict (``apply_fn``) or as Flax names it
(``linear``), the softmax and cross-entropy in NumPy, and a small random
problem with every input a method can ask for.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import methods, unlearn

# The hand example's weights, and the values a fresh model starts from.
W = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -0.5]], np.float32)
B = np.array([0.1, -0.2, 0.3], np.float32)
FRESH_W = np.full((2, 3), 7.0, np.float32)
FRESH_B = np.full(3, -3.0, np.float32)


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_ce(logits, labels):
  return -np_log_softmax(logits)[np.arange(labels.size), labels].mean()


def np_kl_rows(p, logits):
  return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np_log_softmax(logits)),
                         0.0), -1)


def np_softmax(z):
  return np.exp(np_log_softmax(z))


def apply_fn(params, x):
  return x @ params["w"] + params["b"]


def linear(params, x):
  return x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]


def linear_params(w=W, b=B):
  return {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}


def linear_init(key):
  del key
  return linear_params(FRESH_W, FRESH_B)


def toy(seed=0, n_f=8, n_r=48, n_h=8):
  """``(params, inputs)``: random points of 3 classes and every input a method can need."""
  rng = np.random.default_rng(seed)
  x_r = rng.normal(size=(n_r, 2)).astype(np.float32)
  y_r = (x_r[:, 0] > 0).astype(np.int32) + (x_r[:, 1] > 1).astype(np.int32)
  x_f = rng.normal(size=(n_f, 2)).astype(np.float32)
  y_f = (x_f[:, 0] > 0).astype(np.int32)
  x_h = rng.normal(size=(n_h, 2)).astype(np.float32)
  y_h = (x_h[:, 0] > 0).astype(np.int32)
  p = {"w": jnp.asarray(rng.normal(size=(2, 3)).astype(np.float32) * 2),
       "b": jnp.zeros(3, jnp.float32)}
  inputs = methods.Inputs(x_forget=jnp.asarray(x_f), y_forget=jnp.asarray(y_f),
                          x_remain=jnp.asarray(x_r), y_remain=jnp.asarray(y_r),
                          x_heldout=jnp.asarray(x_h), y_heldout=jnp.asarray(y_h),
                          ref_probs=jnp.full((n_f, 3), 1 / 3, jnp.float32))
  return p, inputs


def toy_fn(method, epochs=2, opt=None, n_f=8, n_r=48, fbs=4, rbs=8):
  """The pure run of ``method`` on :func:`toy`'s problem (``apply_fn``'s model)."""
  init_fn = lambda k: {"w": jax.random.normal(k, (2, 3)), "b": jnp.zeros(3)}  # noqa: E731
  return unlearn.make_unlearn_fn(method, apply_fn, epochs=epochs, n_forget=n_f, n_remain=n_r,
                                 forget_batch_size=fbs, remain_batch_size=rbs,
                                 optimizer_cfg=opt, init_fn=init_fn)


def inputs_for(method, inputs):
  """``inputs`` with only the fields ``method`` asks for."""
  want = set(methods.get(method).inputs)
  return inputs._replace(**{f: None for f in inputs._fields if f not in want})
