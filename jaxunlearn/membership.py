"""Membership inference: Shokri et al.'s shadow-model attack and a loss attack.

Shadow attack (Shokri et al. 2017):

1. ``K`` shadow models of the target's architecture are trained, each on its
   own random half ("in") of a shadow pool of data the target never trained
   on; the other half is "out". All ``K`` train at once as one jitted
   ``jax.vmap`` of :func:`jaxunlearn.train.make_train_fn` over keys and
   per-shadow data (:func:`train_shadows`).
2. An attack classifier per class (logistic regression) learns "member" vs
   "non-member" from the shadows' outputs on the pool (:func:`fit_attack`).
3. It then judges the target: members are D_f, non-members an equal number of
   test points that neither the target nor the attack has seen.

Attack features (:func:`attack_features`), all from the model's logits:

* ``sorted``: the softmax vector sorted in decreasing order (Shokri's form);
* ``unsorted``: the softmax vector as is (the per-class attack knows the class);
* ``logit_conf``: ``log(p_y / (1 - p_y))`` for the true class ``y``, computed
  from logits so it does not saturate at ``p_y = 1``.

:func:`loss_attack` is the simple attack used across the unlearning
literature: a logistic regression on the per-example loss, forget vs test,
cross-validated.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import metrics, parallel, train as train_lib
from jaxunlearn.audits import phi as phi_lib
from jaxunlearn.errors import ConfigError, NonFiniteError

__all__ = ["FEATURES", "logit_confidence", "attack_features", "Shadows", "shadow_in_indices",
           "make_shadow_train_fn", "train_shadows", "shadow_logits", "Attack", "fit_attack",
           "attack_metrics", "loss_attack"]

FEATURES = ("sorted", "unsorted", "logit_conf")


# --- features -------------------------------------------------------------------


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``log(p_y / (1 - p_y))`` of the true class, stable for ``p_y`` near 0 or 1.

  Equals ``z_y - logsumexp(z_c for c != y)`` for logits ``z``.
  """
  return phi_lib.logit_confidence_numpy(logits, labels)


def attack_features(logits: np.ndarray, labels: np.ndarray, kind: str) -> np.ndarray:
  """Attack features of each example, ``(n, d)`` float64.

  Args:
    logits: ``(n, C)`` model outputs.
    labels: ``(n,)`` the examples' labels (as trained on).
    kind: one of :data:`FEATURES`.
  """
  logits = np.asarray(logits, np.float64)
  if kind == "sorted":
    return -np.sort(-np.exp(metrics.log_softmax(logits)), axis=-1)
  if kind == "unsorted":
    return np.exp(metrics.log_softmax(logits))
  if kind == "logit_conf":
    return logit_confidence(logits, labels)[:, None]
  raise ConfigError(f"unknown attack features {kind!r}; use one of {FEATURES}")


# --- shadow models ---------------------------------------------------------------


@dataclasses.dataclass
class Shadows:
  """``K`` shadow models with a leading shadow axis on every leaf."""
  params: Any
  batch_stats: Any
  in_idx: np.ndarray        # (K, n_in) pool positions each shadow trained on
  losses: np.ndarray        # (K, epochs) mean training loss per epoch
  time_s: float
  compile_s: float

  @property
  def num_shadows(self) -> int:
    return int(self.in_idx.shape[0])

  def in_mask(self, n_pool: int) -> np.ndarray:
    """``(K, n_pool)`` bool: which pool examples each shadow trained on."""
    mask = np.zeros((self.num_shadows, n_pool), bool)
    np.put_along_axis(mask, self.in_idx, True, axis=1)
    return mask


def shadow_in_indices(seed: int, num_shadows: int, n_pool: int) -> np.ndarray:
  """Each shadow's own random half of the pool, ``(K, n_pool // 2)`` sorted rows."""
  if n_pool < 2:
    raise ConfigError(f"the shadow pool needs at least 2 examples, got {n_pool}")
  rng = np.random.default_rng(seed)
  n_in = n_pool // 2
  return np.stack([np.sort(rng.permutation(n_pool)[:n_in]) for _ in range(num_shadows)])


def make_shadow_train_fn(model, optimizer, input_shape, *, epochs: int,
                         batch_size: int):
  """``train_all(keys, in_idx, x_pool, y_pool) -> (states, losses)``, jitted.

  One ``jax.vmap`` of :func:`train.make_train_fn` over the shadows' keys and
  their own training data ``x_pool[in_idx[k]]``: the whole training of all
  shadows is a single compiled computation.
  """
  train = train_lib.make_train_fn(model, optimizer, input_shape, epochs=epochs,
                                  batch_size=batch_size)

  def train_all(keys, in_idx, x_pool, y_pool):
    return jax.vmap(train)(keys, x_pool[in_idx], y_pool[in_idx])
  return jax.jit(train_all)


def train_shadows(model, optimizer, input_shape, x_pool, y_pool, in_idx, key, *,
                  epochs: int, batch_size: int, driver: str = "scan", mesh=None,
                  progress: bool = False) -> Shadows:
  """Trains ``K = in_idx.shape[0]`` shadow models at once under ``jax.vmap``.

  Both drivers run the same vmapped train step with the same keys and data
  order; they differ in what one compiled call covers:

  * ``scan``: the whole training of all ``K`` shadows is one call of
    :func:`train.make_train_fn` under :func:`parallel.vmap_sharded`: the
    shadow axis is split over the mesh's devices (the fastest on GPU/TPU);
  * ``loop``: a host loop over one jitted, vmapped step. XLA on CPU runs
    convolutions inside ``lax.scan`` several times slower than outside it
    (``benchmarks/populations.py --shadows``), so this is faster there.

  Args:
    model: the target's flax module.
    optimizer: optax optimizer (the target's).
    input_shape: per-example input shape.
    x_pool, y_pool: the shadow pool.
    in_idx: ``(K, n_in)`` positions in the pool each shadow trains on.
    key: PRNG key; shadow ``k`` uses ``fold_in(key, k)``.
    epochs, batch_size: each shadow's schedule (batch clipped to ``n_in``).
    driver: ``'scan'``, ``'loop'`` or ``'auto'`` (:func:`train.resolve_driver`).
    mesh: the mesh the ``scan`` driver splits the shadows over (default: all devices).
    progress: show a progress bar (``loop`` driver).

  Returns:
    :class:`Shadows`, compile time kept apart from run time.
  """
  in_idx = np.asarray(in_idx, np.int32)
  k, n_in = in_idx.shape
  batch_size = min(int(batch_size), n_in)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(k))
  args = (keys, jnp.asarray(in_idx), jnp.asarray(x_pool), jnp.asarray(y_pool))
  mesh = parallel.make_mesh() if mesh is None else mesh
  if train_lib.resolve_driver(driver, mesh) == "scan":
    train = train_lib.make_train_fn(model, optimizer, input_shape, epochs=epochs,
                                    batch_size=batch_size)
    fn = parallel.vmap_sharded(lambda k, idx, xp, yp: train(k, xp[idx], yp[idx]), mesh,
                               in_axes=(0, 0, None, None))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))      # the first call compiles
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    states, losses = jax.block_until_ready(fn(*args))
    time_s = time.perf_counter() - t0
    compile_s = max(0.0, compile_s - time_s)
  else:
    states, losses, time_s, compile_s = _train_loop(
        model, optimizer, input_shape, *args, epochs=epochs, batch_size=batch_size,
        progress=progress)
  losses = np.asarray(losses)
  if not np.all(np.isfinite(losses)):
    raise NonFiniteError("a shadow model's training loss became non-finite; "
                         "lower train.learning_rate")
  return Shadows(states.params, states.batch_stats, in_idx, losses, time_s, compile_s)


def _train_loop(model, optimizer, input_shape, keys, in_idx, x_pool, y_pool, *, epochs,
                batch_size, progress):
  """The ``loop`` driver: the steps of :func:`train.make_train_fn`, vmapped, from the host."""
  n_in = int(in_idx.shape[1])
  step = jax.vmap(train_lib.make_train_step(model, optimizer))

  def init(keys, in_idx, x_pool, y_pool):
    init_keys, data_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    states = jax.vmap(lambda k: train_lib.init_state(model, optimizer, k, input_shape))(init_keys)
    return states, data_keys, x_pool[in_idx], y_pool[in_idx]

  def rows(data_keys, e):
    return jax.vmap(lambda k: train_lib.epoch_indices(
        jax.random.fold_in(k, e), n_in, batch_size))(data_keys)

  t0 = time.perf_counter()
  jinit = jax.jit(init).lower(keys, in_idx, x_pool, y_pool).compile()
  states, data_keys, x, y = jinit(keys, in_idx, x_pool, y_pool)
  jrows = jax.jit(rows).lower(data_keys, 0).compile()
  r0 = jrows(data_keys, 0)
  jstep = jax.jit(step, donate_argnums=(0,)).lower(states, x, y, r0[:, 0]).compile()
  compile_s = time.perf_counter() - t0
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=epochs, desc="   shadows", unit="epoch")
  t0 = time.perf_counter()
  losses = []
  for e in range(epochs):
    r = jrows(data_keys, e)
    per_step = []
    for i in range(r.shape[1]):
      states, m = jstep(states, x, y, r[:, i])
      per_step.append(m["loss"])
    losses.append(jnp.stack(per_step, axis=1).mean(axis=1))
    if bar is not None:
      jax.block_until_ready(losses[-1])
      bar.update(1)
  if bar is not None:
    bar.close()
  losses = np.asarray(jax.block_until_ready(jnp.stack(losses, axis=1)))
  return states, losses, time.perf_counter() - t0, compile_s


def shadow_logits(model, params, batch_stats, x, batch_size: int = 1000) -> np.ndarray:
  """Logits of every shadow on ``x``: ``(K, n, C)``, one vmapped call per batch."""
  def apply(p, bs, xb):
    return train_lib.apply_model(model, p, bs, xb, train=False)[0]
  fn = jax.jit(jax.vmap(apply, in_axes=(0, 0, None)))
  n = int(x.shape[0])
  out = [np.asarray(fn(params, batch_stats, jnp.asarray(x[i:i + batch_size])))
         for i in range(0, n, batch_size)]
  return np.concatenate(out, axis=1).astype(np.float32)


# --- attack classifiers ----------------------------------------------------------


@dataclasses.dataclass
class Attack:
  """One member-vs-non-member classifier per class (a constant where a class
  had a single kind of shadow record)."""
  kind: str
  models: dict              # class -> fitted sklearn pipeline, or a float (constant score)

  def score(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Probability of "member" for each example."""
    feats = attack_features(logits, labels, self.kind)
    labels = np.asarray(labels)
    out = np.full(labels.shape[0], 0.5)
    for c in np.unique(labels):
      rows = labels == c
      m = self.models.get(int(c), 0.5)
      out[rows] = m if isinstance(m, float) else m.predict_proba(feats[rows])[:, 1]
    return out


def fit_attack(logits: np.ndarray, labels: np.ndarray, member: np.ndarray, kind: str, *,
               seed: int = 0) -> Attack:
  """Fits the per-class attack on shadow records.

  Args:
    logits: ``(n, C)`` shadow outputs (all shadows' records stacked).
    labels: ``(n,)`` true labels of the records.
    member: ``(n,)`` bool, whether the record was in its shadow's training set.
    kind: feature set, one of :data:`FEATURES`.
    seed: seed of the solver.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  feats = attack_features(logits, labels, kind)
  labels = np.asarray(labels)
  member = np.asarray(member, bool)
  models = {}
  for c in np.unique(labels):
    rows = labels == c
    ys = member[rows]
    if ys.all() or not ys.any():
      models[int(c)] = float(ys.mean())
      continue
    clf = make_pipeline(StandardScaler(),
                        LogisticRegression(max_iter=1000, random_state=seed))
    models[int(c)] = clf.fit(feats[rows], ys)
  return Attack(kind, models)


def attack_metrics(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict:
  """Balanced accuracy and AUC of "member" calls (score > 0.5), and the share of
  members called member."""
  from sklearn.metrics import roc_auc_score
  member_scores = np.asarray(member_scores, np.float64)
  nonmember_scores = np.asarray(nonmember_scores, np.float64)
  tpr = float(np.mean(member_scores > 0.5))
  tnr = float(np.mean(nonmember_scores <= 0.5))
  y = np.r_[np.ones(member_scores.size), np.zeros(nonmember_scores.size)]
  auc = float(roc_auc_score(y, np.r_[member_scores, nonmember_scores]))
  return {"balanced_acc": 0.5 * (tpr + tnr), "auc": auc, "forget_member_rate": tpr}


def loss_attack(member_loss: np.ndarray, nonmember_loss: np.ndarray, *, folds: int = 5,
                seed: int = 0) -> dict:
  """Loss-threshold attack: logistic regression on the per-example loss.

  Cross-validated (stratified ``folds``-fold); reports the balanced accuracy and
  AUC of the held-out predictions.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.metrics import balanced_accuracy_score, roc_auc_score
  from sklearn.model_selection import StratifiedKFold, cross_val_predict

  x = np.log(np.r_[member_loss, nonmember_loss].astype(np.float64) + 1e-12)[:, None]
  y = np.r_[np.ones(len(member_loss), int), np.zeros(len(nonmember_loss), int)]
  folds = int(min(folds, len(member_loss), len(nonmember_loss)))
  if folds < 2:
    raise ConfigError("the loss attack needs at least 2 members and 2 non-members")
  cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
  proba = cross_val_predict(LogisticRegression(), x, y, cv=cv, method="predict_proba")[:, 1]
  return {"balanced_acc": float(balanced_accuracy_score(y, proba > 0.5)),
          "auc": float(roc_auc_score(y, proba))}
