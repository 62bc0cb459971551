"""The pipeline: data -> splits -> train -> retrain -> reference -> unlearn -> evaluate.

It strings the stages together and names no method, evaluator or data
transform: the config picks them from their registries
(:mod:`jaxunlearn.methods`, :mod:`jaxunlearn.evaluators`,
:mod:`jaxunlearn.transforms`). Each finished stage is an Orbax checkpoint
under ``WORKDIR/checkpoints/`` and is reused by a rerun. Stage names carry
what they depend on:

* ``original``: the model trained on D_f and D_r (never overwritten);
* ``retrain-<forget hash>``: trained from scratch on D_r;
* ``reference-<D_s hash>-e<epochs>``: trained on D_s, only for methods that
  use a reference model; reused by any later request whose D_f does not touch D_s;
* ``unlearned-<forget hash>-<settings hash>``: the original after unlearning.

Everything is validated before the first write, so bad input leaves the work
directory as it was; a run holds the work directory's lock from its first
write to its end (:mod:`jaxunlearn.workdir`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import platform
import shutil
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import checkpoint, config as config_lib, data as data_lib, evaluators
from jaxunlearn import methods, models, parallel, report, splits as splits_lib, stages
from jaxunlearn import train as train_lib, transforms, unlearn as unlearn_lib
from jaxunlearn import workdir as workdir_lib
from jaxunlearn.errors import ConfigError, DataError, JaxUnlearnError, SplitError


@dataclasses.dataclass
class Trained:
  """A model the pipeline trained or restored."""
  params: Any
  batch_stats: Any
  apply_fn: Callable          # apply_fn(params, x) -> logits, eval mode
  meta: dict                  # time_s, compile_s, history, ...
  stage: str
  reused: bool = False


@dataclasses.dataclass
class Context:
  """What a pipeline run holds (internal: evaluators get :class:`evaluators.EvalInputs`)."""
  cfg: ml_collections.ConfigDict
  workdir: Path
  data: data_lib.Dataset
  x_train: np.ndarray         # training inputs as trained on (after data transforms)
  y_train: np.ndarray
  transforms: list            # names of the transforms applied
  splits: splits_lib.Splits
  model: Any
  mesh: Any
  key: Any
  method: methods.Method
  hparams: dict
  evaluators: list            # names, in order
  secret: bytes | None        # the work dir's key for forget-set hashes (None until known)
  trained: dict = dataclasses.field(default_factory=dict)

  @property
  def cache(self) -> stages.StageCache:
    return stages.StageCache(self.workdir / "checkpoints")

  def forget_hash(self) -> str:
    return splits_lib.index_hash(self.splits.forget_idx, self.secret)


def original_fingerprint(ctx: Context) -> dict:
  """What the original model depends on; a work dir holds one original."""
  cfg = ctx.cfg
  fp = {"dataset": cfg.dataset, "model": cfg.model,
        "model_kwargs": cfg.model_kwargs.to_dict(), "train": cfg.train.to_dict(),
        "seed": cfg.seed}
  fp["train"].pop("driver", None)
  if ctx.splits.holdout_idx.size:
    fp["holdout_hash"] = splits_lib.index_hash(ctx.splits.holdout_idx)
  active = transforms.active(cfg)
  if active:
    # A transform of D_f makes the original depend on the forget set.
    fp["transforms"] = {t.name: t.fingerprint(cfg) for t in active}
    fp["forget_hash"] = ctx.forget_hash()
  return fp


def build_context(cfg, workdir) -> Context:
  """Validates everything and loads data; writes nothing."""
  cfg = config_lib.validate(cfg)
  workdir = Path(workdir).absolute()
  data = data_lib.load(cfg.dataset, data_dir=cfg.data_dir or None)
  model = models.get_model(cfg.model, data.num_classes, **cfg.model_kwargs.to_dict())
  n = data.n_train
  forget_seed = cfg.forget.seed if cfg.forget.seed >= 0 else cfg.seed
  splits = splits_lib.make_splits(
      n, data.y_train, seed=forget_seed, mode=cfg.forget.mode, fraction=cfg.forget.fraction,
      size=cfg.forget.size, index_file=cfg.forget.index_file, classes=tuple(cfg.forget.classes),
      reference_size=config_lib.resolve_size(cfg.reference.size, n),
      holdout_size=config_lib.resolve_size(cfg.holdout.size, n), holdout_seed=cfg.seed,
      reference_source=cfg.reference.source)
  method = methods.resolve_method(cfg.unlearn.method, cfg.unlearn)
  hparams = methods.resolve_hparams(cfg.unlearn.method, cfg.unlearn)
  _check_method_inputs(cfg, method, splits)
  mesh = parallel.make_mesh()
  # Every batch must divide over the devices; checked here, before any write.
  for size in (splits.train_idx.size, splits.remain_idx.size, splits.reference_idx.size):
    parallel.check_batch_size(min(cfg.train.batch_size, size), mesh, "train.batch_size")
  parallel.check_batch_size(min(cfg.unlearn.forget_batch_size, splits.n_forget), mesh,
                            "unlearn.forget_batch_size")
  parallel.check_batch_size(cfg.unlearn.remain_batch_size, mesh, "unlearn.remain_batch_size")
  check_model_input(model, cfg.model, data.input_shape)
  info = evaluators.DataInfo(n_train=n, n_test=data.n_test, num_classes=data.num_classes,
                             input_shape=tuple(data.input_shape), n_forget=splits.n_forget)
  names = evaluators.selected(cfg)
  for name in names:
    evaluators.get(name)().validate(cfg, info)
  x_train, y_train, applied = transforms.apply_all(cfg, data.x_train, data.y_train,
                                                   splits.forget_idx, data.num_classes)
  secret = workdir_lib.read_secret(workdir) if workdir.is_dir() else None
  ctx = Context(cfg=cfg, workdir=workdir, data=data, x_train=x_train, y_train=y_train,
                transforms=applied, splits=splits, model=model, mesh=mesh,
                key=jax.random.key(cfg.seed), method=method, hparams=hparams,
                evaluators=names, secret=secret)
  # Without the secret (a new work dir) the forget hash is not known yet: it is
  # checked again under the lock, before the first write.
  workdir_lib.check(workdir, original_fingerprint(ctx),
                    ignore=() if secret is not None else ("forget_hash",))
  return ctx


def stop_rule(unlearn_cfg) -> str:
  """``unlearn.stop``; ``tol > 0`` with the default ``epochs`` means ``kl_tol`` (as before)."""
  u = unlearn_cfg
  return "kl_tol" if u.stop == "epochs" and u.tol > 0 else u.stop


def needed_inputs(cfg, method) -> set:
  """The input arrays a request needs: the method's, and the calibrated stop's."""
  want = set(method.inputs)
  if cfg.unlearn.stop == "calibrated":
    want |= set(unlearn_lib.CALIBRATION_INPUTS)
  return want


def _check_method_inputs(cfg, method, splits) -> None:
  if cfg.unlearn.tol and not method.needs_reference:
    raise ConfigError(f"unlearn.tol stops on the KL to a reference model, which method "
                      f"{cfg.unlearn.method!r} does not use; set --config.unlearn.tol=0")
  if needed_inputs(cfg, method) & {"x_heldout", "y_heldout"} and not splits.holdout_idx.size:
    raise ConfigError(f"method {cfg.unlearn.method!r} needs held-out examples; keep some out "
                      "of training with --config.holdout.size=0.05 (a fraction or a count)")


def check_model_input(model, name: str, input_shape) -> None:
  """Raises DataError unless ``model`` can be initialised on inputs of ``input_shape``."""
  try:
    jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, *input_shape)), train=False),
                   jax.random.key(0))
  except JaxUnlearnError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Flax / XLA shape errors are long and of many types; report one line.
    raise DataError(f"model '{name}' cannot take inputs of shape {tuple(input_shape)} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "choose a model that fits the dataset") from e


def _abstract_variables(ctx: Context):
  opt = train_lib.make_optimizer(ctx.cfg.train)
  state = jax.eval_shape(lambda k: train_lib.init_state(
      ctx.model, opt, k, ctx.data.input_shape), jax.random.key(0))
  return {"params": state.params, "batch_stats": state.batch_stats}


def restore(ctx: Context, stage: str, reused: bool = False) -> Trained:
  """A model stage of the work dir, restored."""
  variables, meta = checkpoint.restore(ctx.cache.path(stage), _abstract_variables(ctx))
  bs = variables.get("batch_stats") or {}
  return Trained(variables["params"], bs, train_lib.eval_apply_fn(ctx.model, bs), meta,
                 stage, reused)


def train_stage(ctx: Context, stage: str, idx: np.ndarray, *, epochs: int, key,
                protected: bool = False, extra_meta: dict | None = None) -> Trained:
  """Trains from scratch on ``x_train[idx]`` unless the stage is already saved."""
  if ctx.cache.exists(stage):
    return restore(ctx, stage)
  cfg = ctx.cfg.train
  steps = epochs * max(1, idx.size // min(cfg.batch_size, idx.size))
  optimizer = train_lib.make_optimizer(cfg, steps)
  init_key, data_key = jax.random.split(key)
  state = train_lib.init_state(ctx.model, optimizer, init_key, ctx.data.input_shape)
  x = jnp.asarray(ctx.x_train[idx])
  y = jnp.asarray(ctx.y_train[idx])
  result = train_lib.fit(ctx.model, optimizer, state, x, y, epochs=epochs,
                         batch_size=cfg.batch_size, key=data_key, driver=cfg.driver,
                         mesh=ctx.mesh, stage=stage.split("-")[0],
                         progress=ctx.cfg.report.progress)
  meta = {"stage": stage, "time_s": result.run_s, "compile_s": result.compile_s,
          "epochs": epochs, "n_examples": int(idx.size), "history": result.history,
          **(extra_meta or {})}
  variables = {"params": result.state.params, "batch_stats": result.state.batch_stats}
  checkpoint.save(ctx.cache.path(stage), variables, meta, protected=protected)
  bs = result.state.batch_stats
  return Trained(result.state.params, bs, train_lib.eval_apply_fn(ctx.model, bs), meta, stage)


def find_reference(ctx: Context) -> str | None:
  """A saved reference model whose D_s avoids this request's D_f, if any."""
  root = ctx.cache.root
  if not root.is_dir():
    return None
  want = {"epochs": ctx.cfg.reference.epochs, "n_examples": int(ctx.splits.reference_idx.size),
          "source": ctx.cfg.reference.source}
  for d in sorted(root.glob("reference-*")):
    if not checkpoint.exists(d):
      continue
    meta = checkpoint.metadata(d)
    if any(meta.get(k, "remain" if k == "source" else None) != v for k, v in want.items()):
      continue
    ref_idx = np.asarray(meta["reference_idx"], np.int64)
    if not np.intersect1d(ref_idx, ctx.splits.forget_idx).size:
      return d.name
  return None


def reference_stage(ctx: Context, key) -> Trained:
  # The name carries D_s and the schedule: a reference of other epochs is another stage.
  own_stage = (f"reference-{splits_lib.index_hash(ctx.splits.reference_idx, ctx.secret)}"
               f"-e{ctx.cfg.reference.epochs}")
  if ctx.cfg.reference.reuse:
    found = find_reference(ctx)
    if found is not None:
      ref_idx = np.asarray(ctx.cache.metadata(found)["reference_idx"])
      ctx.splits = splits_lib.check_splits(
          dataclasses.replace(ctx.splits, reference_idx=ref_idx), ctx.data.n_train)
      _check_reference_avoids_forget(ref_idx, ctx.splits.forget_idx)
      # Finding the reference this very request trained (a resumed or repeated run) is
      # not reuse; one trained for another forget set is.
      trained_for = ctx.cache.metadata(found).get("trained_for")
      return restore(ctx, found, reused=trained_for != ctx.forget_hash())
  ref_idx = ctx.splits.reference_idx
  # Checked again here, not with `assert` (stripped by python -O): the
  # reference model must never see D_f.
  _check_reference_avoids_forget(ref_idx, ctx.splits.forget_idx)
  return train_stage(ctx, own_stage, ref_idx, epochs=ctx.cfg.reference.epochs, key=key,
                     extra_meta={"reference_idx": ref_idx.tolist(),
                                 "source": ctx.cfg.reference.source,
                                 "trained_for": ctx.forget_hash()})


def _check_reference_avoids_forget(reference_idx, forget_idx) -> None:
  if np.intersect1d(reference_idx, forget_idx).size:
    raise SplitError("the reference subset touches the forget set; the reference model must "
                     "never see D_f")


def method_inputs(ctx: Context, original: Trained, reference: Trained | None) -> methods.Inputs:
  """The arrays the method asked for (and only those)."""
  s, want = ctx.splits, needed_inputs(ctx.cfg, ctx.method)
  bs = ctx.cfg.eval.batch_size
  x_f = ctx.x_train[s.forget_idx]
  fields = {}
  if "x_forget" in want:
    fields["x_forget"] = x_f
  if "y_forget" in want:
    fields["y_forget"] = ctx.y_train[s.forget_idx]
  if "x_remain" in want:
    fields["x_remain"] = ctx.x_train[s.remain_idx]
  if "y_remain" in want:
    fields["y_remain"] = ctx.y_train[s.remain_idx]
  if "ref_probs" in want:
    fields["ref_probs"] = jax.nn.softmax(jnp.asarray(
        train_lib.predict(reference.apply_fn, reference.params, x_f, bs)), -1)
  if "orig_logits_forget" in want:
    fields["orig_logits_forget"] = train_lib.predict(original.apply_fn, original.params, x_f, bs)
  if "orig_logits_remain" in want:
    fields["orig_logits_remain"] = train_lib.predict(
        original.apply_fn, original.params, ctx.x_train[s.remain_idx], bs)
  if want & {"x_heldout", "y_heldout"}:
    # Held-out examples of the classes in D_f (as SCRUB+R's forget-validation set).
    h = s.holdout_idx[np.isin(ctx.y_train[s.holdout_idx], ctx.y_train[s.forget_idx])]
    if not h.size:
      raise ConfigError("no held-out example has a class of D_f; raise holdout.size")
    fields["x_heldout"], fields["y_heldout"] = ctx.x_train[h], ctx.y_train[h]
  return methods.Inputs(**{k: jnp.asarray(v) for k, v in fields.items()})


def unlearn_spec(ctx: Context, reference: Trained | None) -> dict:
  u = ctx.cfg.unlearn
  return {"method": u.method, "hparams": ctx.hparams, "options": ctx.method.opts,
          "epochs": u.epochs, "tol": u.tol, "stop": u.stop,
          "calibrate_every": u.calibrate_every if u.stop == "calibrated" else None,
          "forget_batch_size": u.forget_batch_size, "remain_batch_size": u.remain_batch_size,
          "optimizer": u.optimizer, "learning_rate": u.learning_rate, "momentum": u.momentum,
          "weight_decay": u.weight_decay, "schedule": u.schedule,
          "reference": reference.stage if reference is not None else None}


def unlearn_stage(ctx: Context, original: Trained, reference: Trained | None, key) -> Trained:
  u = ctx.cfg.unlearn
  stage = f"unlearned-{ctx.forget_hash()}-{stages.spec_hash(unlearn_spec(ctx, reference))}"
  if ctx.cache.exists(stage):
    return restore(ctx, stage)
  # The forward passes that make the inputs (the reference on D_f, ...) are
  # unlearning work: timed, after a first call that compiles them.
  jax.block_until_ready(method_inputs(ctx, original, reference))
  t0 = time.perf_counter()
  inputs = jax.block_until_ready(method_inputs(ctx, original, reference))
  inputs_s = time.perf_counter() - t0
  model, shape = ctx.model, ctx.data.input_shape
  fn = unlearn_lib.make_unlearn_fn(
      ctx.method, original.apply_fn, epochs=u.epochs, n_forget=ctx.splits.n_forget,
      n_remain=int(ctx.splits.remain_idx.size), forget_batch_size=u.forget_batch_size,
      remain_batch_size=u.remain_batch_size, optimizer_cfg=u, mesh=ctx.mesh,
      init_fn=lambda k: model.init(k, jnp.zeros((1, *shape)), train=False)["params"],
      stop=stop_rule(u), calibrate_every=u.calibrate_every, tol=u.tol)
  result = unlearn_lib.unlearn(
      fn, original.params, inputs, {"learning_rate": u.learning_rate, **ctx.hparams},
      key=key, tol=u.tol, mesh=ctx.mesh, progress=ctx.cfg.report.progress)
  meta = {"stage": stage, "time_s": result.run_s + inputs_s, "inputs_s": inputs_s,
          "compile_s": result.compile_s, "epochs": len(result.history),
          "stopped_early": result.stopped_early, "history": result.history,
          "stop": u.stop, "calibrated_step": result.calibrated_step,
          "summary": result.summary, "method": u.method, "hparams": ctx.hparams,
          "reference": reference.stage if reference is not None else None}
  # Batch statistics are the original's: unlearning moves weights only.
  bs = original.batch_stats
  checkpoint.save(ctx.cache.path(stage), {"params": result.params, "batch_stats": bs}, meta)
  return Trained(result.params, bs, original.apply_fn, meta, stage)


def environment() -> dict:
  import flax
  import optax
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)),
          "device_count": jax.device_count(), "process_count": jax.process_count(),
          "python": platform.python_version(), "host": platform.node()}


def run(cfg: ml_collections.ConfigDict, workdir, *, wait: bool = False) -> dict:
  """Runs every stage and writes ``results.json`` / ``results.md``; returns the results.

  Args:
    cfg: a config from ``configs/`` (see :func:`jaxunlearn.config.base_config`).
    workdir: where checkpoints and results go; finished stages there are reused.
    wait: if another run holds the work directory, wait for it instead of
      refusing.
  """
  ctx = build_context(cfg, workdir)
  ctx.workdir.mkdir(parents=True, exist_ok=True)
  lock = workdir_lib.Lock(ctx.workdir, wait=wait) if jax.process_index() == 0 \
      else contextlib.nullcontext()
  with lock:
    claim_workdir(ctx, outputs=("results.json", "results.md"))
    return _run_stages(ctx)


def claim_workdir(ctx: Context, outputs=()) -> None:
  """Under the lock: the secret, ``run.json``, and no stale ``outputs`` left looking current.

  Earlier ``outputs`` (e.g. ``results.json``) move to ``<stem>.previous.<ext>``.
  """
  secret = workdir_lib.read_secret(ctx.workdir)
  if secret is None:
    secret = workdir_lib.new_secret()
    if jax.process_index() == 0:
      workdir_lib.write_secret(ctx.workdir, secret)
  ctx.secret = secret
  fingerprint = original_fingerprint(ctx)
  # Again under the lock: another run may have claimed the work dir meanwhile.
  workdir_lib.check(ctx.workdir, fingerprint)
  if jax.process_index() == 0:
    if not (ctx.workdir / "run.json").exists():
      workdir_lib.atomic_write(ctx.workdir / "run.json",
                               json.dumps({"original": fingerprint}, indent=2))
    for name in outputs:
      path = ctx.workdir / name
      if path.exists():
        stem, ext = name.split(".")
        shutil.move(path, ctx.workdir / f"{stem}.previous.{ext}")


def _run_stages(ctx: Context) -> dict:
  cfg = ctx.cfg
  k_orig, k_retrain, k_ref, k_unlearn = jax.random.split(ctx.key, 4)
  fhash = ctx.forget_hash()
  t = ctx.trained
  t["original"] = train_stage(ctx, "original", ctx.splits.train_idx, epochs=cfg.train.epochs,
                              key=k_orig, protected=True)
  if cfg.retrain.enabled:
    t["retrain"] = train_stage(ctx, f"retrain-{fhash}", ctx.splits.remain_idx,
                               epochs=cfg.train.epochs, key=k_retrain)
  reference = reference_stage(ctx, k_ref) if ctx.method.needs_reference else None
  if reference is not None:
    t["reference"] = reference
  t["unlearned"] = unlearn_stage(ctx, t["original"], reference, k_unlearn)

  results = summarize(ctx)
  inputs = eval_inputs(ctx)
  sections = []
  for name in ctx.evaluators:
    ev = evaluators.get(name)()
    key = jax.random.fold_in(jax.random.key(cfg.seed), zlib.crc32(name.encode()))
    section = ev.evaluate(dataclasses.replace(inputs, key=key))
    results[evaluators.section_name(name)] = section
    sections.append((ev.title or name, ev.report(section)))
  if jax.process_index() == 0:
    workdir_lib.atomic_write(ctx.workdir / "results.json", json.dumps(results, indent=2))
    workdir_lib.atomic_write(ctx.workdir / "results.md",
                             report.results_markdown(results, sections))
  return results


def eval_inputs(ctx: Context) -> evaluators.EvalInputs:
  """The read-only inputs every evaluator gets (its own key is filled in per evaluator)."""
  s, bs = ctx.splits, ctx.cfg.eval.batch_size
  ro = evaluators.base.read_only
  x_f, x_r = ctx.x_train[s.forget_idx], ctx.x_train[s.remain_idx]
  logits, views = {}, {}
  for name, m in ctx.trained.items():
    logits[name] = evaluators.base.frozen_mapping({
        "test": ro(train_lib.predict(m.apply_fn, m.params, ctx.data.x_test, bs)),
        "forget": ro(train_lib.predict(m.apply_fn, m.params, x_f, bs)),
        "remain": ro(train_lib.predict(m.apply_fn, m.params, x_r, bs))})
    views[name] = evaluators.ModelView(m.apply_fn, m.params, m.stage)
  return evaluators.EvalInputs(
      cfg=ml_collections.FrozenConfigDict(ctx.cfg), models=evaluators.base.frozen_mapping(views),
      logits=evaluators.base.frozen_mapping(logits), x_train=ro(ctx.x_train),
      y_train=ro(ctx.y_train), x_test=ro(ctx.data.x_test), y_test=ro(ctx.data.y_test),
      forget_idx=ro(s.forget_idx), remain_idx=ro(s.remain_idx),
      num_classes=ctx.data.num_classes, input_shape=tuple(ctx.data.input_shape),
      model=ctx.model, key=None, out_dir=ctx.workdir, cache=ctx.cache,
      fingerprint=evaluators.base.frozen_mapping(original_fingerprint(ctx)),
      transforms=tuple(ctx.transforms), progress=ctx.cfg.report.progress)


def config_in_use(ctx: Context) -> dict:
  """The config as a dict, without the blocks of methods and evaluators this run does not use.

  Which plugins are registered depends on what the process imported; the
  record of a run must not.
  """
  d = ctx.cfg.to_dict()
  for name in evaluators.names():
    if name in d and name not in ctx.evaluators and evaluators.get(name)().config() is not None:
      del d[name]
  for name in methods.names():
    if name != ctx.cfg.unlearn.method:
      d["unlearn"].pop(name, None)
  return d


def summarize(ctx: Context) -> dict:
  cfg, s, t = ctx.cfg, ctx.splits, ctx.trained
  time_s = {name: m.meta["time_s"] for name, m in t.items()}
  reused_ref_s = None
  if "reference" in t and t["reference"].reused:
    # A reference trained for an earlier request costs this one nothing.
    reused_ref_s, time_s["reference"] = time_s["reference"], 0.0
  time_s["train"] = time_s.pop("original")
  time_s["unlearn"] = time_s.pop("unlearned")
  compile_s = {name: m.meta["compile_s"] for name, m in t.items()}
  compile_s["train"] = compile_s.pop("original")
  compile_s["unlearn"] = compile_s.pop("unlearned")
  results = {
      "setting": cfg.setting, "dataset": cfg.dataset, "model": cfg.model,
      "method": cfg.unlearn.method, "hparams": ctx.hparams,
      "seed": cfg.seed, "n_train": ctx.data.n_train, "n_test": ctx.data.n_test,
      "n_forget": s.n_forget, "n_remain": int(s.remain_idx.size),
      "n_reference": int(s.reference_idx.size) if "reference" in t else 0,
      "n_holdout": int(s.holdout_idx.size),
      "forget_hash": ctx.forget_hash(),
      "time_s": time_s, "compile_s": compile_s,
      "unlearn_epochs_run": t["unlearned"].meta["epochs"],
      "unlearn_stop": cfg.unlearn.stop,
      "calibrated_step": t["unlearned"].meta.get("calibrated_step"),
      "unlearn_summary": t["unlearned"].meta.get("summary") or {},
      "reference_reused": bool(t["reference"].reused) if "reference" in t else False,
      "stages": {name: m.stage for name, m in t.items()},
      "evaluators": list(ctx.evaluators),
      "transforms": list(ctx.transforms),
      "config": config_in_use(ctx),
      "environment": environment(),
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
