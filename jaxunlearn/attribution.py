"""Attribution: K models on random halves of a training set, and what each example does.

A population of ``K`` models, each trained from scratch with the config's
``train`` recipe on a random keep-mask of the training rows (a fraction
``p`` of them), through the population service
(:func:`jaxunlearn.populations.run_population`: one vmapped call per chunk,
member ``k`` keyed ``fold_in(key, k)``). It stores, under
``<root>/<key>/`` (``root`` is ``WORKDIR/attribution`` unless given):

* ``pop-attribution-<hash>-c<i>.npz``: chunk ``i``'s members' logits on every
  training row (``logits`` ``[k, n, C]``) and on the test split
  (``heldout_logits`` ``[k, m, C]``), and phi (the logit-scaled confidence,
  :mod:`jaxunlearn.audits.phi`) on both; each written when its chunk is done
  (temporary file, then rename), so a killed build resumes from the finished
  chunks;
* ``masks.npz``: ``keep`` ``[K, n]`` (model ``k`` trained on row ``j``), the
  training rows' dataset indices ``rows``, their labels, the test labels;
* ``estimates.npz``: per training row the IN and OUT mean and standard
  deviation (``ddof=1``; NaN below 2 models) of phi and the IN and OUT counts
  (they add to K); per test example the mean and standard deviation over all K;
* ``attribution.json``: what the store depends on, its sizes and its one-off
  cost in examples; written last, so its presence says the store is whole;
* ``.lock``: held by the one process building the store; a second builder (a
  request in another work dir that shares the store) waits, then loads it.

**K and p.** ``p = 0.5`` gives each example as many IN as OUT models on
average, which makes a difference of IN and OUT means least noisy for a given
K (its variance goes as ``1 / (p K) + 1 / ((1 - p) K)``, smallest at 0.5).
``K = 64`` gives each example about 32 OUT (and 32 IN) models, enough for a
mean whose standard error is under a fifth of the spread between models and
a standard deviation within about 13 % (``1 / sqrt(2 (32 - 1))``); the
chance that an example has fewer than 20 models on either side is about
3 %. Fewer models (e.g. 16) still give the means, noisily.

**Cost at 60,000 images** (Fashion-MNIST, 10 classes, 20 epochs): 64 models x
20 epochs x 30,000 kept rows = 3.84e7 examples, 32 retrainings' worth
(retraining: 20 x 60,000 = 1.2e6), paid once per training set. Logits: 64 x
(60,000 + 10,000) x 10 float32 = 179 MB (phi adds a tenth), masks 3.8 MB.
Both are checked against available memory before anything trains
(:func:`check_memory`), with one chunk's training working set.

**Keyed by** the data the models see (the dataset's content hash, the training
rows, and the transformed arrays' own hash when a data transform applies), the
model (name, arguments, implementation), the ``train`` recipe, K, p and the
attribution's own ``seed`` (not the run's): every request that forgets a
subset of one training set shares one store, across seeds' work dirs too when
``root`` is shared. A transform made from the forget set (label flips,
backdoors of D_f) changes the training data with it, so such benchmarks get one
store per forget set: there the precompute is paid per request. A transform of
a fixed pool that holds D_f (``label_flip.index_file``, a fixed transformed
superset) makes the same data for every request on the pool, and a store with
``forget_rate="pool"`` serves them all. Break-even: a shared store costs
``K p`` retrainings once (32 at the defaults), so a method that spends a
fraction ``f`` of retraining per request pays it back after ``K p / (1 - f)``
requests (33 at f = 0.02); a store per forget set never pays back against
retraining.

**Effects of a forget set** (:func:`effect_of`) come from the stored values and
masks when asked, never from a matrix over pairs of examples. The estimator
is a linear datamodel whose coefficients are Feldman-Zhang differences of
means: for a forget row ``i`` and a point ``j``, ``theta_ij = mean(v_j | i
OUT) - mean(v_j | i IN)``; removing D_f changes ``v_j`` by ``sum_{i in D_f}
theta_ij``. No model leaves out all of D_f, so this sums one-at-a-time effects
(additivity assumed). The sum collapses to one weight per model,
``c_k = sum_i [(1 - keep_ki) / n_out_i - keep_ki / n_in_i]``, and the effect is
``c @ v[:, points]``: ``O(K (|D_f| + |points|))`` work and memory. Its noise
grows with ``|D_f|``: for an unaffected point it is about ``sd_j * sqrt(sum_k
c_k^2)``, near ``2 sd_j sqrt(|D_f| / K)`` at p = 0.5 (returned with
``with_error``); a point outside D_f needs ``K`` well above ``4 |D_f|`` to show
an effect above its noise.

**Memorisation** (:func:`memorisation`) is Feldman's: IN mean phi minus OUT mean
phi, per training row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import cost as cost_lib, hashing, models, populations as pops
from jaxunlearn import splits as splits_lib, stages, train as train_lib, workdir as workdir_lib
from jaxunlearn import transforms as transforms_lib
from jaxunlearn.audits import phi as phi_lib
from jaxunlearn.errors import ConfigError

__all__ = ["Settings", "Store", "build", "check", "check_memory", "store_key", "store_dir",
           "key_spec", "draw_masks", "estimates", "memorisation", "effect_of", "load",
           "memory_bytes", "NAME", "DEFAULT_NUM_MODELS", "DEFAULT_KEEP_FRACTION",
           "draw_rate_masks", "count_zero", "FORGET_RATES", "teacher", "out_teacher", "pool_rows",
           "draw_pool_masks", "pool_info", "out_counts", "shared_teacher", "member_teachers",
           "retain_teacher", "pooled_spread_scale", "SPREADS", "in_teacher", "IN_SLOTS",
           "retain_anchor_per_member",
           "none_kept_residuals", "teacher_settings", "check_teacher", "request_teacher"]

NAME = "attribution"
DEFAULT_NUM_MODELS = 64
DEFAULT_KEEP_FRACTION = 0.5
META = "attribution.json"
_MASKS_SEED = 0x41545452


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the attribution population is drawn and run.

  Attributes:
    num_models: K, the models (at least 2).
    keep_fraction: p, the share of the training rows each model trains on, in (0, 1).
    seed: the masks' and the members' seed (the attribution's own, not the run's, so seeds'
      work dirs can share one store).
    chunk_size: members per compiled call and per saved chunk (0: ``audit.chunk_size``).
    memory_fraction: share of the available memory it may take (0: ``audit.memory_fraction``).
    root: where stores live (``""``: ``WORKDIR/attribution``); a shared folder lets work
      dirs of other seeds reuse a store.
    forget_rate: ``""`` (every row kept with probability p) or ``"uniform"``: the request's
      D_f rows are kept at a rate of the model's own, spread evenly over (0, 1) across the
      models (:func:`draw_rate_masks`), so that some models hold almost none of D_f; read
      with :func:`count_zero`. ``"zero"``: rates ``(k / (K - 1))^2``, so that several
      models hold none of D_f at all and many hold a few rows (for sets where one row
      already teaches much, e.g. a backdoor). Such a store belongs to one forget set.
      ``"pool"``: every model keeps every row outside a data transform's fixed pool
      (``label_flip.index_file``: a fixed transformed superset whose subsets are forgotten)
      and a random ``round(p n) - (n - |pool|)`` rows of the pool (:func:`draw_pool_masks`):
      with ``p = 1 - |D_f| / n`` each model is a retraining that forgot a random subset of the
      pool of D_f's size. The store does not depend on which subset a request forgets, so
      every request on the pool shares it; it is read with :func:`out_teacher`.
  """
  num_models: int = DEFAULT_NUM_MODELS
  keep_fraction: float = DEFAULT_KEEP_FRACTION
  seed: int = 0
  chunk_size: int = 0
  memory_fraction: float = 0.0
  root: str = ""
  forget_rate: str = ""


# What a refusal calls each setting: the field and the command's flag.
FLAGS = {"num_models": "--num-models", "keep_fraction": "--keep-fraction", "seed": "--seed",
         "chunk_size": "--chunk-size", "memory_fraction": "--memory-fraction",
         "forget_rate": "--forget-rate"}
FORGET_RATES = ("", "uniform", "zero", "pool")


def pool_rows(prep) -> np.ndarray | None:
  """The training rows of the fixed pool an active data transform changes (dataset rows,
  sorted), or None when no transform has one
  (:meth:`jaxunlearn.transforms.Transform.pool_rows`)."""
  n = int(np.asarray(prep.y_train).shape[0])
  for name in prep.transforms:
    rows = transforms_lib.get(name)().pool_rows(prep.cfg, n)
    if rows is not None:
      return np.asarray(rows, np.int64)
  return None


def _rate_rows(prep, settings) -> np.ndarray:
  """The dataset rows a store keeps only in part: D_f (at per-model rates), or with
  ``forget_rate="pool"`` the pool (a random part of it per model)."""
  if settings.forget_rate != "pool":
    return np.asarray(prep.splits.forget_idx, np.int64)
  rows = pool_rows(prep)
  if rows is None:
    raise ConfigError(f"{_field('forget_rate')}='pool' forgets part of a data transform's "
                      "fixed pool in each model, and no active transform has one; set "
                      "label_flip.index_file (the pool of rows it flips)")
  outside = np.setdiff1d(prep.splits.forget_idx, rows)
  if outside.size:
    raise ConfigError(f"{_field('forget_rate')}='pool': {outside.size} rows of D_f are outside "
                      "the pool; forget a subset of it")
  return np.intersect1d(rows, prep.splits.train_idx)


def _field(name: str) -> str:
  return f"attribution {name} ({FLAGS[name]})"


def _resolved(prep, settings: Settings) -> tuple[int, float]:
  cfg = prep.cfg
  chunk = int(settings.chunk_size) or int(cfg.audit.chunk_size)
  fraction = float(settings.memory_fraction) or float(cfg.audit.memory_fraction)
  return chunk, fraction


def check(prep, settings: Settings) -> None:
  """Refuses settings that cannot make a store, in one line naming the field."""
  for name in ("num_models", "seed", "chunk_size"):
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ConfigError(f"{_field(name)} must be a whole number, got {value!r}")
  if settings.num_models < 2:
    raise ConfigError(f"{_field('num_models')}={settings.num_models}: IN and OUT estimates need "
                      f"at least 2 models; use e.g. {DEFAULT_NUM_MODELS}")
  if not 0 < float(settings.keep_fraction) < 1:
    raise ConfigError(f"{_field('keep_fraction')}={settings.keep_fraction} must lie in (0, 1); "
                      f"use e.g. {DEFAULT_KEEP_FRACTION}")
  if settings.chunk_size < 0:
    raise ConfigError(f"{_field('chunk_size')}={settings.chunk_size} must be >= 0 (0: "
                      "audit.chunk_size)")
  if not 0 <= float(settings.memory_fraction) <= 1:
    raise ConfigError(f"{_field('memory_fraction')}={settings.memory_fraction} must lie in "
                      "[0, 1] (0: audit.memory_fraction)")
  n = int(prep.splits.train_idx.size)
  n_keep = int(round(settings.keep_fraction * n))
  if not 1 <= n_keep < n:
    raise ConfigError(f"{_field('keep_fraction')}={settings.keep_fraction} keeps {n_keep} of "
                      f"{n} training rows; each model needs at least 1 and must leave 1 out")
  if settings.forget_rate not in FORGET_RATES:
    raise ConfigError(f"{_field('forget_rate')}={settings.forget_rate!r}: use one of "
                      f"{FORGET_RATES} ('' keeps every row at keep_fraction)")
  if settings.forget_rate == "pool":
    n_pool = int(_rate_rows(prep, settings).size)
    if not n - n_pool < n_keep < n:
      raise ConfigError(f"{_field('keep_fraction')}={settings.keep_fraction} keeps {n_keep} of "
                        f"{n} rows, and a pool store keeps all {n - n_pool} rows outside the "
                        f"pool and part of the pool's {n_pool}: use keep_fraction = 1 - |D_f| / "
                        f"n ({1 - int(prep.splits.n_forget) / n:.4g} here), between "
                        f"{(n - n_pool + 1) / n:.4g} and {(n - 1) / n:.4g}")
  elif settings.forget_rate:
    n_f = int(prep.splits.n_forget)
    if not 1 <= n_f <= min(n_keep, n - n_keep):
      raise ConfigError(f"{_field('forget_rate')}={settings.forget_rate!r} keeps 0 to all "
                        f"{n_f} rows of D_f per model beside the others: it needs 1 <= |D_f| <= "
                        f"min(kept rows {n_keep}, left-out rows {n - n_keep}); lower "
                        "forget.size or move keep_fraction toward 0.5")


# --- the key ---------------------------------------------------------------------------------


def _array_hash(*arrays) -> str:
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
  return h.hexdigest()[:16]


def key_spec(prep, settings: Settings) -> dict:
  """What a store depends on (JSON-able): the data the models see, the model, the ``train``
  recipe, K, p and the seed. ``prep`` is a :class:`jaxunlearn.request.Prepared` or a
  :class:`jaxunlearn.request.Request`."""
  cfg = prep.cfg
  base = getattr(prep, "prep", prep)
  rows = prep.splits.train_idx
  data = {"data_hash": base.data_hash, "train_rows": splits_lib.index_hash(rows),
          "num_classes": int(prep.data.num_classes)}
  if tuple(prep.transforms):
    # A transform changes the arrays (and may depend on the forget set): key on what it made.
    data["transformed"] = _array_hash(prep.x_train, prep.y_train)
  model = {"name": cfg.model, "kwargs": cfg.model_kwargs.to_dict()}
  impl = models.implementation(cfg.model)
  if impl is not None:
    model["implementation"] = impl
  recipe = cfg.train.to_dict()
  recipe.pop("driver", None)    # how the original is driven, not what it computes
  spec = {"kind": NAME, "data": data, "model": model, "train": recipe,
          "num_models": int(settings.num_models), "keep_fraction": float(settings.keep_fraction),
          "seed": int(settings.seed)}
  if settings.forget_rate:     # only when set: unchanged keys for every other store
    spec["forget_rate"] = settings.forget_rate
    if settings.forget_rate == "pool":    # the pool's rows, not D_f: shared by its requests
      spec["pool_rows"] = splits_lib.index_hash(_rate_rows(prep, settings))
    else:
      spec["forget_rows"] = splits_lib.index_hash(prep.splits.forget_idx)
  return json.loads(json.dumps(spec, default=str))


def store_key(prep, settings: Settings) -> str:
  """The store's name: :func:`jaxunlearn.hashing.spec_hash` of :func:`key_spec`."""
  return hashing.spec_hash(key_spec(prep, settings))


def store_dir(prep, settings: Settings) -> Path:
  """The store's folder: ``<root>/<store_key>``, ``root`` being ``settings.root`` or
  ``WORKDIR/attribution``."""
  root = Path(settings.root).expanduser() if settings.root else Path(prep.workdir) / NAME
  return root / store_key(prep, settings)


# --- memory ----------------------------------------------------------------------------------


def memory_bytes(*, num_models: int, n_train: int, n_heldout: int, num_classes: int) -> int:
  """Host bytes of a store at work: the logits and phi of every model on every training and
  held-out example (float32, held twice while the chunks are joined), the masks, and the
  float64 temporaries of the IN/OUT estimates (about three ``[K, n]`` arrays)."""
  k, n, m = int(num_models), int(n_train), int(n_heldout)
  values = k * (n + m) * (int(num_classes) + 1) * 4
  return int(2 * values + k * n + 3 * 8 * k * n)


def _gib(b: float) -> str:
  return f"{b / 2**30:.2f} GiB"


def check_memory(prep, settings: Settings) -> None:
  """Refuses, before anything is trained, a store over ``memory_fraction`` of the available
  host memory (its logits: K x (n_train + n_heldout) x num_classes floats) or a chunk whose
  training working set is over that share of the device's, naming the field and a value
  that fits."""
  chunk, fraction = _resolved(prep, settings)
  k = int(settings.num_models)
  n = int(prep.splits.train_idx.size)
  m = int(np.shape(prep.data.y_test)[0])
  c = int(prep.data.num_classes)
  host_limit, host_where = pops.memory_limit_bytes(fraction, host=True)
  need = memory_bytes(num_models=k, n_train=n, n_heldout=m, num_classes=c)
  if need > host_limit:
    per_model = memory_bytes(num_models=1, n_train=n, n_heldout=m, num_classes=c)
    fit = int(host_limit // per_model)
    hint = (f"set num_models<={fit}" if fit >= 2 else
            "no K >= 2 fits: free memory or raise memory_fraction")
    raise ConfigError(
        f"{_field('num_models')}={k} needs ~{_gib(need)} for its logits ({k} x ({n} + {m}) x "
        f"{c} float32 and their estimates), over {_gib(host_limit)} ({fraction:g} of "
        f"{host_where}); {hint}")
  abstract = stages.abstract_variables(prep.model, prep.cfg.train, prep.data.input_shape)
  param_bytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(abstract))
  n_keep = int(round(settings.keep_fraction * n))
  example_bytes = 4 * int(np.prod(prep.data.input_shape))

  shared = (n + m + int(prep.x_train.shape[0])) * example_bytes

  def working(chunk_size):
    # Per member of a chunk: parameters, gradients and optimizer state (about five copies),
    # the rows it gathers, its record; once: the inputs every member reads.
    size = pops.balanced_chunk(k, chunk_size)
    return size * (5 * param_bytes + n_keep * example_bytes + (n + m) * (c + 1) * 4) + shared

  dev_limit, dev_where = pops.memory_limit_bytes(fraction)
  if working(chunk) > dev_limit:
    fit = next((s for s in range(min(chunk, k), 0, -1) if working(s) <= dev_limit), None)
    hint = f"set chunk_size<={fit}" if fit else f"lower num_models (now {k})"
    raise ConfigError(
        f"{_field('chunk_size')}={chunk} needs ~{_gib(working(chunk))} to train a chunk of "
        f"models on {n_keep} rows each, over {_gib(dev_limit)} ({fraction:g} of {dev_where}); "
        f"{hint}")


# --- masks and the population ----------------------------------------------------------------


def draw_masks(n: int, num_models: int, keep_fraction: float, seed: int) -> np.ndarray:
  """``keep`` ``[K, n]`` bool: each model keeps ``round(p n)`` rows drawn without replacement,
  independently of the others (an example's IN count is binomial, mean ``p K``)."""
  n_keep = int(round(keep_fraction * n))
  rng = np.random.default_rng([int(seed), _MASKS_SEED])
  keep = np.zeros((int(num_models), int(n)), bool)
  for k in range(int(num_models)):
    keep[k, rng.permutation(n)[:n_keep]] = True
  return keep


def draw_rate_masks(n: int, forget_pos, num_models: int, keep_fraction: float,
                    seed: int, rates: str = "uniform") -> np.ndarray:
  """``keep`` ``[K, n]`` with D_f (positions ``forget_pos``) kept at a per-model rate.

  Model ``k`` keeps ``round(q_k |D_f|)`` rows of D_f, ``q_k`` the models' evenly spread rates
  ``(k + 1/2) / K`` (``rates="zero"``: ``(k / (K - 1))^2``, several exactly 0) in a shuffled
  order, and the rest of its ``round(p n)`` rows from the other rows; every model keeps the same
  number of rows (one shape for the vmapped population).
  """
  forget_pos = np.asarray(forget_pos, np.int64)
  n_keep, n_f, k_models = int(round(keep_fraction * n)), int(forget_pos.size), int(num_models)
  others = np.setdiff1d(np.arange(int(n)), forget_pos)
  rng = np.random.default_rng([int(seed), _MASKS_SEED, 1])
  if rates not in ("uniform", "zero"):
    raise ConfigError(f"rates={rates!r}: use 'uniform' or 'zero'")
  grid = (np.arange(k_models) + 0.5) / k_models if rates == "uniform" else \
      (np.arange(k_models) / max(k_models - 1, 1)) ** 2
  rates = rng.permutation(grid)
  keep = np.zeros((k_models, int(n)), bool)
  for k in range(k_models):
    m = min(int(round(rates[k] * n_f)), n_keep)
    keep[k, rng.permutation(forget_pos)[:m]] = True
    keep[k, rng.permutation(others)[:n_keep - m]] = True
  return keep


def draw_pool_masks(n: int, pool_pos, num_models: int, keep_fraction: float,
                    seed: int) -> np.ndarray:
  """``keep`` ``[K, n]``: every row outside the pool (positions ``pool_pos``) and a random
  ``round(p n) - (n - |pool|)`` rows of the pool, drawn per model.

  With ``p = 1 - |D_f| / n`` model ``k`` is a retraining that forgot a random subset of the
  pool of D_f's size: for a row of D_f, the models that left it out kept as many other pool
  rows as a model retrained without D_f does.
  """
  pool_pos = np.asarray(pool_pos, np.int64)
  n_keep = int(round(keep_fraction * n))
  others = np.setdiff1d(np.arange(int(n)), pool_pos)
  m = n_keep - others.size
  if not 0 < m < pool_pos.size:
    raise ConfigError(f"a pool store keeps the {others.size} rows outside the pool and part of "
                      f"its {pool_pos.size}; keep_fraction={keep_fraction} keeps {n_keep} of "
                      f"{n}, so it must lie between {(others.size + 1) / n:.4g} and "
                      f"{(n - 1) / n:.4g}")
  rng = np.random.default_rng([int(seed), _MASKS_SEED, 2])
  keep = np.zeros((int(num_models), int(n)), bool)
  keep[:, others] = True
  for k in range(int(num_models)):
    keep[k, rng.permutation(pool_pos)[:m]] = True
  return keep


def _batched_logits(apply_fn, params, x, batch: int):
  """``apply_fn(params, x)`` in batches of ``batch`` rows (``lax.map``), so a chunk of models
  never holds activations for every row at once."""
  n = x.shape[0]
  b = max(1, min(int(batch), n))
  nb = -(-n // b)
  pad = nb * b - n
  if pad:
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
  z = jax.lax.map(lambda xb: apply_fn(params, xb), x.reshape(nb, b, *x.shape[1:]))
  return z.reshape(nb * b, -1)[:n]


def attribution_member(model, optimizer, input_shape, *, epochs: int, batch_size: int,
                       eval_batch_size: int):
  """``member(key, rows, x_all, y_all, x_points, y_points, x_held, y_held) -> record``: one
  model trained from scratch on ``x_all[rows]``, its logits and phi on every training point
  and on the held-out examples."""
  train = train_lib.make_train_fn(model, optimizer, input_shape, epochs=epochs,
                                  batch_size=batch_size)

  def member(key, rows, x_all, y_all, x_points, y_points, x_held, y_held):
    state, _ = train(key, x_all[rows], y_all[rows])
    apply_fn = train_lib.eval_apply_fn(model, state.batch_stats)
    z = _batched_logits(apply_fn, state.params, x_points, eval_batch_size).astype(jnp.float32)
    zh = _batched_logits(apply_fn, state.params, x_held, eval_batch_size).astype(jnp.float32)
    return {"phi": phi_lib.logit_confidence(z, y_points), "logits": z,
            "heldout_phi": phi_lib.logit_confidence(zh, y_held), "heldout_logits": zh}
  return member


class _NpzChunks:
  """The population service's chunk cache (``load_or_build``), as ``.npz`` files in one
  folder: a chunk is restored when its file exists, else built and written atomically."""

  def __init__(self, directory: Path):
    self.directory = Path(directory)

  def path(self, stage: str) -> Path:
    return self.directory / f"{stage}.npz"

  def load_or_build(self, stage, build, abstract, *, protected=False, check=None):
    del abstract, protected
    path = self.path(stage)
    if path.exists():
      with np.load(path) as f:
        return {k: f[k] for k in f.files}, {}, True
    tree, meta = build()
    if check is not None:
      check(tree)
    self.directory.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
      workdir_lib.atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v)
                                                              for k, v in tree.items()}))
    return tree, meta, False


# --- estimates -------------------------------------------------------------------------------


def _masked_stats(values: np.ndarray, mask: np.ndarray) -> tuple:
  """Column count, mean and sample standard deviation (ddof=1) of ``values`` where ``mask``."""
  values = np.asarray(values, np.float64)
  count = mask.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(mask, values, 0.0).sum(0) / count
    ss = np.where(mask, (values - mean) ** 2, 0.0).sum(0)
    sd = np.where(count >= 2, np.sqrt(ss / (count - 1)), np.nan)
  return count.astype(np.int64), np.where(count >= 1, mean, np.nan), sd


def estimates(phi: np.ndarray, keep: np.ndarray) -> dict:
  """Per-example IN and OUT statistics of phi ``[K, n]`` under ``keep`` ``[K, n]``:
  ``in_mean``, ``in_std``, ``in_count``, ``out_mean``, ``out_std``, ``out_count`` (means NaN
  without a model on that side, standard deviations with fewer than 2)."""
  keep = np.asarray(keep, bool)
  if np.shape(phi) != keep.shape:
    raise ConfigError(f"phi {np.shape(phi)} and keep {keep.shape} must have one shape [K, n]")
  out = {}
  for side, mask in (("in", keep), ("out", ~keep)):
    count, mean, sd = _masked_stats(phi, mask)
    out[f"{side}_mean"], out[f"{side}_std"], out[f"{side}_count"] = mean, sd, count
  return out


# --- the store -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Store:
  """A finished attribution store (read with :func:`load`; built with :func:`build`).

  Attributes:
    path: its folder.
    meta: ``attribution.json``.
    keep: ``[K, n]`` bool, model ``k`` trained on training point ``j``.
    rows: ``[n]`` the training points' dataset row indices (sorted).
    labels: ``[n]`` their labels as trained on; ``heldout_labels``: ``[m]`` the test labels.
    estimates: ``in_mean``, ``in_std``, ``in_count``, ``out_mean``, ``out_std``,
      ``out_count`` (``[n]``), ``heldout_mean``, ``heldout_std`` (``[m]``).
  """
  path: Path
  meta: dict
  keep: np.ndarray
  rows: np.ndarray
  labels: np.ndarray
  heldout_labels: np.ndarray
  estimates: dict

  @property
  def num_models(self) -> int:
    return int(self.keep.shape[0])

  def _chunks(self, name: str) -> np.ndarray:
    return np.concatenate([part for _, part in self.chunks(name)])

  def chunks(self, name: str):
    """Yields ``(first_model, array)`` per chunk file of ``name`` (``"phi"``, ``"logits"``,
    ``"heldout_phi"``, ``"heldout_logits"``): one chunk in memory at a time."""
    start = 0
    for file in self.meta["chunks"]:
      with np.load(self.path / file) as f:
        part = f[name]
      yield start, part
      start += part.shape[0]

  def phi(self, heldout: bool = False) -> np.ndarray:
    """``[K, n]`` phi of every model on every training point (``heldout``: ``[K, m]``)."""
    return self._chunks("heldout_phi" if heldout else "phi")

  def logits(self, heldout: bool = False) -> np.ndarray:
    """``[K, n, C]`` logits on every training point (``heldout``: ``[K, m, C]``)."""
    return self._chunks("heldout_logits" if heldout else "logits")

  def positions(self, idx) -> np.ndarray:
    """The store positions of dataset rows ``idx`` (refused if not training rows)."""
    idx = np.asarray(idx, np.int64).ravel()
    pos = np.searchsorted(self.rows, idx)
    ok = (pos < self.rows.size) & (self.rows[np.minimum(pos, self.rows.size - 1)] == idx)
    if not ok.all():
      raise ConfigError(f"rows {idx[~ok][:5].tolist()} are not training rows of this store "
                        f"({self.rows.size} rows; held-out rows have no IN models)")
    return pos


def load(path) -> Store:
  """The store in ``path`` (a folder with ``attribution.json``)."""
  path = Path(path)
  if not (path / META).is_file():
    raise ConfigError(f"{path} holds no finished attribution store ({META} missing); build it "
                      "with experiments/attribute.py or attribution.build")
  meta = json.loads((path / META).read_text())
  with np.load(path / "masks.npz") as f:
    masks = {k: f[k] for k in f.files}
  with np.load(path / "estimates.npz") as f:
    est = {k: f[k] for k in f.files}
  return Store(path, meta, masks["keep"], masks["rows"], masks["labels"],
               masks["heldout_labels"], est)


def build(prep, settings: Settings | None = None, *, progress: bool | None = None) -> Store:
  """The attribution store of ``prep``'s training set: loaded when finished, else trained
  chunk by chunk (finished chunks restored) and written.

  Args:
    prep: a :class:`jaxunlearn.request.Prepared` or :class:`jaxunlearn.request.Request`.
    settings: K, p, seed, chunk size, memory share and root (:class:`Settings`).
    progress: a progress bar over chunks (default: ``report.progress``).

  Raises:
    ConfigError: bad settings, or a size over memory (before any training).
  """
  settings = settings or Settings()
  check(prep, settings)
  directory = store_dir(prep, settings)
  if (directory / META).is_file():
    return load(directory)
  check_memory(prep, settings)
  with _one_builder(directory):
    if (directory / META).is_file():      # another builder finished it while this one waited
      return load(directory)
    return _build(prep, settings, directory, progress)


@contextlib.contextmanager
def _one_builder(directory: Path):
  """One builder per store at a time: a store that several work dirs share has no work-dir
  lock, so a second process waits for the first (one line says so) and then loads its store.
  With several processes (a multi-host mesh) they build it together, and no lock is taken."""
  if jax.process_count() > 1:
    yield
    return
  directory.mkdir(parents=True, exist_ok=True)

  def announce(holder: str) -> None:
    print(f"attribution store {directory} is being built by pid {holder}; waiting for it",
          file=sys.stderr, flush=True)
  with workdir_lib.Lock(directory, wait=True, on_wait=announce):
    yield


def _build(prep, settings: Settings, directory: Path, progress: bool | None) -> Store:
  cfg = prep.cfg
  chunk, _ = _resolved(prep, settings)
  spec = key_spec(prep, settings)
  rows = np.asarray(prep.splits.train_idx)
  n = int(rows.size)
  if settings.forget_rate == "pool":
    keep = draw_pool_masks(n, np.searchsorted(rows, _rate_rows(prep, settings)),
                           settings.num_models, settings.keep_fraction, settings.seed)
  elif settings.forget_rate:
    keep = draw_rate_masks(n, np.searchsorted(rows, prep.splits.forget_idx),
                           settings.num_models, settings.keep_fraction, settings.seed,
                           rates=settings.forget_rate)
  else:
    keep = draw_masks(n, settings.num_models, settings.keep_fraction, settings.seed)
  n_keep = int(keep[0].sum())
  member_rows = np.stack([rows[k] for k in keep])
  epochs, batch = int(cfg.train.epochs), min(int(cfg.train.batch_size), n_keep)
  eval_batch = int(cfg.eval.batch_size)
  model, shape = prep.model, tuple(prep.data.input_shape)
  recipe = json.dumps(spec["train"], sort_keys=True)
  impl = models.implementation(cfg.model)
  member = pops.cached_member(
      (NAME, repr(model), json.dumps(impl, sort_keys=True, default=str), shape, recipe, n_keep,
       eval_batch),
      lambda: attribution_member(model, train_lib.optimizer_for_rows(cfg.train, n_keep, epochs),
                                 shape, epochs=epochs, batch_size=batch,
                                 eval_batch_size=eval_batch))
  x_all, y_all = jnp.asarray(prep.x_train), jnp.asarray(prep.y_train)
  x_test, y_test = jnp.asarray(prep.data.x_test), jnp.asarray(prep.data.y_test)
  abstract = stages.abstract_variables(model, cfg.train, shape)
  pop = pops.Population(
      name=NAME, size=int(settings.num_models), member=member,
      mapped=(jnp.asarray(member_rows, jnp.int32),),
      shared=(x_all, y_all, x_all[rows], y_all[rows], x_test, y_test), spec=spec,
      driver=pops.resolve_driver(cfg.audit.driver, abstract["params"], prep.mesh))
  t0 = time.perf_counter()
  cache = _NpzChunks(directory)
  out = pops.run_population(pop, stages.stage_key(settings.seed, NAME), cache, n_audit=n,
                            chunk_size=chunk, mesh=prep.mesh,
                            progress=cfg.report.progress if progress is None else progress)
  chunk_used = pops.balanced_chunk(pop.size, chunk)
  n_chunks = -(-pop.size // chunk_used)
  labels, heldout_labels = np.asarray(prep.y_train)[rows], np.asarray(prep.data.y_test)
  est = estimates(out["phi"], keep)
  held = np.asarray(out["heldout_phi"], np.float64)
  est["heldout_mean"], est["heldout_std"] = held.mean(0), held.std(0, ddof=1)
  per_model = cost_lib.training_cost(n_keep, epochs, batch)
  meta = {
      "key": directory.name, "spec": spec, "num_models": int(settings.num_models),
      "keep_fraction": float(settings.keep_fraction), "kept_rows": n_keep, "n_train": n,
      "forget_rate": settings.forget_rate,
      **({"pool": [int(i) for i in _rate_rows(prep, settings)]}
         if settings.forget_rate == "pool" else {}),
      "n_heldout": int(heldout_labels.size), "heldout": "test split",
      "num_classes": int(prep.data.num_classes), "chunk_size": chunk_used,
      "chunks": [cache.path(pops.member_stage(pop, c, chunk_used)).name
                 for c in range(n_chunks)],
      "chunks_reused": int(out["chunks_reused"]),
      "cost": {"one_off_examples": per_model * int(settings.num_models),
               "per_model_examples": per_model,
               "retrain_examples": cost_lib.training_cost(n, epochs, min(int(cfg.train.batch_size),
                                                                         n)),
               "what": "K x train.epochs x kept rows (whole batches), paid once per store"},
      "time_s": time.perf_counter() - t0,
      "estimator": "effect_of: sum over D_f of differences of means (OUT - IN) per point",
  }
  if jax.process_index() == 0:
    directory.mkdir(parents=True, exist_ok=True)
    workdir_lib.atomic_write(directory / "masks.npz", lambda f: np.savez(
        f, keep=keep, rows=rows, labels=labels, heldout_labels=heldout_labels))
    workdir_lib.atomic_write(directory / "estimates.npz", lambda f: np.savez(f, **est))
    workdir_lib.atomic_write(directory / META, json.dumps(meta, indent=2))
  return Store(directory, meta, keep, rows, labels, heldout_labels, est)


# --- products --------------------------------------------------------------------------------


def memorisation(store: Store) -> np.ndarray:
  """``[n]`` Feldman's memorisation of each training point: IN mean phi minus OUT mean phi
  (NaN where a side has no model)."""
  return np.asarray(store.estimates["in_mean"] - store.estimates["out_mean"], np.float64)


def _count_zero_fit(store: Store, forget_idx, degree: int, step: bool, what: str):
  """D_f's store positions, its keep matrix ``[K, m]`` and each row's design matrix: the
  checks and columns :func:`count_zero` and :func:`teacher` share (intercept, own membership,
  the others' share, its square with ``degree=2``, "kept any other" with ``step``)."""
  if degree not in (1, 2):
    raise ConfigError(f"{what} degree={degree!r}: use 1 (linear in the others' share) or 2")
  pos = store.positions(forget_idx)
  keep_f = np.asarray(store.keep[:, pos], np.float64)
  k_models, m = keep_f.shape
  n_coef = 2 + degree + int(step)
  if k_models < n_coef + 1 or m < 2:
    raise ConfigError(f"{what} needs at least {n_coef + 1} models and 2 rows of D_f, got "
                      f"{k_models} and {m}; raise the store's num_models")
  if step and not (keep_f.sum(1) == 0).any():
    raise ConfigError(f"a step fit needs store models that kept none of D_f, and "
                      f"{store.path.name} has none; build it with forget_rate='zero'")
  total = keep_f.sum(1)

  def design(j):
    own = keep_f[:, j]
    share = (total - own) / (m - 1)
    return np.stack([np.ones(k_models), own, share, *([share ** 2] if degree == 2 else []),
                     *([(total - own > 0).astype(float)] if step else [])], 1)
  return pos, keep_f, design


def count_zero(store: Store, forget_idx, *, values: np.ndarray | None = None,
               degree: int = 1, step: bool = False) -> dict:
  """Each D_f row's phi at "trained on none of D_f", by regression over the store's models.

  No store model leaves out all of D_f, and on a memorised or backdoored set D_f's rows teach
  each other, so a row's OUT mean is not what a model retrained without D_f gives it. With
  D_f kept at a per-model rate (``Settings.forget_rate="uniform"``), each row ``i``'s phi over
  the K models is fitted by least squares on its own membership and the share of the other
  D_f rows the model kept, ``phi_ik ~ a_i + b_i in_ik + c_i share_-i,k``, and read at
  ``in = share = 0``: ``mean = a_i``; ``std`` is the fit's residual standard deviation (the
  spread of models around it), ``slope_share`` is ``c_i`` and ``own`` is ``b_i``, what the
  row's own membership adds (large where the row is memorised as an exception, small where the
  others teach it, as a backdoor's triggered images teach each other). ``degree=2`` adds ``share^2``
  (a curved effect of the others); ``step=True`` an indicator of "kept any other D_f row"
  (as :func:`teacher`'s; needs models that kept none of D_f, ``forget_rate="zero"``).

  Args:
    store: a built store.
    forget_idx: D_f's dataset rows.
    values: ``[K, n]`` per-model values to fit instead of phi (e.g. one logit column).
  """
  pos, keep_f, design = _count_zero_fit(store, forget_idx, degree, step, "count_zero")
  v = np.asarray(store.phi() if values is None else values, np.float64)[:, pos]
  k_models, m = keep_f.shape
  n_coef = 2 + degree + int(step)
  mean, sd, slope, own = np.empty(m), np.empty(m), np.empty(m), np.empty(m)
  for j in range(m):
    x = design(j)
    coef, *_ = np.linalg.lstsq(x, v[:, j], rcond=None)
    resid = v[:, j] - x @ coef
    mean[j], own[j], slope[j] = coef[0], coef[1], coef[2]
    sd[j] = np.sqrt(resid @ resid / max(k_models - n_coef, 1))
  return {"mean": mean, "std": sd, "slope_share": slope, "own": own}


def teacher(store: Store, forget_idx, *, degree: int = 2,
            step: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Per-example target logits on D_f at "trained on none of D_f", and the models around them.

  :func:`count_zero` on every logit at once: row ``i``'s ``C`` logits over the K models are
  fitted by least squares on its own membership and the share of the other D_f rows each model
  kept (and that share squared, ``degree=2``), and read at ``in = share = 0``. The residuals
  (each model's logits minus the fit at its own membership and share) are the spread of models
  around the fit: a run that adds one model's residual per example (``matching``'s ``noise``)
  draws a target as a retrained model would land, not the mean of them.

  Args:
    store: a store whose D_f rows are kept at a per-model rate (``forget_rate="uniform"``).
    forget_idx: D_f's dataset rows.
    degree: 1 (linear in the others' share) or 2.
    step: add an indicator of "kept any other D_f row", so the fit can jump between none and
      one (a backdoor is taught by a single triggered image); needs models that kept none of
      D_f (``forget_rate="zero"``).

  Returns:
    ``(target [n_f, C], residuals [K, n_f, C])``, float32, rows in ``forget_idx``'s order.
  """
  rate = store.meta.get("forget_rate", "")
  if rate not in ("uniform", "zero"):
    raise ConfigError(f"the attribution store {store.path.name} keeps every row at one rate, so "
                      "no model holds little of D_f and a fit at none of it is a long "
                      "extrapolation; build it with forget_rate='uniform' (--forget-rate uniform)")
  pos, _, design = _count_zero_fit(store, forget_idx, degree, step, "a teacher fit")
  z = np.asarray(store.logits(), np.float64)[:, pos, :]          # [K, m, C]
  target = np.empty(z.shape[1:])
  resid = np.empty_like(z)
  for j in range(z.shape[1]):
    x = design(j)
    coef, *_ = np.linalg.lstsq(x, z[:, j, :], rcond=None)       # [n_coef, C]
    target[j] = coef[0]
    resid[:, j] = z[:, j, :] - x @ coef
  return target.astype(np.float32), resid.astype(np.float32)


SPREADS = ("out", "pooled")


def pooled_spread_scale(store: Store, pos) -> np.ndarray:
  """``[m]`` factors that move each row's OUT spread to a pooled estimate (``spread="pooled"``).

  A row's OUT standard deviation of phi rests on its few OUT models (about 13 in a K = 128 store
  at keep 0.9), its IN one on the many others. The pooled estimate is the geometric mean of the
  row's OUT sd and its IN sd times ``r``, the median over the store's rows of OUT sd / IN sd
  (a store-wide ratio, so a row's IN sd is put on the OUT scale). The factor is that estimate
  over the row's OUT sd; a row whose two sds are not both positive keeps factor 1.
  """
  e = store.estimates
  s_in, s_out = np.asarray(e["in_std"], np.float64), np.asarray(e["out_std"], np.float64)
  ok = np.isfinite(s_in) & np.isfinite(s_out) & (s_in > 0) & (s_out > 0)
  if not ok.any():
    return np.ones(np.size(pos))
  ratio = float(np.median(s_out[ok] / s_in[ok]))
  pos = np.asarray(pos)
  with np.errstate(invalid="ignore", divide="ignore"):
    scale = np.sqrt(ratio * s_in[pos] / s_out[pos])
  return np.where(ok[pos], scale, 1.0)


def out_teacher(store: Store, forget_idx, *, spread: str = "out"
                ) -> tuple[np.ndarray, np.ndarray]:
  """Per-example target logits on D_f from a shared store: each row's OUT models.

  A store that keeps every row at one rate (``forget_rate=""``) does not depend on the forget
  set, so every request on its training set shares it. Row ``i``'s target is the mean logits
  of the models that did not train on it, and its residuals are those models' deviations from
  that mean, laid out ``K`` deep: slot ``l`` of row ``i`` holds its ``(l mod n_i)``-th OUT
  model's (``n_i`` its OUT count), so that a run's draw, uniform over the ``K`` slots, picks
  each of the row's OUT models about equally often (exactly when ``n_i`` divides ``K``; at
  most one slot more for some). Those models still trained on
  most of the rest of D_f, so the target stands for "retrained without D_f" only where D_f's
  rows do not teach each other (a random forget set; not a memorised or backdoored one, whose
  transform makes the store per forget set anyway, :func:`teacher`).

  With ``spread="pooled"`` each row's residuals are scaled by :func:`pooled_spread_scale`, so a
  run's spread on a row rests on all K models, not on the row's few OUT models alone.

  Returns:
    ``(target [n_f, C], residuals [K, n_f, C])``, float32, rows in ``forget_idx``'s order.

  Raises:
    ConfigError: a D_f row with fewer than 2 OUT models (raise K or lower keep_fraction), or
      an unknown ``spread``.
  """
  if spread not in SPREADS:
    raise ConfigError(f"out_teacher: spread={spread!r} is not one of {SPREADS}")
  pos = store.positions(forget_idx)
  out = ~np.asarray(store.keep[:, pos], bool)                    # [K, m]
  n_out = out.sum(0)
  if n_out.min() < 2:
    raise ConfigError(f"an OUT teacher needs at least 2 models that left each D_f row out, and "
                      f"{store.path.name} has {int(n_out.min())} for some row; raise num_models "
                      "or lower keep_fraction")
  z = np.asarray(store.logits(), np.float64)[:, pos, :]         # [K, m, C]
  k_models = z.shape[0]
  target = np.empty(z.shape[1:])
  resid = np.empty_like(z)
  for j in range(z.shape[1]):
    zj = z[out[:, j], j, :]
    target[j] = zj.mean(0)
    resid[:, j] = (zj - target[j])[np.arange(k_models) % zj.shape[0]]
  if spread == "pooled":
    resid *= pooled_spread_scale(store, pos)[None, :, None]
  return target.astype(np.float32), resid.astype(np.float32)


IN_SLOTS = 32


def in_teacher(store: Store, rows, *, slots: int = IN_SLOTS) -> tuple[np.ndarray, np.ndarray]:
  """Per-example target logits on rows a retrained model trains on (D_r), from a shared store.

  Row ``i``'s target is the mean logits of the store models that trained on it, and its
  residuals are those models' deviations, ``slots`` deep: slot ``l`` holds the row's
  ``(l mod n_i)``-th IN model (``n_i`` its IN count), as :func:`out_teacher` lays out OUT
  models. A run that draws one slot per row lands on D_r as one of those models does, where
  the original's own logits on D_r give every run the same target. ``slots`` (at most K)
  bounds the memory: ``[slots, n, C]`` floats, no more than the store's own logits.

  Returns:
    ``(target [n, C], residuals [min(slots, K), n, C])``, float32, rows in ``rows``' order.

  Raises:
    ConfigError: a row with fewer than 2 IN models.
  """
  pos = store.positions(rows)
  keep = np.asarray(store.keep[:, pos], bool)                     # [K, n]
  n_in = keep.sum(0)
  if n_in.min() < 2:
    raise ConfigError(f"an IN teacher on D_r needs at least 2 models that trained on each row, "
                      f"and {store.path.name} has {int(n_in.min())} for some row")
  z = np.asarray(store.logits(), np.float32)[:, pos, :]           # [K, n, C]
  slots = min(int(slots), z.shape[0])       # no larger than the store's logits (check_memory)
  target = (np.einsum("kn,knc->nc", keep, z, dtype=np.float64) / n_in[:, None])
  # The l-th slot of row i: the index of its (l mod n_i)-th IN model.
  order = np.argsort(~keep, axis=0, kind="stable")                 # IN models first, per row
  pick = order[np.arange(slots)[:, None] % n_in[None, :], np.arange(pos.size)[None, :]]
  resid = z[pick, np.arange(pos.size)[None, :], :] - target[None].astype(np.float32)
  return target.astype(np.float32), resid.astype(np.float32)


def pool_info(store: Store, forget_idx) -> dict:
  """What a pool store holds against a request: the pool's size, how many other pool rows its
  models keep, and how many a model retrained without ``forget_idx`` keeps (they are equal
  when the store's ``keep_fraction`` is ``1 - |D_f| / n``; otherwise the OUT teacher reads
  models that kept more or fewer of the pool than retraining does)."""
  n_pool = int(len(store.meta["pool"]))
  kept = int(store.keep[0, store.positions(np.asarray(store.meta["pool"]))].sum())
  return {"rates": "pool", "pool_rows": n_pool, "pool_kept_per_model": kept,
          "pool_kept_by_retraining": n_pool - int(np.asarray(forget_idx).size)}


def retain_teacher(store: Store, forget_idx, remain_idx, *, degree: int = 2, step: bool = False,
                   chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Per-example target logits on D_r rows as a model retrained without D_f would give them.

  The retain side of :func:`teacher`: each D_r row's ``C`` logits over the K models are fitted
  by least squares on the row's own membership and on the share of D_f each model kept (its
  square with ``degree=2``, "kept any of D_f" with ``step``), and read at ``in = 1`` (the row is
  trained on, as retraining trains on it) and ``share = 0``. The original's own logits on D_r
  still carry D_f's influence (a label-flipped D_f costs accuracy on clean rows too); these do
  not. The residuals are the models' spread around the fit, which a run draws from.

  Rows are fitted ``chunk`` at a time (batched pseudo-inverses), so memory stays at
  ``chunk * K * (C + 5)`` floats beside the store's logits.

  Args:
    store: a store whose D_f rows are kept at a per-model rate (as :func:`teacher`'s).
    forget_idx: D_f's dataset rows.
    remain_idx: the D_r rows to fit (dataset rows; training rows of the store).
    degree, step: as :func:`teacher`'s.

  Returns:
    ``(target [n_r, C], residuals [K, n_r, C])``, float32, rows in ``remain_idx``'s order.
  """
  _, keep_f, _ = _count_zero_fit(store, forget_idx, degree, step, "a retain teacher fit")
  r_pos = store.positions(remain_idx)
  f_pos = store.positions(forget_idx)
  if np.isin(r_pos, f_pos).any():
    raise ConfigError("retain_teacher: remain_idx and forget_idx share rows; D_r must not "
                      "hold any row of D_f")
  k_models, m = keep_f.shape
  share = keep_f.sum(1) / m
  cols = [share, *([share ** 2] if degree == 2 else []),
          *([(keep_f.sum(1) > 0).astype(float)] if step else [])]
  z_all = np.asarray(store.logits(), np.float64)                  # [K, n, C]
  keep = np.asarray(store.keep, np.float64)
  target = np.empty((r_pos.size, z_all.shape[-1]), np.float32)
  resid = np.empty((k_models, r_pos.size, z_all.shape[-1]), np.float32)
  at = np.array([1.0, 1.0] + [0.0] * len(cols))                  # in = 1, share = 0
  for lo in range(0, r_pos.size, chunk):
    pos = r_pos[lo:lo + chunk]
    own = keep[:, pos].T                                           # [b, K]
    x = np.stack([np.ones_like(own), own, *(np.broadcast_to(c, own.shape) for c in cols)],
                 -1)                                               # [b, K, p]
    z = np.moveaxis(z_all[:, pos, :], 0, 1)                        # [b, K, C]
    coef = np.linalg.pinv(x) @ z                                   # [b, p, C]
    target[lo:lo + chunk] = np.einsum("p,bpc->bc", at, coef)
    resid[:, lo:lo + chunk] = np.moveaxis(z - x @ coef, 1, 0)
  return target, resid


def none_kept_residuals(store: Store, forget_idx, resid: np.ndarray) -> np.ndarray:
  """The residuals ``[K', n_f, C]`` of the store models that kept none of D_f.

  Their spread around the fit is that of models trained without D_f (on the store's share of
  D_r), not that of models holding part of it: a run that draws from these alone
  (``matching``'s ``draw_from="none_kept"``) spreads as retrained models do, where the
  residuals of every model spread 1.3-2.4 times wider on quick_audit.

  Raises:
    ConfigError: fewer than 2 such models (a store with ``forget_rate="zero"`` has several).
  """
  none_kept = np.asarray(store.keep[:, store.positions(forget_idx)]).sum(1) == 0
  if none_kept.sum() < 2:
    raise ConfigError(f"drawing from the store models that kept none of D_f needs at least 2, "
                      f"and {store.path.name} has {int(none_kept.sum())}")
  return resid[none_kept]


def teacher_settings(prep, plan) -> tuple[Settings, int, bool]:
  """The store settings, fit degree and step a plan's teacher uses (``teacher_spec``):
  D_f at a per-model rate, the attribution's default seed, stores under
  ``WORKDIR/attribution``."""
  spec = plan.method.teacher_spec()
  return Settings(num_models=int(spec["num_models"]), keep_fraction=float(spec["keep_fraction"]),
                  forget_rate=str(spec.get("rates", "uniform"))), int(spec.get("degree", 2)), \
      bool(spec.get("step", False))


def out_counts(prep, settings: Settings) -> np.ndarray:
  """``[|D_f|]``: how many of a shared store's models (``forget_rate`` ``""`` or ``"pool"``)
  leave each D_f row out, from the seeded masks :func:`build` draws, before anything trains."""
  rows = np.asarray(prep.splits.train_idx)
  n = int(rows.size)
  if settings.forget_rate == "pool":
    keep = draw_pool_masks(n, np.searchsorted(rows, _rate_rows(prep, settings)),
                           settings.num_models, settings.keep_fraction, settings.seed)
  else:
    keep = draw_masks(n, settings.num_models, settings.keep_fraction, settings.seed)
  return (~keep[:, np.searchsorted(rows, prep.splits.forget_idx)]).sum(0)


def check_teacher(prep, plan) -> None:
  """Refuses, before any work, a teacher store that cannot be built for this request: its
  settings (:func:`check`, e.g. |D_f| beside the kept rows) and its memory."""
  settings, degree, step = teacher_settings(prep, plan)
  where = f"{plan.label}: the teacher store of method {plan.name!r}"
  try:
    check(prep, settings)
    check_memory(prep, settings)
    n_coef = 2 + degree + int(step)
    if settings.forget_rate in ("", "pool"):
      # The masks are seeded, so the OUT teacher's models per row are known before training.
      fewest = int(out_counts(prep, settings).min())
      if fewest < 2:
        raise ConfigError(f"the store's masks leave some row of D_f out of only {fewest} of its "
                          f"{settings.num_models} models, and an OUT teacher needs at least 2; "
                          "raise num_models or lower keep_fraction (more models leave each "
                          "row out)")
    if settings.forget_rate in ("uniform", "zero") and settings.num_models < n_coef + 1:
      raise ConfigError(f"{settings.num_models} models leave no residual beside the fit's "
                        f"{n_coef} coefficients per row; use teacher_models >= {n_coef + 1}")
  except ConfigError as e:
    # Name the method's own fields, not the store command's flags.
    message = str(e).replace(f"{_field('forget_rate')}={settings.forget_rate!r}",
                             "a per-model rate on D_f")
    for setting, option in plan.method.teacher_spec().get("fields", {}).items():
      message = message.replace(_field(setting), f"unlearn.{plan.name}.{option}")
      message = message.replace(f" {setting} ", f" unlearn.{plan.name}.{option} ")
    raise ConfigError(f"{where}: {message}") from None


def request_teacher(prep, plan, *, progress: bool | None = None) -> tuple[tuple, dict]:
  """``(teacher, info)``: the teacher of ``plan``'s method for ``prep``'s D_f, and what it
  cost. ``teacher`` maps input fields to arrays, from the store :func:`build` makes or loads:
  ``teacher_target`` and ``teacher_residuals`` (:func:`teacher`), and where the plan reads
  them ``teacher_remain_target`` and ``teacher_remain_residuals`` (:func:`retain_teacher` on
  D_r) and ``teacher_own_effect`` (:func:`count_zero`'s ``own`` on phi).

  With a store that keeps every row at one rate (the plan's spec has ``rates=""``), the
  target is :func:`out_teacher`'s and no D_r teacher or own effect is offered.

  ``info`` names the store and its one-off cost in examples beside retraining's; with a
  forget-set-dependent transform or a rate on D_f (``forget_rate="uniform"`` or ``"zero"``)
  the store belongs to this forget set, so that cost is paid per forget set
  (``per_forget_set``); otherwise every request on the same training set shares it."""
  settings, degree, step = teacher_settings(prep, plan)
  store = build(prep, settings, progress=progress)
  forget_idx = prep.splits.forget_idx
  shared = settings.forget_rate in ("", "pool")     # the store does not depend on D_f
  if shared:
    target, resid = out_teacher(store, forget_idx, spread=plan.method.teacher_spec().get(
        "spread", "out"))
  else:
    target, resid = teacher(store, forget_idx, degree=degree, step=step)
  if plan.method.teacher_spec().get("draw_from", "all") == "none_kept":
    try:
      resid = none_kept_residuals(store, forget_idx, resid)
    except ConfigError as e:
      raise ConfigError(f"{plan.label}: {e}; raise unlearn.{plan.name}.teacher_models") from None
  out = {"teacher_target": target, "teacher_residuals": resid}
  if "teacher_remain_target" in plan.needs:
    out["teacher_remain_target"], out["teacher_remain_residuals"] = (
        in_teacher(store, prep.splits.remain_idx) if shared else
        retain_teacher(store, forget_idx, prep.splits.remain_idx, degree=degree, step=step))
  if "teacher_own_effect" in plan.needs:
    out["teacher_own_effect"] = count_zero(store, forget_idx, degree=degree,
                                           step=step)["own"].astype(np.float32)
  cost = store.meta["cost"]
  info = {"store": store.meta["key"], "num_models": store.num_models,
          "keep_fraction": float(store.meta["keep_fraction"]),
          **({"fit": "out", "spread": plan.method.teacher_spec().get("spread", "out")}
             if shared else {"degree": degree}),
          **(pool_info(store, forget_idx) if settings.forget_rate == "pool" else {}),
          **({"step": True, "rates": settings.forget_rate} if step else {}),
          "one_off_examples": int(cost["one_off_examples"]),
          "retrain_examples": int(cost["retrain_examples"]),
          "one_off_retrainings": float(cost["one_off_examples"]) / float(cost["retrain_examples"]),
          # A rate on D_f, or a transform of the training data made from D_f (a label flip or
          # backdoor of D_f itself, not of a fixed pool), ties the store to this request.
          "per_forget_set": settings.forget_rate in ("uniform", "zero") or any(
              transforms_lib.get(name)().per_forget_set(prep.cfg) for name in prep.transforms)}
  return out, info


def shared_teacher(plan) -> bool:
  """Whether ``plan``'s teacher store serves any forget set of its training set (or of its
  pool), not only the request's: its rates do not depend on D_f (``rates`` ``""`` or
  ``"pool"``) and its teacher is :func:`out_teacher`'s, so a population whose members forget
  different rows (U-LiRA) can read one teacher per member (:func:`member_teachers`)."""
  return bool(plan.needs_teacher) and plan.method.teacher_spec().get("rates") in ("", "pool")


def retain_anchor_per_member(plan) -> str:
  """Why a shared store's D_r anchor (``anchor="teacher"``) is not served per member."""
  return (f"{plan.label}: method {plan.name!r} anchors D_r on a shared store's IN models "
          "(anchor='teacher'), read for the request's D_r only, and an audit statistic that "
          "forgets a different subset per member (U-LiRA) keeps other rows per member; use "
          f"anchor='logits' for {plan.label!r} there, or audit it without that statistic")


def member_teachers(prep, plan, forget_rows, *, progress: bool | None = None) -> tuple[dict, dict]:
  """``(teachers, info)``: :func:`out_teacher` of a shared store for each member's forget rows.

  Args:
    prep: the request (its training set, transforms and plan).
    plan: a plan whose teacher is shared (:func:`shared_teacher`).
    forget_rows: ``[N, n_f]`` dataset rows each member forgets (e.g. U-LiRA's forget sets).

  Returns:
    ``teacher_target`` ``[N, n_f, C]`` and ``teacher_residuals`` ``[N, K, n_f, C]`` (float32),
    and :func:`request_teacher`'s info for the store.

  Raises:
    ConfigError: a teacher that is not shared, or a row a member forgets outside the store's
      training rows (or its pool).
  """
  if not shared_teacher(plan):
    raise ConfigError(f"{plan.label}: method {plan.name!r} reads a teacher fitted to the "
                      "request's D_f, so members that forget other rows cannot share it; "
                      "use a shared store (teacher_fit='out' or 'pool')")
  if plan.needs_retain_teacher:
    raise ConfigError(retain_anchor_per_member(plan))
  settings, _, _ = teacher_settings(prep, plan)
  store = build(prep, settings, progress=progress)
  rows = np.asarray(forget_rows, np.int64)
  if settings.forget_rate == "pool":
    outside = np.setdiff1d(rows, np.asarray(store.meta["pool"], np.int64))
    if outside.size:
      raise ConfigError(f"{plan.label}: {outside.size} rows the members forget are outside "
                        "the store's pool")
  spread = plan.method.teacher_spec().get("spread", "out")
  pairs = [out_teacher(store, r, spread=spread) for r in rows]
  teachers = {"teacher_target": np.stack([t for t, _ in pairs]),
              "teacher_residuals": np.stack([r for _, r in pairs])}
  cost = store.meta["cost"]
  info = {"store": store.meta["key"], "num_models": store.num_models,
          "keep_fraction": float(store.meta["keep_fraction"]), "fit": "out", "spread": spread,
          "members": int(rows.shape[0]),
          "one_off_examples": int(cost["one_off_examples"]),
          "retrain_examples": int(cost["retrain_examples"]),
          "one_off_retrainings": float(cost["one_off_examples"]) / float(cost["retrain_examples"]),
          "per_forget_set": False}
  return teachers, info


def _contrast(keep_f: np.ndarray) -> np.ndarray:
  """``[K]`` weights ``c_k = sum_i [(1 - keep_ki) / n_out_i - keep_ki / n_in_i]``."""
  keep_f = np.asarray(keep_f, np.float64)
  n_in = keep_f.sum(0)
  n_out = keep_f.shape[0] - n_in
  return ((1 - keep_f) / n_out - keep_f / n_in).sum(1)


def effect_of(store: Store, forget_idx, points=None, *, heldout: bool = False,
              on: str = "phi", with_error: bool = False):
  """The estimated change in each point's phi (or logits) when ``forget_idx`` is removed.

  The sum over the forget rows of each one's difference of means, OUT minus IN (the module
  docstring), computed as one weight per model: never a matrix over pairs.

  Args:
    store: the store.
    forget_idx: dataset rows of D_f (training rows of the store).
    points: dataset rows to estimate on (training rows; with ``heldout``, test-split indices);
      default: all.
    heldout: the points are test examples (no model trained on them).
    on: ``"phi"`` (``[P]``) or ``"logits"`` (``[P, C]``, per class).
    with_error: also return the standard error, ``sqrt(sum_k c_k^2)`` times each point's
      standard deviation over the models.

  Raises:
    ConfigError: a row is not a training row, or a forget row has no IN or no OUT model.
  """
  if on not in ("phi", "logits"):
    raise ConfigError(f"on must be 'phi' or 'logits', got {on!r}")
  f_pos = store.positions(forget_idx)
  if f_pos.size == 0:
    raise ConfigError("forget_idx is empty; name at least one training row")
  keep_f = store.keep[:, f_pos]
  n_in = keep_f.sum(0)
  short = (n_in == 0) | (n_in == store.num_models)
  if short.any():
    example = int(store.rows[f_pos[short][0]])
    raise ConfigError(f"{int(short.sum())} forget rows (e.g. row {example}) have no IN or no OUT "
                      f"model among {store.num_models}; raise attribution num_models "
                      "(--num-models)")
  c = _contrast(keep_f)
  name = ("heldout_" if heldout else "") + ("logits" if on == "logits" else "phi")
  p = slice(None)
  if points is not None:
    if heldout:
      p = np.asarray(points, np.int64).ravel()
      m = store.heldout_labels.size
      if p.size and (p.min() < 0 or p.max() >= m):
        raise ConfigError(f"held-out points must lie in [0, {m})")
    else:
      p = store.positions(points)
  # Chunk by chunk (memory: one chunk, never the whole [K, n, C]); the spread over models from
  # sums of the values and of their squares about the first chunk's mean (float64).
  effect = total = squares = shift = None
  for start, part in store.chunks(name):
    v = np.asarray(part[:, p], np.float64)
    term = np.tensordot(c[start:start + v.shape[0]], v, axes=(0, 0))
    if shift is None:
      shift = v.mean(0)
      effect, total, squares = term, np.zeros_like(shift), np.zeros_like(shift)
    else:
      effect = effect + term
    total += (v - shift).sum(0)
    squares += ((v - shift) ** 2).sum(0)
  if not with_error:
    return effect
  k = store.num_models
  var = (squares - total ** 2 / k) / (k - 1)
  return effect, np.sqrt(np.sum(c ** 2)) * np.sqrt(np.maximum(var, 0.0))
