"""A research harness for unlearning quality, on the library's population code.

For one (seed, forget set) it builds and caches, once:

* the work dir's single original (the request's ``original`` stage, as
  ``jaxunlearn run`` / ``audit`` train it: :func:`jaxunlearn.request.open_request`);
* ``retrain`` and ``oracle`` (N models each on D_r) and ``none`` (N models on
  all of D with their own seeds; their parameters are kept: they are the
  per-seed originals);
* references on the fixed D_s of the held-out split (``reference.source =
  holdout``): ``ref_single`` (K models trained with the work dir's seed, shared
  by every single-protocol run) and ``ref_perseed`` (K models per seed i, used
  by per-seed run i), each 50 epochs as the pipeline's reference.

A candidate then costs only its unlearning populations: N runs from the
single original and N runs from the ``none`` members (per-seed protocol),
each a ``populations.run_population`` of a member built on
``unlearn.make_unlearn_fn`` (lab methods) or on the library's
``populations.unlearn_member`` (registered methods). Figures: the epsilon-score's F and F relative to
the oracle's, phi median, spread ratio, test and remain accuracy, the cost in
examples processed, and U-LiRA on demand.

Usage (from the repository root)::

    python -m experiments.quality.lab --seed 100 --forget flip --prepare
    python -m experiments.quality.evaluate ...   (populations; see that file)
    python -m experiments.quality.probe ...      (probes; see that file)

Everything a method sees is computed in its member function from: D_f, D_r,
the held-out split, the original and the references it trains itself. The
retrained populations are used only to score (and for diagnostics that are
labelled as such).
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
import ml_collections
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from jaxunlearn import audits, auditor as auditor_lib, methods, plan as plan_lib  # noqa: E402
from jaxunlearn import populations as pops, request as request_lib, splits as splits_lib  # noqa: E402
from jaxunlearn import stop as stop_lib, train as train_lib, unlearn as unlearn_lib  # noqa: E402
from jaxunlearn.audits import epsilon as eps_lib, phi as phi_lib, ulira as ulira_lib  # noqa: E402

WORKROOT = ROOT / "runs" / "quality"
# The logs (one json line per population / probe); those behind RESULTS_quality.md are in the
# repository at commit 872bac2 (README.md here).
RESULTS = WORKROOT / "results.jsonl"
PROBES = WORKROOT / "probes.jsonl"
HOLDOUT = 600          # held-out training images (15%): D_s = 400 of them, 200 for calibration
REF_SIZE = 400
SELECTION_SEED = 100
POOL_SIZE = 400        # flip_pool: label-flipped training images, the same for every seed
POOL_FORGET = 100      # flip_pool: D_f, drawn from the pool by the seed
POOL_SEED = 0x706F6F6C


def pool_files(seed: int, n_train: int, pool_dir) -> tuple[str, str]:
  """``(pool file, forget file)``: :data:`POOL_SIZE` of ``n_train`` training rows drawn once
  (not by the seed), and :data:`POOL_FORGET` of them drawn by ``seed``."""
  pool_dir = Path(pool_dir)
  pool_dir.mkdir(parents=True, exist_ok=True)
  pool = np.sort(np.random.default_rng(POOL_SEED).choice(n_train, POOL_SIZE, replace=False))
  forget = np.sort(np.random.default_rng([seed, POOL_SEED]).choice(pool, POOL_FORGET,
                                                                    replace=False))
  files = (pool_dir / f"pool{POOL_SIZE}_of_{n_train}.txt",
           pool_dir / f"pool{POOL_SIZE}_of_{n_train}_forget{POOL_FORGET}_seed{seed}.txt")
  for f, rows in zip(files, (pool, forget)):
    text = "\n".join(str(int(i)) for i in rows) + "\n"
    if not f.is_file() or f.read_text() != text:
      f.write_text(text)
  return str(files[0]), str(files[1])


def make_config(seed: int, forget: str, holdout: int = HOLDOUT, n_models: int = 32,
                overrides: dict | None = None, pool_dir="runs/pools"):
  """quick_audit's setting (MLP 128 on mnist5k) with a held-out split and D_s inside it.

  forget: ``flip`` (100 label-flipped images, quick_audit's default), ``random``
  (quick's random 1%), ``backdoor`` (100 images with quick_backdoor's trigger,
  relabelled to class 0) or ``flip_pool`` (a fixed pool of :data:`POOL_SIZE` training
  images label-flipped for every seed, with ``label_flip.seed`` fixed, and D_f 100 of
  them drawn by the seed: the memorised set as a fixed transformed superset whose subsets
  are forgotten, so that every seed's request shares one attribution store; the pool and
  D_f are written as index files under ``pool_dir``). ``overrides``: dotted config fields
  set last (tests point the harness at a tiny dataset with them).
  """
  from configs import quick_audit, quick_backdoor
  c = quick_audit.get_config()
  c.seed = seed
  c.holdout.size = holdout
  c.reference.size = REF_SIZE if holdout else 0.1
  c.reference.source = "holdout" if holdout else "remain"
  c.audit.num_models = n_models
  c.audit.chunk_size = n_models
  c.report.progress = False
  if forget == "flip":
    pass
  elif forget == "random":
    c.label_flip.enabled = False
    c.forget.size = 0
  elif forget == "flip_pool":
    if holdout:
      raise ValueError("flip_pool draws its pool from all training rows: use holdout=0")
    from jaxunlearn import data as data_lib
    n_train = int(data_lib.load(c.dataset).y_train.shape[0])
    pool, rows = pool_files(seed, n_train, pool_dir)
    c.label_flip.index_file = pool
    c.label_flip.seed = POOL_SEED
    c.forget.mode = "indices"
    c.forget.index_file = rows
  elif forget == "backdoor":
    b = quick_backdoor.get_config()
    c.label_flip.enabled = False
    c.forget.size = 100
    for k in ("enabled", "target_class", "patch_size", "patch_value", "position", "margin"):
      c.backdoor[k] = b.backdoor[k]
  else:
    raise ValueError(forget)
  for field, value in (overrides or {}).items():
    node = c
    *parents, leaf = field.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return c


def source_hash(*paths) -> str:
  h = hashlib.sha256()
  for p in paths:
    h.update(Path(p).read_bytes())
  return h.hexdigest()[:12]


def append_log(path: Path, record: dict, default=float):
  """Appends one json line to a log (``RESULTS`` or ``PROBES``), creating its folder;
  ``default`` converts what json cannot write (numpy scalars by default)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(record, default=default) + "\n")


def stack_apply(apply_fn, params_stack, x):
  """Logits ``[M, n, C]`` of M stacked parameter sets."""
  return jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))(params_stack, x)


@dataclasses.dataclass
class Candidate:
  """One unlearning method at one setting, as the harness runs it.

  kind:
    ``baseline``: a registered library method through the library's own
      ``populations.unlearn_member`` (a method with a reference draws its own
      D_s from D_r and trains it in every run, as ``jaxunlearn audit`` does);
    ``lab``: a method of experiments/quality/methods.py; its ``prepare`` turns
      the original, the references' logits and the held-out split into the
      method's inputs inside the member.
  """
  label: str
  method: str
  unlearn: dict = dataclasses.field(default_factory=dict)   # unlearn-block fields
  hparams: dict = dataclasses.field(default_factory=dict)   # method hparams (lab methods)
  kind: str = "lab"
  n_refs: int = 1                   # references used (lab methods); 0: none
  prepare: str = "none"             # a function of methods.PREPARE
  prep: dict = dataclasses.field(default_factory=dict)     # static settings of prepare
  diag: str = ""                    # diagnostic input (e.g. "ideal"): never a method


class Lab:
  """The cached populations of one (seed, forget set) and the evaluation of candidates."""

  def __init__(self, seed: int = SELECTION_SEED, forget: str = "flip", holdout: int = HOLDOUT,
               n_models: int = 32, workroot: Path = WORKROOT, ulira: bool = False,
               overrides: dict | None = None):
    self.seed, self.forget, self.n_models = seed, forget, n_models
    cfg = make_config(seed, forget, holdout, n_models, overrides)
    self.workdir = Path(workroot) / f"s{seed}_{forget}_h{holdout}"
    t0 = time.perf_counter()
    # The library's request: validated, the work dir locked (waiting for another holder)
    # and claimed, its original restored or trained; held until close().
    self._stack = contextlib.ExitStack()
    req = self._stack.enter_context(
        request_lib.open_request(cfg, self.workdir, methods=(), wait=True))
    self.req, self.cfg = req, req.cfg
    self.original = req.original
    self.a = auditor_lib.Auditor(req)
    s = req.splits
    self.s = s
    self.apply = train_lib.eval_apply_fn(req.model, self.original.batch_stats)
    # The held-out split minus D_s: examples no original, no retrain and no reference saw.
    self.cal_idx = np.setdiff1d(s.holdout_idx, s.reference_idx)
    self.x_all, self.y_all = self.a.x_all, self.a.y_all
    self.timing = {}
    t = time.perf_counter()
    self.retrain = self.a.train_population(audits.RETRAIN, s.remain_idx, keep_params=True)
    self.timing["retrain_s"] = time.perf_counter() - t
    self.oracle = self.a.train_population(audits.ORACLE, s.remain_idx)
    self.none = self.a.train_population(audits.NONE, s.train_idx, keep_params=True)
    if holdout:
      self.ref_single = self._train_refs("ref_single", 4)
      self.ref_perseed = self._train_refs("ref_perseed", 4 * n_models)
    self.setup_s = time.perf_counter() - t0
    self.eps_oracle = eps_lib.epsilon_report(self.oracle["phi"], self.retrain["phi"])
    self.eps_none = eps_lib.epsilon_report(self.none["phi"], self.retrain["phi"])
    self.ulira_ready = False
    if ulira:
      self.prepare_ulira()

  # --- populations ----------------------------------------------------------------------

  def _train_refs(self, name: str, size: int) -> dict:
    """``size`` references on the fixed D_s (reference.epochs each), parameters kept."""
    cfg, req = self.cfg, self.req
    rows = self.s.reference_idx
    n_rows = rows.size
    epochs = int(cfg.reference.epochs)
    steps = epochs * max(1, n_rows // min(cfg.train.batch_size, n_rows))
    opt = train_lib.make_optimizer(cfg.train, steps)
    member = self.a.member(
        ("ref", repr(req.model), epochs, n_rows),
        lambda: pops.train_member(req.model, opt, req.data.input_shape, epochs=epochs,
                                  batch_size=min(cfg.train.batch_size, n_rows),
                                  keep_params=True))
    variables = req.abstract_variables()
    pop = pops.Population(
        name=name, size=size, member=member, shared=(jnp.asarray(rows, jnp.int32), self.x_all,
                                                     self.y_all, self.a.data),
        spec={**self.a.base_spec, "kind": "reference", "epochs": epochs,
              "rows": splits_lib.index_hash(rows)},
        keep_params=True, abstract_params=(variables["params"], variables["batch_stats"]))
    t = time.perf_counter()
    out = pops.run_population(pop, self.a.key(name), req.cache,
                              n_audit=self.a.n_audit, chunk_size=32, mesh=req.mesh,
                              progress=False)
    self.timing[f"{name}_s"] = time.perf_counter() - t
    return out

  def refs_for(self, protocol: str, n_refs: int, members: int | None = None):
    """Stacked reference params: ``[K, ...]`` (single) or ``[N, K, ...]`` (per-seed)."""
    if protocol == "single":
      return jax.tree.map(lambda a: jnp.asarray(a[:n_refs]), self.ref_single["params"])
    n = members or self.n_models
    return jax.tree.map(
        lambda a: jnp.asarray(a.reshape(-1, 4, *a.shape[1:])[:n, :n_refs]),
        self.ref_perseed["params"])

  # --- diagnostics (retrained models: never a method's input) --------------------------

  def retrain_logits(self, x) -> np.ndarray:
    return np.asarray(stack_apply(self.apply, self.retrain["params"], x))

  # --- candidates --------------------------------------------------------------------

  def unlearn_cfg(self, cand: Candidate, n_remain: int | None = None):
    """The candidate's ``unlearn`` block. ``steps="recipe"`` becomes retraining's step count
    on a D_r of ``n_remain`` rows (default: the work dir's D_r): ``train.epochs`` x
    floor(n_remain / ``train.batch_size``)."""
    u = ml_collections.ConfigDict(self.cfg.unlearn.to_dict())
    with u.unlocked():
      u.method = cand.method
      for field, value in cand.unlearn.items():
        if field == "steps" and value == "recipe":
          n_r = int(self.s.remain_idx.size) if n_remain is None else int(n_remain)
          value = int(self.cfg.train.epochs) * (n_r // int(self.cfg.train.batch_size))
        node = u
        *parents, leaf = field.split(".")
        for p in parents:
          if p not in node:
            node[p] = ml_collections.ConfigDict()
          node = node[p]
        node[leaf] = value
    return u

  def _lab_member(self, cand: Candidate, u, n_forget: int, n_remain: int):
    from experiments.quality import methods as qm
    model, shape = self.req.model, self.req.data.input_shape
    method = methods.resolve_method(cand.method, u)
    hp = {**methods.get(cand.method).hparams, **cand.hparams}
    hp = unlearn_lib.as_hparams({"learning_rate": float(u.learning_rate), **hp})
    prepare = qm.PREPARE[cand.prepare]
    prep = dict(cand.prep)

    def init_fn(k):
      return model.init(k, jnp.zeros((1, *shape)), train=False)["params"]

    def member(key, params, batch_stats, ref_params, f_rows, r_rows, x_all, y_all, cal_rows,
               extra, data):
      apply_fn = train_lib.eval_apply_fn(model, batch_stats)
      prep_key, run_key = jax.random.split(key)
      x_f, y_f = x_all[f_rows], y_all[f_rows]
      x_r, y_r = x_all[r_rows], y_all[r_rows]
      x_c, y_c = x_all[cal_rows], y_all[cal_rows]
      arrays = qm.Arrays(apply_fn=apply_fn, params=params, ref_params=ref_params,
                         x_f=x_f, y_f=y_f, x_r=x_r, y_r=y_r, x_c=x_c, y_c=y_c, extra=extra,
                         init_fn=init_fn)
      inputs, params0 = prepare(prep_key, arrays, hp, prep)
      run = unlearn_lib.make_unlearn_fn(
          method, apply_fn, epochs=int(u.epochs), n_forget=n_forget, n_remain=n_remain,
          forget_batch_size=int(u.forget_batch_size),
          remain_batch_size=int(u.remain_batch_size), optimizer_cfg=u, init_fn=init_fn,
          stop=stop_lib.resolve(u))
      new_params, _ = run(params0, inputs, run_key, hp)
      if data is None:
        return new_params
      return pops.member_record(apply_fn, new_params, data)
    return member

  def run_many(self, cand: Candidate, m: int = 32, seed: int = 0, protocol: str = "single",
               extra=None):
    """Parameters ``[m, ...]`` after m runs of a candidate (uncached)."""
    if cand.kind == "baseline":
      return self._run_many_baseline(cand, m, seed, protocol)
    s = self.s
    u = self.unlearn_cfg(cand)
    member = self._lab_member(cand, u, int(s.forget_idx.size), int(s.remain_idx.size))
    if protocol == "single":
      refs = self.refs_for("single", max(cand.n_refs, 1))
      params, bstats, n_mapped = self.original.params, self.original.batch_stats, 0
    else:
      refs = self.refs_for("perseed", max(cand.n_refs, 1), m)
      params = jax.tree.map(lambda a: jnp.asarray(a[:m]), self.none["params"])
      bstats = jax.tree.map(lambda a: jnp.asarray(a[:m]), self.none["batch_stats"])
      n_mapped = 3
    args = (params, bstats, refs, jnp.asarray(s.forget_idx, jnp.int32),
            jnp.asarray(s.remain_idx, jnp.int32), self.x_all, self.y_all,
            jnp.asarray(self.cal_idx, jnp.int32), extra if extra is not None else {}, None)
    keys = jax.random.split(jax.random.key(1000 + seed), m)
    fn = jax.jit(jax.vmap(member, in_axes=(0,) + (0,) * n_mapped
                          + (None,) * (len(args) - n_mapped)))
    return fn(keys, *args)

  def _run_many_baseline(self, cand: Candidate, m: int, seed: int, protocol: str):
    """:meth:`run_many` of a registered method without a reference model: its plan's run
    (as ``populations.unlearn_member`` builds it) from the single original or from the
    first m ``none`` members."""
    s, req = self.s, self.req
    plan = plan_lib.make_plan(cand.label, self.unlearn_cfg(cand),
                              where=f"candidate {cand.label!r}")
    if plan.needs_reference:
      raise ValueError(f"run_many: {cand.label!r} uses a reference model; run its population "
                       "(Lab.unlearn) instead")
    n_f, n_r = int(s.forget_idx.size), int(s.remain_idx.size)
    x_f, y_f = self.x_all[s.forget_idx], self.y_all[s.forget_idx]
    x_r, y_r = self.x_all[s.remain_idx], self.y_all[s.remain_idx]

    def member(key, params, batch_stats):
      apply_fn = train_lib.eval_apply_fn(req.model, batch_stats)
      _, run_key = jax.random.split(key)
      inputs = plan.build_inputs(x_forget=x_f, y_forget=y_f, x_remain=x_r, y_remain=y_r,
                                 heldout=self.a.heldout,
                                 original_logits=lambda x: apply_fn(params, x))
      run = plan.make_fn(apply_fn, model=req.model, input_shape=req.data.input_shape,
                         batch_stats=batch_stats, n_forget=n_f, n_remain=n_r)
      new, _ = run(params, inputs, run_key, plan.hparam_arrays())
      return new["params"] if run.bn_train else new

    if protocol == "single":
      params, bstats, axes = self.original.params, self.original.batch_stats, (0, None, None)
    else:
      params = jax.tree.map(lambda a: jnp.asarray(a[:m]), self.none["params"])
      bstats = jax.tree.map(lambda a: jnp.asarray(a[:m]), self.none["batch_stats"])
      axes = (0, 0, 0)
    keys = jax.random.split(jax.random.key(1000 + seed), m)
    return jax.jit(jax.vmap(member, in_axes=axes))(keys, params, bstats)

  def score_params(self, params, label: str, taus=(1.0,)) -> list:
    """Probe figures of stacked params at several output temperatures (logits * tau)."""
    from experiments.quality import methods as qm
    rows = []
    for tau in taus:
      p = jax.vmap(lambda q: qm.scale_last_layer(q, tau))(params)
      data = self._audit_data("all")
      out = jax.device_get(jax.jit(jax.vmap(
          lambda q, d: pops.member_record(self.apply, q, d), in_axes=(0, None)))(p, data))
      n_f, n_c = int(self.s.forget_idx.size), int(self.cal_idx.size)
      phi = np.asarray(out["phi"])
      o = {**out, "phi": phi[:, :n_f]}
      r = self.zstats(o, f"{label}_tau{tau}")
      for j, a in enumerate(("cal_wrong", "cal_true")):
        zc = self.zstats({**o, "phi": phi[:, n_f + j * n_c: n_f + (j + 1) * n_c]}, "", 0, a)
        r[f"{a}_z_median"] = zc["z_median"]
        r[f"{a}_absz_median"] = zc["absz_median"]
      if phi.shape[0] >= 16:
        e = epsilon_entry(o, self.retrain)
        r["F"] = e["forgetting_quality"]
        r["relF_vs_oracle32"] = e["forgetting_quality"] / self.eps_oracle["forgetting_quality"]
        r["spread_ratio"] = e["spread_ratio"]
      r["tau"] = tau
      rows.append(r)
    return rows

  def run_one(self, cand: Candidate, seed: int = 0, extra=None):
    """The parameters after one run of a lab candidate from the single original."""
    s = self.s
    u = self.unlearn_cfg(cand)
    member = self._lab_member(cand, u, int(s.forget_idx.size), int(s.remain_idx.size))
    refs = self.refs_for("single", max(cand.n_refs, 1))
    fn = jax.jit(lambda k: member(k, self.original.params, self.original.batch_stats, refs,
                                  jnp.asarray(s.forget_idx, jnp.int32),
                                  jnp.asarray(s.remain_idx, jnp.int32), self.x_all, self.y_all,
                                  jnp.asarray(self.cal_idx, jnp.int32),
                                  extra if extra is not None else {}, None))
    return fn(jax.random.key(2000 + seed))

  def unlearn(self, cand: Candidate, protocol: str, *, params=None, batch_stats=None,
              refs=None, f_rows=None, r_rows=None, name=None, extra=None, masks=None) -> dict:
    """N runs of ``cand``: ``single`` (from the work dir's original) or ``perseed``
    (run i from none member i); or explicit per-member params and rows (U-LiRA)."""
    s, a = self.s, self.a
    name = name or f"{cand.label}__{protocol}"
    if cand.kind == "baseline":
      if protocol == "single":
        return self._baseline_population(name, cand)
      if protocol == "perseed":
        n = self.n_models
        params = jax.tree.map(jnp.asarray, self.none["params"])
        batch_stats = jax.tree.map(jnp.asarray, self.none["batch_stats"])
        f_rows = np.tile(s.forget_idx, (n, 1))
        r_rows = np.tile(s.remain_idx, (n, 1))
      return self._baseline_population(name, cand, params=params, batch_stats=batch_stats,
                                       f_rows=f_rows, r_rows=r_rows, masks=masks)
    # lab candidates
    u = self.unlearn_cfg(cand)
    n = self.n_models
    k = max(cand.n_refs, 1)
    if protocol == "single":
      params, batch_stats = self.original.params, self.original.batch_stats
      refs = self.refs_for("single", k)
      f_rows, r_rows = s.forget_idx, s.remain_idx
      mapped_count = 0
      size = n
    elif protocol == "perseed":
      params = jax.tree.map(jnp.asarray, self.none["params"])
      batch_stats = jax.tree.map(jnp.asarray, self.none["batch_stats"])
      refs = self.refs_for("perseed", k)
      mapped_count = 3
      size = n
    else:   # explicit (U-LiRA): params, batch_stats, refs, f_rows, r_rows per member
      mapped_count = 5
      size = int(np.shape(f_rows)[0])
    n_forget = int(np.shape(f_rows if f_rows is not None else s.forget_idx)[-1])
    if protocol == "perseed":
      f_rows, r_rows = s.forget_idx, s.remain_idx
    n_remain = int(np.shape(r_rows)[-1])
    qm_path = ROOT / "experiments" / "quality" / "methods.py"
    member = a.member(
        ("lab", cand.label, json.dumps(dataclasses.asdict(cand), sort_keys=True, default=str),
         n_forget, n_remain, source_hash(qm_path)),
        lambda: self._lab_member(cand, u, n_forget, n_remain))
    args = (params, batch_stats, refs, jnp.asarray(f_rows, jnp.int32),
            jnp.asarray(r_rows, jnp.int32), self.x_all, self.y_all,
            jnp.asarray(self.cal_idx, jnp.int32), extra if extra is not None else {}, a.data)
    pop = pops.Population(
        name=name, size=size, member=member, mapped=args[:mapped_count],
        shared=args[mapped_count:],
        spec={**a.base_spec, "kind": "lab", "candidate": dataclasses.asdict(cand),
              "protocol": protocol, "code": source_hash(qm_path),
              "rows": splits_lib.index_hash(np.concatenate(
                  [np.asarray(f_rows).ravel(), np.asarray(r_rows).ravel()]))})
    return a.run(pop, masks or {})

  def _baseline_population(self, name: str, cand: Candidate, *, params=None, batch_stats=None,
                           f_rows=None, r_rows=None, masks=None) -> dict:
    """N runs of a registered method through the library's own member
    (``populations.unlearn_member`` on the candidate's plan, as ``jaxunlearn audit`` builds
    it); per-member originals and rows when given, else the work dir's.

    A method with a reference model draws its own D_s (|D_s| rows) from the member's D_r
    and trains it in every run (reference mode ``draw``), whatever ``reference.source``
    says: the harness's baselines as they were measured.
    """
    req, cfg, s, a = self.req, self.cfg, self.s, self.a
    per_member = params is not None
    if not per_member:
      params, batch_stats = self.original.params, self.original.batch_stats
      f_rows, r_rows = s.forget_idx, s.remain_idx
    n_forget, n_remain = int(np.shape(f_rows)[-1]), int(np.shape(r_rows)[-1])
    plan = plan_lib.make_plan(cand.label, self.unlearn_cfg(cand, n_remain),
                              where=f"candidate {cand.label!r}")
    reference, ref_spec = None, None
    if plan.needs_reference:
      n_ref = int(s.reference_idx.size)
      steps = int(cfg.reference.epochs) * max(1, n_ref // min(cfg.train.batch_size, n_ref))
      reference = pops.ReferenceSettings(
          mode="draw", size=n_ref, epochs=int(cfg.reference.epochs),
          optimizer=train_lib.make_optimizer(cfg.train, steps),
          batch_size=int(cfg.train.batch_size))
      ref_spec = {"size": n_ref, "epochs": cfg.reference.epochs, "mode": "draw"}
    spec = {**plan.spec(), **({"reference": ref_spec} if ref_spec else {})}
    member = a.member(
        ("unlearn", repr(req.model), tuple(req.data.input_shape), json.dumps(spec, sort_keys=True),
         json.dumps(cfg.train.to_dict(), sort_keys=True), n_forget, n_remain),
        lambda: pops.unlearn_member(req.model, req.data.input_shape, plan, n_forget=n_forget,
                                    n_remain=n_remain, reference=reference))
    args = (params, batch_stats, jnp.asarray(f_rows, jnp.int32), jnp.asarray(r_rows, jnp.int32))
    rest = (self.x_all, self.y_all, a.heldout, (), a.data)
    pop = pops.Population(
        name=name, size=int(np.shape(f_rows)[0]) if per_member else self.n_models,
        member=member, mapped=args if per_member else (),
        shared=rest if per_member else args + rest,
        spec={**a.base_spec, "kind": "unlearn", "label": cand.label, **spec,
              "train": cfg.train.to_dict(),
              "rows": splits_lib.index_hash(np.concatenate(
                  [np.asarray(f_rows).ravel(), np.asarray(r_rows).ravel()]))})
    return a.run(pop, masks or {})

  def probe(self, cand: Candidate, m: int = 4, extra=None, seed: int = 0,
            protocol: str = "single", audit_set: str = "forget") -> dict:
    """``m`` runs of a lab candidate from the single original, uncached: a quick look at
    the per-example error of phi on D_f against the retrained population's mean, in
    units of its per-example spread (z), and the accuracies. Not an audit."""
    s = self.s
    u = self.unlearn_cfg(cand)
    n_f, n_r = int(s.forget_idx.size), int(s.remain_idx.size)
    member = self._lab_member(cand, u, n_f, n_r)
    if protocol == "single":
      refs = self.refs_for("single", max(cand.n_refs, 1))
      params, bstats, n_mapped = self.original.params, self.original.batch_stats, 0
    else:
      refs = self.refs_for("perseed", max(cand.n_refs, 1), m)
      params = jax.tree.map(lambda a: jnp.asarray(a[:m]), self.none["params"])
      bstats = jax.tree.map(lambda a: jnp.asarray(a[:m]), self.none["batch_stats"])
      n_mapped = 3
    args = (params, bstats, refs,
            jnp.asarray(s.forget_idx, jnp.int32), jnp.asarray(s.remain_idx, jnp.int32),
            self.x_all, self.y_all, jnp.asarray(self.cal_idx, jnp.int32),
            extra if extra is not None else {}, self._audit_data(audit_set))
    keys = jax.random.split(jax.random.key(1000 + seed), m)
    fn = jax.jit(jax.vmap(member, in_axes=(0,) + (0,) * n_mapped
                          + (None,) * (len(args) - n_mapped)))
    t = time.perf_counter()
    out = jax.device_get(fn(keys, *args))
    wall = time.perf_counter() - t
    if audit_set == "all":
      n_f, n_c = int(s.forget_idx.size), int(self.cal_idx.size)
      phi = np.asarray(out["phi"])
      out = {**out, "phi": phi[:, :n_f]}
      r = self.zstats(out, cand.label, wall, "forget")
      for j, a in enumerate(("cal_wrong", "cal_true")):
        zc = self.zstats({**out, "phi": phi[:, n_f + j * n_c: n_f + (j + 1) * n_c]}, "", 0, a)
        r[f"{a}_z_median"] = zc["z_median"]
        r[f"{a}_absz_median"] = zc["absz_median"]
        r[f"{a}_spread"] = zc["run_sd_over_retrain_sd"]
    else:
      r = self.zstats(out, cand.label, wall, audit_set)
    r["protocol"] = protocol
    r["audit_set"] = audit_set
    if m >= 16 and audit_set in ("forget", "all"):
      e = epsilon_entry(out, self.retrain)
      r["F"] = e["forgetting_quality"]
      r["relF_vs_oracle32"] = e["forgetting_quality"] / self.eps_oracle["forgetting_quality"]
      r["spread_ratio"] = e["spread_ratio"]
    return r

  def _audit_data(self, audit_set: str):
    """EvalData whose audited examples are D_f (``forget``) or the calibration set with
    its true labels (``cal_true``) or a fixed random wrong label each (``cal_wrong``)."""
    if audit_set == "forget":
      return self.a.data
    if audit_set == "all":
      parts = [self._audit_data(a) for a in ("forget", "cal_wrong", "cal_true")]
      return self.a.data._replace(x_audit=jnp.concatenate([d.x_audit for d in parts]),
                                  y_audit=jnp.concatenate([d.y_audit for d in parts]))
    x_c, y_c = self.x_all[self.cal_idx], np.asarray(self.y_all[self.cal_idx])
    if audit_set == "cal_wrong":
      rng = np.random.default_rng(0)
      y_c = (y_c + 1 + rng.integers(0, 9, y_c.size)) % 10
    return self.a.data._replace(x_audit=x_c, y_audit=jnp.asarray(y_c))

  def retrain_phi(self, audit_set: str = "forget") -> np.ndarray:
    """DIAGNOSTIC: phi of the retrained population on an audit set ``[N, n]``."""
    if audit_set == "forget":
      return np.asarray(self.retrain["phi"], np.float64)
    d = self._audit_data(audit_set)
    lg = self.retrain_logits(d.x_audit)
    return np.asarray(phi_lib.logit_confidence_numpy(
        lg, np.broadcast_to(np.asarray(d.y_audit), lg.shape[:-1])))

  def zstats(self, out, label, wall=0.0, audit_set="forget"):
    phi_r = self.retrain_phi(audit_set)
    mu, sd = phi_r.mean(0), phi_r.std(0)
    phi = np.asarray(out["phi"], np.float64)
    z = (phi - mu) / sd
    zm = (phi.mean(0) - mu) / sd
    return {"label": label, "phi_median": float(np.median(phi)),
            "z_median": float(np.median(z)), "absz_median": float(np.median(np.abs(z))),
            "z_rms": float(np.sqrt(np.mean(z ** 2))),
            "absz_mean_of_runs_median": float(np.median(np.abs(zm))),
            "run_sd_over_retrain_sd": float(np.median(phi.std(0) / sd)) if phi.shape[0] > 1
            else None,
            "test_acc": float(np.mean(out["test_acc"])),
            "test_gap": float(np.mean(out["test_acc"]) - np.mean(self.retrain["test_acc"])),
            "retain_acc": float(np.mean(out["remain_acc"])), "wall_s": wall}

  def score(self, out: dict) -> dict:
    """F, relative F, phi median, spread ratio and accuracies against ``retrain``."""
    e = epsilon_entry(out, self.retrain)
    return {"F": e["forgetting_quality"], "relF": e["forgetting_quality"]
            / self.eps_oracle["forgetting_quality"],
            "eps_median": e["eps_median"], "phi_median": e["phi_median"],
            "spread_ratio": e["spread_ratio"], "test_acc": e["test_acc"],
            "retain_acc": e["retain_acc"],
            "test_acc_gap": e["test_acc"] - float(np.mean(self.retrain["test_acc"])),
            "n_degenerate": e["n_degenerate"]}

  def evaluate(self, cand: Candidate, protocols=("single", "perseed"), log: bool = True,
               note: str = "", cost: dict | None = None, audit_names: bool = False) -> dict:
    res = {"label": cand.label, "seed": self.seed, "forget": self.forget,
           "candidate": dataclasses.asdict(cand), "note": note, "cost": cost}
    for p in protocols:
      t = time.perf_counter()
      # audit_names: the single population under the method's label, as `jaxunlearn audit`
      # names it (same keys, so the same runs)
      name = cand.label if (audit_names and p == "single") else f"{cand.label}__{p}"
      out = self.unlearn(cand, p, name=name)
      wall = time.perf_counter() - t
      sc = self.score(out)
      sc["pop_wall_s"] = wall
      sc["chunks_reused"] = self.a.times[name]["chunks_reused"]
      res[p] = sc
    if log:
      append_log(RESULTS, res)
    return res

  def controls(self) -> dict:
    out = {}
    for name, pop in ((audits.ORACLE, self.oracle), (audits.NONE, self.none)):
      sc = self.score(pop)
      out[name] = sc
    return out

  # --- U-LiRA ------------------------------------------------------------------------

  def prepare_ulira(self):
    cfg, s, a = self.cfg, self.s, self.a
    masks = ulira_lib.game_masks(cfg.audit.ulira, s.n_forget, a.seed)
    keep, forget, groups = masks["keep"], masks["forget"], masks["groups"]
    self.u_masks = {k: masks[k] for k in ("in_mask", "out_mask", "groups")}
    self.u_full = masks
    train_rows = np.stack([np.concatenate([s.remain_idx, s.forget_idx[kp]]) for kp in keep])
    self.u_originals = a.train_population(ulira_lib.ORIGINALS, train_rows, keep_params=True,
                                          masks={"keep": keep})
    left = keep[groups] & ~forget
    self.u_left_rows = np.stack([np.concatenate([s.remain_idx, s.forget_idx[lf]])
                                 for lf in left])
    # every left row set has the same size only if keep/forget counts are fixed (they are)
    self.u_f_rows = np.stack([s.forget_idx[f] for f in forget])
    self.u_retrain = a.train_population(ulira_lib.RETRAIN_CONTROL, self.u_left_rows,
                                        masks=self.u_masks)
    self.u_identity = {k: self.u_originals[k][groups] for k in audits.RECORD.names}
    self.u_groups = groups
    self.ulira_ready = True

  def ulira(self, cand: Candidate, log: bool = True, note: str = "") -> dict:
    if not self.ulira_ready:
      self.prepare_ulira()
    g = self.u_groups
    params = jax.tree.map(lambda x: jnp.asarray(x[g]), self.u_originals["params"])
    bstats = jax.tree.map(lambda x: jnp.asarray(x[g]), self.u_originals["batch_stats"])
    name = ulira_lib.method_population(cand.label)
    if cand.kind == "baseline":
      out = self.unlearn(cand, "explicit", params=params, batch_stats=bstats,
                         f_rows=self.u_f_rows, r_rows=self.u_left_rows, name=name,
                         masks=self.u_masks)
    else:
      k = max(cand.n_refs, 1)
      # original m's reference(s): those of per-seed member m (trained on the fixed D_s)
      refs = jax.tree.map(lambda x: jnp.asarray(x.reshape(-1, 4, *x.shape[1:])[g, :k]),
                          self.ref_perseed["params"])
      out = self.unlearn(cand, "explicit", params=params, batch_stats=bstats, refs=refs,
                         f_rows=self.u_f_rows, r_rows=self.u_left_rows, name=name,
                         masks=self.u_masks)
    rep = ulira_entry(out, self.u_full)
    res = {"label": cand.label, "seed": self.seed, "forget": self.forget, "ulira": rep,
           "candidate": dataclasses.asdict(cand), "note": note}
    if log:
      append_log(RESULTS, res)
    return res

  def ulira_controls(self) -> dict:
    if not self.ulira_ready:
      self.prepare_ulira()
    return {"retrain_control": ulira_entry(self.u_retrain, self.u_full),
            "identity_control": ulira_entry(self.u_identity, self.u_full)}

  def close(self):
    self._stack.close()


def epsilon_entry(unlearned: dict, retrained: dict) -> dict:
  """The epsilon-score's row of a population against ``retrained`` (F, eps, phi median,
  spread, accuracies: ``epsilon.population_entry``), D_r's accuracy as ``retain_acc``
  (the key of the harness's records)."""
  e = eps_lib.population_entry(unlearned, retrained)
  e["retain_acc"] = e.pop("remain_acc")
  return e


def ulira_entry(record: dict, masks: dict) -> dict:
  """U-LiRA's row of a population (``ulira.population_entry``, no permutation null), D_r's
  accuracy as ``retain_acc``."""
  e = ulira_lib.population_entry(record, masks)
  e["retain_acc"] = e.pop("remain_acc")
  return e


def fmt(res: dict) -> str:
  parts = [res["label"]]
  for p in ("single", "perseed"):
    if p in res:
      r = res[p]
      parts.append(f"{p}: F {r['F']:.3f} rel {r['relF']:.2f} phi {r['phi_median']:.2f} "
                   f"spread {r['spread_ratio']:.2f} test {r['test_acc']:.4f} "
                   f"({r['test_acc_gap']:+.4f}) ret {r['retain_acc']:.4f} "
                   f"[{r['pop_wall_s']:.0f}s]")
  return " | ".join(parts)


if __name__ == "__main__":
  import argparse
  p = argparse.ArgumentParser()
  p.add_argument("--seed", type=int, default=SELECTION_SEED)
  p.add_argument("--forget", default="flip")
  p.add_argument("--ulira", action="store_true")
  args = p.parse_args()
  t0 = time.perf_counter()
  lab = Lab(args.seed, args.forget, ulira=args.ulira)
  print("setup", round(time.perf_counter() - t0, 1), "s", lab.timing)
  print("oracle F", lab.eps_oracle["forgetting_quality"], "none F",
        lab.eps_none["forgetting_quality"])
  print(json.dumps(lab.controls(), indent=1))
  if args.ulira:
    print(json.dumps({k: {kk: v[kk] for kk in ("auc", "balanced_accuracy")}
                      for k, v in lab.ulira_controls().items()}))
  lab.close()
