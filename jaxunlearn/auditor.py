"""``jaxunlearn audit``: populations of models and the audit statistics computed on them.

    jaxunlearn audit --config configs/quick_audit.py --workdir runs/quick_audit

The request (:mod:`jaxunlearn.request`) validates everything, every
``audit.methods`` entry included, holds the lock and the work dir's original
(trained first if missing, exactly as ``jaxunlearn run`` does). Each
statistic in ``audit.statistics`` (:mod:`jaxunlearn.audits`) then asks for
the populations it needs; the :class:`Auditor` trains each population of N
models under one ``jax.vmap`` (:mod:`jaxunlearn.populations`), once per name
per audit, so statistics share them. The audited examples are D_f, with the
labels the original trained on (after any data transform: a label flip or a
backdoor makes D_f something the original measurably memorises).

Outputs under the work dir: ``phi/<population>.npy`` (``[N, n]``) with
``phi/<population>.masks.npz``, ``audit.json`` (one section per statistic),
``audit.md`` and each statistic's plots. Every population is cached chunk by
chunk, so a killed audit resumes where it stopped.

Choices, where the literature leaves room:

* Population keys are threefry: rbg keys were measured to give different
  phi on 8 devices than on 1.
* Each member gathers its training rows (``x[rows]``), so memory grows with
  ``chunk_size`` times the training set; lower ``audit.chunk_size`` for
  large data sets.
* Stop rules apply inside populations as in ``run``: the pure run computes
  what the host driver would stop at.
"""

from __future__ import annotations

import json
import sys
import time
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import attribution, audits, config as config_lib, deprecation, plan as plan_lib
from jaxunlearn import plugins
from jaxunlearn import populations as pops, registry
from jaxunlearn import request as request_lib, results as results_lib, splits as splits_lib
from jaxunlearn import stages, train as train_lib
from jaxunlearn.config import resolve_seed
from jaxunlearn.errors import ConfigError

__all__ = ["Auditor", "run_audit", "check", "check_memory", "audit_info", "method_specs",
           "probe_rows", "CONTROLS", "OUTPUTS", "PROTOCOLS"]

CONTROLS = (audits.RETRAIN, audits.ORACLE, audits.NONE)
OUTPUTS = ("audit.json", "audit.md")
PROTOCOLS = {"single": ("single",), "per_seed": ("per_seed",), "both": ("single", "per_seed")}


def method_specs(cfg) -> list[request_lib.MethodSpec]:
  """The ``audit.methods`` entries as labelled ``unlearn`` blocks."""
  specs = []
  for i, entry in enumerate(cfg.audit.methods):
    label, block = plan_lib.parse_spec(entry, cfg.unlearn, reserved=CONTROLS)
    specs.append(request_lib.MethodSpec(label, block, f"audit.methods entry {entry!r}",
                                        f"audit.methods[{i}]"))
  return specs


def check(prep: request_lib.Prepared) -> None:
  """The audit's own checks, before the lock: the statistics' blocks, then every size against
  memory and work (:func:`check_memory`), then what draws with those sizes (U-LiRA's game)."""
  info = audit_info(prep)
  statistics = audits.selected(prep.cfg)
  per_member = [n for n in statistics if getattr(audits.get(n), "forgets_per_member", False)]
  teacher = [p.label for p in prep.plans.values()
             if p.needs_teacher and not attribution.shared_teacher(p)]
  if per_member and teacher:
    keep = tuple(n for n in statistics if n not in per_member)
    raise ConfigError(
        f"audit.methods {teacher[0]!r} ({prep.plans[teacher[0]].name}) reads a teacher fitted "
        f"to the request's whole D_f, and audit statistic {per_member[0]!r} forgets a different "
        "subset of D_f per member; audit it without that statistic "
        f"(--config.audit.statistics=\"{keep!r}\"), give it a shared store (teacher_fit='out' "
        "or 'pool') or leave the method out of audit.methods")
  anchored = [p for p in prep.plans.values()
              if p.needs_retain_teacher and attribution.shared_teacher(p)]
  if per_member and anchored:
    raise ConfigError(attribution.retain_anchor_per_member(anchored[0]))
  for name in statistics:
    st = audits.get(name)()
    with registry.guard("audit statistic", name, st, "validate"):
      st.validate(prep.cfg, info)
  # An outside record field without source or version is refused here, not at its first chunk.
  audits.RECORD.schema(audits.record_fields(statistics))
  check_memory(prep, statistics, info)
  for name in statistics:
    st = audits.get(name)()
    with registry.guard("audit statistic", name, st, "validate_drawn"):
      st.validate_drawn(prep.cfg, info)


def audit_info(prep: request_lib.Prepared) -> audits.AuditInfo:
  """What a statistic may check before anything is trained (:class:`audits.AuditInfo`)."""
  return audits.AuditInfo(n_forget=prep.splits.n_forget,
                          n_remain=int(prep.splits.remain_idx.size),
                          num_classes=prep.data.num_classes, labels=tuple(prep.plans),
                          n_test=int(np.shape(prep.data.y_test)[0]))


def _default(field: str):
  """A field's default (core or a plugin's block), for messages."""
  node = plugins.default_config()
  for part in field.split("."):
    node = node.get(part) if hasattr(node, "get") else None
  return node


def _largest_fitting(fits, low: int, high: int) -> int | None:
  """The largest ``v`` in ``[low, high]`` with ``fits(v)`` (``fits`` true up to a point and
  false after it), None if not even ``low``."""
  if not fits(low):
    return None
  while low < high:
    mid = (low + high + 1) // 2
    low, high = (mid, high) if fits(mid) else (low, mid - 1)
  return low


def _gib(n: float) -> str:
  return f"{n / 2**30:.1f} GiB"


def check_memory(prep: request_lib.Prepared, statistics, info: audits.AuditInfo | None = None
                 ) -> None:
  """Refuses, before anything is drawn or trained, any size that would not fit: a population
  whose estimated memory exceeds ``audit.memory_fraction`` of the memory available to it (the
  device's not in use; the host's ``MemAvailable`` on CPU), and any statistic's own host
  memory or work (:class:`jaxunlearn.audits.Need`: the epsilon-score's N x N table, U-LiRA's
  game, attack and null, KLOM's bins) over its limit. The refusal names the field, the limit
  field with its default and a value of the field that fits.

  Args:
    prep: the prepared request.
    statistics: the names of the statistics to run; each declares the sizes of the
      populations it trains (:meth:`jaxunlearn.audits.Statistic.population_sizes`) and of its
      own computation (:meth:`jaxunlearn.audits.Statistic.needs`).
    info: the audit's sizes (default: :func:`audit_info`).
  """
  cfg, s = prep.cfg, prep.splits
  info = info or audit_info(prep)
  fraction = float(cfg.audit.memory_fraction)
  limit_words = (f"audit.memory_fraction={fraction:g} (default "
                 f"{config_lib.FIELDS['audit.memory_fraction'].default:g})")
  n_fields = len(audits.record_fields(statistics))
  abstract = stages.abstract_variables(prep.model, cfg.train, prep.data.input_shape)
  param_bytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(abstract))
  sizes = {}
  for name in statistics:
    st = audits.get(name)()
    with registry.guard("audit statistic", name, st, "population_sizes"):
      sizes.update(st.population_sizes(cfg))
  needs_ref = any(p.needs_reference for p in prep.plans.values())
  pools = {"remain": info.n_remain, "test": info.n_test}
  recorded = info.n_forget + sum(min(size, pools[source]) for source, size in
                                 audits.probe_sets(cfg, statistics).values())
  steps = {label: pops.epoch_step_rows(p, info.n_forget, info.n_remain)
           for label, p in prep.plans.items()}
  step_rows = max(steps.values(), default=0)
  limit, where = pops.memory_limit_bytes(fraction)
  host_limit, host_where = pops.memory_limit_bytes(fraction, host=True)

  def estimate(members):
    return pops.estimate_bytes(
        members=members, chunk_size=cfg.audit.chunk_size, param_bytes=param_bytes,
        rows=int(s.train_idx.size), example_bytes=4 * int(np.prod(prep.data.input_shape)),
        n_audit=recorded, n_fields=n_fields, keep_params=True, per_member_params=True,
        reference_rows=int(s.reference_idx.size) if needs_ref else 0, step_rows=step_rows)

  # Every size as a Need with the memory it is checked against: populations first (device
  # memory), then each statistic's own computation (host memory).
  checks = []
  for kind, size in sizes.items():
    per = max(int(size.per_value), 1)
    need = audits.Need(f"a population of {size.members} models ({kind})",
                       {size.field: size.members // per},
                       lambda v, f=size.field, per=per: (estimate(v[f] * per), 0))
    checks.append((need, limit, where, kind))
  for name in statistics:
    for need in audits.get(name)().needs(cfg, info):
      checks.append((need, host_limit, host_where, None))
  # A shared teacher read per member (U-LiRA): [members, K + 1, |D_f|, C] floats on the host,
  # an upper bound (a member forgets part of D_f).
  shared = [p for p in prep.plans.values() if p.needs_teacher and attribution.shared_teacher(p)]
  per_member = {kind: size for name in statistics
                if getattr(audits.get(name), "forgets_per_member", False)
                for kind, size in audits.get(name)().population_sizes(cfg).items()}
  for plan in shared:
    k_models = int(plan.method.teacher_spec()["num_models"])
    for kind, size in per_member.items():
      per = max(int(size.per_value), 1)
      row_bytes = (k_models + 1) * info.n_forget * info.num_classes * 4
      checks.append((audits.Need(
          f"the per-member teachers of {plan.label!r} ({kind}: [members, K + 1, |D_f|, C])",
          {size.field: size.members // per},
          lambda v, f=size.field, per=per, b=row_bytes: (v[f] * per * b, 0)),
          host_limit, host_where, None))

  def fits(need, lim, values):
    mem, work = need.cost(values)
    return mem <= lim and (need.work_limit is None or work <= need.work_limit[1])

  def largest(field, value, low):
    """The largest value of ``field`` up to ``value`` that every size it sets fits with."""
    related = [(n, lim) for n, lim, _, _ in checks if field in n.fields]
    return _largest_fitting(lambda v: all(fits(n, lim, {**n.fields, field: v})
                                          for n, lim in related), low, value)

  for need, lim, what_mem, kind in checks:
    values = {k: int(v) for k, v in need.fields.items()}
    if fits(need, lim, values):
      continue
    mem, work = need.cost(values)
    limit_text = f"the limit of {_gib(lim)} ({limit_words} of {what_mem})"
    if kind is not None:
      field = next(iter(values))
      fit = largest(field, values[field], 2 if field == "audit.num_models" else 1)
      hint = f" (e.g. {field}<={fit})" if fit else ""
      chunk = pops.balanced_chunk(values[field], cfg.audit.chunk_size)
      heavy = max(steps, key=steps.get) if steps else None
      if heavy is not None and chunk * 4 * steps[heavy] > mem / 2:
        hint += (f"; an unlearning epoch of {heavy!r} holds {steps[heavy]} row indices and step "
                 "metrics per member: fewer steps")
      raise ConfigError(
          f"{need.what} would need about {_gib(mem)}, over {limit_text}; lower {field} or "
          f"audit.chunk_size{hint}, or raise audit.memory_fraction")
    over, needed = [], []
    if mem > lim:
      over.append(limit_text)
      needed.append(f"~{_gib(mem)}")
    if need.work_limit is not None and work > need.work_limit[1]:
      wfield, wlimit = need.work_limit
      over.append(f"{wfield}={wlimit:.3g} (default {_default(wfield):.3g})")
      needed.append(f"~{work:.3g} {need.work_unit}")
    for field, value in values.items():
      low = int(need.minimum.get(field, 1))
      fit = largest(field, value, low) if value > low else None
      if fit is not None:
        raise ConfigError(f"{field}={value} needs {' and '.join(needed)} for {need.what}, "
                          f"over {' and '.join(over)}; set {field}<={fit}")
    first = next(iter(values))
    raise ConfigError(f"{first}={values[first]} needs {' and '.join(needed)} for {need.what}, "
                      f"over {' and '.join(over)}; lower {', '.join(values)}")


def probe_rows(probes: dict, remain_idx, n_test: int, seed: int) -> dict:
  """``{name: (source, rows)}``: each probe's rows, drawn once per audit seed and probe name
  (sorted; all of them when the source has no more than ``size``). ``remain`` rows index the
  training set (within D_r), ``test`` rows the test set."""
  out = {}
  for name, (source, size) in probes.items():
    pool = np.asarray(remain_idx) if source == "remain" else np.arange(n_test)
    rng = np.random.default_rng([int(seed), zlib.crc32(f"audit/probe/{name}".encode())])
    rows = pool if size >= pool.size else rng.choice(pool, size, replace=False)
    out[name] = (source, np.sort(rows))
  return out


class Auditor(audits.Audit):
  """The populations of one audit (see :class:`jaxunlearn.audits.Audit`).

  Besides what a statistic gets, the population service for code that builds
  populations of its own (:class:`jaxunlearn.populations.Population`):
  :meth:`key` gives a population its key, :meth:`member` a cached member
  function, and :meth:`run` runs a population as the statistics' are (cached
  chunk by chunk, timed, saved under ``phi/``). :meth:`audit` runs every
  statistic of ``audit.statistics``.
  """

  def __init__(self, req: request_lib.Request):
    self.req = req
    cfg, s = req.cfg, req.splits
    self.cfg = cfg
    self.labels = tuple(req.plans)
    self.n_audit = int(s.n_forget)
    self.forget_rows, self.remain_rows, self.train_rows = s.forget_idx, s.remain_idx, s.train_idx
    self.seed = resolve_seed(cfg.audit.seed, cfg)
    self.protocols = PROTOCOLS[cfg.audit.protocol]
    self.statistics = audits.selected(cfg)
    self.fields = audits.record_fields(self.statistics)
    x_all, y_all = jnp.asarray(req.x_train), jnp.asarray(req.y_train)
    self.x_all, self.y_all = x_all, y_all
    x_test, y_test = jnp.asarray(req.data.x_test), jnp.asarray(req.data.y_test)
    self.probe_rows = probe_rows(audits.probe_sets(cfg, self.statistics), s.remain_idx,
                                 int(y_test.shape[0]), self.seed)
    self.probes = tuple((name, int(rows.size), splits_lib.index_hash(rows))
                        for name, (_, rows) in self.probe_rows.items())
    probe_data = {name: (x_all[rows], y_all[rows]) if source == "remain"
                  else (x_test[rows], y_test[rows])
                  for name, (source, rows) in self.probe_rows.items()}
    self.data = pops.EvalData(
        x_audit=x_all[s.forget_idx], y_audit=y_all[s.forget_idx], x_remain=x_all[s.remain_idx],
        y_remain=y_all[s.remain_idx], x_test=x_test, y_test=y_test,
        probes=probe_data or None)
    self.base_spec = {"original": dict(req.fingerprint), "forget_hash": req.forget_hash(),
                      "seed": self.seed}
    self.records: dict[str, dict] = {}
    self.times: dict[str, dict] = {}
    self.teachers: dict[str, dict] = {}     # label -> its teacher store and one-off cost
    self.driver = pops.resolve_driver(cfg.audit.driver, req.original.params, req.mesh)
    if cfg.report.progress and jax.process_index() == 0:
      why = {"loop": "one model at a time: XLA:CPU runs a vmapped conv net slower",
             "vmap": "each chunk one vmapped call"}[self.driver]
      print(f"populations: {self.driver} driver ({why})", file=sys.stderr)
    heldout = req.heldout()
    self.heldout = tuple(jnp.asarray(a) for a in heldout)

  def audit(self) -> dict[str, dict]:
    """Runs every statistic of ``audit.statistics``, in order, on this audit's populations
    (a population asked for twice is trained once): ``{statistic: its section}``."""
    sections = {}
    for name in self.statistics:
      st = audits.get(name)()
      with registry.guard("audit statistic", name, st, "run"):
        sections[name] = st.run(self)
    return sections

  def population(self, name: str) -> dict:
    return self.records[name]

  def add_population(self, name: str, record: dict, masks=None) -> dict:
    """A population derived from others (e.g. U-LiRA's identity control), saved like one."""
    self.records[name] = record
    self._save(name, record, masks or {})
    return record

  def _save(self, name: str, record: dict, masks: dict) -> None:
    if jax.process_index() == 0:
      per_member = {f.name: record[f.name] for f in audits.RECORD.base if not f.per_example}
      # phi on each probe beside its rows (training-set rows for remain, test rows for test).
      probed = {k: v for n, (_, rows) in self.probe_rows.items() if f"phi_{n}" in record
                for k, v in ((f"phi_{n}", record[f"phi_{n}"]), (f"rows_{n}", rows))}
      pops.save_phi(self.req.workdir / "phi", name, record["phi"],
                    examples=self.req.splits.forget_idx, **per_member, **probed, **masks)

  def key(self, name: str):
    """The key of the population ``name``: ``fold_in(key(seed), crc32("audit/<name>"))``,
    the audit's seed and the name alone (member ``i`` then gets ``fold_in(key, i)``)."""
    # threefry, not rbg: rbg's bits change with the sharding and the vmap size
    # (measured: phi differed by up to 0.96 between 8 devices and 1), threefry's do not.
    return stages.stage_key(self.seed, f"audit/{name}")

  def member(self, cache_key: tuple, make):
    """The member function under ``cache_key``, made once per process by ``make()``
    (:func:`jaxunlearn.populations.cached_member`): populations with the same member and
    shapes reuse its compiled code. The key also holds the model's implementation where it is
    not the package's own: a replaced model never runs another's compiled members."""
    impl = self.req.fingerprint.get("model_implementation")
    return pops.cached_member((json.dumps(impl, sort_keys=True), *cache_key) if impl else
                              cache_key, make)

  def run(self, pop: pops.Population, masks=None) -> dict:
    """Runs ``pop`` under :meth:`key` of its name, chunk by chunk (finished chunks are
    restored), records its time, and saves phi with ``masks`` under ``phi/<name>``.

    Returns:
      The record (:func:`jaxunlearn.populations.run_population`), also kept under the
      population's name (:meth:`population`).
    """
    t0 = time.perf_counter()
    # Library work a statistic asks for: what fails here is not blamed on the statistic (a
    # method's own failure inside a member is named by the member's guard, unlearn_population).
    with registry.library_call():
      out = pops.run_population(pop, self.key(pop.name), self.req.cache,
                                n_audit=self.n_audit, chunk_size=self.cfg.audit.chunk_size,
                                mesh=self.req.mesh, progress=self.cfg.report.progress)
      self.times[pop.name] = {"time_s": time.perf_counter() - t0,
                              "chunks_reused": int(out.pop("chunks_reused"))}
      self.records[pop.name] = out
      self._save(pop.name, out, dict(masks or {}))
    return out

  def train_population(self, name: str, rows: np.ndarray, *, keep_params: bool = False,
                       masks=None, epochs: int | None = None) -> dict:
    """N models trained from scratch on ``rows`` (``[n]`` shared, or ``[N, n]`` per member)
    with the ``train`` block's recipe; ``epochs`` replaces its epochs (e.g. the
    reference model's ``reference.epochs`` for a population of references)."""
    if name in self.records and (not keep_params or "params" in self.records[name]):
      return self.records[name]
    req, cfg = self.req, self.cfg
    per_member = rows.ndim == 2
    size = rows.shape[0] if per_member else cfg.audit.num_models
    n_rows = rows.shape[-1]
    n_epochs = int(cfg.train.epochs if epochs is None else epochs)
    opt = train_lib.optimizer_for_rows(cfg.train, n_rows, n_epochs)
    batch = min(cfg.train.batch_size, n_rows)
    fields = tuple(sorted(self.fields.items()))
    member = self.member(("train", repr(req.model), tuple(req.data.input_shape),
                          json.dumps(cfg.train.to_dict(), sort_keys=True), n_rows, keep_params,
                          json.dumps(pops.record_schema(dict(fields))), n_epochs),
                         lambda: pops.train_member(req.model, opt, req.data.input_shape,
                                                   epochs=n_epochs, batch_size=batch,
                                                   keep_params=keep_params,
                                                   fields=dict(fields)))
    rows_j = jnp.asarray(rows, jnp.int32)
    abstract = None
    if keep_params:
      variables = req.abstract_variables()
      abstract = (variables["params"], variables["batch_stats"])
    pop = pops.Population(
        name=name, size=size, member=member,
        mapped=(rows_j,) if per_member else (),
        shared=(() if per_member else (rows_j,)) + (self.x_all, self.y_all, self.data),
        spec={**self.base_spec, "kind": "train", "train": cfg.train.to_dict(),
              "rows": splits_lib.index_hash(np.asarray(rows).ravel()),
              **({} if n_epochs == int(cfg.train.epochs) else {"epochs": n_epochs})},
        keep_params=keep_params, abstract_params=abstract, fields=fields, driver=self.driver,
        probes=self.probes)
    return self.run(pop, masks)

  def per_seed_population(self, label: str) -> dict:
    name = audits.per_seed(label)
    if name in self.records:
      return self.records[name]
    none = self.train_population(audits.NONE, self.train_rows, keep_params=True)
    n = none["phi"].shape[0]
    tile = lambda rows: np.tile(np.asarray(rows)[None], (n, 1))  # noqa: E731
    return self.unlearn_population(name, label, params=none["params"],
                                   batch_stats=none["batch_stats"],
                                   f_rows=tile(self.forget_rows), r_rows=tile(self.remain_rows))

  def _reference(self, plan, per_member: bool) -> tuple[pops.ReferenceSettings, object, dict]:
    """How the members of a population get their reference: ``(settings, argument, spec)``."""
    req, cfg, s = self.req, self.cfg, self.req.splits
    n_ref = int(s.reference_idx.size)
    source = cfg.reference.source
    mode = "draw" if source == "remain" else "rows" if per_member else "given"
    settings = pops.ReferenceSettings(
        mode=mode, size=n_ref, epochs=int(cfg.reference.epochs),
        batch_size=int(cfg.train.batch_size),
        optimizer=train_lib.optimizer_for_rows(cfg.train, n_ref, cfg.reference.epochs))
    spec = {"size": n_ref, "epochs": cfg.reference.epochs, "source": source, "mode": mode}
    if mode == "draw":
      return settings, (), spec
    if mode == "rows":
      spec["rows"] = splits_lib.index_hash(s.reference_idx)
      return settings, jnp.asarray(s.reference_idx, jnp.int32), spec
    trained = stages.reference_stage(req)
    spec["stage"] = trained.stage
    return settings, (trained.params, trained.batch_stats), spec

  def unlearn_population(self, name: str, label: str, *, params=None, batch_stats=None,
                         f_rows=None, r_rows=None, masks=None) -> dict:
    if name in self.records:
      return self.records[name]
    req, cfg, s = self.req, self.cfg, self.req.splits
    plan = req.plans[label]
    per_member = params is not None
    if not per_member:
      params, batch_stats = req.original.params, req.original.batch_stats
      f_rows, r_rows = s.forget_idx, s.remain_idx
    n_forget, n_remain = int(np.shape(f_rows)[-1]), int(np.shape(r_rows)[-1])
    reference, ref_arg, ref_spec = (self._reference(plan, per_member) if plan.needs_reference
                                    else (None, (), None))
    spec = {**plan.spec(), **({"reference": ref_spec} if plan.needs_reference else {})}
    fields = tuple(sorted(self.fields.items()))
    member = self.member(("unlearn", repr(req.model), tuple(req.data.input_shape),
                          json.dumps(spec, sort_keys=True),
                          json.dumps(cfg.train.to_dict(), sort_keys=True), n_forget, n_remain,
                          json.dumps(pops.record_schema(dict(fields)))),
                         lambda: _guarded_member(
                             plan, pops.unlearn_member(req.model, req.data.input_shape, plan,
                                                       n_forget=n_forget, n_remain=n_remain,
                                                       reference=reference,
                                                       fields=dict(fields))))
    args = (params, batch_stats, jnp.asarray(f_rows, jnp.int32), jnp.asarray(r_rows, jnp.int32))
    rest = (self.x_all, self.y_all, self.heldout, ref_arg, self.data)
    mapped_teacher = None
    if plan.needs_teacher:
      rows = np.asarray(f_rows).reshape(-1, n_forget)
      if rows.shape[1] == s.forget_idx.size and (rows == np.asarray(s.forget_idx)[None]).all():
        # One teacher for the request's D_f, shared by every member.
        teacher, info = attribution.request_teacher(req, plan, progress=False)
        rest = rest + ({k: jnp.asarray(v) for k, v in teacher.items()},)
      elif attribution.shared_teacher(plan):
        # Members forget other rows (U-LiRA): one teacher each, from the shared store.
        teacher, info = attribution.member_teachers(req, plan, rows, progress=False)
        mapped_teacher = {k: jnp.asarray(v) for k, v in teacher.items()}
      else:
        raise ConfigError(f"{label}: method {plan.name!r} reads a teacher fitted to the "
                          "request's D_f and this population forgets other rows per member")
      self.teachers.setdefault(label, info)
      spec = {**spec, "teacher": info["store"]}
      if mapped_teacher is not None:
        spec["teacher_per_member"] = True
        member = _teacher_mapped(member)
        args = args + (mapped_teacher,)
    pop = pops.Population(
        name=name, size=int(np.shape(f_rows)[0]) if per_member else cfg.audit.num_models,
        member=member, mapped=args if per_member else (),
        shared=rest if per_member else args + rest,
        spec={**self.base_spec, "kind": "unlearn", "label": label, **spec,
              "train": cfg.train.to_dict(),
              "rows": splits_lib.index_hash(np.concatenate(
                  [np.asarray(f_rows).ravel(), np.asarray(r_rows).ravel()]))},
        fields=fields, driver=self.driver, probes=self.probes)
    return self.run(pop, masks)


def _teacher_mapped(member):
  """``member`` with its teacher (its last argument) moved among the per-member arguments:
  ``(key, params, batch_stats, f_rows, r_rows, teacher, *shared)``."""
  def mapped(key, params, batch_stats, f_rows, r_rows, teacher, *shared):
    return member(key, params, batch_stats, f_rows, r_rows, *shared, teacher)
  return mapped


def _guarded_member(plan, member):
  """``member`` with the plan's method named in what its trace raises (:func:`registry.guard`)."""
  def guarded(*args):
    with registry.guard("unlearning method", plan.name, plan.method, "a population's run"):
      return member(*args)
  return guarded


def run_audit(cfg: ml_collections.ConfigDict, workdir, *, wait: bool = False) -> dict:
  """Runs every statistic's populations and writes ``audit.json``, ``audit.md`` and plots.

  Args:
    cfg: a config (``configs/quick_audit.py``); the ``audit`` block names the
      methods, the statistics and the population sizes.
    workdir: the work dir; its original model and finished chunks are reused.
    wait: wait for another run holding the work dir instead of refusing.

  Returns:
    The contents of ``audit.json``.
  """
  cfg = plugins.check_config(cfg)
  specs = method_specs(cfg)
  with request_lib.open_request(cfg, workdir, methods=specs, outputs=OUTPUTS, wait=wait,
                                checks=(check,)) as req:
    t_start = time.perf_counter()
    auditor = Auditor(req)
    sections = auditor.audit()
    results = results_lib.audit_summary(req, auditor.statistics, sections,
                                        populations=auditor.times, driver=auditor.driver,
                                        time_s=time.perf_counter() - t_start,
                                        teachers=auditor.teachers)
    if jax.process_index() == 0:
      figures = {}
      for name in auditor.statistics:
        st = audits.get(name)()
        with registry.guard("audit statistic", name, st, "plot"):
          figures.update(st.plot(sections[name], auditor, req.workdir))
      results["figures"] = figures
      results_lib.write_audit(req, results)
    return results


def __getattr__(name: str):
  # Moved to jaxunlearn.results; each old name prints one deprecation line.
  if name == "config_in_use":
    deprecation.note(f"{__name__}.config_in_use",
                     "jaxunlearn.results.config_in_use(req, audit=True)")
    return lambda req: results_lib.config_in_use(req, audit=True)
  if name == "markdown":
    deprecation.note(f"{__name__}.markdown", "jaxunlearn.results.audit_markdown")
    return results_lib.audit_markdown
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
