"""The result records: ``results.json`` / ``results.md`` of a run, ``audit.json`` / ``audit.md``.

Every record carries the config in use (:func:`config_in_use`), the machine
(:func:`environment`) and when it finished. Benchmarks and experiments
describe the machine with :func:`environment` too.
"""

from __future__ import annotations

import datetime
import json
import platform

import jax

from jaxunlearn import audits, cost as cost_lib, evaluators, methods, plan as plan_lib, plugins
from jaxunlearn import report, workdir as workdir_lib
from jaxunlearn.errors import ConfigError

__all__ = ["summarize", "config_in_use", "unlearn_cost", "write_results", "environment",
           "audit_summary", "method_settings", "write_audit", "audit_markdown"]


def environment() -> dict:
  """Versions, backend and device: recorded with every result."""
  import flax
  import optax
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)),
          "device_count": jax.device_count(), "process_count": jax.process_count(),
          "python": platform.python_version(), "host": platform.node()}


def _finished() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def config_in_use(req, plan=None, *, audit: bool = False) -> dict:
  """The config as a dict without the blocks the run (or the audit) does not use.

  Which plugins are registered depends on what the process imported; the
  record must not. A run's record holds ``plan``'s ``unlearn`` block, drops
  the blocks of evaluators it does not run, of other methods and ``audit``.
  An audit's record drops the blocks of evaluators not enabled, ``eval``, of
  methods not audited and of statistics not computed.

  Args:
    req: the request.
    plan: the run's unlearning plan (a run's record only).
    audit: the audit's record instead of a run's.
  """
  if audit == (plan is not None):
    raise ConfigError("config_in_use takes a plan for a run's record, or audit=True for an "
                      "audit's, not both or neither")
  d = req.cfg.to_dict()
  if plan is not None:
    d["unlearn"] = plan.block.to_dict()
  for name in evaluators.names():
    unused = (not evaluators.get(name)().enabled(req.cfg) if audit
              else name not in req.evaluators)
    if name in d and unused and evaluators.get(name)().config() is not None:
      del d[name]
  if audit:
    d.pop("eval", None)
  used = {p.name for p in req.plans.values()} if audit else {plan.name}
  for name in methods.names():
    if name not in used:
      d["unlearn"].pop(name, None)
  if audit:
    for name in audits.names():
      if name not in req.cfg.audit.statistics:
        d["audit"].pop(name, None)
  else:
    d.pop("audit", None)
  return d


def unlearn_cost(req, plan) -> dict:
  """The request's cost in examples processed against retraining's (:mod:`jaxunlearn.cost`):
  the whole schedule of the run, and the reference model as ``reference.source`` says."""
  cfg, s = req.cfg, req.splits
  n_heldout = plan_lib.heldout_rows(s.holdout_idx, req.y_train, s.forget_idx).size \
      if plan.needs_heldout else 0
  c = cost_lib.plan_cost(
      plan, n_forget=s.n_forget, n_remain=int(s.remain_idx.size), n_heldout=int(n_heldout),
      batch_norm=bool(jax.tree.leaves(req.original.batch_stats)),
      train_epochs=int(cfg.train.epochs), train_batch_size=int(cfg.train.batch_size),
      reference_source=cfg.reference.source, n_reference=int(s.reference_idx.size),
      reference_epochs=int(cfg.reference.epochs))
  return {"cost_examples": c["unlearn"] + c["monitor"], "monitor_examples": c["monitor"],
          "reference_per_request_examples": c["reference_per_request"],
          "reference_one_off_examples": c["reference_one_off"],
          "per_request_examples": c["per_request"], "retrain_cost_examples": c["retrain"],
          "fraction_of_retrain": c["fraction_of_retrain"]}


def summarize(req, plan, models: dict) -> dict:
  """A run's record before its evaluators' sections: sizes, stages, times, cost, config.

  Args:
    req: the request.
    plan: the unlearning plan that ran.
    models: the model stages by name (``original``, ``retrain``, ``reference``,
      ``unlearned``; :mod:`jaxunlearn.stages`).
  """
  cfg, s = req.cfg, req.splits
  time_s = {name: m.meta["time_s"] for name, m in models.items()}
  reused_ref_s = None
  if "reference" in models and models["reference"].reused:
    # A reference trained for an earlier request costs this one nothing.
    reused_ref_s, time_s["reference"] = time_s["reference"], 0.0
  time_s["train"] = time_s.pop("original")
  time_s["unlearn"] = time_s.pop("unlearned")
  compile_s = {name: m.meta["compile_s"] for name, m in models.items()}
  compile_s["train"] = compile_s.pop("original")
  compile_s["unlearn"] = compile_s.pop("unlearned")
  # Stages restored from an earlier process keep the figure of the process that made them.
  memory = {name: m.meta.get("peak_host_memory_mb") for name, m in models.items()}
  memory["train"] = memory.pop("original")
  memory["unlearn"] = memory.pop("unlearned")
  unlearned = models["unlearned"]
  results = {
      "setting": cfg.setting, "dataset": cfg.dataset, "model": cfg.model,
      "data_source": req.data.source,
      "method": plan.name,
      "hparams": {k: v for k, v in plan.hparams.items() if k != "learning_rate"},
      "seed": cfg.seed, "n_train": req.data.n_train, "n_test": req.data.n_test,
      "n_forget": s.n_forget, "n_remain": int(s.remain_idx.size),
      "n_reference": (len(models["reference"].meta["reference_idx"])
                      if "reference" in models else 0),
      "n_holdout": int(s.holdout_idx.size),
      "forget_hash": req.forget_hash(),
      "time_s": time_s, "compile_s": compile_s, "peak_host_memory_mb": memory,
      "unlearn_epochs_run": unlearned.meta["epochs"],
      "unlearn_stop": plan.block.stop,
      "calibrated_step": unlearned.meta.get("calibrated_step"),
      "unlearn_summary": unlearned.meta.get("summary") or {},
      "unlearn_cost": unlearn_cost(req, plan),
      "reference_reused": bool(models["reference"].reused) if "reference" in models else False,
      "stages": {name: m.stage for name, m in models.items()},
      "evaluators": list(req.evaluators),
      "transforms": list(req.transforms),
      "replaced": plugins.replaced(),
      "config": config_in_use(req, plan),
      "environment": environment(),
      "finished": _finished(),
  }
  if reused_ref_s is not None:
    results["reference_time_s_when_trained"] = reused_ref_s
  teacher = unlearned.meta.get("teacher")
  if teacher:
    # The teacher: its store (the attribution population) built here, or loaded where another
    # request built it (a shared store: teacher.per_forget_set false), and its fit. What this
    # request spent on it is its cost, as an unreused reference's is (speedup_amortized leaves
    # it out).
    results["teacher"] = teacher
    time_s["teacher"] = float(teacher["time_s"])
    results["unlearn_cost"]["teacher_one_off_examples"] = int(teacher["one_off_examples"])
  if "retrain" in time_s:
    results["speedup"] = time_s["retrain"] / (time_s.get("reference", 0.0)
                                              + time_s.get("teacher", 0.0) + time_s["unlearn"])
    results["speedup_amortized"] = time_s["retrain"] / time_s["unlearn"]
  if cfg.report.save_forget_indices:
    results["forget_idx"] = s.forget_idx.tolist()
  return results


def write_results(req, results: dict, sections) -> None:
  """``results.json`` and ``results.md`` (with each evaluator's ``(title, markdown)``)."""
  if jax.process_index() == 0:
    workdir_lib.atomic_write(req.workdir / "results.json", json.dumps(results, indent=2))
    workdir_lib.atomic_write(req.workdir / "results.md",
                             report.results_markdown(results, sections))


def method_settings(req, plan) -> dict:
  """Every setting an audited method ran with: its unlearn block's run fields
  (:meth:`jaxunlearn.plan.UnlearnPlan.spec`: optimizer, batch sizes, stop rule, steps, options
  and hyperparameters) and the schedule a run from the work dir's original takes on this
  request (steps and rows per step, examples processed)."""
  s = req.splits
  shape = plan.run_shape(s.n_forget, int(s.remain_idx.size))
  return {"method": plan.name, "epochs": plan.block.epochs,
          "learning_rate": plan.block.learning_rate,
          "forget_batch_size": plan.block.forget_batch_size,
          "hparams": {k: v for k, v in plan.hparams.items() if k != "learning_rate"},
          "settings": {**plan.spec(), "options": dict(plan.method.opts)},  # all, defaults too
          "schedule": {"epochs": shape.epochs, "steps_per_epoch": shape.steps_per_epoch,
                       "steps": shape.epochs * shape.steps_per_epoch,
                       "forget_rows_per_step": shape.forget_batch_size,
                       "remain_rows_per_step": shape.remain_batch_size}}


def audit_summary(req, statistics, sections: dict, *, populations: dict, driver: str,
                  time_s: float, teachers: dict | None = None) -> dict:
  """An audit's record (``audit.json`` before its figures).

  Args:
    req: the request.
    statistics: the statistics computed, in order.
    sections: each statistic's section, by name.
    populations: each population's ``{"time_s", "chunks_reused"}``.
    driver: the population driver (``loop`` or ``vmap``).
    time_s: the audit's wall time.
    teachers: per method label that read a teacher, its store and one-off cost
      (:func:`jaxunlearn.attribution.request_teacher`); recorded only when there are some.
  """
  s = req.splits
  extra = {"teachers": teachers} if teachers else {}
  return {**extra,
      "setting": req.cfg.setting, "dataset": req.cfg.dataset, "model": req.cfg.model,
      "data_source": req.data.source,
      "n_forget": int(s.n_forget), "n_remain": int(s.remain_idx.size),
      "transforms": list(req.transforms), "num_models": req.cfg.audit.num_models,
      "methods": {label: method_settings(req, p) for label, p in req.plans.items()},
      "statistics": list(statistics), **sections,
      "populations": populations, "population_driver": driver,
      "time_s": time_s,
      "replaced": plugins.replaced(),
      "config": config_in_use(req, audit=True),
      "environment": environment(),
      "finished": _finished(),
  }


def write_audit(req, results: dict) -> None:
  """``audit.json`` and ``audit.md`` (process 0 only)."""
  if jax.process_index() == 0:
    workdir_lib.atomic_write(req.workdir / "audit.json", json.dumps(results, indent=2))
    workdir_lib.atomic_write(req.workdir / "audit.md", audit_markdown(results))


def audit_markdown(r: dict) -> str:
  """``audit.md``: a header, each statistic's section, the populations' times, the figures."""
  lines = [f"# Audit: {r['setting']} ({r['dataset']}, {r['model']})", "",
           f"D_f: {r['n_forget']} examples"
           + (f" (transforms: {', '.join(r['transforms'])})" if r["transforms"] else "")
           + f"; N = {r['num_models']} models per epsilon population; "
           f"{r['time_s']:.0f} s in all.", ""]
  for name in r["statistics"]:
    st = audits.get(name)()
    lines += [f"## {st.title or name}", "", st.report(r[name]), ""]
  lines += ["## Populations", "", "| population | wall s | chunks reused |", "|---|---|---|"]
  for name, t in r["populations"].items():
    lines.append(f"| {name} | {t['time_s']:.1f} | {t['chunks_reused']} |")
  for fig in (r.get("figures") or {}).values():
    lines += ["", f"![{fig}]({fig})"]
  return "\n".join(lines) + "\n"
