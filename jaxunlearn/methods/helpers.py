"""Helpers shared by the baselines: two-phase epochs and whole-set passes.

Several baselines walk D_f and then D_r in each epoch (random labels, SalUn,
SCRUB). In :func:`jaxunlearn.unlearn.make_unlearn_fn` an epoch is one scan
of ``steps_per_epoch`` steps, each with a forget and a remain batch; these
methods declare ``epoch_over = "remain"`` (so an epoch is a pass over D_r)
and spend the first ``ceil(|D_f| / B_f)`` steps of it on D_f (a full pass,
since the forget rows of an epoch walk one permutation of D_f) and the rest
on D_r.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base


def forget_steps(n_forget: int, forget_batch_size: int, steps_per_epoch: int, name: str) -> int:
  """Steps of an epoch spent on D_f: ``ceil(n_forget / forget_batch_size)``.

  Raises:
    ConfigError: the D_f pass would fill the whole epoch (no step left for D_r).
  """
  k = -(-int(n_forget) // int(forget_batch_size))
  if k >= steps_per_epoch:
    raise ConfigError(
        f"method {name!r}: a pass over D_f takes {k} steps but an epoch over D_r has only "
        f"{steps_per_epoch}; lower unlearn.remain_batch_size or raise unlearn.forget_batch_size")
  return k


def in_forget_phase(step, steps_per_epoch: int, k_forget: int):
  """Whether global ``step`` is one of the first ``k_forget`` steps of its epoch."""
  return (step % steps_per_epoch) < k_forget


def batched_apply(apply_fn, params, x, chunk: int = 512):
  """``apply_fn(params, x)`` in chunks of ``chunk`` rows (a scan, so memory stays flat)."""
  n = x.shape[0]
  if n <= chunk:
    return apply_fn(params, x)
  n_chunks = -(-n // chunk)
  pad = n_chunks * chunk - n
  xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
  xp = xp.reshape(n_chunks, chunk, *x.shape[1:])
  _, out = jax.lax.scan(lambda c, xb: (c, apply_fn(params, xb)), None, xp)
  return out.reshape(n_chunks * chunk, *out.shape[2:])[:n]


def batched_rows(n: int, chunk: int = 512) -> int:
  """Rows :func:`batched_apply` runs for ``n`` rows: ``n``, or whole chunks once padded."""
  return n if n <= chunk else -(-n // chunk) * chunk


def phase_cost(shape: base.RunShape, k_forget: int, forget_epochs: int) -> float:
  """Examples of the two-phase epochs: in the first ``forget_epochs`` epochs, ``k_forget``
  steps of ``forget_batch_size`` then remain steps; in the others, remain steps only."""
  s, fbs, rbs = shape.steps_per_epoch, shape.forget_batch_size, shape.remain_batch_size
  forget_epochs = min(forget_epochs, shape.epochs)
  return float(forget_epochs * (k_forget * fbs + (s - k_forget) * rbs)
               + (shape.epochs - forget_epochs) * s * rbs)


def error_rate(apply_fn, params, x, y):
  """Share of rows of ``x`` whose arg-max prediction is not ``y``."""
  pred = jnp.argmax(batched_apply(apply_fn, params, x), -1)
  return jnp.mean((pred != y).astype(jnp.float32))


def validate_range(hp, name: str, low: float, high: float, *, low_open: bool = False,
                   method: str = "") -> None:
  """Raises ConfigError unless ``low <= hp[name] <= high`` (``low < ...`` if ``low_open``)."""
  value = float(hp[name])
  if (value <= low if low_open else value < low) or value > high:
    bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
    raise ConfigError(f"unlearn.{method}.{name} must be in {bound}, got {value!r}")


def masked_update(optimizer, grads, opt_state, params, mask=None):
  """One optimizer update; with ``mask`` (a 0/1 pytree like ``params``) masked-out
  entries get a zero gradient, a zero weight-decay input and a zero final update.

  The optimizer sees ``params * mask``, so decoupled or added weight decay and
  momentum never reach masked-out entries: their weights stay bit-identical to
  the start and their optimizer state at its initial (zero) value.

  Returns:
    ``(new_params, new_opt_state)``.
  """
  if mask is not None:
    grads = jax.tree.map(lambda g, m: g * m, grads, mask)
    params_seen = jax.tree.map(lambda p, m: p * m, params, mask)
  else:
    params_seen = params
  updates, opt_state = optimizer.update(grads, opt_state, params_seen)
  if mask is not None:
    updates = jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, mask)
  return jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates), opt_state


def gradient_method(env: base.MethodEnv, loss_fn, init_extra=None, mask_of=None
                    ) -> base.UpdateRule:
  """A plain gradient-step method whose loss also sees the state.

  Args:
    env: the run's environment.
    loss_fn: ``loss_fn(params, state, batch) -> (loss, aux)``.
    init_extra: ``init_extra(params) -> extra`` (default: none).
    mask_of: ``mask_of(extra) -> 0/1 pytree`` to mask every update (see
      :func:`masked_update`).
  """
  def init(params):
    extra = init_extra(params) if init_extra is not None else ()
    return base.UnlearnState(jnp.zeros((), jnp.int32), params, env.optimizer.init(params), extra)

  def step(state: base.UnlearnState, batch: base.Batch):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch)
    mask = mask_of(state.extra) if mask_of is not None else None
    params, opt_state = masked_update(env.optimizer, grads, state.opt_state, state.params, mask)
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state), \
        {"loss": loss, **aux}

  return base.UpdateRule(init, step)
