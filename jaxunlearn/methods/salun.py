"""SalUn (Fan et al., ICLR 2024): random-label unlearning of the salient weights only.

1. Saliency mask: ``g = grad of -CE(D_f)`` at the original weights; the
   ``mask_ratio`` share of all entries with the largest ``|g|``, ranked
   globally across tensors, get 1, the rest 0
   (``Classification/generate_mask.py::save_gradient_ratio``; the README's
   CIFAR-10 example uses 0.5).
2. The random-label loop of :mod:`jaxunlearn.methods.random_label` with the
   mask applied to the gradient *and* to the optimizer's final update, and the
   optimizer shown ``params * mask``: masked-out weights stay bit-identical to
   the original's and their optimizer state stays zero, with momentum and
   weight decay too (the authors' fix of commit ``a6e89fd``).

The gradient is of the mean CE over all of D_f, which ranks entries as the
authors' sum of per-batch means does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.methods import base, helpers, random_label

GRADIENT_CHUNK = 256


def forget_gradient_rows(n: int, chunk: int = GRADIENT_CHUNK) -> int:
  """Rows :func:`forget_gradient` runs forward and backward: ``n`` padded to whole chunks."""
  return -(-n // chunk) * chunk


def forget_gradient(params, apply_fn, x, y, chunk: int = GRADIENT_CHUNK):
  """Gradient of ``-mean CE`` over all of ``(x, y)``, summed over chunks of ``chunk`` rows."""
  n = x.shape[0]
  n_chunks = -(-n // chunk)
  pad = n_chunks * chunk - n
  w = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(pad, jnp.float32)])
  if pad:
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
  xs = x.reshape(n_chunks, chunk, *x.shape[1:])
  ys, ws = y.reshape(n_chunks, chunk), w.reshape(n_chunks, chunk)

  def neg_ce(p, xb, yb, wb):
    logits = apply_fn(p, xb).astype(jnp.float32)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=-1)[:, 0]
    return -jnp.sum(ce * wb) / n

  def body(acc, inp):
    g = jax.grad(neg_ce)(params, *inp)
    return jax.tree.map(jnp.add, acc, g), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  grads, _ = jax.lax.scan(body, zeros, (xs, ys, ws))
  return grads


def saliency_mask(grads, ratio):
  """1.0 for the ``floor(ratio * N)`` entries of largest ``|grad|`` over all ``N``, else 0.0.

  Ties are broken by position (flattened leaves in tree order), as a stable sort.
  """
  leaves, treedef = jax.tree.flatten(grads)
  flat = jnp.concatenate([jnp.abs(g).ravel() for g in leaves])
  order = jnp.argsort(-flat, stable=True)
  ranks = jnp.zeros_like(order).at[order].set(jnp.arange(flat.size))
  k = jnp.floor(ratio * flat.size).astype(jnp.int32)
  keep = (ranks < k).astype(jnp.float32)
  out, start = [], 0
  for g in leaves:
    out.append(keep[start:start + g.size].reshape(g.shape))
    start += g.size
  return jax.tree.unflatten(treedef, out)


@base.register("salun")
class SalUn(base.Method):
  """Random labels on the weights most salient to D_f; the others stay the original's."""
  description = ("SalUn: saliency mask of |grad CE(D_f)| (top mask_ratio), then masked "
                 "random-label unlearning")
  inputs = ("x_forget", "y_forget", "x_remain", "y_remain")
  hparams = {"mask_ratio": 0.5}
  hparam_docs = {"mask_ratio": "share of all weights (largest |grad CE(D_f)|) that may move"}
  epoch_over = "remain"
  search_space = {"learning_rate": (3e-3, 1e-2, 3e-2, 1e-1), "mask_ratio": (0.1, 0.3, 0.5, 0.7)}

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "mask_ratio", 0.0, 1.0, low_open=True, method="salun")

  def cost(self, shape, hp):
    # The RL loop, plus the mask's gradient over D_f (padded to whole chunks) in init.
    return random_label.random_label_cost(shape, "salun") \
        + forget_gradient_rows(shape.n_forget)

  def make(self, env):
    def init_extra(params):
      grads = forget_gradient(params, env.apply_fn, env.inputs.x_forget, env.inputs.y_forget)
      return saliency_mask(grads, env.hparams["mask_ratio"])
    return random_label.make_random_label("salun", env, init_extra, mask_of=lambda extra: extra)
