"""``jaxunlearn audit``: populations of models, the epsilon-score and U-LiRA.

    jaxunlearn audit --config configs/quick_audit.py --workdir runs/quick_audit

It reuses the work dir's original model (``checkpoints/original``, trained
first if missing, exactly as ``jaxunlearn run`` does) and trains populations
of N models under one ``jax.vmap`` each (:mod:`jaxunlearn.populations`). The
audited examples are D_f, with the labels the original trained on (after any
data transform: a label flip or a backdoor makes D_f something the original
measurably memorises).

The epsilon-score (AUDITS.md section 2; :mod:`jaxunlearn.audits.epsilon`)
compares phi on D_f under N unlearned models with phi under N retrained ones:

* ``retrain``: N models trained on D_r (the reference sample);
* ``oracle``: another N trained on D_r, independent (retrain vs retrain: the
  best an unlearning method can score at this N);
* ``none``: N originals trained on all of D (no unlearning at all);
* one population per audited method: N unlearning runs from the work dir's
  original, each with its own key. A method that uses a reference model
  draws its own D_s from D_r and trains its own reference in each run.

U-LiRA (AUDITS.md section 1; :mod:`jaxunlearn.audits.ulira`) plays the
unlearning game on D_f as the pool: M originals each train on D_r plus a
random ``keep_fraction`` of D_f; each is unlearned K times, each time
forgetting a random ``forget_fraction`` of the part of D_f it kept. For an
example, IN models forgot it and OUT models never saw it. Controls:
``retrain_control`` (unlearning = retraining on what is left; must give about
0.5) and ``identity_control`` (no unlearning; the originals themselves).

Outputs under the work dir: ``phi/<population>.npy`` (``[N, n]``) with
``phi/<population>.masks.npz``, ``audit.json``, ``audit.md`` and the plots
``audit_eps.png`` and ``audit_phi.png``. Every population is cached chunk by
chunk, so a killed audit resumes where it stopped.

Choices, where the spec leaves room:

* U-LiRA's pool is D_f itself (no ``pool_size``): every model trains on all
  of D_r, and only D_f's membership varies, so the game is about the
  examples the other audits look at. Unlearning runs get D_r plus the kept
  but not forgotten part of D_f as their remaining data; the retrain control
  trains on exactly that.
* Each U-LiRA model is attacked with Gaussians fitted on the models of the
  other originals (``groups``), never on copies of its own original.
* Population keys are threefry: rbg keys were measured to give different
  phi on 8 devices than on 1.
* Each member gathers its training rows (``x[rows]``), so memory grows with
  ``chunk_size`` times the training set; lower ``audit.chunk_size`` for
  large data sets.

Not done here: the ``unlearn.tol`` early stop (each run does its full
``unlearn.epochs``).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import datetime
import json
import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import config as config_lib, methods, pipeline, populations as pops
from jaxunlearn import splits as splits_lib, train as train_lib, workdir as workdir_lib
from jaxunlearn.audits import epsilon as eps_lib, ulira as ulira_lib
from jaxunlearn.errors import ConfigError

EPSILON_KEYS = ("forgetting_quality", "final_score", "eps_median", "eps_mean", "max_epsilon",
                "n_models_unlearned", "n_models_retrained", "n_examples", "n_degenerate")
ULIRA_KEYS = {"balanced_acc": "balanced_accuracy", "auc": "auc",
              "tpr_at_1pct_fpr": "tpr_at_1pct_fpr", "tpr_at_01pct_fpr": "tpr_at_0.1pct_fpr",
              "accuracy_at_zero": "accuracy_at_zero",
              "per_example_accuracy_median": "per_example_accuracy_median",
              "per_example_accuracy_q90": "per_example_accuracy_q90",
              "frac_examples_above_threshold": "frac_examples_above_threshold",
              "per_example_separation_median": "per_example_separation_median",
              "per_example_separation_q90": "per_example_separation_q90",
              "n_positive": "n_positive", "n_negative": "n_negative",
              "fixed_variance": "fixed_variance"}
CONTROLS = ("retrain", "oracle", "none")


def parse_method(spec: str, unlearn_cfg) -> tuple[str, str, ml_collections.ConfigDict]:
  """``"[label=]method[:field=value,...]"`` -> ``(label, method, unlearn block)``.

  Fields are those of the ``unlearn`` block (``lam``, ``epochs``,
  ``learning_rate``, ``forget_batch_size``, ...) or the method's own
  hyperparameters.
  """
  head, _, tail = spec.partition(":")
  label, _, name = head.rpartition("=")
  name = name.strip()
  label = label.strip() or name
  if not label.isidentifier() or label in CONTROLS or label.startswith("ulira"):
    raise ConfigError(f"audit.methods: {spec!r} needs a label made of letters, digits and _ "
                      f"other than {CONTROLS}; e.g. 'paper=lightweight:lam=0.01'")
  methods.get(name)   # an unknown method fails here, with the list of names
  u = copy.deepcopy(unlearn_cfg)
  with u.unlocked():
    u.method = name
    for item in filter(None, (t.strip() for t in tail.split(","))):
      field, eq, text = item.partition("=")
      field = field.strip()
      if not eq:
        raise ConfigError(f"audit.methods: {item!r} in {spec!r} is not field=value")
      try:
        value = ast.literal_eval(text.strip())
      except (ValueError, SyntaxError):
        value = text.strip()
      own = methods.get(name)().hparams
      if field in own and field not in methods.get(name)().shared_hparams:
        if name not in u:
          u[name] = ml_collections.ConfigDict()
        u[name][field] = float(value)
      elif field in u and not isinstance(u[field], ml_collections.ConfigDict):
        default = u[field]
        u[field] = float(value) if isinstance(default, float) else value
      else:
        raise ConfigError(f"audit.methods: unknown field {field!r} in {spec!r}; use fields of "
                          f"the unlearn block or of the method ({sorted(own)})")
  return label, name, u


def _settings(ctx, u) -> pops.UnlearnSettings:
  cfg = ctx.cfg
  hp = methods.resolve_hparams(u.method, u)
  n_ref = int(ctx.splits.reference_idx.size)
  steps = cfg.reference.epochs * max(1, n_ref // min(cfg.train.batch_size, n_ref))
  return pops.UnlearnSettings(
      method=u.method, hparams={"learning_rate": float(u.learning_rate), **hp}, unlearn_cfg=u,
      reference_size=n_ref, reference_epochs=int(cfg.reference.epochs),
      reference_optimizer=train_lib.make_optimizer(cfg.train, steps),
      reference_batch_size=int(cfg.train.batch_size))


def _method_spec(ctx, u) -> dict:
  cfg = ctx.cfg
  spec = {"unlearn": {k: v for k, v in u.to_dict().items()
                      if k in ("method", "epochs", "forget_batch_size", "remain_batch_size",
                               "optimizer", "learning_rate", "momentum", "weight_decay",
                               "schedule", "stop", "tol", "calibrate_every")},
          "hparams": methods.resolve_hparams(u.method, u),
          "options": methods.resolve_method(u.method, u).opts}
  if methods.get(u.method)().needs_reference:
    spec["reference"] = {"size": int(ctx.splits.reference_idx.size),
                         "epochs": cfg.reference.epochs}
  return spec


def _heldout(ctx):
  s = ctx.splits
  h = s.holdout_idx[np.isin(ctx.y_train[s.holdout_idx], ctx.y_train[s.forget_idx])]
  return (jnp.asarray(ctx.x_train[h]), jnp.asarray(ctx.y_train[h])) if h.size else ()


def _check_method(ctx, label, name, u=None) -> None:
  want = set(methods.get(name)().inputs)
  if u is not None and pops.pipeline_stop_rule(u) == "calibrated":
    want |= {"x_heldout", "y_heldout"}
  if want & {"x_heldout", "y_heldout"} and not _heldout(ctx):
    raise ConfigError(f"audit method {label!r} needs held-out examples of D_f's classes; "
                      "set --config.holdout.size=0.05")


def _seed(cfg) -> int:
  return cfg.audit.seed if cfg.audit.seed >= 0 else cfg.seed


def _key(cfg, name: str):
  # threefry, not rbg: rbg's bits change with the sharding and the vmap size
  # (measured: phi differed by up to 0.96 between 8 devices and 1), threefry's do not.
  return jax.random.fold_in(jax.random.key(_seed(cfg)), zlib.crc32(f"audit/{name}".encode()))


def ulira_masks(cfg, n: int) -> dict:
  """Keep-masks of the M originals and the K forget sets of each, over a pool of ``n``.

  Returns:
    dict of ``keep`` ``[M, n]``, ``forget`` ``[M * K, n]`` (row ``m * K + k``),
    ``groups`` ``[M * K]`` (the original of each unlearned model), and the
    U-LiRA masks ``in_mask`` (forgot it) and ``out_mask`` (never trained on it).
  """
  u = cfg.audit.ulira
  m, k = int(u.num_originals), int(u.forget_sets_per_original)
  n_keep = int(round(u.keep_fraction * n))
  n_forget = int(round(u.forget_fraction * n_keep))
  if not (1 <= n_keep < n and 1 <= n_forget):
    raise ConfigError(f"U-LiRA on a pool of {n} forget examples: keep_fraction "
                      f"{u.keep_fraction} and forget_fraction {u.forget_fraction} leave "
                      f"{n_keep} kept and {n_forget} forgotten; each needs at least 1")
  rng = np.random.default_rng([_seed(cfg), 0x554C4941])
  keep = np.zeros((m, n), bool)
  forget = np.zeros((m * k, n), bool)
  for i in range(m):
    kept = rng.permutation(n)[:n_keep]
    keep[i, kept] = True
    for j in range(k):
      forget[i * k + j, rng.permutation(kept)[:n_forget]] = True
  groups = np.repeat(np.arange(m), k)
  return {"keep": keep, "forget": forget, "groups": groups, "in_mask": forget,
          "out_mask": ~keep[groups]}


_MEMBERS: dict = {}


def _member(key: tuple, make):
  """One member function per model and schedule in a process: populations (and audits)
  with the same member and shapes reuse its compiled code."""
  if key not in _MEMBERS:
    _MEMBERS[key] = make()
  return _MEMBERS[key]


class _Auditor:
  """The populations of one audit (internal)."""

  def __init__(self, ctx, original):
    self.ctx, self.original = ctx, original
    cfg, s = ctx.cfg, ctx.splits
    self.cfg = cfg
    self.n = int(s.n_forget)
    x_all, y_all = jnp.asarray(ctx.x_train), jnp.asarray(ctx.y_train)
    self.x_all, self.y_all = x_all, y_all
    self.data = pops.EvalData(
        x_audit=x_all[s.forget_idx], y_audit=y_all[s.forget_idx], x_remain=x_all[s.remain_idx],
        y_remain=y_all[s.remain_idx], x_test=jnp.asarray(ctx.data.x_test),
        y_test=jnp.asarray(ctx.data.y_test))
    self.base_spec = {"original": json.loads(json.dumps(pipeline.original_fingerprint(ctx))),
                      "forget_hash": ctx.forget_hash(), "seed": _seed(cfg)}
    self.results, self.times = {}, {}
    self.ulira_pool = None   # what U-LiRA's game was, in words

  def run(self, pop: pops.Population, masks: dict) -> dict:
    t0 = time.perf_counter()
    out = pops.run_population(pop, _key(self.cfg, pop.name), self.ctx.cache, n_audit=self.n,
                              chunk_size=self.cfg.audit.chunk_size, mesh=self.ctx.mesh,
                              progress=self.cfg.report.progress)
    self.times[pop.name] = {"time_s": time.perf_counter() - t0,
                            "chunks_reused": int(out["chunks_reused"])}
    if jax.process_index() == 0:
      pops.save_phi(self.ctx.workdir / "phi", pop.name, out["phi"],
                    examples=self.ctx.splits.forget_idx, remain_acc=out["remain_acc"],
                    test_acc=out["test_acc"], **masks)
    self.results[pop.name] = out
    return out

  def train_population(self, name: str, rows: np.ndarray, *, keep_params=False,
                       masks=None) -> dict:
    """N models from scratch; ``rows`` ``[rows]`` (shared) or ``[N, rows]`` (per member)."""
    cfg, ctx = self.cfg, self.ctx
    per_member = rows.ndim == 2
    size = rows.shape[0] if per_member else cfg.audit.num_models
    n_rows = rows.shape[-1]
    steps = cfg.train.epochs * max(1, n_rows // min(cfg.train.batch_size, n_rows))
    opt = train_lib.make_optimizer(cfg.train, steps)
    batch = min(cfg.train.batch_size, n_rows)
    member = _member(("train", repr(ctx.model), tuple(ctx.data.input_shape),
                      json.dumps(cfg.train.to_dict(), sort_keys=True), n_rows, keep_params),
                     lambda: pops.train_member(ctx.model, opt, ctx.data.input_shape,
                                               epochs=cfg.train.epochs, batch_size=batch,
                                               keep_params=keep_params))
    rows_j = jnp.asarray(rows, jnp.int32)
    abstract = None
    if keep_params:
      state = jax.eval_shape(lambda k: train_lib.init_state(ctx.model, opt, k,
                                                            ctx.data.input_shape),
                             jax.random.key(0))
      abstract = (state.params, state.batch_stats)
    pop = pops.Population(
        name=name, size=size, member=member,
        mapped=(rows_j,) if per_member else (),
        shared=(() if per_member else (rows_j,)) + (self.x_all, self.y_all, self.data),
        spec={**self.base_spec, "kind": "train", "train": cfg.train.to_dict(),
              "rows": splits_lib.index_hash(np.asarray(rows).ravel())},
        keep_params=keep_params, abstract_params=abstract)
    return self.run(pop, masks or {})

  def unlearn_population(self, name: str, label: str, u, *, params=None, batch_stats=None,
                         f_rows=None, r_rows=None, masks=None) -> dict:
    """N unlearning runs; per-member originals and rows when given, else the work dir's."""
    ctx = self.ctx
    s = ctx.splits
    settings = _settings(ctx, u)
    per_member = params is not None
    if not per_member:
      params, batch_stats = self.original.params, self.original.batch_stats
      f_rows, r_rows = s.forget_idx, s.remain_idx
    n_forget, n_remain = int(np.shape(f_rows)[-1]), int(np.shape(r_rows)[-1])
    member = _member(("unlearn", repr(ctx.model), tuple(ctx.data.input_shape),
                      json.dumps(_method_spec(ctx, u), sort_keys=True),
                      json.dumps(self.cfg.train.to_dict(), sort_keys=True), n_forget, n_remain),
                     lambda: pops.unlearn_member(ctx.model, ctx.data.input_shape, settings,
                                                 n_forget=n_forget, n_remain=n_remain))
    args = (params, batch_stats, jnp.asarray(f_rows, jnp.int32), jnp.asarray(r_rows, jnp.int32))
    rest = (self.x_all, self.y_all, _heldout(ctx), self.data)
    pop = pops.Population(
        name=name, size=int(np.shape(f_rows)[0]) if per_member else self.cfg.audit.num_models,
        member=member, mapped=args if per_member else (),
        shared=rest if per_member else args + rest,
        spec={**self.base_spec, "kind": "unlearn", "label": label, **_method_spec(ctx, u),
              "train": self.cfg.train.to_dict(),
              "rows": splits_lib.index_hash(np.concatenate(
                  [np.asarray(f_rows).ravel(), np.asarray(r_rows).ravel()]))})
    return self.run(pop, masks or {})


def _epsilon(unlearned: dict, retrained: dict) -> dict:
  rep = eps_lib.epsilon_report(
      unlearned["phi"], retrained["phi"],
      remain_acc_unlearned=float(np.mean(unlearned["remain_acc"])),
      remain_acc_retrained=float(np.mean(retrained["remain_acc"])),
      test_acc_unlearned=float(np.mean(unlearned["test_acc"])),
      test_acc_retrained=float(np.mean(retrained["test_acc"])))
  out = {k: rep[k] for k in EPSILON_KEYS}
  out["remain_acc"] = float(np.mean(unlearned["remain_acc"]))
  out["test_acc"] = float(np.mean(unlearned["test_acc"]))
  out["phi_median"] = float(np.median(unlearned["phi"]))
  out["spread_ratio"] = spread_ratio(unlearned["phi"], retrained["phi"])
  out["eps"] = rep["eps"]
  return out


def spread_ratio(unlearned_phi, retrained_phi) -> float:
  """Median over examples of std of phi across the population / the same across retrains.

  Below 1: runs that all start from one original vary less than retrains do,
  which the epsilon-score punishes as hard as a shifted mean.
  """
  u = np.std(np.asarray(unlearned_phi, np.float64), axis=0)
  r = np.std(np.asarray(retrained_phi, np.float64), axis=0)
  return float(np.median(u / np.maximum(r, 1e-12)))


def _ulira(out: dict, masks: dict) -> dict:
  rep = ulira_lib.ulira(out["phi"], masks["in_mask"], masks["out_mask"], groups=masks["groups"])
  res = {k: rep[v] for k, v in ULIRA_KEYS.items()}
  res["remain_acc"] = float(np.mean(out["remain_acc"]))
  res["test_acc"] = float(np.mean(out["test_acc"]))
  return res


def run_audit(cfg: ml_collections.ConfigDict, workdir, *, wait: bool = False) -> dict:
  """Runs every population of the audit and writes ``audit.json``, ``audit.md`` and plots.

  Args:
    cfg: a config (``configs/quick_audit.py``); the ``audit`` block names the
      methods and the population sizes.
    workdir: the work dir; its original model and finished chunks are reused.
    wait: wait for another run holding the work dir instead of refusing.

  Returns:
    The contents of ``audit.json``.
  """
  ctx = pipeline.build_context(cfg, workdir)
  cfg = ctx.cfg
  specs = [parse_method(m, cfg.unlearn) for m in cfg.audit.methods]
  labels = [label for label, _, _ in specs]
  if len(set(labels)) != len(labels):
    raise ConfigError(f"audit.methods gives two methods one label ({labels}); name them "
                      "'label=method:...'")
  for label, name, u in specs:
    methods.resolve_hparams(name, u)
    _check_method(ctx, label, name, u)
  ulira_on = cfg.audit.ulira.num_originals > 0
  masks = ulira_masks(cfg, ctx.splits.n_forget) if ulira_on else None
  ctx.workdir.mkdir(parents=True, exist_ok=True)
  lock = workdir_lib.Lock(ctx.workdir, wait=wait) if jax.process_index() == 0 \
      else contextlib.nullcontext()
  with lock:
    pipeline.claim_workdir(ctx, outputs=("audit.json", "audit.md"))
    t_start = time.perf_counter()
    k_orig = jax.random.split(ctx.key, 4)[0]   # the key `jaxunlearn run` trains the original with
    original = pipeline.train_stage(ctx, "original", ctx.splits.train_idx,
                                    epochs=cfg.train.epochs, key=k_orig, protected=True)
    a = _Auditor(ctx, original)
    s = ctx.splits
    a.train_population("retrain", s.remain_idx)
    a.train_population("oracle", s.remain_idx)
    a.train_population("none", s.train_idx)
    for label, _, u in specs:
      a.unlearn_population(label, label, u)
    eps = {"oracle": _epsilon(a.results["oracle"], a.results["retrain"]),
           "none": _epsilon(a.results["none"], a.results["retrain"])}
    for label in labels:
      eps[label] = _epsilon(a.results[label], a.results["retrain"])

    uli = {}
    if ulira_on:
      uli = _run_ulira(a, specs, masks)
    results = {
        "setting": cfg.setting, "dataset": cfg.dataset, "model": cfg.model,
        "n_forget": int(s.n_forget), "n_remain": int(s.remain_idx.size),
        "transforms": list(ctx.transforms), "num_models": cfg.audit.num_models,
        "methods": {label: {"method": u.method, "epochs": u.epochs,
                            "learning_rate": u.learning_rate,
                            "forget_batch_size": u.forget_batch_size,
                            "hparams": methods.resolve_hparams(u.method, u)}
                    for label, _, u in specs},
        "epsilon": eps, "ulira": uli, "ulira_pool": a.ulira_pool,
        "populations": a.times,
        "time_s": time.perf_counter() - t_start,
        "config": cfg.to_dict(), "environment": pipeline.environment(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if jax.process_index() == 0:
      from jaxunlearn import audit_report
      results["figures"] = audit_report.plot(ctx.workdir, results, a.results, cfg)
      workdir_lib.atomic_write(ctx.workdir / "audit.json", json.dumps(results, indent=2))
      workdir_lib.atomic_write(ctx.workdir / "audit.md", audit_report.markdown(results))
    return results


def _run_ulira(a: _Auditor, specs, masks) -> dict:
  ctx, cfg = a.ctx, a.cfg
  s = ctx.splits
  keep, forget, groups = masks["keep"], masks["forget"], masks["groups"]
  m_masks = {k: masks[k] for k in ("in_mask", "out_mask", "groups")}
  train_rows = np.stack([np.concatenate([s.remain_idx, s.forget_idx[kp]]) for kp in keep])
  originals = a.train_population("ulira_originals", train_rows, keep_params=True,
                                 masks={"keep": keep})
  left = keep[groups] & ~forget
  left_rows = np.stack([np.concatenate([s.remain_idx, s.forget_idx[lf]]) for lf in left])
  f_rows = np.stack([s.forget_idx[f] for f in forget])
  # Row m * K + k of these populations is original m's k-th forget set.
  a.train_population("ulira_retrain_control", left_rows, masks=m_masks)
  identity = {k: originals[k][groups] for k in ("phi", "remain_acc", "test_acc")}
  a.results["ulira_identity_control"] = identity
  if jax.process_index() == 0:
    pops.save_phi(ctx.workdir / "phi", "ulira_identity_control", identity["phi"],
                  examples=s.forget_idx, **m_masks)
  out = {"retrain_control": _ulira(a.results["ulira_retrain_control"], masks),
         "identity_control": _ulira(identity, masks)}
  params = jax.tree.map(lambda x: jnp.asarray(x[groups]), originals["params"])
  bstats = jax.tree.map(lambda x: jnp.asarray(x[groups]), originals["batch_stats"])
  for label, _, u in specs:
    name = f"ulira_{label}"
    res = a.unlearn_population(name, label, u, params=params, batch_stats=bstats,
                               f_rows=f_rows, r_rows=left_rows,
                               masks=m_masks)
    out[label] = _ulira(res, masks)
  a.ulira_pool = (f"D_f ({s.n_forget} examples); {keep.shape[0]} originals each train on D_r "
                 f"and {int(keep[0].sum())} of them, each unlearned "
                 f"{cfg.audit.ulira.forget_sets_per_original} times forgetting "
                 f"{int(forget[0].sum())}")
  return out



def load_config(path: str | Path) -> ml_collections.ConfigDict:
  """``get_config()`` of a config file (for scripts)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("audit_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return config_lib.validate(module.get_config())
