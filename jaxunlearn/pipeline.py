"""The pipeline: original -> retrain -> reference -> unlearn -> evaluate -> write.

It strings the model stages (:mod:`jaxunlearn.stages`) and the evaluators
together and names no method, evaluator or data transform: the config picks
them from their registries. The request (:mod:`jaxunlearn.request`) has
validated everything, holds the lock and the original model. Each finished
stage is an Orbax checkpoint under ``WORKDIR/checkpoints/`` and is reused by a
rerun; :mod:`jaxunlearn.results` makes and writes the record.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxunlearn import attribution, deprecation, evaluators, request as request_lib
from jaxunlearn import results as results_lib
from jaxunlearn import registry, stages, train as train_lib

__all__ = ["run", "run_plan", "eval_inputs", "OUTPUTS"]

OUTPUTS = ("results.json", "results.md")


def run(cfg: ml_collections.ConfigDict, workdir, *, wait: bool = False) -> dict:
  """Runs every stage and writes ``results.json`` / ``results.md``; returns the results.

  Args:
    cfg: a config from ``configs/`` (see :func:`jaxunlearn.plugins.default_config`).
    workdir: where checkpoints and results go; finished stages there are reused.
    wait: if another run holds the work directory, wait for it instead of
      refusing.

  Every finished stage the run will load is checked before earlier results
  move aside; if the run fails, they are put back (:func:`jaxunlearn.request.open_request`).
  """
  with request_lib.open_request(cfg, workdir, outputs=OUTPUTS, wait=wait,
                                restores=stages.run_stage_names) as req:
    (label,) = req.plans
    results, sections = run_plan(req, label)
    results_lib.write_results(req, results, sections)
    return results


def run_plan(req: request_lib.Request, label: str) -> tuple[dict, list]:
  """The stages and evaluators of one unlearning plan of ``req``.

  Returns:
    ``(results, sections)``: the contents of ``results.json`` and each
    evaluator's ``(title, markdown)``.
  """
  plan = req.plans[label]
  models = {"original": req.original}
  if req.cfg.retrain.enabled:
    models["retrain"] = stages.retrain_stage(req)
  reference = stages.reference_stage(req) if plan.needs_reference else None
  if reference is not None:
    models["reference"] = reference
  teacher = (lambda: attribution.request_teacher(req, plan, progress=req.cfg.report.progress)) \
      if plan.needs_teacher else None
  models["unlearned"] = stages.unlearn_stage(req, plan, reference, teacher)
  results = results_lib.summarize(req, plan, models)
  inputs = eval_inputs(req, models)
  sections = []
  for name in req.evaluators:
    ev = evaluators.get(name)()
    # A replaced or outside evaluator caches its stages apart from the built-in's.
    cache = req.cache.scoped(evaluators.implementation(name))
    with registry.guard("evaluator", name, ev, "evaluate"):
      section = ev.evaluate(dataclasses.replace(inputs, key=req.key(f"evaluator/{name}"),
                                                cache=cache))
      report = ev.report(section)
    results[evaluators.section_name(name)] = section
    sections.append((ev.title or name, report))
  return results, sections


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


__getattr__ = deprecation.module_getattr(__name__, {
    "retrain_stage": "jaxunlearn.stages.retrain_stage",
    "find_reference": "jaxunlearn.stages.find_reference",
    "reference_stage": "jaxunlearn.stages.reference_stage",
    "unlearn_stage": "jaxunlearn.stages.unlearn_stage",
    "method_inputs": "jaxunlearn.stages.method_inputs",
    "summarize": "jaxunlearn.results.summarize",
    "config_in_use": "jaxunlearn.results.config_in_use",
    "unlearn_cost": "jaxunlearn.results.unlearn_cost",
    "write_results": "jaxunlearn.results.write_results",
})
