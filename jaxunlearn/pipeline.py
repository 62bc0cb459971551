"""The pipeline: data -> splits -> train -> retrain -> reference -> unlearn -> evaluate.

Each finished stage is an Orbax checkpoint under ``WORKDIR/checkpoints/`` and
is reused by a rerun. Stage names carry what they depend on:

* ``original``: the model trained on all of D (never overwritten);
* ``retrain-<forget hash>``: trained from scratch on D_r;
* ``reference-<D_s hash>``: trained on D_s; reused by any later request whose
  D_f does not touch D_s;
* ``unlearned-<forget hash>-<settings hash>``: the original after unlearning.

Everything is validated before the first write, so bad input leaves the work
directory as it was.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import checkpoint, config as config_lib, data as data_lib, evaluate
from jaxunlearn import models, parallel, report, splits as splits_lib, train as train_lib
from jaxunlearn import unlearn as unlearn_lib
from jaxunlearn.errors import DataError, JaxUnlearnError, SplitError, WorkdirError

MODEL_NAMES = ("original", "retrain", "reference", "unlearned")


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
  """What a pipeline run holds; evaluators read it."""
  cfg: ml_collections.ConfigDict
  workdir: Path
  data: data_lib.Dataset
  x_train: np.ndarray         # training inputs as trained on (poisoned when a backdoor is planted)
  y_train: np.ndarray
  splits: splits_lib.Splits
  model: Any
  mesh: Any
  key: Any
  trained: dict = dataclasses.field(default_factory=dict)
  logits: dict = dataclasses.field(default_factory=dict)   # model -> {test, forget, remain}


def _hash(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def original_fingerprint(cfg, splits: splits_lib.Splits) -> dict:
  """What the original model depends on; a workdir holds one original."""
  fp = {"dataset": cfg.dataset, "model": cfg.model,
        "model_kwargs": cfg.model_kwargs.to_dict(), "train": cfg.train.to_dict(),
        "seed": cfg.seed}
  fp["train"].pop("driver", None)
  backdoor = cfg.get("backdoor")
  if backdoor is not None and backdoor.get("enabled", False):
    # A planted backdoor makes the original depend on the forget set.
    fp["backdoor"] = backdoor.to_dict()
    fp["forget_hash"] = splits_lib.index_hash(splits.forget_idx)
  return fp


def check_workdir(workdir: Path, fingerprint: dict) -> None:
  """Raises WorkdirError if ``workdir`` is unusable or holds another config's original."""
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"work directory {workdir} is a file; pass a directory")
  probe = workdir if workdir.exists() else next(p for p in workdir.parents if p.exists())
  if not probe.is_dir():
    raise WorkdirError(f"work directory {workdir} cannot be created: {probe} is a file; "
                       "choose another --workdir")
  if not _can_write(probe):
    raise WorkdirError(f"work directory {workdir} is not writable ({probe} refuses new files); "
                       "choose another --workdir")
  run_file = workdir / "run.json"
  if run_file.exists():
    try:
      saved = json.loads(run_file.read_text())["original"]
    except (ValueError, KeyError):
      raise WorkdirError(f"{run_file} is unreadable; delete it or use a new --workdir") from None
    if saved != json.loads(json.dumps(fingerprint)):
      diff = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
      raise WorkdirError(
          f"work directory {workdir} holds a run of a different config (differs in: "
          f"{', '.join(diff)}); use a new --workdir")


def _can_write(directory: Path) -> bool:
  """Whether a file can be created in ``directory``, by trying it.

  ``os.access`` alone is not enough: it answers for the real user id, so it
  says yes to root (and to a process whose effective user differs) where a
  write would still fail.
  """
  if not os.access(directory, os.W_OK | os.X_OK):
    return False
  try:
    with tempfile.TemporaryFile(dir=directory, prefix=".jaxunlearn-probe-"):
      pass
  except OSError:
    return False
  return True


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
      reference_size=config_lib.resolve_size(cfg.reference.size, n))
  mesh = parallel.make_mesh()
  # Every batch must divide over the devices; checked here, before any write.
  for size in (n, splits.remain_idx.size, splits.reference_idx.size):
    parallel.check_batch_size(min(cfg.train.batch_size, size), mesh, "train.batch_size")
  parallel.check_batch_size(min(cfg.unlearn.forget_batch_size, splits.n_forget), mesh,
                            "unlearn.forget_batch_size")
  parallel.check_batch_size(cfg.unlearn.remain_batch_size, mesh, "unlearn.remain_batch_size")
  # Looked up now, not after hours of training, so a typo leaves the workdir as it was.
  unlearn_lib.get_method(cfg.unlearn.method)
  check_model_input(model, cfg.model, data.input_shape)
  x_train, y_train = data.x_train, data.y_train
  if cfg.get("backdoor") is not None and cfg.backdoor.get("enabled", False):
    from jaxunlearn import backdoor
    x_train, y_train = backdoor.poison(x_train, y_train, splits.forget_idx, cfg.backdoor,
                                       num_classes=data.num_classes)
  if "mia" in evaluate.evaluator_names(cfg):
    from jaxunlearn import mia
    mia.pool_size(cfg, data.n_test)
  check_workdir(workdir, original_fingerprint(cfg, splits))
  return Context(cfg=cfg, workdir=workdir, data=data, x_train=x_train, y_train=y_train,
                 splits=splits, model=model, mesh=mesh, key=jax.random.key(cfg.seed))


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


def _ckpt_dir(ctx: Context, stage: str) -> Path:
  return ctx.workdir / "checkpoints" / stage


def _abstract_variables(ctx: Context):
  opt = train_lib.make_optimizer(ctx.cfg.train)
  state = jax.eval_shape(lambda k: train_lib.init_state(
      ctx.model, opt, k, ctx.data.input_shape), jax.random.key(0))
  return {"params": state.params, "batch_stats": state.batch_stats}


def _restore(ctx: Context, stage: str, reused: bool = False) -> Trained:
  variables, meta = checkpoint.restore(_ckpt_dir(ctx, stage), _abstract_variables(ctx))
  bs = variables.get("batch_stats") or {}
  return Trained(variables["params"], bs, train_lib.eval_apply_fn(ctx.model, bs), meta,
                 stage, reused)


def train_stage(ctx: Context, stage: str, idx: np.ndarray, *, epochs: int, key,
                protected: bool = False, extra_meta: dict | None = None) -> Trained:
  """Trains from scratch on ``x_train[idx]`` unless the stage is already saved."""
  if checkpoint.exists(_ckpt_dir(ctx, stage)):
    return _restore(ctx, stage)
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
  checkpoint.save(_ckpt_dir(ctx, stage), variables, meta, protected=protected)
  bs = result.state.batch_stats
  return Trained(result.state.params, bs, train_lib.eval_apply_fn(ctx.model, bs), meta, stage)


def find_reference(ctx: Context) -> str | None:
  """A saved reference model whose D_s avoids this request's D_f, if any."""
  root = ctx.workdir / "checkpoints"
  if not root.is_dir():
    return None
  want = {"epochs": ctx.cfg.reference.epochs, "n_examples": int(ctx.splits.reference_idx.size)}
  for d in sorted(root.glob("reference-*")):
    if not checkpoint.exists(d):
      continue
    meta = checkpoint.metadata(d)
    if any(meta.get(k) != v for k, v in want.items()):
      continue
    ref_idx = np.asarray(meta["reference_idx"], np.int64)
    if not np.intersect1d(ref_idx, ctx.splits.forget_idx).size:
      return d.name
  return None


def reference_stage(ctx: Context, key) -> Trained:
  own_stage = f"reference-{splits_lib.index_hash(ctx.splits.reference_idx)}"
  if ctx.cfg.reference.reuse:
    found = find_reference(ctx)
    if found is not None:
      ref_idx = np.asarray(checkpoint.metadata(_ckpt_dir(ctx, found))["reference_idx"])
      ctx.splits = splits_lib.check_splits(
          dataclasses.replace(ctx.splits, reference_idx=ref_idx), ctx.data.n_train)
      _check_reference_avoids_forget(ref_idx, ctx.splits.forget_idx)
      # Finding this request's own reference (a resumed or repeated run) is not reuse.
      return _restore(ctx, found, reused=found != own_stage)
  ref_idx = ctx.splits.reference_idx
  stage = own_stage
  # Checked again here, not with `assert` (stripped by python -O): the
  # reference model must never see D_f.
  _check_reference_avoids_forget(ref_idx, ctx.splits.forget_idx)
  return train_stage(ctx, stage, ref_idx, epochs=ctx.cfg.reference.epochs, key=key,
                     extra_meta={"reference_idx": ref_idx.tolist()})


def _check_reference_avoids_forget(reference_idx, forget_idx) -> None:
  if np.intersect1d(reference_idx, forget_idx).size:
    raise SplitError("the reference subset touches the forget set; the reference model must "
                     "never see D_f")


def unlearn_stage(ctx: Context, original: Trained, reference: Trained, key) -> Trained:
  u = ctx.cfg.unlearn
  fhash = splits_lib.index_hash(ctx.splits.forget_idx)
  stage = f"unlearned-{fhash}-{_hash([u.to_dict(), reference.stage])}"
  if checkpoint.exists(_ckpt_dir(ctx, stage)):
    return _restore(ctx, stage)
  x_f = jnp.asarray(ctx.x_train[ctx.splits.forget_idx])
  ref_probs = jax.nn.softmax(jnp.asarray(train_lib.predict(
      reference.apply_fn, reference.params, x_f, ctx.cfg.eval.batch_size)), -1)
  x_r = jnp.asarray(ctx.x_train[ctx.splits.remain_idx])
  y_r = jnp.asarray(ctx.y_train[ctx.splits.remain_idx])
  optimizer = train_lib.make_optimizer(u, u.epochs * max(1, x_f.shape[0] // u.forget_batch_size))
  method = unlearn_lib.get_method(u.method)(original.apply_fn, optimizer, u.lam, mesh=ctx.mesh)
  result = unlearn_lib.unlearn(
      method, original.params, x_f, ref_probs, x_r, y_r, apply_fn=original.apply_fn,
      epochs=u.epochs, key=key, forget_batch_size=u.forget_batch_size,
      remain_batch_size=u.remain_batch_size, tol=u.tol, mesh=ctx.mesh,
      progress=ctx.cfg.report.progress)
  meta = {"stage": stage, "time_s": result.run_s, "compile_s": result.compile_s,
          "epochs": len(result.history), "stopped_early": result.stopped_early,
          "history": result.history, "reference": reference.stage}
  # Batch statistics are the original's: unlearning moves weights only.
  bs = original.batch_stats
  checkpoint.save(_ckpt_dir(ctx, stage), {"params": result.params, "batch_stats": bs}, meta)
  return Trained(result.params, bs, original.apply_fn, meta, stage)


def environment() -> dict:
  import flax
  import optax
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)),
          "device_count": jax.device_count(), "process_count": jax.process_count(),
          "python": platform.python_version(), "host": platform.node()}


def run(cfg: ml_collections.ConfigDict, workdir, *, evaluators=None) -> dict:
  """Runs every stage and writes ``results.json`` / ``results.md``; returns the results.

  Args:
    cfg: a config from ``configs/`` (see :func:`jaxunlearn.config.base_config`).
    workdir: where checkpoints and results go; finished stages there are reused.
    evaluators: extra ``fn(ctx) -> dict`` whose output is merged into results,
      run after the ones the config names in ``eval.evaluators``.
  """
  ctx = build_context(cfg, workdir)
  cfg = ctx.cfg
  ctx.workdir.mkdir(parents=True, exist_ok=True)
  fingerprint = original_fingerprint(cfg, ctx.splits)
  if jax.process_index() == 0 and not (ctx.workdir / "run.json").exists():
    _atomic_write(ctx.workdir / "run.json", json.dumps({"original": fingerprint}, indent=2))

  k_orig, k_retrain, k_ref, k_unlearn = jax.random.split(ctx.key, 4)
  all_idx = np.arange(ctx.data.n_train)
  fhash = splits_lib.index_hash(ctx.splits.forget_idx)
  t = ctx.trained
  t["original"] = train_stage(ctx, "original", all_idx, epochs=cfg.train.epochs, key=k_orig,
                              protected=True)
  if cfg.retrain.enabled:
    t["retrain"] = train_stage(ctx, f"retrain-{fhash}", ctx.splits.remain_idx,
                               epochs=cfg.train.epochs, key=k_retrain)
  t["reference"] = reference_stage(ctx, k_ref)
  t["unlearned"] = unlearn_stage(ctx, t["original"], t["reference"], k_unlearn)

  results = summarize(ctx)
  for name in evaluate.evaluator_names(cfg):
    results.update(evaluate.get_evaluator(name)(ctx))
  for evaluator in evaluators or ():
    results.update(evaluator(ctx))
  if jax.process_index() == 0:
    _atomic_write(ctx.workdir / "results.json", json.dumps(results, indent=2))
    _atomic_write(ctx.workdir / "results.md", report.results_markdown(results))
  return results


def summarize(ctx: Context) -> dict:
  cfg, s = ctx.cfg, ctx.splits
  figures = {}
  for name, m in ctx.trained.items():
    figures[name], ctx.logits[name] = evaluate.model_metrics(
        m.apply_fn, m.params, ctx.data, s, cfg.eval.batch_size, ctx.x_train, ctx.y_train)
  t = ctx.trained
  time_s = {name: m.meta["time_s"] for name, m in t.items()}
  time_s["train"] = time_s.pop("original")
  time_s["unlearn"] = time_s.pop("unlearned")
  compile_s = {name: m.meta["compile_s"] for name, m in t.items()}
  compile_s["train"] = compile_s.pop("original")
  compile_s["unlearn"] = compile_s.pop("unlearned")
  results = {
      "setting": cfg.setting, "dataset": cfg.dataset, "model": cfg.model,
      "seed": cfg.seed, "n_train": ctx.data.n_train, "n_test": ctx.data.n_test,
      "n_forget": s.n_forget, "n_remain": int(s.remain_idx.size),
      "n_reference": int(s.reference_idx.size),
      "forget_hash": splits_lib.index_hash(s.forget_idx),
      "models": figures, "time_s": time_s, "compile_s": compile_s,
      "unlearn_epochs_run": t["unlearned"].meta["epochs"],
      "reference_reused": t["reference"].reused,
      "stages": {name: m.stage for name, m in t.items()},
      "config": cfg.to_dict(),
      "environment": environment(),
      "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  if "retrain" in time_s:
    results["speedup"] = time_s["retrain"] / (time_s["reference"] + time_s["unlearn"])
    results["speedup_amortized"] = time_s["retrain"] / time_s["unlearn"]
  if cfg.report.save_forget_indices:
    results["forget_idx"] = s.forget_idx.tolist()
  return results


def _atomic_write(path: Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)
