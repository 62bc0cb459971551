"""The pipeline: original -> retrain -> reference -> unlearn -> evaluate.

It strings the stages together and names no method, evaluator or data
transform: the config picks them from their registries. The request
(:mod:`jaxunlearn.request`) has validated everything, holds the lock and the
original model. Each finished stage is an Orbax checkpoint under
``WORKDIR/checkpoints/`` and is reused by a rerun. Stage names carry what they
depend on:

* ``original``: the model trained on D_f and D_r (never overwritten);
* ``retrain-<forget hash>``: trained from scratch on D_r;
* ``reference-<D_s hash>-e<epochs>``: trained on D_s, only for methods that
  use a reference model; reused by any later request whose D_f does not touch D_s;
* ``unlearned-<forget hash>-<settings hash>``: the original after unlearning.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import checkpoint, cost as cost_lib, evaluators, methods, plan as plan_lib
from jaxunlearn import plugins, report, request as request_lib, splits as splits_lib, stages
from jaxunlearn import train as train_lib, unlearn as unlearn_lib, workdir as workdir_lib
from jaxunlearn.errors import SplitError

OUTPUTS = ("results.json", "results.md")


def run(cfg: ml_collections.ConfigDict, workdir, *, wait: bool = False) -> dict:
  """Runs every stage and writes ``results.json`` / ``results.md``; returns the results.

  Args:
    cfg: a config from ``configs/`` (see :func:`jaxunlearn.plugins.default_config`).
    workdir: where checkpoints and results go; finished stages there are reused.
    wait: if another run holds the work directory, wait for it instead of
      refusing.
  """
  with request_lib.open_request(cfg, workdir, outputs=OUTPUTS, wait=wait) as req:
    (label,) = req.plans
    results, sections = run_plan(req, label)
    write_results(req, results, sections)
    return results


def write_results(req: request_lib.Request, results: dict, sections) -> None:
  if jax.process_index() == 0:
    workdir_lib.atomic_write(req.workdir / "results.json", json.dumps(results, indent=2))
    workdir_lib.atomic_write(req.workdir / "results.md",
                             report.results_markdown(results, sections))


def run_plan(req: request_lib.Request, label: str) -> tuple[dict, list]:
  """The stages and evaluators of one unlearning plan of ``req``.

  Returns:
    ``(results, sections)``: the contents of ``results.json`` and each
    evaluator's ``(title, markdown)``.
  """
  plan = req.plans[label]
  models = {"original": req.original}
  if req.cfg.retrain.enabled:
    models["retrain"] = retrain_stage(req)
  reference = reference_stage(req) if plan.needs_reference else None
  if reference is not None:
    models["reference"] = reference
  models["unlearned"] = unlearn_stage(req, plan, reference)
  results = summarize(req, plan, models)
  inputs = eval_inputs(req, models)
  sections = []
  for name in req.evaluators:
    ev = evaluators.get(name)()
    section = ev.evaluate(dataclasses.replace(inputs, key=req.key(f"evaluator/{name}")))
    results[evaluators.section_name(name)] = section
    sections.append((ev.title or name, ev.report(section)))
  return results, sections


def retrain_stage(req: request_lib.Request) -> stages.Trained:
  """The model trained from scratch on D_r (the gold standard and the timing baseline)."""
  return req.train(f"retrain-{req.forget_hash()}", req.splits.remain_idx,
                   epochs=req.cfg.train.epochs, key=req.key("retrain"))


def find_reference(req: request_lib.Request) -> str | None:
  """A saved reference model whose D_s avoids this request's D_f, if any."""
  root = req.cache.root
  if not root.is_dir():
    return None
  want = {"epochs": req.cfg.reference.epochs, "n_examples": int(req.splits.reference_idx.size),
          "source": req.cfg.reference.source}
  for d in sorted(root.glob("reference-*")):
    if not checkpoint.exists(d):
      continue
    meta = checkpoint.metadata(d)
    if any(meta.get(k, "remain" if k == "source" else None) != v for k, v in want.items()):
      continue
    ref_idx = np.asarray(meta["reference_idx"], np.int64)
    if not np.intersect1d(ref_idx, req.splits.forget_idx).size:
      return d.name
  return None


def reference_stage(req: request_lib.Request) -> stages.Trained:
  """The reference model: one saved for another request if its D_s avoids D_f, else trained.

  The returned model's ``meta["reference_idx"]`` is the D_s it trained on.
  """
  cfg, s = req.cfg, req.splits
  fhash = req.forget_hash()
  if cfg.reference.reuse:
    found = find_reference(req)
    if found is not None:
      meta = req.cache.metadata(found)
      _check_reference_avoids_forget(np.asarray(meta["reference_idx"]), s.forget_idx)
      # Finding the reference this very request trained (a resumed or repeated run) is
      # not reuse; one trained for another forget set is.
      return req.restore(found, reused=meta.get("trained_for") != fhash)
  # Checked again here, not with `assert` (stripped by python -O): the
  # reference model must never see D_f.
  _check_reference_avoids_forget(s.reference_idx, s.forget_idx)
  # The name carries D_s and the schedule: a reference of other epochs is another stage.
  stage = f"reference-{splits_lib.index_hash(s.reference_idx, req.secret)}-e{cfg.reference.epochs}"
  return req.train(stage, s.reference_idx, epochs=cfg.reference.epochs, key=req.key("reference"),
                   extra_meta={"reference_idx": s.reference_idx.tolist(),
                               "source": cfg.reference.source, "trained_for": fhash},
                   reused=lambda meta: meta.get("trained_for") != fhash)


def _check_reference_avoids_forget(reference_idx, forget_idx) -> None:
  if np.intersect1d(reference_idx, forget_idx).size:
    raise SplitError("the reference subset touches the forget set; the reference model must "
                     "never see D_f")


def method_inputs(req: request_lib.Request, plan, original: stages.Trained,
                  reference: stages.Trained | None) -> methods.Inputs:
  """The arrays ``plan``'s run needs (and only those), from the request's data."""
  s, bs = req.splits, req.cfg.eval.batch_size
  return plan.build_inputs(
      x_forget=req.x_train[s.forget_idx], y_forget=req.y_train[s.forget_idx],
      x_remain=req.x_train[s.remain_idx], y_remain=req.y_train[s.remain_idx],
      heldout=req.heldout(),
      original_logits=lambda x: train_lib.predict(original.apply_fn, original.params, x, bs),
      reference_probs=None if reference is None else lambda x: jax.nn.softmax(jnp.asarray(
          train_lib.predict(reference.apply_fn, reference.params, x, bs)), -1))


def unlearn_stage(req: request_lib.Request, plan, reference: stages.Trained | None
                  ) -> stages.Trained:
  """The original after ``plan``'s unlearning run (cached by D_f and the plan's settings)."""
  original, s = req.original, req.splits
  spec = {**plan.spec(), "reference": reference.stage if reference is not None else None}
  stage = f"unlearned-{req.forget_hash()}-{stages.spec_hash(spec)}"

  def build():
    # The forward passes that make the inputs (the reference on D_f, ...) are
    # unlearning work: timed, after a first call that compiles them.
    jax.block_until_ready(method_inputs(req, plan, original, reference))
    t0 = time.perf_counter()
    inputs = jax.block_until_ready(method_inputs(req, plan, original, reference))
    inputs_s = time.perf_counter() - t0
    fn = plan.make_fn(original.apply_fn, model=req.model, input_shape=req.data.input_shape,
                      batch_stats=original.batch_stats, n_forget=s.n_forget,
                      n_remain=int(s.remain_idx.size), mesh=req.mesh)
    result = unlearn_lib.unlearn(fn, original.params, inputs, plan.hparam_arrays(),
                                 key=req.key("unlearn"), mesh=req.mesh,
                                 progress=req.cfg.report.progress)
    meta = {"time_s": result.run_s + inputs_s, "inputs_s": inputs_s,
            "compile_s": result.compile_s, "epochs": len(result.history),
            "stopped_early": result.stopped_early, "history": result.history,
            "stop": plan.stop, "calibrated_step": result.calibrated_step,
            "summary": result.summary, "method": plan.name,
            "hparams": {k: v for k, v in plan.hparams.items() if k != "learning_rate"},
            "reference": reference.stage if reference is not None else None,
            "bn_mode": plan.block.bn_mode}
    # bn_mode=eval: batch statistics stay the original's, unlearning moves weights only.
    stats = original.batch_stats if result.batch_stats is None else result.batch_stats
    return result.params, stats, meta

  return req.cache.model(stage, build, req.abstract_variables(), req.apply_fn)


def eval_inputs(req: request_lib.Request, models: dict) -> evaluators.EvalInputs:
  """The read-only inputs every evaluator gets (its own key is filled in per evaluator)."""
  s, bs = req.splits, req.cfg.eval.batch_size
  ro = evaluators.base.read_only
  x_f, x_r = req.x_train[s.forget_idx], req.x_train[s.remain_idx]
  logits, views = {}, {}
  for name, m in models.items():
    logits[name] = evaluators.base.frozen_mapping({
        "test": ro(train_lib.predict(m.apply_fn, m.params, req.data.x_test, bs)),
        "forget": ro(train_lib.predict(m.apply_fn, m.params, x_f, bs)),
        "remain": ro(train_lib.predict(m.apply_fn, m.params, x_r, bs))})
    views[name] = evaluators.ModelView(m.apply_fn, m.params, m.stage)
  return evaluators.EvalInputs(
      cfg=req.cfg, models=evaluators.base.frozen_mapping(views),
      logits=evaluators.base.frozen_mapping(logits), x_train=ro(req.x_train),
      y_train=ro(req.y_train), x_test=ro(req.data.x_test), y_test=ro(req.data.y_test),
      forget_idx=ro(s.forget_idx), remain_idx=ro(s.remain_idx),
      num_classes=req.data.num_classes, input_shape=tuple(req.data.input_shape),
      model=req.model, key=None, out_dir=req.workdir, cache=req.cache,
      fingerprint=evaluators.base.frozen_mapping(req.fingerprint),
      transforms=tuple(req.transforms), progress=req.cfg.report.progress)


def config_in_use(req: request_lib.Request, plan) -> dict:
  """The config as a dict, with the plan's ``unlearn`` block and without the blocks of
  methods and evaluators this run does not use.

  Which plugins are registered depends on what the process imported; the
  record of a run must not.
  """
  d = req.cfg.to_dict()
  d["unlearn"] = plan.block.to_dict()
  for name in evaluators.names():
    if name in d and name not in req.evaluators and evaluators.get(name)().config() is not None:
      del d[name]
  for name in methods.names():
    if name != plan.name:
      d["unlearn"].pop(name, None)
  d.pop("audit", None)
  return d


def unlearn_cost(req: request_lib.Request, plan) -> dict:
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


def summarize(req: request_lib.Request, plan, models: dict) -> dict:
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
      "time_s": time_s, "compile_s": compile_s,
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
      "environment": request_lib.environment(),
      "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  if reused_ref_s is not None:
    results["reference_time_s_when_trained"] = reused_ref_s
  if "retrain" in time_s:
    results["speedup"] = time_s["retrain"] / (time_s.get("reference", 0.0) + time_s["unlearn"])
    results["speedup_amortized"] = time_s["retrain"] / time_s["unlearn"]
  if cfg.report.save_forget_indices:
    results["forget_idx"] = s.forget_idx.tolist()
  return results
