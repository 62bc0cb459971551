"""Helpers of the erase-then-repair methods (MSG, CT, random masks, layer resets).

These methods change some weights once at the start of a run (re-initialise,
zero, transpose) and then repair on D_r. The erase happens inside
``init(params)`` of the method, so a whole run stays one pure function of
its key (:func:`jaxunlearn.unlearn.make_unlearn_fn`): every run draws its own
masks and fresh values from ``env.key``, which is what gives a population of
unlearned models its spread.

Parameters are picked by their flax path: a conv kernel is a leaf named
``kernel`` with 3 or more axes (``(H, W, in, out)`` for ``nn.Conv``), a dense
kernel one with 2; normalisation parameters live under ``BatchNorm_*``,
``LayerNorm_*``, ``GroupNorm_*`` or ``RMSNorm_*`` modules.
"""

from __future__ import annotations

import re
from typing import Callable

import jax
import jax.numpy as jnp

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base

NORM_PREFIXES = ("BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm")

# fold_in tags of the method's key, one per purpose.
TAG_FRESH, TAG_MASK, TAG_SUBSET = 1, 2, 3


def path_names(path) -> tuple[str, ...]:
  """The names along a pytree path (``('Conv_0', 'kernel')``)."""
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def is_norm(names) -> bool:
  """Whether a parameter belongs to a normalisation module."""
  return any(n.startswith(NORM_PREFIXES) for n in names)


def is_conv_kernel(names, leaf) -> bool:
  return names[-1] == "kernel" and leaf.ndim >= 3


def is_dense_kernel(names, leaf) -> bool:
  return names[-1] == "kernel" and leaf.ndim == 2


def select(params, pred) -> dict:
  """A pytree of Python bools like ``params``: ``pred(names, leaf)`` for each leaf."""
  return jax.tree.map_with_path(lambda path, leaf: bool(pred(path_names(path), leaf)), params)


def any_selected(selected) -> bool:
  return any(jax.tree.leaves(selected))


def fresh_params(env: base.MethodEnv, name: str):
  """Freshly initialised parameters of the run's model, drawn from the run's key."""
  if env.init_fn is None:
    raise ConfigError(f"method {name!r} needs init_fn (a fresh model of the same "
                      "architecture) in make_unlearn_fn")
  return env.init_fn(jax.random.fold_in(env.key, TAG_FRESH))


def leaf_keys(key, params):
  """One key per leaf of ``params`` (``fold_in`` of its position in tree order)."""
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(treedef, [jax.random.fold_in(key, i) for i in range(len(leaves))])


_INDEXED = re.compile(r"^(Conv|Dense)_(\d+)$")


def top_level_layers(params) -> dict[str, list[str]]:
  """``{"Conv": [...], "Dense": [...]}``: top-level module names, in index order."""
  found = {"Conv": [], "Dense": []}
  for name in params:
    m = _INDEXED.match(str(name))
    if m:
      found[m.group(1)].append((int(m.group(2)), str(name)))
  return {kind: [n for _, n in sorted(v)] for kind, v in found.items()}


# --- learning-rate shapes, as multipliers on the updates ------------------------


def linear_warmup_decay(epoch, epochs: int):
  """The MSG entry's per-epoch ``LinearAnnealingLR``: up to 1 over ``(E + 1) // 2``
  epochs, then down: epoch ``e`` (0-based) gets ``c / A`` for ``c = e + 1 <= A``,
  else ``(E + 1 - c) / (E + 1 - A)``. Five epochs: 1/3, 2/3, 1, 2/3, 1/3."""
  c = jnp.asarray(epoch, jnp.float32) + 1.0
  a = float((epochs + 1) // 2)
  t = float(epochs + 1)
  return jnp.where(c <= a, c / a, (t - c) / (t - a))


def cosine_epochs(epoch, epochs: int):
  """PyTorch's ``CosineAnnealingLR(T_max=epochs)`` stepped per epoch: ``(1 + cos(pi e/E)) / 2``."""
  return 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.asarray(epoch, jnp.float32) / max(epochs, 1)))


# --- the repair phase -----------------------------------------------------------


def repair_method(env: base.MethodEnv, erase: Callable, loss_fn: Callable, *,
                  grad_scale_of: Callable | None = None, rate_of: Callable | None = None,
                  reset_opt_of: Callable | None = None) -> base.UpdateRule:
  """Erase once in ``init``, then gradient steps on ``loss_fn``.

  Args:
    env: the run's environment.
    erase: ``erase(params) -> (params, extra)``, run once in ``init``.
    loss_fn: ``loss_fn(params, state, batch) -> (loss, aux)``.
    grad_scale_of: ``grad_scale_of(extra) -> pytree`` multiplying the gradient
      of the loss before the optimizer (weight decay added by the optimizer is
      not scaled, as PyTorch's ``weight_decay`` added after a gradient hook).
    rate_of: ``rate_of(state, batch) -> scalar`` multiplying the optimizer's
      update: a learning-rate shape on top of ``unlearn.schedule``.
    reset_opt_of: ``reset_opt_of(state, batch) -> bool``: start the optimizer
      afresh (zero momentum) before this step, as a new optimizer would.
  """
  def init(params):
    params, extra = erase(params)
    return base.UnlearnState(jnp.zeros((), jnp.int32), params, env.optimizer.init(params), extra)

  def step(state: base.UnlearnState, batch: base.Batch):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch)
    if grad_scale_of is not None:
      grads = jax.tree.map(lambda g, s: g * s, grads, grad_scale_of(state.extra))
    opt_state = state.opt_state
    if reset_opt_of is not None:
      reset = reset_opt_of(state, batch)
      opt_state = jax.tree.map(lambda f, o: jnp.where(reset, f, o),
                               env.optimizer.init(state.params), opt_state)
    updates, opt_state = env.optimizer.update(grads, opt_state, state.params)
    if rate_of is not None:
      rate = rate_of(state, batch)
      updates = jax.tree.map(lambda u: u * rate.astype(u.dtype), updates)
      aux = {**aux, "rate": rate}
    params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), state.params, updates)
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state), \
        {"loss": loss, **aux}

  return base.UpdateRule(init, step)


def remain_ce(env: base.MethodEnv):
  """``loss_fn`` of plain fine-tuning on D_r."""
  def loss_fn(params, state, batch):
    ce = base.cross_entropy(env.apply_fn(params, batch.x_remain), batch.y_remain)
    return ce, {"ce": ce}
  return loss_fn
