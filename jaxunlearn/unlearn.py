"""Unlearning methods, optax style: a factory returns pure ``init`` / ``step``.

The paper's Algorithm 1 (:func:`lightweight`): starting from the original
weights, each step takes a forget batch ``x_f`` and a remain batch
``(x_r, y_r)`` and minimises

    lam * KL(P_ref(x_f) || P_theta(x_f)) + (1 - lam) * CE(f_theta(x_r), y_r)

where ``P_ref`` are the reference model's (fixed) softmax outputs on D_f.

Methods work on any model given as ``apply_fn(params, x) -> logits``: the
pipeline passes flax models in eval mode, so batch-norm statistics stay the
original's and only weights move.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import parallel
from jaxunlearn.errors import ConfigError, NonFiniteError


class UnlearnState(NamedTuple):
  step: jax.Array
  params: Any
  opt_state: Any


class Batch(NamedTuple):
  x_forget: jax.Array       # (B_f, ...)
  ref_probs: jax.Array      # (B_f, C) reference posteriors on x_forget
  x_remain: jax.Array       # (B_r, ...)
  y_remain: jax.Array       # (B_r,)


class UnlearningMethod(NamedTuple):
  """``init(params) -> state``; ``step(state, batch) -> (state, metrics)``."""
  init: Callable[[Any], UnlearnState]
  step: Callable[[UnlearnState, Batch], tuple[UnlearnState, dict]]


def kl_divergence(p_ref, logits):
  """Mean over the batch of KL(p_ref || softmax(logits)).

  ``sum_c p_c (log p_c - log q_c)``; terms with ``p_c = 0`` contribute 0.
  """
  log_q = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  p_ref = p_ref.astype(jnp.float32)
  kl = jnp.sum(jax.scipy.special.xlogy(p_ref, p_ref) - p_ref * log_q, axis=-1)
  return kl.mean()


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels).mean()


def lightweight_loss(params, apply_fn, batch: Batch, lam):
  """The loss of Algorithm 1; returns ``(loss, {'kl', 'ce'})``.

  ``lam = 1`` is the pure KL term (the remain batch is not even evaluated).
  """
  kl = kl_divergence(jax.lax.stop_gradient(batch.ref_probs), apply_fn(params, batch.x_forget))
  if isinstance(lam, (int, float)) and lam == 1.0:
    ce = jnp.zeros((), jnp.float32)
  else:
    ce = cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain)
  return lam * kl + (1.0 - lam) * ce, {"kl": kl, "ce": ce}


def _method(loss_fn, apply_fn, optimizer, mesh) -> UnlearningMethod:
  def init(params):
    return UnlearnState(jnp.zeros((), jnp.int32), params, optimizer.init(params))

  def step(state: UnlearnState, batch: Batch):
    if mesh is not None:
      batch = Batch(*(parallel.shard_batch(a, mesh) for a in batch))
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, apply_fn, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return UnlearnState(state.step + 1, params, opt_state), {"loss": loss, **aux}
  return UnlearningMethod(init, step)


def lightweight(apply_fn, optimizer, lam: float, mesh=None) -> UnlearningMethod:
  """The paper's Algorithm 1 (KL to the reference on D_f + CE on D_r)."""
  validate_lam(lam)
  return _method(lambda p, f, b: lightweight_loss(p, f, b, lam), apply_fn, optimizer, mesh)


def finetune(apply_fn, optimizer, lam: float = 0.0, mesh=None) -> UnlearningMethod:
  """Baseline: fine-tune on D_r alone (no forget term); ``lam`` is ignored."""
  def loss_fn(params, f, batch):
    ce = cross_entropy(f(params, batch.x_remain), batch.y_remain)
    return ce, {"kl": jnp.zeros(()), "ce": ce}
  return _method(loss_fn, apply_fn, optimizer, mesh)


METHODS = {"lightweight": lightweight, "finetune": finetune}


def get_method(name: str) -> Callable[..., UnlearningMethod]:
  if name not in METHODS:
    raise ConfigError(f"unknown unlearning method {name!r}; use one of {sorted(METHODS)}")
  return METHODS[name]


def validate_lam(lam) -> None:
  if not isinstance(lam, (int, float)) or not 0.0 < float(lam) <= 1.0:
    raise ConfigError(f"unlearn.lam must be in (0, 1], got {lam!r}; e.g. --config.unlearn.lam=0.01")


def forget_indices(key, n_forget: int, batch_size: int):
  """One epoch over D_f: a permutation padded by wrap-around to full batches."""
  steps = -(-n_forget // batch_size)
  perm = jax.random.permutation(key, n_forget)
  reps = -(-steps * batch_size // n_forget)
  return jnp.tile(perm, reps)[: steps * batch_size].reshape(steps, batch_size)


def make_epoch(method: UnlearningMethod, *, n_forget: int, n_remain: int,
               forget_batch_size: int, remain_batch_size: int) -> Callable:
  """``epoch(state, x_f, ref_probs, x_r, y_r, key) -> (state, metrics)`` under ``lax.scan``."""
  def epoch(state, x_f, ref_probs, x_r, y_r, key):
    fkey, rkey = jax.random.split(key)
    rows = forget_indices(fkey, n_forget, forget_batch_size)

    def body(state, inp):
      i, row = inp
      r = jax.random.randint(jax.random.fold_in(rkey, i), (remain_batch_size,), 0, n_remain)
      batch = Batch(x_f[row], ref_probs[row], x_r[r], y_r[r])
      return method.step(state, batch)
    return jax.lax.scan(body, state, (jnp.arange(rows.shape[0]), rows))
  return epoch


@dataclasses.dataclass
class UnlearnResult:
  params: Any
  history: list[dict]      # per epoch: loss, kl, ce (batch means) and kl_forget (all of D_f)
  run_s: float
  compile_s: float
  stopped_early: bool


def unlearn(method: UnlearningMethod, params, x_forget, ref_probs, x_remain, y_remain, *,
            apply_fn: Callable, epochs: int, key, forget_batch_size: int = 64,
            remain_batch_size: int = 64, tol: float = 0.0, mesh=None,
            progress: bool = True) -> UnlearnResult:
  """Runs an unlearning method for ``epochs`` passes over D_f.

  Args:
    method: from :func:`lightweight` (or any :class:`UnlearningMethod`).
    params: the original model's parameters (not modified).
    x_forget: D_f inputs. ``ref_probs``: reference softmax outputs on them.
    x_remain, y_remain: D_r (a remain batch is drawn at random each step).
    apply_fn: ``apply_fn(params, x) -> logits``, used for the KL stop test.
    epochs: maximum number of passes over D_f.
    key: PRNG key.
    tol: stop after the first epoch whose mean KL over all of D_f is below
      ``tol`` (0 disables the test).
    mesh: optional mesh: the state and data are replicated on its devices,
      each forget and remain batch is split over its ``'data'`` axis (both
      batch sizes must divide over its devices) and the state is donated.

  Returns:
    :class:`UnlearnResult` with the new parameters and a per-epoch log.
  """
  n_forget, n_remain = int(x_forget.shape[0]), int(x_remain.shape[0])
  if n_forget == 0:
    raise ConfigError("the forget set is empty; nothing to unlearn")
  if n_remain == 0:
    raise ConfigError("the remain set is empty; unlearning needs remaining data")
  if ref_probs.shape[0] != n_forget:
    raise ConfigError(f"ref_probs has {ref_probs.shape[0]} rows for {n_forget} forget examples")
  forget_batch_size = min(int(forget_batch_size), n_forget)
  if mesh is not None:
    parallel.check_batch_size(forget_batch_size, mesh, "unlearn.forget_batch_size")
    parallel.check_batch_size(remain_batch_size, mesh, "unlearn.remain_batch_size")
  # Copy: the step donates its state, and the caller keeps the original params.
  state = method.init(jax.tree.map(jnp.array, params))
  arrays = (x_forget, ref_probs, x_remain, y_remain)
  if mesh is not None:
    state, arrays = parallel.replicate((state, arrays), mesh)
  epoch = make_epoch(method, n_forget=n_forget, n_remain=n_remain,
                     forget_batch_size=forget_batch_size,
                     remain_batch_size=int(remain_batch_size))

  t0 = time.perf_counter()
  run_epoch = parallel.jit(epoch, mesh, donate_argnums=(0,)).lower(state, *arrays, key).compile()
  forget_kl = parallel.jit(lambda p, x, q: kl_divergence(q, apply_fn(p, x)), mesh)
  forget_kl = forget_kl.lower(state.params, arrays[0], arrays[1]).compile()
  compile_s = time.perf_counter() - t0

  bar = None
  if progress and jax.process_index() == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=epochs, desc="   unlearn", unit="epoch")
  history, run_s, stopped = [], 0.0, False
  for e in range(epochs):
    t0 = time.perf_counter()
    state, metrics = run_epoch(state, *arrays, jax.random.fold_in(key, e))
    kl_all = float(forget_kl(state.params, arrays[0], arrays[1]))
    metrics = jax.device_get(metrics)
    run_s += time.perf_counter() - t0
    losses = np.asarray(metrics["loss"])
    if not np.all(np.isfinite(losses)) or not np.isfinite(kl_all):
      bad = int(np.flatnonzero(~np.isfinite(losses))[0]) if not np.all(np.isfinite(losses)) else 0
      raise NonFiniteError(
          f"stage 'unlearn': loss became non-finite at epoch {e + 1}, step "
          f"{e * losses.shape[0] + bad + 1}; lower unlearn.learning_rate")
    record = {"epoch": e + 1, **{k: float(np.mean(v)) for k, v in metrics.items()},
              "kl_forget": kl_all}
    history.append(record)
    if bar is not None:
      bar.update(1)
      bar.set_postfix(kl_forget=f"{kl_all:.4f}")
    if tol and kl_all < tol:
      stopped = True
      break
  if bar is not None:
    bar.close()
  params = jax.block_until_ready(state.params)
  return UnlearnResult(params=params, history=history, run_s=run_s,
                       compile_s=compile_s, stopped_early=stopped)
